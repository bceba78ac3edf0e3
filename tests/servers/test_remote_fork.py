"""Forks on a server share their parent's connections.

``RemoteEnv.fork``: a twin with an httpx client of its own cost ~30 ms (building
an SSL context) on a fork the server answers in ~1 ms. ``AsyncSession.fork`` over
the socket: a twin needs a socket of its own, and reuses a closed session's.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from palaestra.errors import SessionNotFoundError
from palaestra.servers import AsyncEnvClient, RemoteEnv

MAZE = "palaestra/Maze-v0"


def test_a_fork_shares_the_client_and_plays_on(maze_url: str) -> None:
    parent = RemoteEnv(MAZE, maze_url)
    parent.reset(seed=0, options={"task_id": 3})
    parent.step(parent.random_action(1))
    twin = parent.fork()
    assert twin._client is parent._client
    assert twin.session_id != parent.session_id
    assert twin.instruction == parent.instruction and twin.render() == parent.render()

    grandchild = twin.fork()
    twin.close()  # a twin closing leaves the shared client to the others
    assert not parent._client.is_closed
    assert parent.step("move up") == grandchild.step("move up")
    parent.close()  # so does the parent closing first
    assert not grandchild._client.is_closed
    grandchild.step("move down")
    grandchild.close()
    assert grandchild._client.is_closed  # the last one out closes it
    grandchild.close()  # idempotent


def test_a_closed_parent_reset_rejoins_the_shared_client(maze_url: str) -> None:
    parent = RemoteEnv(MAZE, maze_url)
    parent.reset(seed=0, options={"task_id": 3})
    twin = parent.fork()
    parent.close()
    parent.reset(seed=0, options={"task_id": 4})  # reopened while the twin holds the client
    twin.close()
    parent.step("move up")  # the twin closing did not close the client under it
    parent.close()
    assert parent._client.is_closed


def test_a_callers_client_is_never_closed(maze_url: str) -> None:
    with httpx.Client() as client:
        parent = RemoteEnv(MAZE, maze_url, client=client)
        parent.reset(seed=0, options={"task_id": 3})
        twin = parent.fork()
        assert twin._client is client
        twin.close()
        parent.close()
        assert not client.is_closed


def test_socket_twins_reuse_the_sockets_of_closed_sessions(maze_url: str) -> None:
    """Each twin over the socket transport needs a socket: a closed one's, not a new one."""

    async def run() -> None:
        async with AsyncEnvClient(maze_url, transport="websocket") as client:
            parent = await client.create(MAZE, task_id=3, seed=0)
            sockets = []
            for _ in range(4):
                twin = await parent.fork()
                sockets.append(twin._socket)
                await twin.step("move up")
                await twin.close()
            assert all(s is sockets[0] for s in sockets[1:])
            # The old handle lets go of its socket: it cannot reach the socket's next session.
            with pytest.raises(SessionNotFoundError):
                await twin.step("move up")
            await twin.close()  # closing again does nothing
            await parent.close()

    asyncio.run(run())
