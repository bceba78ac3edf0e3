"""Steps/s of the async client at 1, 8 and 64 concurrent sessions against a local server.

The server runs as its own process (``palaestra serve``), pinned to CPU 0; this
script (the load) is pinned to CPU 1 where the machine has two. Printed next to
it: Maze stepped in-process on one core, and the same load driven through
``httpx.AsyncClient`` instead of aiohttp (the transport ``AsyncEnvClient`` uses),
to show why. (``bench/server_throughput.py`` compares the server's routes.)

    python bench/client_throughput.py [--seconds 3] [--levels 1 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from common import pin_server_and_load  # bench/common.py
from server_throughput import ENV, MOVES, Driver, in_process, maze_driver, measure

from palaestra.servers.local import start_server_process
from palaestra.tables import format_table


async def drive_httpx(url: str, sessions: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        ids = [
            (await client.post("/v1/sessions", json={"env": ENV, "task_id": t})).json()[
                "session_id"
            ]
            for t in range(sessions)
        ]
        started = time.perf_counter()
        deadline = started + seconds

        async def loop(sid: str, offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                data = (
                    await client.post(f"/v1/sessions/{sid}/step", json={"action": MOVES[i % 4]})
                ).json()
                latencies.append(time.perf_counter() - sent)
                i += 1
                if data["terminated"] or data["truncated"]:
                    await client.post(f"/v1/sessions/{sid}/reset", json={})

        await asyncio.gather(*(loop(s, n) for n, s in enumerate(ids)))
        elapsed = time.perf_counter() - started
        for sid in ids:
            await client.delete(f"/v1/sessions/{sid}")
    return latencies, elapsed


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

    process, url = start_server_process([ENV])
    placement = pin_server_and_load(process.pid)
    try:
        rows = [("in-process (1 core)", ENV, "-", f"{in_process(args.seconds):,.0f}", "-", "-")]
        drivers: list[tuple[str, Driver]] = [("AsyncEnvClient (aiohttp)", maze_driver("http"))]
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
    print(f"\nMaze-v0 steps over HTTP ({placement}, {args.seconds:g}s per row)\n")
    print(format_table(["client", "env", "sessions", "steps/s", "p50 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
