"""Rollout speed of the embedded tiny model: episodes/minute and where the time goes.

For concurrency 1, 8 and 32 (episodes at once), the tiny model plays Maze test
tasks for a fixed number of turns, once with the envs in this process and once
on a palaestra server in its own process. Columns:

- episodes/min, and the speed-up over concurrency 1 (batched generation: 32
  episodes at once should take far less than 32x one episode's time);
- prompts per call: the batcher's mean batch size;
- outside policy: the fraction of wall time not spent inside ``policy.generate``
  (envs, HTTP client, prompt building, parsing). Targets: < 10% in-process, < 20%
  over HTTP.

    python bench/rollout_speed.py [--turns 6] [--max-tokens 24] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from palaestra.agents.env_pool import LocalEnvs, RemoteEnvs
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine
from palaestra.agents.transformers_policy import TransformersPolicy
from palaestra.servers.local import start_server_process
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"


async def measure(policy, pool, concurrency, episodes, turns, max_tokens):
    specs = [EpisodeSpec(MAZE, 3000 + i, "test") for i in range(episodes)]
    config = RolloutConfig(temperature=0.0, max_tokens=max_tokens, max_turns=turns)
    engine = RolloutEngine(policy, pool, config, concurrency=concurrency)
    started = time.perf_counter()
    trajectories = await engine.run(specs)
    wall = time.perf_counter() - started
    tokens = sum(t.completion_tokens for t in trajectories)
    return engine.stats, wall, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    policy = TransformersPolicy(args.model, max_batch_size=64, threads=args.threads)
    print(f"model: {policy.name} ({policy.describe()['parameters']:,} parameters)")
    process, url = start_server_process([MAZE])
    rows = []
    try:
        for where in ("in-process", "HTTP"):
            base = None
            for c in args.concurrency:
                episodes = max(c, 4)
                pool = LocalEnvs() if where == "in-process" else RemoteEnvs([url])
                stats, wall, tokens = asyncio.run(
                    measure(policy, pool, c, episodes, args.turns, args.max_tokens)
                )
                asyncio.run(pool.aclose())
                per_min = stats.episodes / wall * 60
                base = base or per_min
                rows.append(
                    (
                        where,
                        c,
                        stats.episodes,
                        f"{per_min:.1f}",
                        f"{per_min / base:.1f}x",
                        f"{tokens / wall:.0f}",
                        f"{stats.rows / stats.calls:.1f}",
                        f"{stats.outside_policy:.1%}",
                    )
                )
                print(rows[-1], flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    headers = ["envs", "concurrency", "episodes", "episodes/min", "speed-up", "tokens/s"]
    headers += ["prompts/call", "outside policy"]
    print()
    print(f"{args.turns} turns per episode, up to {args.max_tokens} tokens per reply, greedy")
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
