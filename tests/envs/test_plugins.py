"""A third-party env, defined only in tests/plugin and declared only by its entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_runner import run_cli

import palaestra

PLUGIN = Path(__file__).parents[1] / "plugin"


def palaestra_cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, pythonpath=str(PLUGIN))


def test_plugin_is_listed_by_palaestra_envs():
    listed = json.loads(palaestra_cli("envs", "--json").stdout)
    coins = next(e for e in listed if e["id"] == "acme/Coins-v0")
    assert coins["splits"] == {"train": 27, "test": 6}
    assert coins["capabilities"] == ["available_actions", "expert", "random_action", "snapshot"]
    assert coins["class"] == "acme_envs.Coins"


def test_plugin_passes_palaestra_check():
    result = palaestra_cli("check", "acme/Coins-v0", "--episodes", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed, 0 failed" in result.stdout
    assert "8 episodes identical in-process and over HTTP" in result.stdout


def test_plugin_is_served():
    from palaestra.servers.local import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(PLUGIN)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "palaestra.cli",
            "serve",
            "acme/Coins-v0",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        from palaestra.servers import RetryPolicy

        # This process never imported acme_envs: the server alone knows the env.
        assert "acme_envs" not in sys.modules
        coins = palaestra.RemoteEnv(
            "acme/Coins-v0", f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=60, backoff=0.2)
        )
        observation, info = coins.reset(options={"task_id": 6})
        assert observation == "There are 6 coins."
        while True:
            observation, reward, terminated, truncated, info = coins.step(coins.expert_action())
            if terminated or truncated:
                break
        assert info["success"] is True and reward == 1.0
        coins.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_broken_plugin_warns_and_does_not_hide_others(tmp_path):
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[palaestra.envs]\nbroken/Env-v0 = no_such_module:Env\n")
    result = run_cli("envs", pythonpath=f"{PLUGIN}{os.pathsep}{tmp_path}")
    assert result.returncode == 0
    assert "acme/Coins-v0" in result.stdout and "palaestra/Maze-v0" in result.stdout
    assert "plugin 'broken/Env-v0' failed to load" in result.stderr


def test_entry_point_loading_in_process(monkeypatch):
    from palaestra.envs import registration

    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(registration, "_plugins_loaded", False)
    registration.load_plugins()
    assert palaestra.env_class("acme/Coins-v0").__name__ == "Coins"
