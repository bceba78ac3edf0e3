"""Where the rollout engine's episodes run: in this process, or on palaestra servers.

Both pools hand out :class:`EpisodeEnv` handles with the same async surface, so
the engine does not care where an env lives. ``LocalEnvs`` keeps finished envs
for reuse (a fresh ScienceWorld or TextWorld env is costly to make) and steps
them on the event loop's thread; ``RemoteEnvs`` spreads sessions over one or
more server URLs with :class:`~palaestra.servers.AsyncEnvClient`, by load, and
moves episodes off a server that dies (see :class:`RemoteEnvs`).

Both keep at most an env's declared ``capacity`` of its episodes open at once
(per server for ``RemoteEnvs``, as ``GET /v1/envs`` advertises it): an episode
beyond it waits for one to close instead of being refused.

Episodes fork (:meth:`EpisodeEnv.fork`) for tree search: the twin is an
independent episode in the same state, made by snapshot/restore where the env
declares ``"snapshot"`` and by replaying the episode's actions from reset
otherwise (``fork="replay"`` forces replay, to compare the two). A fork counts
against the env's capacity like any episode, but never waits for a slot: a
search that holds its parents open would wait forever for its own episodes to
close, so a fork beyond capacity raises :class:`~palaestra.errors.CapacityError`
at once and the caller decides (close something, or stop expanding).
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

import palaestra
from palaestra.envs import TaskId, TextEnv, env_class
from palaestra.envs.core import EnvSnapshot
from palaestra.errors import (
    CapacityError,
    EpisodeOverError,
    ReplicaLostError,
    ServerUnavailableError,
)
from palaestra.servers import AsyncEnvClient, AsyncSession
from palaestra.servers.protocol import Step

__all__ = ["EnvPool", "EnvSpecInfo", "EpisodeEnv", "ForkMode", "LocalEnvs", "RemoteEnvs"]

T = TypeVar("T")

ForkMode = Literal["snapshot", "replay"]
"""How a fork copies an episode: snapshot/restore, or replay from reset."""


@dataclass(frozen=True)
class EnvSpecInfo:
    """What the engine needs to know of an env before playing it.

    ``capacity``: the most episodes of it open at once (per server), None = no limit.
    ``capabilities`` holds ``"snapshot"`` where the env forks by snapshot/restore
    (see :meth:`EnvPool.fork_mode`).
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
        task_id: The task it was reset to.
        seed: The seed it was reset with.
        actions: The actions stepped since the reset, in order (a fork's include
            its parent's).
        observation: The latest observation.
        info: The latest info.
    """

    env_id: str
    task_id: TaskId
    seed: int
    actions: list[str]
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
    async def fork(self) -> EpisodeEnv:
        """An independent episode in this one's state, to be closed on its own.

        The twin has the same observation, info and actions so far; stepping
        either never changes the other, and the same actions give both the same
        observations, rewards and info.

        Raises:
            CapacityError: The env's capacity of open episodes is reached (a fork
                never waits for a slot; see the module docstring).
        """

    @abstractmethod
    async def close(self) -> None:
        """Give the env back."""


class _Slots:
    """One semaphore per key (an env, or an env on one server) sized by its capacity.

    Made lazily, inside the running loop; unbounded keys take no semaphore.
    """

    def __init__(self) -> None:
        self._gates: dict[object, asyncio.Semaphore] = {}

    def _gate(self, key: object, capacity: int) -> asyncio.Semaphore:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(max(1, capacity))
        return gate

    async def take(self, key: object, capacity: int | None) -> asyncio.Semaphore | None:
        """Wait for a free slot under ``key``; the semaphore to release (None: unbounded)."""
        if capacity is None:
            return None
        gate = self._gate(key, capacity)
        await gate.acquire()
        return gate

    async def take_now(
        self, key: object, capacity: int | None, env_id: str
    ) -> asyncio.Semaphore | None:
        """A free slot under ``key`` without waiting (for forks).

        Raises:
            CapacityError: None is free.
        """
        if capacity is None:
            return None
        gate = self._gate(key, capacity)
        if gate.locked():
            raise CapacityError(
                f"{env_id} has its capacity of {capacity} episodes open; close one "
                "before forking another (forks do not wait: the search holds the parents)"
            )
        # Not locked and nothing awaited since the check: acquire() takes the slot
        # without suspending.
        await gate.acquire()
        return gate


class EnvPool(ABC):
    """Opens episodes of registered envs."""

    _fork: Literal["auto", "replay"] = "auto"

    @abstractmethod
    async def spec(self, env_id: str) -> EnvSpecInfo:
        """Instruction, step limit and capabilities of ``env_id``."""

    @abstractmethod
    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        """The task ids of a split."""

    @abstractmethod
    async def open(self, env_id: str, task_id: TaskId, seed: int, index: int) -> EpisodeEnv:
        """Reset an env to ``task_id`` with ``seed``; ``index`` spreads load across servers."""

    async def fork_mode(self, env_id: str) -> ForkMode:
        """How :meth:`EpisodeEnv.fork` copies an episode of ``env_id``.

        ``"snapshot"`` where the env declares it (``spec(env_id).capabilities``)
        and the pool was not made with ``fork="replay"``; ``"replay"`` otherwise.
        """
        if self._fork == "replay":
            return "replay"
        return "snapshot" if "snapshot" in (await self.spec(env_id)).capabilities else "replay"

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
        task_id: TaskId,
        seed: int,
        actions: list[str] | None = None,
    ) -> None:
        self._pool, self.env_id = pool, env_id
        self._env: TextEnv | None = env
        self.observation, self.info = observation, info
        self._slot = slot
        self.task_id, self.seed = task_id, seed
        self.actions = actions if actions is not None else []
        # The snapshot of the current state, taken by the first fork: the k forks of a
        # search node share it (restore copies it), and a step drops it.
        self._snapshot: EnvSnapshot | None = None

    def _open_env(self) -> TextEnv:
        if self._env is None:
            raise EpisodeOverError(f"this {self.env_id} episode is closed")
        return self._env

    async def step(self, action: str) -> Step:
        self._snapshot = None
        result = Step(*self._open_env().step(action))
        self.actions.append(action)
        self.observation, self.info = result.observation, result.info
        return result

    async def expert_action(self) -> str:
        return self._open_env().expert_action()

    async def random_action(self, seed: int) -> str:
        return self._open_env().random_action(np.random.default_rng(seed))

    async def fork(self) -> EpisodeEnv:
        parent = self._open_env()
        pool = self._pool
        mode = await pool.fork_mode(self.env_id)
        slot = await pool._slots.take_now(self.env_id, env_class(self.env_id).capacity, self.env_id)
        try:
            env = pool._take_env(self.env_id)
            try:
                if mode == "snapshot":
                    if env.task_id is None:
                        # The contract (palaestra check) restores into an env reset
                        # to any task, not into a never-reset one; a pooled env
                        # skips the reset (a TextWorld reset takes ~1 s).
                        env.reset(seed=self.seed, options={"task_id": self.task_id})
                    if self._snapshot is None:
                        self._snapshot = parent.snapshot()
                    env.restore(self._snapshot)
                else:
                    env.reset(seed=self.seed, options={"task_id": self.task_id})
                    for action in self.actions:
                        env.step(action)
            except BaseException:
                pool._idle[self.env_id].append(env)
                raise
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return _LocalEpisode(
            pool,
            self.env_id,
            env,
            self.observation,
            dict(self.info),
            slot,
            self.task_id,
            self.seed,
            list(self.actions),
        )

    async def close(self) -> None:
        if self._env is None:
            return  # closed already: the env is someone else's now
        env, self._env = self._env, None
        self._pool._idle[self.env_id].append(env)
        if self._slot is not None:
            slot, self._slot = self._slot, None
            slot.release()


class LocalEnvs(EnvPool):
    """Envs made in this process with :func:`palaestra.make`, reused across episodes.

    Args:
        fork: ``"auto"``: forks restore a snapshot into a pooled env where the env
            declares ``"snapshot"``, and replay the episode's actions from reset
            otherwise; ``"replay"``: always replay.
    """

    def __init__(self, fork: Literal["auto", "replay"] = "auto") -> None:
        if fork not in ("auto", "replay"):
            raise ValueError(f"fork is 'auto' or 'replay', not {fork!r}")
        self._fork = fork
        self._idle: dict[str, list[TextEnv]] = defaultdict(list)
        self._slots = _Slots()

    def _take_env(self, env_id: str) -> TextEnv:
        """An idle env of ``env_id``, or a new one."""
        idle = self._idle[env_id]
        return idle.pop() if idle else palaestra.make(env_id).unwrapped

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
            env = self._take_env(env_id)
            try:
                observation, info = env.reset(seed=seed, options={"task_id": task_id})
            except BaseException:
                self._idle[env_id].append(env)
                raise
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return _LocalEpisode(self, env_id, env, observation, info, slot, task_id, seed)

    async def aclose(self) -> None:
        """Close the idle envs."""
        for envs in self._idle.values():
            for env in envs:
                env.close()
        self._idle.clear()


# -- remote ---------------------------------------------------------------------------


class _Server:
    """One server of a :class:`RemoteEnvs` pool: its client, its load, whether it died.

    Attributes:
        url: The base URL.
        client: Its client.
        open: Sessions of this pool open on it now (episodes and forks): the load
            that :meth:`RemoteEnvs.open` spreads.
        dead: A call found it gone (refused, reset, socket closed); no episode opens
            on it until it answers again.
        listed: Whether the latest discovery listed it (always, without discovery).
    """

    def __init__(self, url: str, client: AsyncEnvClient) -> None:
        self.url, self.client = url, client
        self.open = 0
        self.dead = False
        self.listed = True


def _gone(error: BaseException) -> bool:
    """Whether ``error`` means the server is gone (no answer at all), not a refusal."""
    return isinstance(error, ServerUnavailableError) and error.status == 0


class _RemoteEpisode(EpisodeEnv):
    def __init__(
        self,
        pool: RemoteEnvs,
        server: _Server,
        session: AsyncSession,
        slot: asyncio.Semaphore | None,
        task_id: TaskId,
        seed: int,
        actions: list[str] | None = None,
    ) -> None:
        self._pool, self._server = pool, server
        self.env_id, self._session = session.env_id, session
        self.observation, self.info = session.observation, session.info
        self._slot = slot
        self.task_id, self.seed = task_id, seed
        self.actions = actions if actions is not None else []
        self._open = True  # its server's ``open`` counts it (made so by the opener)

    def _lost(self, error: ServerUnavailableError) -> ReplicaLostError:
        """Mark the server dead; the error that tells the engine to replay the episode."""
        self._pool._mark_dead(self._server)
        return ReplicaLostError(
            f"{error.detail} (the episode's server {self._server.url} is gone)", status=0
        )

    async def step(self, action: str) -> Step:
        try:
            result = await self._session.step(action)
        except ServerUnavailableError as error:
            if _gone(error):
                raise self._lost(error) from error
            raise
        self.actions.append(action)
        self.observation, self.info = result.observation, result.info
        return result

    async def expert_action(self) -> str:
        try:
            return await self._session.expert_action()
        except ServerUnavailableError as error:
            if _gone(error):
                raise self._lost(error) from error
            raise

    async def random_action(self, seed: int) -> str:
        try:
            return await self._session.random_action(seed)
        except ServerUnavailableError as error:
            if _gone(error):
                raise self._lost(error) from error
            raise

    async def fork(self) -> EpisodeEnv:
        pool, server = self._pool, self._server
        capacity = (await pool.spec(self.env_id)).capacity
        slot = await pool._slots.take_now((server.url, self.env_id), capacity, self.env_id)
        try:
            if pool._fork == "replay":
                # Client-side replay: what a client without the fork route would do.
                twin = await server.client.create(self.env_id, task_id=self.task_id, seed=self.seed)
                try:
                    for action in self.actions:
                        await twin.step(action)
                except BaseException:
                    await twin.close()
                    raise
            else:
                # The server restores a snapshot, or replays where the env has none.
                twin = await self._session.fork()
        except BaseException as error:
            if slot is not None:
                slot.release()
            if isinstance(error, ServerUnavailableError) and _gone(error):
                raise self._lost(error) from error
            raise
        twin.observation, twin.info = self.observation, dict(self.info)
        server.open += 1
        return _RemoteEpisode(pool, server, twin, slot, self.task_id, self.seed, list(self.actions))

    async def close(self) -> None:
        """Close the session; a server found gone meanwhile took it along (no error).

        Never raising for a gone server matters: the engine closes an episode after
        its last step, and a server dying in between must not lose the finished one.
        """
        if not self._open:
            return
        self._open = False
        try:
            await self._session.close()
        except ServerUnavailableError as error:
            if not _gone(error):
                raise
            self._pool._mark_dead(self._server)
        finally:
            self._server.open -= 1
            if self._slot is not None:
                slot, self._slot = self._slot, None
                slot.release()


class RemoteEnvs(EnvPool):
    """Sessions on palaestra servers, spread by load, moved off servers that die.

    Each episode's session runs on its own WebSocket (``/v1/ws``), several times
    faster than one HTTP request per step; ``transport="http"`` uses plain requests.
    At most an env's advertised ``capacity`` of sessions is open on each server at
    once; further episodes wait for a slot (and a 429 that still comes, e.g. while
    another client fills the server, is waited out by the client).

    **Load.** A new episode opens on the live server with the fewest sessions of
    this pool open (ties go round-robin by the episode's ``index``, so a fixed set
    of servers gets episode ``i`` on ``urls[i % len(urls)]`` while all are equally
    busy).

    **Dead servers.** A call that finds its server gone (connection refused or
    reset, the socket closed: :class:`~palaestra.errors.ServerUnavailableError`
    with status 0) marks the server dead and raises
    :class:`~palaestra.errors.ReplicaLostError`; the rollout engine then plays the
    episode again from the start on another server (see
    :class:`~palaestra.agents.rollout.RolloutStats` ``restarted``). No episode opens
    on a dead server, except as a last try when no other is left (it may be back on
    the same URL). Episodes that finished are never touched.

    **Discovery.** ``discover``, when given, returns the current server URLs (e.g.
    :func:`palaestra.scale.remote_envs` asks the Ray registry of ``palaestra serve
    --ray``). The pool calls it (in a thread: it may block) when it has no URLs
    yet, and after a server died, about once a second while the discovered list
    still names a dead server, until a replacement is listed. While no server is
    live it waits up to ``failover_timeout`` seconds for one to appear. Without
    ``discover`` the URL list is fixed and a pool whose servers are all dead fails
    at once.

    A fork is a session on the same server as its parent, made by the server's
    fork route (``POST /v1/sessions/{id}/fork``, or the ``fork`` op on the socket):
    the server restores a snapshot, or replays the session's actions where the
    env has none.

    Args:
        urls: Base URLs of servers that all serve the envs of the run (may be empty
            when ``discover`` is given).
        token: Bearer token (default: the ``PALAESTRA_TOKEN`` env variable).
        transport: ``"websocket"`` (default) or ``"http"``.
        fork: ``"auto"``: forks use the server's fork route; ``"replay"``: forks
            open a new session on the same task and seed and step the parent's
            actions again from this client (to compare).
        discover: Returns the current server URLs; called from a worker thread.
        failover_timeout: Seconds to wait for a live server (with ``discover``).
    """

    def __init__(
        self,
        urls: Sequence[str] = (),
        token: str | None = None,
        transport: Literal["http", "websocket"] = "websocket",
        fork: Literal["auto", "replay"] = "auto",
        *,
        discover: Callable[[], Sequence[str]] | None = None,
        failover_timeout: float = 120.0,
    ) -> None:
        if not urls and discover is None:
            raise ValueError("RemoteEnvs needs at least one server URL, or discover")
        if fork not in ("auto", "replay"):
            raise ValueError(f"fork is 'auto' or 'replay', not {fork!r}")
        self._fork = fork
        self._token, self._transport = token, transport
        self._discover = discover
        self._failover_timeout = failover_timeout
        self._servers: dict[str, _Server] = {}
        for url in urls:
            self._add(url)
        self._specs: dict[str, EnvSpecInfo] | None = None
        self._slots = _Slots()
        self._refresh_lock: asyncio.Lock | None = None
        self._refreshed_at = -math.inf
        self._discover_error: str | None = None

    # -- servers --------------------------------------------------------------------

    def _add(self, url: str) -> _Server:
        server = self._servers.get(url)
        if server is None:
            client = AsyncEnvClient(url, token=self._token, transport=self._transport)
            server = self._servers[url] = _Server(url, client)
        return server

    @property
    def urls(self) -> list[str]:
        """The URLs of the servers not known dead, in the order they were added."""
        return [s.url for s in self._servers.values() if not s.dead]

    def _mark_dead(self, server: _Server) -> None:
        server.dead = True

    def _stale(self) -> bool:
        """Whether discovery still lists a dead server (its replacement is awaited)."""
        return self._discover is not None and any(
            s.dead and s.listed for s in self._servers.values()
        )

    async def _refresh(self, *, every: float = 1.0) -> None:
        """Ask ``discover`` for the current URLs (at most once per ``every`` seconds)."""
        if self._discover is None:
            return
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            loop = asyncio.get_running_loop()
            if loop.time() - self._refreshed_at < every:
                return
            try:
                found = list(await asyncio.to_thread(self._discover))
            except Exception as error:  # the registry may be restarting: try again later
                self._discover_error = f"{type(error).__name__}: {error}"
                found = None
            self._refreshed_at = loop.time()
            if found is None:
                return
            self._discover_error = None
            for server in self._servers.values():
                server.listed = server.url in found
            for url in found:
                self._add(url).listed = True

    async def _live(self) -> list[_Server]:
        """The live servers, after discovery when there are none yet or a death is unsettled."""
        if not self._servers or self._stale():
            await self._refresh(every=0.0 if not self._servers else 1.0)
        live = [s for s in self._servers.values() if not s.dead]
        if live or self._discover is None:
            return live
        deadline = asyncio.get_running_loop().time() + self._failover_timeout
        while not live and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            await self._refresh(every=0.5)
            live = [s for s in self._servers.values() if not s.dead]
        return live

    async def _pick(self, index: int, tried: set[str]) -> _Server | None:
        """The least-loaded live server not ``tried``; else a dead one to try; else None."""
        live = [s for s in await self._live() if s.url not in tried]
        if not live:
            # Last resort: a server found dead may be back on the same URL.
            live = [s for s in self._servers.values() if s.url not in tried]
        if not live:
            return None
        order = {url: i for i, url in enumerate(self._servers)}
        n = len(order)
        return min(live, key=lambda s: (s.open, (order[s.url] - index) % n))

    async def _ask(self, what: str, call: Callable[[AsyncEnvClient], Awaitable[T]]) -> T:
        """``call`` on a live server (another one when a server is found gone)."""
        tried: set[str] = set()
        error: BaseException | None = None
        while (server := await self._pick(0, tried)) is not None:
            try:
                result = await call(server.client)
            except ServerUnavailableError as failure:
                if not _gone(failure):
                    raise
                self._mark_dead(server)
                tried.add(server.url)
                error = failure
                continue
            server.dead = False
            return result
        raise self._no_server(what, error)

    def _no_server(self, what: str, error: BaseException | None) -> ServerUnavailableError:
        if isinstance(error, ServerUnavailableError):
            return error
        why = f" (discovery failed: {self._discover_error})" if self._discover_error else ""
        return ServerUnavailableError(f"no live server for {what}{why}", status=0)

    # -- the pool ---------------------------------------------------------------------

    async def spec(self, env_id: str) -> EnvSpecInfo:
        """From a server's ``GET /v1/envs`` (asked once)."""
        if self._specs is None:
            envs = await self._ask("GET /v1/envs", lambda client: client.envs())
            self._specs = {
                e["id"]: EnvSpecInfo(
                    e["id"],
                    e["instruction"],
                    e["max_steps"],
                    frozenset(e["capabilities"]),
                    e.get("capacity"),  # absent from servers older than it
                )
                for e in envs
            }
        if env_id not in self._specs:
            raise KeyError(
                f"{self.where} does not serve {env_id!r} (it serves {sorted(self._specs)})"
            )
        return self._specs[env_id]

    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        """From a server's ``GET /v1/tasks``."""
        return await self._ask("GET /v1/tasks", lambda client: client.tasks(env_id, split))

    async def open(self, env_id: str, task_id: TaskId, seed: int, index: int) -> EpisodeEnv:
        """A new session on the least-loaded live server, once it has room for one.

        A server found gone while opening is marked dead and the next one is tried.

        Raises:
            ServerUnavailableError: No server could be reached (with ``discover``:
                none appeared within ``failover_timeout``).
        """
        capacity = (await self.spec(env_id)).capacity
        tried: set[str] = set()
        error: BaseException | None = None
        while (server := await self._pick(index, tried)) is not None:
            # Counted from now, not once created: the episodes opening at the same
            # moment must see each other's choice to spread.
            server.open += 1
            try:
                slot = await self._slots.take((server.url, env_id), capacity)
            except BaseException:
                server.open -= 1
                raise
            try:
                session = await server.client.create(env_id, task_id=task_id, seed=seed)
            except ServerUnavailableError as failure:
                server.open -= 1
                if slot is not None:
                    slot.release()
                if not _gone(failure):
                    raise
                self._mark_dead(server)
                tried.add(server.url)
                error = failure
                continue
            except BaseException:
                server.open -= 1
                if slot is not None:
                    slot.release()
                raise
            server.dead = False  # it answered (a last try on a dead one may revive it)
            return _RemoteEpisode(self, server, session, slot, task_id, seed)
        raise self._no_server(f"a {env_id} session", error)

    async def aclose(self) -> None:
        """Close the clients (their sessions are closed by their episodes)."""
        for server in self._servers.values():
            await server.client.aclose()

    @property
    def where(self) -> str:
        """The live server URLs."""
        return ", ".join(self.urls) or "no live server"
