"""Session churn and idle capacity of ``palaestra serve`` (Maze).

1. Cycles: concurrent loops of create + reset + close, over HTTP and over the
   WebSocket route, each against a fresh server: cycles/s, and the server's RSS
   fresh, after a warm-up of one cycle per Maze train task (3,000: this fills the
   bounded cache of generated mazes), and after ``--cycles`` more (default 20,000).
   Growth is measured from the warmed-up figure.
2. Idle capacity: ``--idle`` (default 10,000) Maze sessions opened over HTTP and
   left open: the server's RSS before, with them open, and after closing them.

The server runs on CPU 0 and this script (the load) on CPU 1 where there are two.

    python bench/server_sessions.py [--cycles 20000] [--idle 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator

from common import pin_server_and_load, rss_mib  # bench/common.py
from tqdm import tqdm

from palaestra.servers import AsyncEnvClient
from palaestra.servers.local import start_server_process
from palaestra.tables import format_table

ENV = "palaestra/Maze-v0"
TRAIN_TASKS = 3000


async def cycles(url: str, transport: str, tasks: list[int], concurrency: int) -> float:
    """Run one create + reset + close cycle per entry of ``tasks``; returns seconds taken."""
    queue: Iterator[int] = iter(tasks)
    bar = tqdm(total=len(tasks), desc=f"{transport} cycles", unit="cycle", leave=False)
    async with AsyncEnvClient(url, transport=transport, max_connections=concurrency) as client:

        async def loop() -> None:
            for task_id in queue:
                session = await client.create(ENV, task_id=task_id, seed=task_id)
                await session.reset(task_id=(task_id + 1) % TRAIN_TASKS)
                await session.close()
                bar.update()

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    bar.close()
    return elapsed


async def open_idle(url: str, count: int, concurrency: int) -> list[str]:
    """Open ``count`` sessions over HTTP and leave them open; their ids."""
    ids: list[str] = []
    queue = iter(range(count))
    bar = tqdm(total=count, desc="idle sessions", unit="session", leave=False)
    async with AsyncEnvClient(url, max_connections=concurrency) as client:

        async def loop() -> None:
            for n in queue:
                ids.append((await client.create(ENV, task_id=n % TRAIN_TASKS, seed=n)).id)
                bar.update()

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    bar.close()
    return ids


async def close_all(url: str, ids: list[str], concurrency: int) -> None:
    queue = iter(ids)
    async with AsyncEnvClient(url, max_connections=concurrency) as client:

        async def loop() -> None:
            for session_id in queue:
                await client.close_session(session_id)

        await asyncio.gather(*(loop() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=20_000, help="measured cycles per transport")
    parser.add_argument("--idle", type=int, default=10_000, help="idle sessions to hold open")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent cycle loops")
    args = parser.parse_args()

    churn_rows = []
    placement = ""
    for transport in ("http", "websocket"):
        process, url = start_server_process([ENV], extra_args=["--log-level", "warning"])
        placement = pin_server_and_load(process.pid)
        try:
            fresh = rss_mib(process.pid)
            asyncio.run(cycles(url, transport, list(range(TRAIN_TASKS)), args.concurrency))
            warm = rss_mib(process.pid)
            tasks = [n % TRAIN_TASKS for n in range(args.cycles)]
            seconds = asyncio.run(cycles(url, transport, tasks, args.concurrency))
            after = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        rate = args.cycles / seconds
        growth = 100 * (after - warm) / warm
        churn_rows.append(
            (
                transport,
                args.concurrency,
                f"{args.cycles:,}",
                f"{rate:,.0f}",
                f"{fresh:.1f}",
                f"{warm:.1f}",
                f"{after:.1f}",
                f"{growth:+.2f}%",
            )
        )
        print(f"  {transport}: {rate:,.0f} cycles/s, RSS {warm:.1f} -> {after:.1f} MiB", flush=True)

    extra = ["--log-level", "warning", "--max-sessions", str(args.idle + 1)]
    process, url = start_server_process([ENV], extra_args=extra)
    pin_server_and_load(process.pid)
    try:
        before = rss_mib(process.pid)
        started = time.perf_counter()
        ids = asyncio.run(open_idle(url, args.idle, 32))
        opened = time.perf_counter() - started
        held = rss_mib(process.pid)
        asyncio.run(close_all(url, ids, 32))
        closed = rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    per_session = (held - before) * 1024 / args.idle

    print(f"\nSession churn: create + reset + close, Maze ({placement})\n")
    headers = ["transport", "concurrency", "cycles", "cycles/s", "RSS fresh MiB"]
    headers += ["after warm-up MiB", "after cycles MiB", "growth"]
    print(format_table(headers, churn_rows))
    print(f"\nIdle capacity: {args.idle:,} open Maze sessions (opened in {opened:.1f} s)\n")
    print(
        format_table(
            ["sessions", "RSS before MiB", "RSS held MiB", "KiB/session", "RSS after close MiB"],
            [
                (
                    f"{args.idle:,}",
                    f"{before:.1f}",
                    f"{held:.1f}",
                    f"{per_session:.1f}",
                    f"{closed:.1f}",
                )
            ],
        )
    )


if __name__ == "__main__":
    main()
