import asyncio
import socket

import numpy as np
import pytest

import palaestra
from palaestra.errors import (
    EnvFailedError,
    NotSupportedError,
    ServerUnavailableError,
    SessionBrokenError,
    SessionNotFoundError,
    UnknownEnvError,
)
from palaestra.servers import AsyncEnvClient, RetryPolicy, Timeouts


def test_async_episode_matches_in_process(maze_url):
    async def play() -> list:
        async with AsyncEnvClient(maze_url) as client:
            session = await client.create("palaestra/Maze-v0", task_id=17, seed=2)
            record = [(session.observation, session.info)]
            while True:
                step = await session.step(await session.expert_action())
                record.append(step.as_tuple())
                if step.terminated or step.truncated:
                    break
            await session.close()
            return record

    remote = asyncio.run(play())
    local = palaestra.make("palaestra/Maze-v0")
    expected = [local.reset(seed=2, options={"task_id": 17})]
    while True:
        expected.append(local.step(local.expert_action()))
        if expected[-1][2] or expected[-1][3]:
            break
    assert remote == expected


def test_async_random_action_matches_in_process(maze_url):
    async def draw() -> tuple[list[str], list[str]]:
        async with AsyncEnvClient(maze_url) as client:
            session = await client.create("palaestra/Maze-v0", task_id=21, seed=4)
            drawn = []
            for seed in range(6):
                action = await session.random_action(seed)
                assert action == await client.random_action(session.id, seed)
                step = await session.step(action)
                assert step.info["invalid_action"] is False
                drawn.append(action)
            counter = await client.create("toy/Counter-v0")
            with pytest.raises(NotSupportedError, match="cannot draw"):
                await counter.random_action(0)
            with pytest.raises(ValueError):
                await session.random_action(-1)
            await session.close()
            return drawn

    remote = asyncio.run(draw())
    local = palaestra.make("palaestra/Maze-v0")
    local.reset(seed=4, options={"task_id": 21})
    expected = []
    for seed in range(6):
        expected.append(local.random_action(np.random.default_rng(seed)))
        local.step(expected[-1])
    assert remote == expected


def test_many_concurrent_sessions(maze_url):
    async def run() -> list[int]:
        async with AsyncEnvClient(maze_url) as client:

            async def one(task_id: int) -> int:
                session = await client.create("palaestra/Maze-v0", task_id=task_id)
                steps = 0
                while True:
                    step = await session.step(await session.expert_action())
                    steps += 1
                    if step.terminated:
                        await session.close()
                        return steps

            return await asyncio.gather(*(one(t) for t in range(64)))

    steps = asyncio.run(run())
    assert len(steps) == 64 and all(s > 0 for s in steps)


def test_async_errors_map_to_palaestra_errors(maze_url):
    async def run() -> None:
        async with AsyncEnvClient(maze_url) as client:
            with pytest.raises(SessionNotFoundError):
                await client.step("missing", "inc")
            with pytest.raises(UnknownEnvError, match="not served"):
                await client.create("nope/Env-v0")
            session = await client.create("toy/Counter-v0")
            with pytest.raises(EnvFailedError, match="exploded"):
                await session.step("boom")
            with pytest.raises(SessionBrokenError, match="broken"):
                await session.step("inc")
            await session.reset(task_id=4, seed=1)
            assert (await session.step("inc")).info["step"] == 1
            twin = await session.fork()
            assert (await twin.step("inc")).info["step"] == 2
            assert [t for t in await client.tasks("toy/Counter-v0", "test")] == [10, 11]

    asyncio.run(run())


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there

    async def run() -> None:
        client = AsyncEnvClient(
            f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=3, backoff=0.01)
        )
        with pytest.raises(ServerUnavailableError, match="cannot reach"):
            await client.health()
        await client.aclose()

    asyncio.run(run())
    with pytest.raises(ServerUnavailableError, match="cannot reach"):
        palaestra.make(
            "toy/Counter-v0",
            base_url=f"http://127.0.0.1:{port}",
            retry=RetryPolicy(attempts=2, backoff=0.01),
        )


def test_503_is_retried_until_the_server_answers():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from palaestra.servers import serve_in_thread

    app = FastAPI()
    calls = {"n": 0}

    @app.get("/health")
    def health() -> JSONResponse:
        calls["n"] += 1
        if calls["n"] <= 2:
            return JSONResponse({"status": 503, "error": "starting", "detail": "wait"}, 503)
        return JSONResponse({"status": "ok"})

    with serve_in_thread(app) as url:

        async def run(attempts: int) -> dict:
            async with AsyncEnvClient(url, retry=RetryPolicy(attempts=attempts, backoff=0.01)) as c:
                return await c.health()

        assert asyncio.run(run(4)) == {"status": "ok"}
        assert calls["n"] == 3
        calls["n"] = 0
        with pytest.raises(ServerUnavailableError, match="starting"):
            asyncio.run(run(2))


def test_websocket_sessions_are_not_limited_by_the_http_pool(maze_url):
    # Each socket holds its connection for the session's life: with sockets drawn
    # from the HTTP pool, session max_connections + 1 waited forever.
    async def main() -> list[str]:
        client = AsyncEnvClient(
            maze_url, transport="websocket", max_connections=2, timeouts=Timeouts(connect=2)
        )
        async with client:
            sessions = await asyncio.wait_for(
                asyncio.gather(*(client.create("toy/Counter-v0", task_id=t) for t in range(6))),
                timeout=20,
            )
            steps = [await s.step("inc") for s in sessions]
            await asyncio.gather(*(s.close() for s in sessions))
            return [step.observation for step in steps]

    assert asyncio.run(main()) == ["count 1"] * 6
