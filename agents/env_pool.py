"""Where the rollout engine's episodes run: in this process, or on palaestra servers.

Both pools hand out :class:`EpisodeEnv` handles with the same async surface, so
the engine does not care where an env lives. ``LocalEnvs`` keeps finished envs
for reuse (a fresh ScienceWorld or TextWorld env is costly to make) and steps
them on the event loop's thread; ``RemoteEnvs`` spreads sessions over one or
more server URLs with :class:`~palaestra.servers.AsyncEnvClient`.

Both keep at most an env's declared ``capacity`` of its episodes open at once
(per server for ``RemoteEnvs``, as ``GET /v1/envs`` advertises it): an episode
beyond it waits for one to close instead of being refused.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

import palaestra
from palaestra.envs import TaskId, TextEnv, env_class
from palaestra.servers import AsyncEnvClient, AsyncSession
from palaestra.servers.protocol import Step

__all__ = ["EnvPool", "EnvSpecInfo", "EpisodeEnv", "LocalEnvs", "RemoteEnvs"]


@dataclass(frozen=True)
class EnvSpecInfo:
    """What the engine needs to know of an env before playing it.

    ``capacity``: the most episodes of it open at once (per server), None = no limit.
    """

    env_id: str
    instruction: str
    max_steps: int
    capabilities: frozenset[str]
    capacity: int | None = None


class EpisodeEnv(ABC):
    """One running episode's env (in-process or a server session).

    Attributes:
        env_id: The env played.
        observation: The latest observation.
        info: The latest info.
    """

    env_id: str
    observation: str
    info: dict

    @abstractmethod
    async def step(self, action: str) -> Step:
        """Apply ``action``."""

    @abstractmethod
    async def expert_action(self) -> str:
        """The env expert's next action."""

    @abstractmethod
    async def random_action(self, seed: int) -> str:
        """A uniformly random valid action, drawn from ``seed``."""

    @abstractmethod
    async def close(self) -> None:
        """Give the env back."""


class _Slots:
    """One semaphore per key (an env, or an env on one server) sized by its capacity.

    Made lazily, inside the running loop; unbounded keys take no semaphore.
    """

    def __init__(self) -> None:
        self._gates: dict[object, asyncio.Semaphore] = {}

    async def take(self, key: object, capacity: int | None) -> asyncio.Semaphore | None:
        """Wait for a free slot under ``key``; the semaphore to release (None: unbounded)."""
        if capacity is None:
            return None
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(max(1, capacity))
        await gate.acquire()
        return gate


class EnvPool(ABC):
    """Opens episodes of registered envs."""

    @abstractmethod
    async def spec(self, env_id: str) -> EnvSpecInfo:
        """Instruction, step limit and capabilities of ``env_id``."""

    @abstractmethod
    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        """The task ids of a split."""

    @abstractmethod
    async def open(self, env_id: str, task_id: TaskId, seed: int, index: int) -> EpisodeEnv:
        """Reset an env to ``task_id`` with ``seed``; ``index`` spreads load across servers."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release everything."""

    @property
    def where(self) -> str:
        """``"in-process"`` or the server URLs."""
        return "in-process"


# -- in-process -----------------------------------------------------------------------


class _LocalEpisode(EpisodeEnv):
    def __init__(
        self,
        pool: LocalEnvs,
        env_id: str,
        env: TextEnv,
        observation: str,
        info: dict,
        slot: asyncio.Semaphore | None,
    ) -> None:
        self._pool, self.env_id, self._env = pool, env_id, env
        self.observation, self.info = observation, info
        self._slot = slot

    async def step(self, action: str) -> Step:
        result = Step(*self._env.step(action))
        self.observation, self.info = result.observation, result.info
        return result

    async def expert_action(self) -> str:
        return self._env.expert_action()

    async def random_action(self, seed: int) -> str:
        return self._env.random_action(np.random.default_rng(seed))

    async def close(self) -> None:
        self._pool._idle[self.env_id].append(self._env)
        if self._slot is not None:
            slot, self._slot = self._slot, None
            slot.release()


class LocalEnvs(EnvPool):
    """Envs made in this process with :func:`palaestra.make`, reused across episodes."""

    def __init__(self) -> None:
        self._idle: dict[str, list[TextEnv]] = defaultdict(list)
        self._slots = _Slots()

    async def spec(self, env_id: str) -> EnvSpecInfo:
        """From the registered class."""
        cls = env_class(env_id)
        return EnvSpecInfo(env_id, cls.instruction, cls.max_steps, cls.capabilities(), cls.capacity)

    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        """From the registered class."""
        ids = env_class(env_id).tasks(split)
        return [int(t) if isinstance(t, np.integer) else t for t in ids]

    async def open(self, env_id: str, task_id: TaskId, seed: int, index: int) -> EpisodeEnv:
        """Reuse an idle env of ``env_id`` or make one, then reset it.

        Waits while the env's ``capacity`` of episodes is open (idle envs are
        reused, so no more than that many are ever made).
        """
        slot = await self._slots.take(env_id, env_class(env_id).capacity)
        try:
            idle = self._idle[env_id]
            env = idle.pop() if idle else palaestra.make(env_id).unwrapped
            try:
                observation, info = env.reset(seed=seed, options={"task_id": task_id})
            except BaseException:
                idle.append(env)
                raise
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return _LocalEpisode(self, env_id, env, observation, info, slot)

    async def aclose(self) -> None:
        """Close the idle envs."""
        for envs in self._idle.values():
            for env in envs:
                env.close()
        self._idle.clear()


# -- remote ---------------------------------------------------------------------------


class _RemoteEpisode(EpisodeEnv):
    def __init__(self, env_id: str, session: AsyncSession, slot: asyncio.Semaphore | None) -> None:
        self.env_id, self._session = env_id, session
        self.observation, self.info = session.observation, session.info
        self._slot = slot

    async def step(self, action: str) -> Step:
        result = await self._session.step(action)
        self.observation, self.info = result.observation, result.info
        return result

    async def expert_action(self) -> str:
        return await self._session.expert_action()

    async def random_action(self, seed: int) -> str:
        return await self._session.random_action(seed)

    async def close(self) -> None:
        try:
            await self._session.close()
        finally:
            if self._slot is not None:
                slot, self._slot = self._slot, None
                slot.release()


class RemoteEnvs(EnvPool):
    """Sessions on palaestra servers; episode ``index`` goes to ``urls[index % len(urls)]``.

    Each episode's session runs on its own WebSocket (``/v1/ws``), several times
    faster than one HTTP request per step; ``transport="http"`` uses plain requests.
    At most an env's advertised ``capacity`` of sessions is open on each server at
    once; further episodes wait for a slot (and a 429 that still comes, e.g. while
    another client fills the server, is waited out by the client).

    Args:
        urls: Base URLs of servers that all serve the envs of the run.
        token: Bearer token (default: the ``PALAESTRA_TOKEN`` env variable).
        transport: ``"websocket"`` (default) or ``"http"``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        token: str | None = None,
        transport: Literal["http", "websocket"] = "websocket",
    ) -> None:
        if not urls:
            raise ValueError("RemoteEnvs needs at least one server URL")
        self.urls = list(urls)
        self._clients = [AsyncEnvClient(url, token=token, transport=transport) for url in self.urls]
        self._specs: dict[str, EnvSpecInfo] | None = None
        self._slots = _Slots()

    async def spec(self, env_id: str) -> EnvSpecInfo:
        """From the first server's ``GET /v1/envs``."""
        if self._specs is None:
            self._specs = {
                e["id"]: EnvSpecInfo(
                    e["id"],
                    e["instruction"],
                    e["max_steps"],
                    frozenset(e["capabilities"]),
                    e.get("capacity"),  # absent from servers older than it
                )
                for e in await self._clients[0].envs()
            }
        if env_id not in self._specs:
            raise KeyError(
                f"{self.urls[0]} does not serve {env_id!r} (it serves {sorted(self._specs)})"
            )
        return self._specs[env_id]

    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        """From the first server's ``GET /v1/tasks``."""
        return await self._clients[0].tasks(env_id, split)

    async def open(self, env_id: str, task_id: TaskId, seed: int, index: int) -> EpisodeEnv:
        """A new session on server ``index % len(urls)``, once it has room for one."""
        server = index % len(self._clients)
        client = self._clients[server]
        capacity = (await self.spec(env_id)).capacity
        slot = await self._slots.take((server, env_id), capacity)
        try:
            session = await client.create(env_id, task_id=task_id, seed=seed)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return _RemoteEpisode(env_id, session, slot)

    async def aclose(self) -> None:
        """Close the clients (their sessions are closed by their episodes)."""
        for client in self._clients:
            await client.aclose()

    @property
    def where(self) -> str:
        """The server URLs."""
        return ", ".join(self.urls)
