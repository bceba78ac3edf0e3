"""``palaestra serve --ray`` flags refused before any Ray cluster is touched, and the
replica resources the envs declare."""

from __future__ import annotations

import pytest
from cli_runner import run_cli

from palaestra.envs import env_class

MAZE = "palaestra/Maze-v0"


def test_replica_flags_need_ray():
    result = run_cli("serve", MAZE, "--replicas", "2")
    assert result.returncode == 2 and "--replicas and --replica-cpus need --ray" in result.stderr


def test_workers_do_not_mix_with_ray():
    result = run_cli("serve", "--ray", "--workers", "2", MAZE)
    assert result.returncode == 2 and "use --replicas" in result.stderr


def test_an_env_id_right_after_ray_is_an_env_not_an_address():
    # Refused as an unknown env (not tried as a cluster address): no Ray started.
    result = run_cli("serve", "--ray", "palaestra/Nope-v0")
    assert result.returncode == 2 and "unknown env 'palaestra/Nope-v0'" in result.stderr


def test_zero_replicas_is_a_usage_error():
    pytest.importorskip("ray")
    result = run_cli("serve", "--ray", "--replicas", "0", MAZE)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --replicas must be at least 1, not 0"


def test_replica_options_come_from_the_envs_declared_resources(monkeypatch):
    pytest.importorskip("ray")
    from palaestra.scale import replica_options

    assert replica_options([MAZE]) == {"num_cpus": 1.0}
    assert replica_options([MAZE], 0.5) == {"num_cpus": 0.5}
    # ScienceWorld's JVM pool follows its variables: 3 JVMs of 256 MiB heap + 192 MiB each.
    monkeypatch.setenv("PALAESTRA_SCIWORLD_JVMS", "3")
    monkeypatch.setenv("PALAESTRA_SCIWORLD_HEAP", "256m")
    sciworld = env_class("palaestra/SciWorld-v0").resources["memory"]
    assert sciworld == 3 * (256 + 192) * 2**20
    webshop = env_class("palaestra/WebShop-v0").resources["memory"]
    options = replica_options(["palaestra/SciWorld-v0", "palaestra/WebShop-v0", MAZE], 2)
    assert options == {"num_cpus": 2.0, "memory": int(sciworld + webshop)}
    with pytest.raises(ValueError, match=">= 0"):
        replica_options([MAZE], -1)


def test_an_undeclared_resource_name_is_refused(monkeypatch):
    pytest.importorskip("ray")
    from palaestra.scale import replica_options

    monkeypatch.setattr(env_class(MAZE), "resources", {"gpus": 1}, raising=False)
    with pytest.raises(ValueError, match="gpus"):
        replica_options([MAZE])
