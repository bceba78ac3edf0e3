"""Rollout workers on a real multi-node Ray cluster simulated on this machine.

One cluster per module (a head and two nodes of one CPU each, as ``ray.cluster_utils``
starts them), real worker actors, real kills (``ray.kill``, ``Cluster.remove_node``)
and real envs. Every Ray run is checked against the same eval without Ray: the JSONL
records, minus timings, are the same set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from ray_cluster import NODE

ray = pytest.importorskip("ray")

from palaestra.agents.evaluate import EvalConfig, run_eval  # noqa: E402
from palaestra.agents.rollout import RolloutConfig  # noqa: E402
from palaestra.agents.trajectory import read_trajectories  # noqa: E402
from palaestra.cli import main  # noqa: E402
from palaestra.scale.rollout_workers import RayEpisodes  # noqa: E402

pytestmark = pytest.mark.slow  # a 3-node cluster takes 10-30 s to start on a shared 2-core box

MAZE = "palaestra/Maze-v0"


def records(trajectories):
    """The JSONL records without timings (the only field that may differ between runs), sorted."""
    return sorted(
        json.dumps({k: v for k, v in t.to_json().items() if k != "timings"}, sort_keys=True)
        for t in trajectories
    )


def without_ray(config: EvalConfig, out: Path):
    return run_eval(config, out, progress=False)


NOISY = EvalConfig(
    "expert:0.3", (MAZE,), limit=40, samples=2, rollout=RolloutConfig(seed=4), concurrency=2
)


def test_eval_with_ray_gives_the_trajectories_of_the_eval_without(cluster, tmp_path, capsys):
    args = ["eval", "--policy", "expert:0.3", "--envs", MAZE, "--limit", "40", "--seeds", "2"]
    args += ["--seed", "4", "--concurrency", "2", "--quiet"]
    status = main([*args, "--out", str(tmp_path / "ray"), "--ray", cluster.address])
    assert status == 0, capsys.readouterr().err
    reference = without_ray(NOISY, tmp_path / "plain")
    ray_run = read_trajectories(tmp_path / "ray" / "trajectories.jsonl")
    assert len(ray_run) == 80
    assert records(ray_run) == records(reference.trajectories)
    saved = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(reference.rows))
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert saved["config"] == plain["config"]
    runner = saved["this_invocation"]["runner"]
    assert runner["workers"] == runner["nodes"] == 3  # one per node, spread
    assert sum(runner["episodes_per_worker"]) == 80 and runner["worker_failures"] == 0
    # the policy's own description, from a worker
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["provenance"]["policy"] == {
        "name": "expert:0.3", "backend": "NoisyExpertPolicy", "noise": 0.3,
    }  # fmt: skip
    out = capsys.readouterr().out
    assert "| palaestra/Maze-v0" in out and "played on 3 Ray rollout workers on 3 nodes" in out


def test_workers_play_on_the_servers_of_url_with_their_token(cluster, tmp_path, serve, monkeypatch):
    monkeypatch.delenv("PALAESTRA_TOKEN", raising=False)  # cmd_eval sets it from --token
    args = ["eval", "--policy", "expert:0.3", "--envs", MAZE, "--limit", "20", "--seeds", "2"]
    args += ["--seed", "4", "--concurrency", "2", "--quiet", "--token", "s3cret"]
    with serve([MAZE], token="s3cret") as url, serve([MAZE], token="s3cret") as url2:
        out = tmp_path / "ray"
        status = main([*args, "--url", url, "--url", url2, "--out", str(out), "--ray", "auto"])
    assert status == 0
    reference = without_ray(replace(NOISY, limit=20), tmp_path / "plain")
    assert records(read_trajectories(out / "trajectories.jsonl")) == records(reference.trajectories)


def test_workers_play_on_env_server_replicas_found_through_ray(cluster, tmp_path, monkeypatch):
    from palaestra.scale import ServerReplicas

    monkeypatch.delenv("PALAESTRA_TOKEN", raising=False)  # set from the replicas' token
    args = ["eval", "--policy", "expert:0.3", "--envs", MAZE, "--limit", "20", "--seeds", "2"]
    args += ["--seed", "4", "--concurrency", "2", "--quiet", "--ray", cluster.address]
    args += ["--ray-servers", "rollouts", "--ray-workers", "2", "--ray-worker-cpus", "0.5"]
    with ServerReplicas([MAZE], 2, name="rollouts", replica_cpus=0.5) as servers:
        servers.wait(timeout=180)
        assert main([*args, "--out", str(tmp_path / "ray")]) == 0
    reference = without_ray(replace(NOISY, limit=20), tmp_path / "plain")
    played = read_trajectories(tmp_path / "ray" / "trajectories.jsonl")
    assert records(played) == records(reference.trajectories)
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert len(run["config"]["urls"]) == 2  # the replicas the driver planned on


def test_a_policy_no_worker_can_build_is_one_error_line(cluster, tmp_path, capsys):
    args = ["eval", "--policy", str(tmp_path / "no-model"), "--envs", MAZE, "--limit", "2"]
    status = main([*args, "--quiet", "--out", str(tmp_path / "run"), "--ray", cluster.address])
    err = capsys.readouterr().err
    assert status == 2 and "the rollout workers could not start" in err and "no model" in err
    assert not (tmp_path / "run" / "trajectories.jsonl").exists()


def test_more_workers_than_the_cluster_has_room_for(cluster, tmp_path, capsys):
    args = ["eval", "--policy", "expert", "--envs", MAZE, "--limit", "2", "--quiet"]
    args += ["--out", str(tmp_path / "run"), "--ray", cluster.address, "--ray-workers", "4"]
    assert main(args) == 2
    assert "4 rollout workers of 1 CPUs each need 4 CPUs; the Ray cluster has 3" in (
        capsys.readouterr().err
    )
    # room for two only (the others' CPUs are taken): the run goes on with those two
    hog = ray.remote(num_cpus=1)(lambda: time.sleep(600)).remote()  # holds one node's CPU
    try:
        runner = RayEpisodes("expert", workers=3, start_timeout=20)
        result = run_eval(replace(NOISY, policy="expert", limit=10), tmp_path / "two",
                          progress=False, runner=runner)  # fmt: skip
    finally:
        ray.cancel(hog, force=True)
    assert len(result.trajectories) == 20 and not result.lost
    assert (
        json.loads((tmp_path / "two" / "results.json").read_text())["this_invocation"]["runner"][
            "workers"
        ]
        == 2
    )


def test_a_model_policy_is_built_in_each_worker_and_plays_the_same(cluster, tmp_path):
    config = EvalConfig(
        "tiny", (MAZE,), limit=3,
        rollout=RolloutConfig(max_tokens=12, max_turns=3), concurrency=1,
    )  # fmt: skip
    runner = RayEpisodes("tiny", workers=2)
    with_ray = run_eval(config, tmp_path / "ray", progress=False, runner=runner)
    reference = without_ray(config, tmp_path / "plain")
    assert records(with_ray.trajectories) == records(reference.trajectories)
    assert {t.model for t in with_ray.trajectories} == {"tiny"}
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["provenance"]["policy"]["backend"] == "TransformersPolicy"


def test_a_killed_worker_loses_no_finished_episode_and_the_run_completes(cluster, tmp_path):
    config = replace(NOISY, limit=100, samples=3)
    runner = RayEpisodes("expert:0.3", workers=3)
    seen: list[int] = []

    def kill_midway(ended: int, planned: int) -> None:
        seen.append(ended)
        if ended == 30:  # lines already written stay; the worker's unfinished ones go elsewhere
            ray.kill(runner.workers[0], no_restart=False)

    out = tmp_path / "ray"
    with_ray = run_eval(config, out, progress=False, runner=runner, on_progress=kill_midway)
    keys = [t.key for t in read_trajectories(out / "trajectories.jsonl")]
    assert len(keys) == len(set(keys)) == 300 and not with_ray.lost
    report = json.loads((out / "results.json").read_text())["this_invocation"]["runner"]
    assert report["worker_failures"] >= 1 and report["retried_episodes"] >= 1
    reference = without_ray(config, tmp_path / "plain")
    assert records(with_ray.trajectories) == records(reference.trajectories)


def test_episodes_left_when_no_worker_is_are_lost_and_resume_plays_them(cluster, tmp_path):
    config = replace(NOISY, limit=100, samples=3)
    runner = RayEpisodes("expert:0.3", workers=2, max_restarts=0)

    def kill_every_worker(ended: int, planned: int) -> None:
        if ended == 30:
            for worker in runner.workers:
                ray.kill(worker, no_restart=True)

    out = tmp_path / "ray"
    first = run_eval(config, out, progress=False, runner=runner, on_progress=kill_every_worker)
    assert first.lost and len(first.trajectories) + len(first.lost) == 300
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["error"] for e in errors} == {"no rollout worker left to play it"}
    resumed = run_eval(config, out, progress=False, resume=True, runner=RayEpisodes("expert:0.3"))
    assert not resumed.lost
    keys = [t.key for t in read_trajectories(out / "trajectories.jsonl")]
    assert len(keys) == len(set(keys)) == 300
    reference = without_ray(config, tmp_path / "plain")
    assert records(resumed.trajectories) == records(reference.trajectories)


def test_a_driver_killed_midway_resumes_to_the_same_set(cluster, tmp_path):
    out = tmp_path / "killed"
    args = ["eval", "--policy", "expert:0.3", "--envs", MAZE, "--limit", "150", "--seeds", "2"]
    args += ["--seed", "4", "--concurrency", "1", "--quiet", "--ray-workers", "2"]
    args += ["--out", str(out), "--ray", cluster.address]
    env = {k: v for k, v in os.environ.items() if k != "PALAESTRA_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "palaestra.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = out / "trajectories.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = path.read_bytes()
    assert 20 <= before.count(b"\n") < 300, "the driver was not killed midway"

    assert main([*args, "--resume"]) == 0
    after = read_trajectories(path)
    keys = [t.key for t in after]
    assert len(keys) == len(set(keys)) == 300
    assert path.read_bytes().startswith(before.rsplit(b"\n", 1)[0])  # nothing rewritten
    reference = without_ray(replace(NOISY, limit=150, concurrency=1), tmp_path / "plain")
    assert records(after) == records(reference.trajectories)


def test_a_node_removed_midway_loses_no_finished_episode(cluster, tmp_path):
    """Last in the module: it takes a node away (and puts one back for any later test)."""
    config = replace(NOISY, limit=100, samples=3)
    runner = RayEpisodes("expert:0.3", workers=3)
    head = cluster.head_node.node_id
    removed: list[str] = []

    def remove_midway(ended: int, planned: int) -> None:
        if ended >= 30 and not removed:
            victim = next(p["node"] for p in runner.placement if p["node"] != head)
            node = next(n for n in cluster.worker_nodes if n.node_id == victim)
            removed.append(victim)
            cluster.remove_node(node)

    out = tmp_path / "ray"
    try:
        with_ray = run_eval(config, out, progress=False, runner=runner, on_progress=remove_midway)
    finally:
        cluster.add_node(**NODE)
    assert removed
    keys = [t.key for t in read_trajectories(out / "trajectories.jsonl")]
    assert len(keys) == len(set(keys)) == 300 and not with_ray.lost
    report = json.loads((out / "results.json").read_text())["this_invocation"]["runner"]
    assert report["worker_failures"] >= 1 and report["retried_episodes"] >= 1
    reference = without_ray(config, tmp_path / "plain")
    assert records(with_ray.trajectories) == records(reference.trajectories)


def test_evolve_stages_with_ray_give_the_data_of_the_stages_without(cluster, tmp_path):
    """AgentEvol's eval and explore stages on rollout workers, from the same BC model."""
    pytest.importorskip("torch")
    import shutil

    from palaestra.demo import DEMO_PRESETS, demo_config
    from palaestra.evol.agentevol import run_agentevol

    config = demo_config(DEMO_PRESETS["quick"], envs=(MAZE,))
    config = replace(
        config, iterations=1, eval_tasks=2, explore_tasks=3, eval_temperatures=(0.0,),
        explore_temperature=0.0, rollout=replace(config.rollout, max_turns=30), concurrency=1,
    )  # fmt: skip
    plain, on_ray = tmp_path / "plain", tmp_path / "ray"
    run_agentevol(config, plain, progress=False, log=lambda _: None, stop_after="bc")
    shutil.copytree(plain, on_ray)  # one BC model for both: training is not what is compared
    for out, ray_address in ((plain, None), (on_ray, cluster.address)):
        run_agentevol(
            replace(config, ray=ray_address, ray_workers=2), out, resume=True, progress=False,
            log=lambda _: None, stop_after="explore-1",
        )  # fmt: skip

    def data(out: Path, name: str) -> list[str]:
        # The model is named by its folder, which is the only difference of the copies.
        return [r.replace(str(out), "RUN") for r in records(read_trajectories(out / name))]

    for name in (
        "iter-0/eval/t0/trajectories.jsonl",
        "iter-1/explore/trajectories.jsonl",
        "iter-1/data.jsonl",
    ):
        assert data(on_ray, name) == data(plain, name), name
    assert len(read_trajectories(on_ray / "iter-1/explore/trajectories.jsonl")) == 3 * 2
    runner = json.loads((on_ray / "iter-1/explore/results.json").read_text())["this_invocation"]
    assert runner["runner"]["workers"] == 2
