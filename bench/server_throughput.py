"""Server throughput: steps/s and latency at 1, 8, 64, 256 concurrent sessions.

Rows (``--envs`` picks the groups; all by default):
- ``maze``: Maze stepped in-process on one core (the ceiling), over plain HTTP
  (``AsyncEnvClient``, one request per step) and over the WebSocket route
  (``AsyncEnvClient(transport="websocket")``, one socket per session), against
  ``palaestra serve`` in its own process;
- ``babyai``: BabyAI the same three ways. Each session plays like a random agent:
  an action drawn (``random.Random(session)``) from the step's
  ``info["available_actions"]``, so about one step in five is a ``go to``
  (a planned walk of several moves), and a reset to the next task (all 60 levels
  in turn) when an episode ends. A second table splits its latencies by call:
  primitive step, ``go to``, reset;
- ``echo``: a bare FastAPI app on the same machine, same client library: a POST
  endpoint that validates a body like ours and echoes it, and a WebSocket that
  echoes each message (the floor HTTP and WebSocket put under any server).

The server runs on CPU 0 and this script (the load) on CPU 1 where there are two.
"vs in-process" is steps/s over the same env's one-core in-process rate; p50 and
p99 are over steps (resets left out). Each row is the median of ``--repeats``
runs by steps/s (this kind of machine varies by tens of percent from one run to
the next); the progress lines give every run's p99, and the by-call table pools
the runs.

    python bench/server_throughput.py [--seconds 3] [--repeats 3] [--levels 1 8 64 256]
        [--envs maze babyai echo]

BabyAI at 64 sessions over the socket, the case of issue 12's tail latency:

    python bench/server_throughput.py --envs babyai --levels 64 --repeats 5 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
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
BABYAI = "palaestra/BabyAI-v0"
BABYAI_TASKS = 6000  # its train split: task t plays level t % 60
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


def babyai_action(rng: random.Random, info: dict[str, Any]) -> str:
    """A random agent's action: one of the step's available actions."""
    return rng.choice(info["available_actions"])


def babyai_call(action: str) -> str:
    """The kind of call a BabyAI action is, for the by-call table."""
    return "go to" if action.startswith("go to") else "step"


def babyai_in_process(seconds: float) -> float:
    """Steps/s of the bench's BabyAI play on one env in this process (resets included)."""
    env = palaestra.make(BABYAI)
    rng = random.Random(0)
    task = 0
    _, info = env.reset(options={"task_id": task})
    steps = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        _, _, terminated, truncated, info = env.step(babyai_action(rng, info))
        steps += 1
        if terminated or truncated:
            task = (task + 1) % BABYAI_TASKS
            _, info = env.reset(options={"task_id": task})
    return steps / (time.perf_counter() - started)


def babyai_driver(transport: str, calls: dict[str, list[float]]) -> Driver:
    """Sessions playing BabyAI like random agents; every call's latency also goes to ``calls``.

    Args:
        transport: ``"http"`` or ``"websocket"``.
        calls: Latencies by call (``step``, ``go to``, ``reset``), added to on each run.
    """

    async def drive(url: str, sessions: int, seconds: float) -> tuple[list[float], float]:
        latencies: list[float] = []
        async with AsyncEnvClient(url, transport=transport, max_connections=sessions) as client:
            handles = await asyncio.gather(
                *(client.create(BABYAI, task_id=t) for t in range(sessions))
            )
            started = time.perf_counter()
            deadline = started + seconds

            async def loop(session, offset: int) -> None:
                rng = random.Random(offset)
                task = offset
                while time.perf_counter() < deadline:
                    action = babyai_action(rng, session.info)
                    sent = time.perf_counter()
                    step = await session.step(action)
                    latency = time.perf_counter() - sent
                    latencies.append(latency)
                    calls.setdefault(babyai_call(action), []).append(latency)
                    if step.terminated or step.truncated:
                        task = (task + sessions) % BABYAI_TASKS
                        sent = time.perf_counter()
                        await session.reset(task_id=task)
                        calls.setdefault("reset", []).append(time.perf_counter() - sent)

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


def measure_runs(
    driver: Driver, url: str, sessions: int, seconds: float, repeats: int = 1
) -> list[tuple[float, float, float]]:
    """Steps/s, p50 and p99 ms of each of ``repeats`` runs, in the order run."""
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
    return runs


def measure(
    driver: Driver, url: str, sessions: int, seconds: float, repeats: int = 1
) -> tuple[float, float, float]:
    """Steps/s, p50 and p99 ms of the median of ``repeats`` runs (by steps/s)."""
    return sorted(measure_runs(driver, url, sessions, seconds, repeats))[repeats // 2]


def in_process_median(seconds: float, repeats: int, play: Callable[[float], float]) -> float:
    return statistics.median(play(seconds) for _ in range(repeats))


def by_call_rows(
    name: str, sessions: int, calls: dict[str, list[float]]
) -> list[tuple[object, ...]]:
    """Rows of the by-call table: each kind of call's share and latency."""
    total = sum(len(latencies) for latencies in calls.values())
    return [
        (
            name,
            sessions,
            call,
            f"{len(latencies) / total:.1%}",
            f"{statistics.median(latencies) * 1e3:.2f}",
            f"{percentile(latencies, 0.99) * 1e3:.2f}",
            f"{max(latencies) * 1e3:.1f}",
        )
        for call in ("step", "go to", "reset")
        if (latencies := calls.get(call))
    ]


# The row groups of --envs, in table order. Env groups: (env id, label, in-process play).
GROUPS = ("maze", "babyai", "echo")
ENV_GROUPS: dict[str, tuple[str, str, Callable[[float], float]]] = {
    "maze": (ENV, "Maze", in_process),
    "babyai": (BABYAI, "BabyAI", babyai_in_process),
}

# A route: how to start its server, its row name, its driver, its env's in-process rate
# (None for the echo rows), and where its latencies by call go (BabyAI's rows only).
Route = tuple[
    Callable[[], tuple[subprocess.Popen, str]],
    str,
    Driver,
    float | None,
    dict[str, list[float]] | None,
]


def routes(groups: list[str], seconds: float, repeats: int) -> list[Route]:
    """The routes of ``groups``, measuring each env's in-process rate on the way."""
    plans: list[Route] = []
    for group in sorted(set(groups), key=GROUPS.index):
        if group == "echo":
            plans.append((start_echo, "FastAPI echo, HTTP", echo_http, None, None))
            plans.append((start_echo, "FastAPI echo, WebSocket", echo_ws, None, None))
            continue
        env_id, label, play = ENV_GROUPS[group]
        base = in_process_median(seconds, repeats, play)
        serve = _server(env_id)
        for transport, route in (("http", "HTTP"), ("websocket", "WebSocket")):
            calls: dict[str, list[float]] | None = None
            if group == "babyai":
                calls = {}
                driver = babyai_driver(transport, calls)
            else:
                driver = maze_driver(transport)
            plans.append((serve, f"{label} over {route}", driver, base, calls))
    return plans


def _server(env_id: str) -> Callable[[], tuple[subprocess.Popen, str]]:
    return lambda: start_server_process([env_id], extra_args=["--log-level", "warning"])


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
    parser.add_argument(
        "--envs",
        nargs="+",
        choices=GROUPS,
        default=list(GROUPS),
        help="row groups to run, e.g. --envs babyai (default: all)",
    )
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return

    rows: list[tuple[object, ...]] = []
    call_rows: list[tuple[object, ...]] = []
    placement = ""
    # Each route gets a fresh server process, as a user runs one transport or the other.
    for start, name, driver, base, calls in routes(args.envs, args.seconds, args.repeats):
        label = name.split(" over ")[0]
        if base is not None and not any(row[0].startswith(label) for row in rows):
            rows.append((f"{label} in-process (1 core)", "-", f"{base:,.0f}", "-", "-", "1"))
        process, url = start()
        placement = pin_server_and_load(process.pid)
        try:
            for sessions in args.levels:
                if calls is not None:
                    calls.clear()
                runs = measure_runs(driver, url, sessions, args.seconds, args.repeats)
                rate, p50, p99 = sorted(runs)[len(runs) // 2]
                ratio = f"{rate / base:.3f}" if base else "-"
                rows.append((name, sessions, f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}", ratio))
                each = ", ".join(f"{run[2]:.1f}" for run in runs)
                print(
                    f"  {name} x{sessions}: {rate:,.0f} steps/s, p99 {p99:.1f} ms "
                    f"(p99 of each run: {each})",
                    flush=True,
                )
                if calls:
                    call_rows += by_call_rows(name, sessions, calls)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"\nSteps/s ({placement}; median of {args.repeats} runs of {args.seconds:g} s)\n")
    headers = ["route", "sessions", "steps/s", "p50 ms", "p99 ms", "vs in-process"]
    print(format_table(headers, rows))
    if call_rows:
        print(f"\nBabyAI latency by call ({args.repeats} runs pooled)\n")
        headers = ["route", "sessions", "call", "share", "p50 ms", "p99 ms", "max ms"]
        print(format_table(headers, call_rows))


if __name__ == "__main__":
    main()
