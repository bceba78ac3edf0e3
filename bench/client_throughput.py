"""Steps/s of the async client at 1, 8 and 64 concurrent sessions against a local server.

The server runs as its own process (``palaestra serve``), pinned to CPU 0; this
script (the load) is pinned to CPU 1 where the machine has two. Printed next to
it: Maze stepped in-process on one core, and the same load driven through
``httpx.AsyncClient`` instead of aiohttp (the transport ``AsyncEnvClient`` uses),
to show why.

    python bench/client_throughput.py [--seconds 3] [--levels 1 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

import palaestra
from palaestra.servers import AsyncEnvClient
from palaestra.tables import format_table
from palaestra.tour import start_server_process

ENV = "palaestra/Maze-v0"
MOVES = ("move up", "move right", "move down", "move left")


def in_process(seconds: float) -> float:
    env = palaestra.make(ENV)
    env.reset(seed=0, options={"task_id": 0})
    steps, i = 0, 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(200):
            _, _, terminated, truncated, _ = env.step(MOVES[i % 4])
            i += 1
            if terminated or truncated:
                env.reset(options={"task_id": i % 3000})
        steps += 200
    return steps / (time.perf_counter() - started)


async def drive_aiohttp(url: str, sessions: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    async with AsyncEnvClient(url) as client:
        handles = await asyncio.gather(*(client.create(ENV, task_id=t) for t in range(sessions)))
        deadline = time.perf_counter() + seconds

        async def loop(session, offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                step = await session.step(MOVES[i % 4])
                latencies.append(time.perf_counter() - started)
                i += 1
                if step.terminated or step.truncated:
                    await session.reset()

        await asyncio.gather(*(loop(s, n) for n, s in enumerate(handles)))
        await asyncio.gather(*(s.close() for s in handles))
    return len(latencies), latencies


async def drive_httpx(url: str, sessions: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        ids = [
            (await client.post("/v1/sessions", json={"env": ENV, "task_id": t})).json()[
                "session_id"
            ]
            for t in range(sessions)
        ]
        deadline = time.perf_counter() + seconds

        async def loop(sid: str, offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                data = (
                    await client.post(f"/v1/sessions/{sid}/step", json={"action": MOVES[i % 4]})
                ).json()
                latencies.append(time.perf_counter() - started)
                i += 1
                if data["terminated"] or data["truncated"]:
                    await client.post(f"/v1/sessions/{sid}/reset", json={})

        await asyncio.gather(*(loop(s, n) for n, s in enumerate(ids)))
        for sid in ids:
            await client.delete(f"/v1/sessions/{sid}")
    return len(latencies), latencies


def measure(driver, url: str, sessions: int, seconds: float) -> tuple[float, float, float]:
    started = time.perf_counter()
    count, latencies = asyncio.run(driver(url, sessions, seconds))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return count / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[1, 8, 64], help="concurrent sessions"
    )
    parser.add_argument("--no-httpx", action="store_true", help="skip the httpx.AsyncClient rows")
    args = parser.parse_args()

    two_cores = len(os.sched_getaffinity(0)) >= 2
    process, url = start_server_process([ENV])
    if two_cores:
        os.sched_setaffinity(process.pid, {0})
        os.sched_setaffinity(0, {1})
    try:
        rows = [("in-process (1 core)", ENV, "-", f"{in_process(args.seconds):,.0f}", "-", "-")]
        drivers = [("AsyncEnvClient (aiohttp)", drive_aiohttp)]
        if not args.no_httpx:
            drivers.append(("httpx.AsyncClient", drive_httpx))
        for name, driver in drivers:
            for sessions in args.levels:
                rate, p50, p99 = measure(driver, url, sessions, args.seconds)
                rows.append((name, ENV, sessions, f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}"))
                print(f"  {name} x{sessions}: {rate:,.0f} steps/s", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    placement = "server on CPU 0, load on CPU 1" if two_cores else "one CPU shared"
    print(f"\nMaze-v0 steps over HTTP ({placement}, {args.seconds:g}s per row)\n")
    print(format_table(["client", "env", "sessions", "steps/s", "p50 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
