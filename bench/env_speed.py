"""Per-env speed and cost: reset time, step time in-process and over HTTP, memory, expert success.

One row per env:
- reset ms p50/p99: in-process resets on test tasks (first use of a task included),
  and over HTTP (``reset`` of one session to each of the first 20 test tasks);
- step ms p50/p99 in-process, and over HTTP (one session, ``AsyncEnvClient``, server
  in its own process);
- MiB/session: growth of the server's RSS (with its child processes, e.g. JVMs)
  per open session, over ``--sessions`` sessions;
- expert success over the first ``--test-tasks`` test tasks (in-process), and the
  random policy's (``random_action`` with a seeded generator) beside it, where declared,
  with its mean score (the progress rate of the tool envs: partial credit shows there).

Then BabyAI's throughput: in-process steps/s on one core, and over HTTP at 64
concurrent sessions (targets: >= 1,500 and >= 1,000 steps/s).

    python bench/env_speed.py [--envs ID ...] [--test-tasks 50] [--sessions 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

import numpy as np
from common import percentile, rss_mib  # bench/common.py

import palaestra
from palaestra.envs import list_envs
from palaestra.servers import AsyncEnvClient
from palaestra.servers.local import start_server_process
from palaestra.tables import format_table


def in_process(env_id: str, test_tasks: int) -> dict[str, float]:
    env = palaestra.make(env_id)
    tasks = list(env.tasks("test"))[:test_tasks]
    resets, steps, wins = [], [], 0
    for task_id in tasks:
        started = time.perf_counter()
        env.reset(seed=0, options={"task_id": task_id})
        resets.append(time.perf_counter() - started)
        while True:
            action = env.expert_action()
            started = time.perf_counter()
            _, _, terminated, truncated, info = env.step(action)
            steps.append(time.perf_counter() - started)
            if terminated or truncated:
                wins += bool(info["success"])
                break
    random_wins, random_score = (
        random_success(env, tasks) if "random_action" in env.capabilities() else (None, None)
    )
    env.close()
    return {
        "reset_p50": statistics.median(resets) * 1e3,
        "reset_p99": percentile(resets, 0.99) * 1e3,
        "random": random_wins,
        "random_score": random_score,
        "step_p50": statistics.median(steps) * 1e3,
        "step_p99": percentile(steps, 0.99) * 1e3,
        "success": wins / len(tasks),
        "episodes": len(tasks),
    }


def random_success(env, tasks: list) -> tuple[float, float]:
    """The share of ``tasks`` random valid actions solve (seed = task index); their mean score."""
    wins = 0
    score = 0.0
    for index, task_id in enumerate(tasks):
        rng = np.random.default_rng(index)
        env.reset(seed=0, options={"task_id": task_id})
        while True:
            *_, terminated, truncated, info = env.step(env.random_action(rng))
            if terminated or truncated:
                wins += bool(info["success"])
                score += float(info["score"])
                break
    return wins / len(tasks), score / len(tasks)


async def over_http(
    env_id: str, url: str, tasks: list, sessions: int, pid: int
) -> dict[str, float]:
    latencies, resets = [], []
    async with AsyncEnvClient(url) as client:
        session = await client.create(env_id, task_id=tasks[0], seed=0)
        for task_id in tasks[:20]:
            started = time.perf_counter()
            await session.reset(task_id=task_id, seed=0)
            resets.append(time.perf_counter() - started)
        await session.close()
        for task_id in tasks[:5]:
            session = await client.create(env_id, task_id=task_id, seed=0)
            while True:
                action = await session.expert_action()
                started = time.perf_counter()
                step = await session.step(action)
                latencies.append(time.perf_counter() - started)
                if step.terminated or step.truncated:
                    break
            await session.close()
        before = rss_mib(pid)
        opened = [
            await client.create(env_id, task_id=tasks[i % len(tasks)]) for i in range(sessions)
        ]
        after = rss_mib(pid)
        for session in opened:
            await session.close()
    return {
        "reset_p50": statistics.median(resets) * 1e3,
        "reset_p99": percentile(resets, 0.99) * 1e3,
        "step_p50": statistics.median(latencies) * 1e3,
        "step_p99": percentile(latencies, 0.99) * 1e3,
        "mib_per_session": (after - before) / sessions,
    }


def babyai_in_process(seconds: float) -> float:
    env = palaestra.make("palaestra/BabyAI-v0")
    rng = random.Random(0)
    steps = 0
    tasks = list(env.tasks("train"))
    _, info = env.reset(options={"task_id": tasks[0]})
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        action = rng.choice(info.get("available_actions") or ["move forward"])
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            _, info = env.reset(options={"task_id": rng.choice(tasks)})
    return steps / (time.perf_counter() - started)


async def babyai_http(url: str, sessions: int, seconds: float) -> tuple[float, float]:
    latencies: list[float] = []
    async with AsyncEnvClient(url) as client:
        tasks = await client.tasks("palaestra/BabyAI-v0", "train")
        handles = await asyncio.gather(
            *(client.create("palaestra/BabyAI-v0", task_id=tasks[i]) for i in range(sessions))
        )
        deadline = time.perf_counter() + seconds

        async def loop(session, rng: random.Random) -> None:
            while time.perf_counter() < deadline:
                action = rng.choice(session.info.get("available_actions") or ["move forward"])
                started = time.perf_counter()
                step = await session.step(action)
                latencies.append(time.perf_counter() - started)
                if step.terminated or step.truncated:
                    await session.reset(task_id=rng.choice(tasks))

        started = time.perf_counter()
        await asyncio.gather(*(loop(h, random.Random(i)) for i, h in enumerate(handles)))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(h.close() for h in handles))
    return len(latencies) / elapsed, percentile(latencies, 0.99) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    available = [i.id for i in list_envs() if i.unavailable is None and "expert" in i.capabilities]
    parser.add_argument("--envs", nargs="+", default=available, help="env ids (default: all)")
    parser.add_argument("--test-tasks", type=int, default=50, help="expert episodes per env")
    parser.add_argument("--sessions", type=int, default=16, help="sessions for the memory column")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of throughput runs")
    args = parser.parse_args()
    two_cores = len(os.sched_getaffinity(0)) >= 2

    rows = []
    for env_id in args.envs:
        print(f"{env_id}: in-process ...", flush=True)
        local = in_process(env_id, args.test_tasks)
        tasks = list(palaestra.env_class(env_id).tasks("test"))
        process, url = start_server_process([env_id])
        try:
            print(f"{env_id}: over HTTP ...", flush=True)
            sessions = min(args.sessions, 8) if "SciWorld" in env_id else args.sessions
            remote = asyncio.run(over_http(env_id, url, tasks, sessions, process.pid))
        finally:
            process.terminate()
            process.wait(timeout=60)
        rows.append(
            (
                env_id,
                f"{local['reset_p50']:.2f} / {local['reset_p99']:.2f}",
                f"{remote['reset_p50']:.2f} / {remote['reset_p99']:.2f}",
                f"{local['step_p50']:.2f} / {local['step_p99']:.2f}",
                f"{remote['step_p50']:.2f} / {remote['step_p99']:.2f}",
                f"{remote['mib_per_session']:.2f}",
                f"{local['success']:.0%} of {local['episodes']}",
                "-"
                if local["random"] is None
                else f"{local['random']:.0%} (score {local['random_score']:.2f})",
            )
        )
    print()
    headers = [
        "env",
        "reset ms p50/p99 in-process",
        "reset ms p50/p99 HTTP",
        "step ms p50/p99 in-process",
        "step ms p50/p99 HTTP",
        "MiB/session",
        "expert success (test)",
        "random success (mean score)",
    ]
    print(format_table(headers, rows))

    if "palaestra/BabyAI-v0" in args.envs:
        if two_cores:
            os.sched_setaffinity(0, {1})
        local_rate = babyai_in_process(args.seconds)
        process, url = start_server_process(["palaestra/BabyAI-v0"])
        if two_cores:
            os.sched_setaffinity(process.pid, {0})
        try:
            http_rate, p99 = asyncio.run(babyai_http(url, 64, args.seconds))
        finally:
            process.terminate()
            process.wait(timeout=60)
        placement = "server on CPU 0, load on CPU 1" if two_cores else "one CPU"
        print(f"\nBabyAI throughput ({placement})\n")
        print(
            format_table(
                ["where", "sessions", "steps/s", "p99 ms", "target"],
                [
                    ("in-process, 1 core", 1, f"{local_rate:,.0f}", "-", ">= 1,500"),
                    ("HTTP, AsyncEnvClient", 64, f"{http_rate:,.0f}", f"{p99:.1f}", ">= 1,000"),
                ],
            )
        )


if __name__ == "__main__":
    main()
