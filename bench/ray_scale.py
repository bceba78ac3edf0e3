"""Env serving on a simulated Ray cluster: steps/s and episodes/min for 1, 2, 3 replicas.

Plays the same Maze episodes (the noisy expert, ``expert:0.3``: two server calls
per turn, the expert's action and the step, so the servers are the work) with
the rollout engine over the WebSocket transport, against:

- ``direct``: one ``palaestra serve`` process, its URL given to ``RemoteEnvs``
  (the single-machine path, no Ray);
- ``ray``: ``ServerReplicas`` on a ``ray.cluster_utils.Cluster`` of 3 nodes (1
  CPU each, all on this machine), found through the registry
  (``palaestra.scale.remote_envs``), with 1, 2 and 3 replicas.

Both paths get the same token. Each setting is measured ``--repeats`` times,
the direct and the 1-replica runs alternated (the machine is shared: alternation
spreads other load over both), and the median is shown. The overhead of the Ray
path is its 1-replica steps/s against the direct path's (target: within 10%).

Ray starts its worker processes, and so the replicas, at niceness 15 (its
``worker_niceness``), below the client and the direct server (0): on a machine
busy with other work the replicas then get less CPU than the direct server.
``--worker-niceness 0`` starts the simulated cluster with ``RAY_worker_niceness=0``
(what ``RAY_worker_niceness=0 ray start ...`` does on a real cluster), which
measures the Ray path itself.

All nodes of the simulated cluster share this machine's cores with the client:
on 2 cores, more replicas cannot add throughput once the client process (one
event loop) or the cores are saturated; on a real cluster each replica brings
its node's cores.

    python bench/ray_scale.py [--episodes 150] [--concurrency 30] [--repeats 3]
                              [--worker-niceness 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time

import ray
from ray.cluster_utils import Cluster

from palaestra.agents.env_pool import RemoteEnvs
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine
from palaestra.scale import NAMESPACE, ServerReplicas, remote_envs
from palaestra.servers import Settings
from palaestra.servers.local import start_server_process
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"
NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}


def play(envs: RemoteEnvs, episodes: int, concurrency: int) -> tuple[float, float, int]:
    """(steps/s, episodes/min, steps) of one run."""
    specs = [EpisodeSpec(MAZE, 3000 + i, "test", seed=i) for i in range(episodes)]

    async def main():
        try:
            engine = RolloutEngine(
                make_policy("expert:0.3"), envs, RolloutConfig(seed=1), concurrency=concurrency
            )
            started = time.perf_counter()
            await engine.run(specs)
            return engine.stats, time.perf_counter() - started
        finally:
            await envs.aclose()

    stats, wall = asyncio.run(main())
    assert stats.errors == 0 and stats.episodes == episodes, stats.error_messages[:3]
    return stats.steps / wall, stats.episodes / wall * 60, stats.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--worker-niceness", type=int, default=15, help="Ray workers' niceness (Ray's default 15)"
    )
    args = parser.parse_args()
    # Read by the raylets this script starts, which start the workers at that niceness.
    os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    token = secrets.token_urlsafe(16)
    os.environ.pop("PALAESTRA_TOKEN", None)

    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(**NODE)
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    direct, url = start_server_process([MAZE], extra_args=["--token", token])
    runs: dict[str, list[tuple[float, float, int]]] = {}
    try:
        settings = Settings(token=token)
        with ServerReplicas([MAZE], 1, name="bench1", settings=settings) as one:
            one.wait(timeout=300)
            play(remote_envs("bench1"), 20, args.concurrency)  # warm both paths up
            play(RemoteEnvs([url], token=token), 20, args.concurrency)
            for _ in range(args.repeats):
                runs.setdefault("direct", []).append(
                    play(RemoteEnvs([url], token=token), args.episodes, args.concurrency)
                )
                runs.setdefault("ray 1", []).append(
                    play(remote_envs("bench1"), args.episodes, args.concurrency)
                )
                print({k: [f"{r[0]:.0f}" for r in v] for k, v in runs.items()}, flush=True)
        for n in (2, 3):
            with ServerReplicas([MAZE], n, name=f"bench{n}", settings=settings) as many:
                many.wait(timeout=300)
                play(remote_envs(f"bench{n}"), 20, args.concurrency)
                for _ in range(args.repeats):
                    runs.setdefault(f"ray {n}", []).append(
                        play(remote_envs(f"bench{n}"), args.episodes, args.concurrency)
                    )
                print({k: [f"{r[0]:.0f}" for r in v] for k, v in runs.items()}, flush=True)
    finally:
        direct.terminate()
        direct.wait(timeout=30)
        ray.shutdown()
        cluster.shutdown()

    base = statistics.median(r[0] for r in runs["direct"])
    rows = []
    for key, label, replicas in (
        ("direct", "single server, no Ray", 1),
        ("ray 1", "Ray replicas", 1),
        ("ray 2", "Ray replicas", 2),
        ("ray 3", "Ray replicas", 3),
    ):
        steps_s = statistics.median(r[0] for r in runs[key])
        per_min = statistics.median(r[1] for r in runs[key])
        spread = f"{min(r[0] for r in runs[key]):.0f}-{max(r[0] for r in runs[key]):.0f}"
        rows.append(
            (
                label,
                replicas,
                f"{steps_s:.0f}",
                spread,
                f"{per_min:.0f}",
                f"{steps_s / base:.2f}x",
            )
        )
    overhead = 1 - statistics.median(r[0] for r in runs["ray 1"]) / base
    print()
    print(
        f"{args.episodes} Maze test episodes of expert:0.3 per run, {args.concurrency} at once, "
        f"WebSocket transport, median of {args.repeats} runs; {os.cpu_count()} cores shared "
        "by the client, the servers and a 3-node simulated cluster (1 CPU each); "
        f"Ray workers at niceness {args.worker_niceness}"
    )
    headers = ["servers", "replicas", "steps/s", "steps/s range", "episodes/min", "vs direct"]
    print(format_table(headers, rows))
    print(f"\noverhead of the Ray path at 1 replica: {overhead:+.1%} of direct steps/s")


if __name__ == "__main__":
    main()
