"""``EpisodeEnv.fork``: a twin continues exactly as the unforked episode would.

For a snapshot env (Maze) and a replay env (the toy Counter has no snapshot),
in-process and on a real server over HTTP and over the socket, by each fork mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager

import pytest
from toy_envs import Counter

from palaestra.agents import EnvPool, EpisodeEnv, LocalEnvs, RemoteEnvs
from palaestra.envs import register
from palaestra.errors import CapacityError, EpisodeOverError
from palaestra.servers.protocol import Step

MAZE, COUNTER = "palaestra/Maze-v0", "toy/Counter-v0"


class CappedCounter(Counter):
    """The Counter with room for two episodes at once."""

    capacity = 2


register("toy/CappedCounter-v0", CappedCounter)

WHERE = ["local", "http", "websocket"]
MODES = ["auto", "replay"]


@asynccontextmanager
async def _pool(where: str, mode: str, url: str) -> AsyncIterator[EnvPool]:
    pool: EnvPool = (
        LocalEnvs(fork=mode)  # type: ignore[arg-type]
        if where == "local"
        else RemoteEnvs([url], transport=where, fork=mode)  # type: ignore[arg-type]
    )
    try:
        yield pool
    finally:
        await pool.aclose()


async def _actions(env_id: str, episode: EpisodeEnv, n: int, salt: int) -> list[str]:
    """``n`` actions to play from ``episode``'s state on: valid moves, and an invalid one."""
    if env_id == COUNTER:
        return ["inc", "nonsense", "inc"][:n]
    return [await episode.random_action(salt)] + ["fly north"] + ["move up"] * (n - 2)


async def _play(episode: EpisodeEnv, actions: list[str]) -> list[Step]:
    return [await episode.step(a) for a in actions]


@pytest.mark.parametrize("env_id", [MAZE, COUNTER])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", WHERE)
def test_a_fork_continues_as_the_unforked_episode(
    where: str, mode: str, env_id: str, maze_url: str
) -> None:
    async def run() -> None:
        async with _pool(where, mode, maze_url) as pool:
            task = (await pool.tasks(env_id, "train"))[1]
            parent = await pool.open(env_id, task, seed=7, index=0)
            prefix = ["inc", "x"] if env_id == COUNTER else [await parent.random_action(3)]
            await _play(parent, prefix)
            before = (parent.observation, dict(parent.info), list(parent.actions))

            twin = await parent.fork()
            assert (twin.observation, twin.info, twin.actions) == before
            assert (twin.task_id, twin.seed) == (task, 7)

            tail = await _actions(env_id, twin, 3, salt=11)
            forked = await _play(twin, tail)
            # Stepping the twin left the parent where it was.
            assert (parent.observation, parent.info, parent.actions) == before

            # An episode that never forked, given the same actions, sees the same.
            plain = await pool.open(env_id, task, seed=7, index=0)
            await _play(plain, prefix)
            assert await _play(plain, tail) == forked
            # And the parent too, from where it stood.
            assert await _play(parent, tail) == forked
            assert twin.actions == parent.actions == prefix + tail

            for episode in (twin, plain, parent):
                await episode.close()

    asyncio.run(run())


@pytest.mark.parametrize("where", WHERE)
def test_a_fork_of_a_fork_and_the_fork_mode(where: str, maze_url: str) -> None:
    async def run() -> None:
        async with _pool(where, "auto", maze_url) as pool:
            assert await pool.fork_mode(MAZE) == "snapshot"
            assert await pool.fork_mode(COUNTER) == "replay"
            assert "snapshot" in (await pool.spec(MAZE)).capabilities
            root = await pool.open(COUNTER, 0, seed=1, index=0)
            await root.step("inc")
            child = await root.fork()
            await child.step("inc")
            grandchild = await child.fork()
            await root.close()  # closing an ancestor leaves its forks playing
            step = await grandchild.step("inc")
            assert (step.observation, step.terminated, step.reward) == ("count 3", True, 1.0)
            await child.close()
            await grandchild.close()
        async with _pool(where, "replay", maze_url) as pool:
            assert await pool.fork_mode(MAZE) == "replay"

    asyncio.run(run())


def test_a_fork_beyond_capacity_is_refused_at_once() -> None:
    """A search holds its parents open, so a fork that waited for a slot would hang."""

    async def run() -> None:
        pool = LocalEnvs()
        parent = await pool.open("toy/CappedCounter-v0", 0, seed=0, index=0)
        twin = await parent.fork()
        with pytest.raises(CapacityError, match="capacity of 2"):
            await parent.fork()
        await twin.close()
        again = await parent.fork()  # the twin's slot came back
        await again.close()
        await parent.close()
        await pool.aclose()

    asyncio.run(run())


def test_closing_an_episode_twice_gives_its_env_back_once() -> None:
    async def run() -> None:
        pool = LocalEnvs()
        episode = await pool.open(COUNTER, 0, seed=0, index=0)
        await episode.close()
        await episode.close()
        first = await pool.open(COUNTER, 0, seed=0, index=0)
        second = await pool.open(COUNTER, 0, seed=0, index=0)
        await first.step("inc")
        assert second.observation.endswith("count 0")  # not the same env
        await pool.aclose()

    asyncio.run(run())


@pytest.fixture
def capped_url(serve: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    with serve(["toy/CappedCounter-v0"]) as url:
        yield url


def test_a_remote_fork_beyond_capacity_is_refused_at_once(capped_url: str) -> None:
    async def run() -> None:
        async with _pool("websocket", "auto", capped_url) as pool:
            parent = await pool.open("toy/CappedCounter-v0", 0, seed=0, index=0)
            twin = await parent.fork()
            with pytest.raises(CapacityError):
                await parent.fork()
            await twin.close()
            await parent.close()

    asyncio.run(run())


def test_a_closed_local_episode_refuses_to_step_or_fork() -> None:
    async def run() -> None:
        pool = LocalEnvs()
        episode = await pool.open(COUNTER, 0, seed=0, index=0)
        await episode.close()
        for call in (episode.fork(), episode.step("inc")):
            with pytest.raises(EpisodeOverError, match="closed"):
                await call
        await pool.aclose()

    asyncio.run(run())


def test_a_snapshot_fork_restores_into_an_env_of_another_task() -> None:
    """Pooled envs serve forks of any task (restore needs no reset to the same task)."""

    async def run() -> None:
        pool = LocalEnvs()
        others = [await pool.open(MAZE, 5, seed=1, index=0) for _ in range(2)]
        for other in others:
            await other.close()  # two idle envs that last played task 5
        parent = await pool.open(MAZE, 2, seed=0, index=0)
        assert pool._idle[MAZE][0].task_id == 5  # the one the fork gets
        await parent.step(await parent.random_action(0))
        twin = await parent.fork()
        assert twin._env.task_id == 2
        tail = await _actions(MAZE, parent, 3, salt=4)
        assert await _play(twin, tail) == await _play(parent, tail)
        await twin.close()
        await parent.close()
        await pool.aclose()

    asyncio.run(run())
