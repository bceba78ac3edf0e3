"""Faults, with real servers and real processes.

Clients killed mid-episode, servers killed mid-call and mid-eval, servers that
never answer, replies that come after their caller gave up: each ends in freed
sessions or in a clear palaestra error within a bounded time, never in a hang or
in an answer given to the wrong call.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_runner import run_cli
from fastapi import FastAPI
from starlette.websockets import WebSocket

import palaestra
from palaestra.agents.trajectory import read_trajectories
from palaestra.errors import RequestTimeoutError, ServerUnavailableError, SessionNotFoundError
from palaestra.servers import (
    AsyncEnvClient,
    RetryPolicy,
    Settings,
    Timeouts,
    create_app,
    serve_in_thread,
)
from palaestra.servers.local import free_port, start_server_process
from palaestra.servers.protocol import SOCKET_PATH

MAZE = "palaestra/Maze-v0"
COUNTER = "toy/Counter-v0"  # tests/toy_envs.py: `sleep S` stalls its step S seconds
TESTS = Path(__file__).resolve().parents[1]

# `palaestra serve` with the toy envs registered (they live in tests/, not in the package).
SERVE_WITH_TOYS = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import toy_envs; "
    "from palaestra.cli import main; sys.exit(main())"
)

# Opens three sessions, steps each a few times, says so, then waits to be killed.
HTTP_CLIENT = """
import sys, time
import palaestra
envs = [palaestra.make("palaestra/Maze-v0", base_url=sys.argv[1]) for _ in range(3)]
for task_id, env in enumerate(envs):
    env.reset(options={"task_id": task_id})
    for _ in range(3):
        env.step(env.expert_action())
print("mid-episode", flush=True)
time.sleep(600)
"""

SOCKET_CLIENT = """
import asyncio, sys
from palaestra.servers import AsyncEnvClient

async def main():
    client = AsyncEnvClient(sys.argv[1], transport="websocket")
    sessions = [await client.create("palaestra/Maze-v0", task_id=t) for t in range(3)]
    for session in sessions:
        for _ in range(3):
            await session.step(await session.expert_action())
    print("mid-episode", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


# -- helpers --------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PALAESTRA_TOKEN"}


def _sessions(url: str) -> int:
    return httpx.get(url + "/health", timeout=5).json()["sessions"]


def _wait_until(condition: Callable[[], bool], within: float) -> float:
    """Seconds until ``condition()`` held; fails the test after ``within`` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"still not so after {within:g}s")
        time.sleep(0.02)
    return time.monotonic() - started


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


@contextmanager
def _client_process(code: str, url: str) -> Iterator[subprocess.Popen]:
    """A client subprocess running ``code``, once it says it is mid-episode."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, url], env=_child_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "mid-episode"
        yield child
    finally:
        _stop(child)
        child.stdout.close()


def _toy_server(port: int) -> subprocess.Popen:
    """``palaestra serve toy/Counter-v0`` on ``port``, once healthy."""
    command = [sys.executable, "-c", SERVE_WITH_TOYS, str(TESTS), "serve", COUNTER]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env=_child_env(),
        stdout=subprocess.DEVNULL,
    )

    def healthy() -> bool:
        assert process.poll() is None, f"the server exited with status {process.returncode}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_until(healthy, within=60)
    except BaseException:
        _stop(process)
        raise
    return process


async def _outcome(call: Awaitable[Any], within: float = 10) -> tuple[BaseException | None, float]:
    """What ``call`` raised (None if nothing), and after how many seconds."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(call, within)
    except TimeoutError as error:
        if time.monotonic() - started >= within:
            raise AssertionError(f"the call hung for {within:g}s") from error
        return error, time.monotonic() - started
    except Exception as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


@contextmanager
def _silent_server() -> Iterator[str]:
    """A TCP server that accepts connections, reads what comes, and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def drain(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set() and conn.recv(65536):
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


# -- 1. a client killed mid-episode -----------------------------------------------------


def test_sessions_of_a_killed_http_client_are_reaped_after_the_ttl(serve):
    with serve([MAZE], session_ttl=2.0) as url:
        with _client_process(HTTP_CLIENT, url) as child:
            assert _sessions(url) == 3
            child.kill()
            child.wait()
        assert _sessions(url) == 3  # nothing tells an HTTP server its client died...
        _wait_until(lambda: _sessions(url) == 0, within=2.0 + 5)  # ...but the reaper frees them


def test_sessions_of_a_killed_websocket_client_are_closed_when_its_sockets_drop(serve):
    with serve([MAZE]) as url:  # a 600 s TTL: only the dropped sockets can free them
        with _client_process(SOCKET_CLIENT, url) as child:
            assert _sessions(url) == 3
            child.kill()
            child.wait()
        _wait_until(lambda: _sessions(url) == 0, within=3)


# -- 2. a server killed mid-eval --------------------------------------------------------


@pytest.mark.slow  # two server processes and two evals: ~20 s
def test_an_eval_whose_server_is_killed_reports_the_lost_episodes_and_resume_plays_them(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("PALAESTRA_TOKEN", raising=False)  # the servers inherit our env
    port = free_port()
    out = tmp_path / "run"
    path = out / "trajectories.jsonl"
    args = ["eval", "--policy", "expert", "--envs", MAZE, "--limit", "300", "--concurrency", "8"]
    args += ["--quiet", "--url", f"http://127.0.0.1:{port}", "--out", str(out)]
    server, _ = start_server_process([MAZE], port=port)
    evaluation = subprocess.Popen(
        [sys.executable, "-m", "palaestra.cli", *args],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until(lambda: path.exists() and path.read_bytes().count(b"\n") >= 30, within=120)
        server.kill()
        server.wait()
        killed = time.monotonic()
        _, stderr = evaluation.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        _stop(evaluation)
        _stop(server)

    # It ends soon, not one retry backoff per remaining episode (~1.5 s each, /8).
    assert took < 15, f"the eval took {took:.1f}s to give up on a dead server"
    assert evaluation.returncode == 1, stderr
    before = path.read_bytes()
    finished = [t.key for t in read_trajectories(path)]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    lost = [e["key"] for e in errors]
    assert 30 <= len(finished) < 300, "the server was not killed mid-run"
    assert len(finished) + len(lost) == len(set(finished) | set(lost)) == 300
    for error in errors:  # each names the server and what happened to it
        assert error["error"].startswith("ServerUnavailableError") and f":{port}/" in error["error"]
    assert sorted(json.loads((out / "results.json").read_text())["lost"]) == sorted(lost)
    assert f"{len(lost)} episodes lost to errors" in stderr and "--resume" in stderr
    assert f"{len(finished)}/300 episodes" in (out / "results.md").read_text()

    server, _ = start_server_process([MAZE], port=port)  # back on the same port
    try:
        result = run_cli(*args, "--resume", timeout=300)
    finally:
        _stop(server)
    assert result.returncode == 0, result.stderr
    keys = [t.key for t in read_trajectories(path)]
    assert len(keys) == len(set(keys)) == 300
    assert set(keys) == set(finished) | set(lost)
    assert path.read_bytes().startswith(before)  # appended, nothing rewritten
    assert "300/300 episodes" in (out / "results.md").read_text()


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_a_client_that_found_its_server_down_fails_fast_until_it_answers_again(transport):
    port = free_port()
    retry = RetryPolicy(attempts=4, backoff=1.0, max_backoff=1.0)  # 1.5-4.5 s of retries

    url = f"http://127.0.0.1:{port}"

    async def run() -> None:
        async with AsyncEnvClient(url, retry=retry, transport=transport) as c:
            error, seconds = await _outcome(c.create(MAZE, task_id=1))
            assert isinstance(error, ServerUnavailableError) and seconds >= 1.5
            error, seconds = await _outcome(c.create(MAZE, task_id=1))  # known down: one try
            assert isinstance(error, ServerUnavailableError) and seconds < 1.5
            with serve_in_thread(create_app([MAZE], Settings()), port=port):
                session = await c.create(MAZE, task_id=1)  # it is up: tried, and it works
                await session.close()
            error, seconds = await _outcome(c.create(MAZE, task_id=1))  # retried in full again
            if "cannot reach" not in str(error):
                # The pool's connection to the stopped server, not yet seen closed by the
                # loop: lost mid-request (never retried). The next call connects afresh.
                error, seconds = await _outcome(c.create(MAZE, task_id=1))
            assert isinstance(error, ServerUnavailableError) and "cannot reach" in str(error)
            assert seconds >= 1.5

    asyncio.run(run())


# -- 3. a server killed under clients mid-call; servers that never answer ---------------


def test_clients_mid_call_on_a_killed_server_raise_at_once_and_work_after_a_restart():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    retry = RetryPolicy(attempts=3, backoff=0.05)
    server = _toy_server(port)
    try:
        env = palaestra.make(COUNTER, base_url=url, retry=retry)
        env.reset(options={"task_id": 1})

        async def run() -> None:
            nonlocal server
            http = AsyncEnvClient(url, retry=retry)
            ws = AsyncEnvClient(url, retry=retry, transport="websocket")
            http_session = await http.create(COUNTER, task_id=1)
            ws_session = await ws.create(COUNTER, task_id=1)
            calls = [  # each stalls 30 s on the server: only the kill ends them early
                asyncio.create_task(_outcome(asyncio.to_thread(env.step, "sleep 30"))),
                asyncio.create_task(_outcome(http_session.step("sleep 30"))),
                asyncio.create_task(_outcome(ws_session.step("sleep 30"))),
            ]
            await asyncio.sleep(1.0)  # (ordering needs no sleep: each call fails either way)
            assert not any(call.done() for call in calls)
            server.kill()
            await asyncio.to_thread(server.wait)
            for error, seconds in await asyncio.gather(*calls):
                assert isinstance(error, ServerUnavailableError), repr(error)
                assert f"127.0.0.1:{port}" in str(error) and seconds < 1.0 + 15  # not the 30 s
            error, _ = await _outcome(ws_session.step("inc"))  # its socket is gone
            assert isinstance(error, ServerUnavailableError) and "closed" in str(error)

            server = await asyncio.to_thread(_toy_server, port)  # back on the same port
            observation, _ = await asyncio.to_thread(env.reset, options={"task_id": 2})
            assert observation.startswith("task 2")  # a new session: the old one died
            assert (await asyncio.to_thread(env.step, "inc"))[0] == "count 1"
            with pytest.raises(SessionNotFoundError):  # the old session died with the server
                await http_session.step("inc")
            for client in (http, ws):  # the pool reconnects; a new socket opens
                session = await client.create(COUNTER, task_id=3)
                assert session.transport == client.transport
                assert (await session.step("inc")).observation == "count 1"
                await session.close()
            await http.aclose()
            await ws.aclose()

        asyncio.run(run())
        env.close()
        assert _sessions(url) == 0
    finally:
        _stop(server)


def _mute_socket_app() -> FastAPI:
    """A server that accepts ``/v1/ws`` sockets, reads their messages, and never answers."""
    app = FastAPI()

    @app.websocket(SOCKET_PATH)
    async def mute(websocket: WebSocket) -> None:
        await websocket.accept()
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    return app


def test_every_client_call_times_out_on_a_server_that_never_answers():
    timeouts = Timeouts(connect=1.0, read=0.3, write=1.0, pool=1.0)
    with _silent_server() as url:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match=re.escape(url)):
            palaestra.make(MAZE, base_url=url, timeouts=timeouts)
        assert time.monotonic() - started < 0.3 + 10  # the read timeout, not a hang

        async def run(base_url: str, transport: str) -> None:
            async with AsyncEnvClient(base_url, timeouts=timeouts, transport=transport) as client:
                error, seconds = await _outcome(client.create(MAZE, task_id=1))
                assert isinstance(error, RequestTimeoutError), repr(error)  # a TimeoutError too
                assert base_url.removeprefix("http") in str(error) and seconds < 0.3 + 10

        asyncio.run(run(url, "http"))
        asyncio.run(run(url, "websocket"))  # the upgrade is never answered
    with serve_in_thread(_mute_socket_app()) as url:
        asyncio.run(run(url, "websocket"))  # the upgrade is, its messages are not


# -- 4. a reply that comes after its call timed out -------------------------------------


def _wait_for_steps(url: str, session_id: str, steps: int) -> None:
    """Until the server's session has taken ``steps`` steps (status takes no lock)."""
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/v1/sessions/{session_id}").json()["steps"] < steps:
        assert time.monotonic() < deadline, f"the session never reached {steps} steps"
        time.sleep(0.02)


@pytest.mark.parametrize("client", ["RemoteEnv", "http", "websocket"])
def test_a_late_reply_never_answers_the_next_call(serve, client):
    timeouts = Timeouts(read=0.2)
    with serve([COUNTER]) as url:
        if client == "RemoteEnv":
            env = palaestra.make(COUNTER, base_url=url, timeouts=timeouts)
            env.reset(options={"task_id": 1})
            with pytest.raises(TimeoutError, match=re.escape(url)):
                env.step("sleep 0.5")
            _wait_for_steps(url, env.session_id, 1)  # its answer is now due
            observation, _, _, _, info = env.step("inc")
            assert (observation, info["step"]) == ("count 1", 2)
            env.close()
            return

        async def run() -> None:
            async with AsyncEnvClient(url, timeouts=timeouts, transport=client) as async_client:
                session = await async_client.create(COUNTER, task_id=1)
                with pytest.raises(TimeoutError):
                    await session.step("sleep 0.5")
                with pytest.raises(TimeoutError):  # it waits on the first, then runs 0.3 s
                    await session.step("sleep 0.3")
                # both late replies are now due (on the socket, for that transport)
                await asyncio.to_thread(_wait_for_steps, url, session.id, 2)
                step = await session.step("inc")
                assert (step.observation, step.info["step"]) == ("count 1", 3)
                step = await session.step("inc")
                assert (step.observation, step.info["step"]) == ("count 2", 4)
                await session.close()

        asyncio.run(run())


def test_a_server_process_that_exits_is_a_server_unavailable_error():
    # The moved helper raised a TypeError (an old two-argument constructor) instead.
    with pytest.raises(ServerUnavailableError, match="exited with status"):
        start_server_process(["no/Such-v0"])
