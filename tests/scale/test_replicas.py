"""Env servers as Ray actors on a simulated 3-node cluster (``ray.cluster_utils.Cluster``).

Real Ray actors, real palaestra servers, real kills: ``palaestra serve --ray``
replicas come up, serve and come back after their actor is killed; an episode
set over three replicas gives exactly the in-process trajectories, also when a
replica is killed, or its node removed, mid-run.

One cluster for the module (each node 1 CPU, a small object store); starting it
and the replicas takes most of the time, hence ``slow``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from ray_cluster import simulated_cluster

ray = pytest.importorskip("ray")


from palaestra.agents.env_pool import LocalEnvs  # noqa: E402
from palaestra.agents.policy_spec import make_policy  # noqa: E402
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine  # noqa: E402
from palaestra.scale import (  # noqa: E402
    NAMESPACE,
    ServerReplicas,
    discover,
    remote_envs,
    replica_name,
)

pytestmark = pytest.mark.slow  # a Ray cluster and its replicas: ~1-2 min for the module

MAZE = "palaestra/Maze-v0"


@pytest.fixture(scope="module")
def cluster():
    with simulated_cluster(3, namespace=NAMESPACE) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def replicas(cluster):
    """Three Maze replicas for the eval tests (after the CLI test's are gone)."""
    with ServerReplicas([MAZE], 3, name="evals") as servers:
        servers.wait(timeout=180)
        yield servers


def comparable(trajectory):
    return {k: v for k, v in dataclasses.asdict(trajectory).items() if k != "timings"}


EPISODES = [EpisodeSpec(MAZE, task, "test", seed=task) for task in range(3000, 3060)]


@pytest.fixture(scope="module")
def in_process():
    """The single-machine run every cluster run must match."""
    engine = RolloutEngine(make_policy("expert:0.3"), LocalEnvs(), RolloutConfig(seed=5))
    return [comparable(t) for t in asyncio.run(engine.run(EPISODES))]


def play(envs, on_trajectory=None):
    async def main():
        try:
            engine = RolloutEngine(
                make_policy("expert:0.3"), envs, RolloutConfig(seed=5), concurrency=9
            )
            trajectories = await engine.run(EPISODES, on_trajectory=on_trajectory)
            return trajectories, engine.stats
        finally:
            await envs.aclose()

    return asyncio.run(main())


def wait_for(predicate, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {within:g}s: {what}")


# -- palaestra serve --ray ------------------------------------------------------------


def test_serve_ray_replicas_come_up_serve_and_come_back_after_their_actor_is_killed(cluster):
    env = {k: v for k, v in os.environ.items() if k not in ("PALAESTRA_TOKEN", "RAY_ADDRESS")}
    command = [sys.executable, "-m", "palaestra.cli", "serve", "--ray", cluster.address]
    command += ["--replicas", "3", "--name", "cli", MAZE]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        up = lambda: [line for line in lines if " up at " in line]  # noqa: E731
        wait_for(lambda: len(up()) == 3, 180, f"3 replicas up; printed {lines}")
        found = discover("cli")
        assert found.env_ids == (MAZE,) and found.expected == 3 and found.token
        assert len(set(found.urls)) == 3
        assert len({r.node_id for r in found.replicas}) == 3  # spread, one per node
        for url in found.urls:
            assert url.removeprefix("http://").split(":")[0] == ray.util.get_node_ip_address()
            auth = {"Authorization": f"Bearer {found.token}"}
            assert httpx.get(f"{url}/v1/envs", headers=auth).json()[0]["id"] == MAZE
            # Bound beyond loopback, so a token is required (one was generated).
            assert httpx.get(f"{url}/v1/envs").status_code == 401

        old = found.replicas[1]
        ray.kill(ray.get_actor(replica_name("cli", 1), namespace=NAMESPACE), no_restart=False)
        back = wait_for(
            lambda: (r := discover("cli").replicas[1]).url != old.url and r,
            120,
            "replica 1 registered again",
        )
        assert back.restarts == 1 and back.pid != old.pid
        auth = {"Authorization": f"Bearer {found.token}"}
        assert httpx.get(f"{back.url}/v1/envs", headers=auth).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{old.url}/health", timeout=5)
        wait_for(lambda: any(f"up again (restart 1) at {back.url}" in s for s in lines), 30, "")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            process.kill()
    reader.join(timeout=10)
    assert process.returncode == 0, process.stderr.read()
    assert any("stopped the replicas named 'cli'" in line for line in lines)
    # Stopping kills the replicas and the registry: the name is free again.
    wait_for(lambda: _gone("cli"), 60, "the cli replicas gone")


def _gone(name: str) -> bool:
    try:
        discover(name)
    except LookupError:
        return True
    return False


# -- an eval over the replicas -----------------------------------------------------


def test_an_eval_over_three_replicas_gives_the_in_process_trajectories(replicas, in_process):
    envs = remote_envs("evals")
    assert len(envs.urls) == 3
    trajectories, stats = play(envs)
    assert stats.errors == 0 and stats.restarted == 0
    assert [comparable(t) for t in trajectories] == in_process
    # Every replica served a share (sessions spread by load over the three).
    token = discover("evals").token
    for url in discover("evals").urls:
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
        [created] = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("palaestra_sessions_created_total{")
        ]
        assert created >= 10, metrics


def test_a_second_set_of_the_same_name_is_refused(replicas):
    with pytest.raises(ValueError, match="'evals' already run"):
        ServerReplicas([MAZE], 1, name="evals").start()
    assert len(discover("evals").replicas) == 3  # the running set is untouched


def test_replicas_the_cluster_has_no_room_for_are_reported_with_what_they_ask(cluster):
    servers = ServerReplicas([MAZE], 1, name="too-big", replica_cpus=4)
    with servers:
        with pytest.raises(TimeoutError, match=r"0 of 1 replicas up.*'num_cpus': 4\.0"):
            servers.wait(timeout=3)


def test_a_replica_killed_mid_eval_costs_no_episode_and_changes_no_trajectory(replicas, in_process):
    envs = remote_envs("evals")
    victim = ray.get_actor(replica_name("evals", 0), namespace=NAMESPACE)
    finished: list = []

    def kill_after_ten(trajectory):
        finished.append(trajectory)
        if len(finished) == 10:
            ray.kill(victim, no_restart=False)  # Ray restarts it: a new port

    before = discover("evals").replicas[0]
    trajectories, stats = play(envs, kill_after_ten)
    assert stats.errors == 0 and stats.episodes == 60
    assert stats.restarted >= 1  # three of the nine running episodes were on it
    assert [comparable(t) for t in trajectories] == in_process
    # The replica came back at a new URL, which discovery lists.
    back = wait_for(
        lambda: (r := discover("evals").replicas[0]).url != before.url and r, 120, "restart"
    )
    assert back.restarts == before.restarts + 1


def test_a_node_removed_mid_eval_costs_no_episode_and_the_run_completes(
    cluster, replicas, in_process
):
    """Last in the module: the cluster keeps one node fewer."""
    envs = remote_envs("evals", failover_timeout=60)
    head = ray.get_runtime_context().get_node_id()
    victim = next(r for r in discover("evals").replicas if r.node_id != head)
    node = next(n for n in cluster.worker_nodes if n.node_id == victim.node_id)
    finished: list = []

    def remove_after_ten(trajectory):
        finished.append(trajectory)
        if len(finished) == 10:
            cluster.remove_node(node)

    trajectories, stats = play(envs, remove_after_ten)
    assert stats.errors == 0 and stats.episodes == 60 and stats.restarted >= 1
    assert [comparable(t) for t in trajectories] == in_process
