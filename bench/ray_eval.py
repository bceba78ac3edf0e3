"""Eval on Ray rollout workers: episodes/min with 1, 2, 3 workers against the eval without Ray.

Starts a Ray cluster simulated on this machine (``ray.cluster_utils.Cluster``: a head
and ``--nodes - 1`` more nodes of ``--node-cpus`` CPUs each) and plays the same
Maze test episodes with each policy of ``--policies``: once without Ray (one
``RolloutEngine`` in this process), then with 1, 2, 3... workers (``palaestra eval
--ray``'s runner; envs in each worker). Columns:

- play s, episodes/min: the episodes' own wall time (from the first episode dealt
  to the last one back), the rate that scales with workers;
- start s: starting the workers (a process each, importing palaestra and building
  the policy), paid once per run;
- overall/min: episodes over start + play, what a run of this size really gets;
- same: the trajectories (minus timings) are the set of the run without Ray.

On a small shared machine the simulated nodes share its cores, so more workers
than cores cannot add speed; on a real cluster each worker has its own. The run
without Ray writes (and fsyncs) each trajectory on the thread that plays, a
worker does not: part of one worker's lead over it comes from there.

    python bench/ray_eval.py [--episodes 600] [--model-episodes 24] [--workers 1 2 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from palaestra.agents.evaluate import EvalConfig, run_eval
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.rollout import RolloutConfig
from palaestra.scale.rollout_workers import RayEpisodes
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"
MB = 2**20


def records(trajectories):
    return sorted(
        json.dumps({k: v for k, v in t.to_json().items() if k != "timings"}, sort_keys=True)
        for t in trajectories
    )


def one_run(config, out, workers, threads):
    options = {"threads": threads}
    started = time.perf_counter()
    if workers:
        runner = RayEpisodes(config.policy, workers=workers, policy_options=options)
        result = run_eval(config, out, progress=False, runner=runner)
    else:
        policy = make_policy(config.policy, **options)
        try:
            result = run_eval(config, out, progress=False, policy=policy)
        finally:
            asyncio.run(policy.aclose())
    total = time.perf_counter() - started
    play = json.loads((out / "results.json").read_text())["this_invocation"]["wall_s"]
    return result, total, play


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", nargs="+", default=["expert:0.3", "tiny"])
    parser.add_argument("--episodes", type=int, default=600, help="episodes of env policies")
    parser.add_argument("--model-episodes", type=int, default=24, help="episodes of models")
    parser.add_argument("--max-turns", type=int, default=6, help="turn cap of model episodes")
    parser.add_argument("--concurrency", type=int, default=8, help="episodes at once per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of a model policy, everywhere"
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--node-cpus", type=int, default=1)
    args = parser.parse_args()

    node = {"num_cpus": args.node_cpus, "object_store_memory": 100 * MB}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(args.nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    scratch = Path(tempfile.mkdtemp(prefix="ray-eval-bench-"))
    rows = []
    try:
        for policy in args.policies:
            model = not policy.startswith(("expert", "random", "uniform", "heuristic"))
            episodes = args.model_episodes if model else args.episodes
            rollout = RolloutConfig(
                seed=1, max_tokens=16, max_turns=args.max_turns if model else None
            )
            config = EvalConfig(
                policy, (MAZE,), limit=episodes, concurrency=args.concurrency, rollout=rollout
            )
            # Warm up this process (imports, the model's build, env caches) off the clock.
            one_run(replace(config, limit=2), scratch / "warm-up", 0, args.threads)
            shutil.rmtree(scratch / "warm-up")
            reference = None
            for workers in [0, *args.workers]:
                out = scratch / f"{policy.replace(':', '_')}-{workers}"
                result, total, play = one_run(config, out, workers, args.threads)
                if reference is None:
                    reference = records(result.trajectories)
                n = len(result.trajectories)
                rows.append(
                    (
                        policy,
                        "without Ray" if not workers else f"{workers} worker(s)",
                        n,
                        f"{play:.2f}",
                        f"{n / play * 60:.0f}",
                        f"{total - play:.1f}" if workers else "",
                        f"{n / total * 60:.0f}",
                        "yes" if records(result.trajectories) == reference else "NO",
                    )
                )
                print(" | ".join(map(str, rows[-1])), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        ray.shutdown()
        cluster.shutdown()
    cpus = len(os.sched_getaffinity(0))
    print(
        f"\n{args.nodes} simulated nodes x {args.node_cpus} CPU on a {cpus}-core machine; "
        f"Maze-v0 test tasks, {args.concurrency} episodes at once per worker, "
        f"{args.threads} torch thread(s) per model\n"
    )
    headers = ["policy", "run", "episodes", "play s", "episodes/min", "start s", "overall/min"]
    print(format_table([*headers, "same"], rows))


if __name__ == "__main__":
    main()
