"""Server throughput: Maze steps/s and latency at 1, 8, 64, 256 concurrent sessions.

Rows:
- Maze stepped in-process on one core (the ceiling);
- Maze over plain HTTP (``AsyncEnvClient``, one request per step) and over the
  WebSocket route (``AsyncEnvClient(transport="websocket")``, one socket per session),
  against ``palaestra serve`` in its own process;
- a bare FastAPI app on the same machine, same client library: a POST endpoint
  that validates a body like ours and echoes it, and a WebSocket that echoes each
  message (the floor HTTP and WebSocket put under any server).

The server runs on CPU 0 and this script (the load) on CPU 1 where there are two.
"vs in-process" is steps/s over the one-core in-process rate. Each row is the
median of ``--repeats`` runs (this kind of machine varies by tens of percent
from one run to the next).

    python bench/server_throughput.py [--seconds 3] [--repeats 3] [--levels 1 8 64 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import httpx
import uvicorn
from common import percentile, pin_server_and_load  # bench/common.py
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

import palaestra
from palaestra.servers import AsyncEnvClient
from palaestra.servers.local import free_port, start_server_process
from palaestra.tables import format_table

ENV = "palaestra/Maze-v0"
MOVES = ("move up", "move right", "move down", "move left")
T = TypeVar("T")

# A driver steps ``sessions`` sessions for ``seconds``: the latencies and the stepping time.
Driver = Callable[[str, int, float], Awaitable[tuple[list[float], float]]]


class EchoBody(BaseModel):
    action: str


def serve_echo(port: int) -> None:
    """Run the bare FastAPI echo app (this is the child process of ``start_echo``)."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: EchoBody) -> dict:
        return {"observation": body.action, "reward": 0.0, "terminated": False, "info": {}}

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        try:
            while True:
                await socket.send_text(await socket.receive_text())
        except WebSocketDisconnect:
            pass

    # The same uvicorn protocols as `palaestra serve` (servers/local.py).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="websockets-sansio",
    )


def start_echo() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url + "/echo", json={"action": "x"}, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the echo server did not start")


def in_process(seconds: float) -> float:
    env = palaestra.make(ENV)
    env.reset(seed=0, options={"task_id": 0})
    steps, i = 0, 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            _, _, terminated, truncated, _ = env.step(MOVES[i % 4])
            i += 1
            if terminated or truncated:
                env.reset(options={"task_id": i % 3000})
        steps += 200
    return steps / (time.perf_counter() - started)


def maze_driver(transport: str) -> Driver:
    async def drive(url: str, sessions: int, seconds: float) -> tuple[list[float], float]:
        latencies: list[float] = []
        async with AsyncEnvClient(url, transport=transport, max_connections=sessions) as client:
            handles = await asyncio.gather(
                *(client.create(ENV, task_id=t) for t in range(sessions))
            )
            started = time.perf_counter()
            deadline = started + seconds

            async def loop(session, offset: int) -> None:
                i = offset
                while time.perf_counter() < deadline:
                    sent = time.perf_counter()
                    step = await session.step(MOVES[i % 4])
                    latencies.append(time.perf_counter() - sent)
                    i += 1
                    if step.terminated or step.truncated:
                        await session.reset()

            await asyncio.gather(*(loop(s, n) for n, s in enumerate(handles)))
            elapsed = time.perf_counter() - started
            await asyncio.gather(*(s.close() for s in handles))
        return latencies, elapsed

    return drive


async def echo_http(url: str, sessions: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=sessions)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        deadline = started + seconds

        async def loop(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                async with http.post(url + "/echo", json={"action": MOVES[i % 4]}) as response:
                    await response.json()
                latencies.append(time.perf_counter() - sent)
                i += 1

        await asyncio.gather(*(loop(n) for n in range(sessions)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


async def echo_ws(url: str, sessions: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = [await http.ws_connect("ws" + url.removeprefix("http") + "/ws")]
        sockets += await asyncio.gather(
            *(http.ws_connect("ws" + url.removeprefix("http") + "/ws") for _ in range(sessions - 1))
        )
        started = time.perf_counter()
        deadline = started + seconds

        async def loop(ws: aiohttp.ClientWebSocketResponse, offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                await ws.send_str(json.dumps({"id": i, "op": "step", "action": MOVES[i % 4]}))
                json.loads((await ws.receive()).data)
                latencies.append(time.perf_counter() - sent)
                i += 1

        await asyncio.gather(*(loop(ws, n) for n, ws in enumerate(sockets)))
        elapsed = time.perf_counter() - started
        for ws in sockets:
            await ws.close()
    return latencies, elapsed


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the load on uvloop where installed (it comes with uvicorn[standard]), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def measure(
    driver: Driver, url: str, sessions: int, seconds: float, repeats: int = 1
) -> tuple[float, float, float]:
    """Steps/s, p50 and p99 ms of the median of ``repeats`` runs (by steps/s)."""
    runs = []
    for _ in range(repeats):
        latencies, elapsed = run_loop(driver(url, sessions, seconds))
        runs.append(
            (
                len(latencies) / elapsed,
                statistics.median(latencies) * 1e3,
                percentile(latencies, 0.99) * 1e3,
            )
        )
    return sorted(runs)[len(runs) // 2]


def in_process_median(seconds: float, repeats: int) -> float:
    return statistics.median(in_process(seconds) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per row; the median is shown (default 3)"
    )
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[1, 8, 64, 256], help="concurrent sessions"
    )
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return

    base = in_process_median(args.seconds, args.repeats)
    rows: list[tuple[object, ...]] = [
        ("Maze in-process (1 core)", "-", f"{base:,.0f}", "-", "-", "1")
    ]
    # Each route gets a fresh server process, as a user runs one transport or the other.
    serve = lambda: start_server_process([ENV], extra_args=["--log-level", "warning"])  # noqa: E731
    plans: list[tuple[Callable[[], tuple[subprocess.Popen, str]], str, Driver]] = [
        (serve, "Maze over HTTP", maze_driver("http")),
        (serve, "Maze over WebSocket", maze_driver("websocket")),
        (start_echo, "FastAPI echo, HTTP", echo_http),
        (start_echo, "FastAPI echo, WebSocket", echo_ws),
    ]
    placement = ""
    for start, name, driver in plans:
        process, url = start()
        placement = pin_server_and_load(process.pid)
        try:
            for sessions in args.levels:
                rate, p50, p99 = measure(driver, url, sessions, args.seconds, args.repeats)
                ratio = f"{rate / base:.3f}" if name.startswith("Maze") else "-"
                rows.append((name, sessions, f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}", ratio))
                print(f"  {name} x{sessions}: {rate:,.0f} steps/s, p99 {p99:.1f} ms", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"\nSteps/s ({placement}; median of {args.repeats} runs of {args.seconds:g} s)\n")
    headers = ["route", "sessions", "steps/s", "p50 ms", "p99 ms", "vs in-process"]
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
