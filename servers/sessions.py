"""Sessions: one env instance each, its lock, its history, and the store that reaps them.

Env code runs on a thread pool, except for envs that declare ``fast_calls``
(microsecond steps, no I/O), which run on the event loop to save the thread hop;
each session has an ``asyncio.Lock`` so its calls run one at a time. A call that raises marks its
session broken; one that exceeds the per-call timeout is abandoned (the thread
finishes on its own) and its session is marked broken too. A broken session
answers 409 until it is reset (which builds a fresh env) or deleted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gymnasium
import numpy as np

from palaestra.envs import TaskId, TextEnv
from palaestra.envs.registration import env_class
from palaestra.errors import (
    CapacityError,
    EnvFailedError,
    EpisodeOverError,
    NotSupportedError,
    PalaestraError,
    SessionBrokenError,
    SessionNotFoundError,
    StepTimeoutError,
    UnknownEnvError,
)

__all__ = ["Session", "SessionStore", "Settings"]

log = logging.getLogger("palaestra.server")
T = TypeVar("T")

# INLINE_STRIKES env calls in a row longer than this on the event loop send the env
# to the thread pool.
INLINE_LIMIT_SECONDS = 0.05
INLINE_STRIKES = 3


@dataclass
class Settings:
    """Server limits (the ``palaestra serve`` flags).

    Attributes:
        max_sessions: Open sessions allowed at once; one more is answered 429.
        session_ttl: Seconds a session may idle before the reaper closes it.
        step_timeout: Seconds one env call may take before it is answered 504.
        max_action_chars: Longest accepted action; longer is answered 422.
        max_body_bytes: Largest accepted request body; larger is answered 413.
        threads: Size of the thread pool that runs env code.
        token: Bearer token required on every route but /health (None = open).
        allowed_origins: Web origins (``scheme://host[:port]``, ``"*"`` for any) whose
            pages may open ``/v1/ws``; a browser's upgrade from any other origin is
            refused with 403, except from the server's own loopback origin.
            Programs send no ``Origin`` and are not affected.
    """

    max_sessions: int = 4096
    session_ttl: float = 600.0
    step_timeout: float = 30.0
    max_action_chars: int = 4096
    max_body_bytes: int = 64 * 1024
    threads: int = 16
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()


@dataclass
class Session:
    """One client's env and what the server knows of it."""

    id: str
    env_id: str
    env: TextEnv
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    broken: str | None = None
    task_id: TaskId | None = None
    seed: int | None = None
    actions: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True once the episode terminated or was truncated."""
        return self.env.over


class SessionStore:
    """All open sessions of one server, the thread pool they run on, and the reaper."""

    def __init__(self, env_ids: list[str], settings: Settings) -> None:
        self.settings = settings
        self.classes: dict[str, type[TextEnv]] = {env_id: env_class(env_id) for env_id in env_ids}
        self.sessions: dict[str, Session] = {}
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="palaestra-env")
        self._reaper: asyncio.Task[None] | None = None
        self._reserved = 0  # sessions being created, counted against the cap
        # Each env's declared capacity (None = unbounded), read once here, and the
        # sessions of it held or being made: one beyond it is answered 429 at once
        # rather than left to block a pool thread waiting for a slot.
        self.capacity: dict[str, int | None] = {
            env_id: cls.capacity for env_id, cls in self.classes.items()
        }
        self._held: dict[str, int] = dict.fromkeys(self.classes, 0)
        # Envs that build a task's data on first use (they override prepare_task):
        # that runs on its own threads, outside the per-call timeout (see _reset).
        self._prepares = {
            env_id
            for env_id, cls in self.classes.items()
            if getattr(cls.prepare_task, "__func__", None) is not TextEnv.prepare_task.__func__
        }
        self._prepare_pool = ThreadPoolExecutor(
            max(2, os.cpu_count() or 2), thread_name_prefix="palaestra-prepare"
        )
        # Envs whose calls run on the event loop (they declare fast_calls).
        self._inline = {env_id for env_id, cls in self.classes.items() if cls.fast_calls}
        self._strikes: dict[str, int] = {}
        self._ids = _SessionIds()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the idle-session reaper and freeze the loaded heap (call from the running loop).

        Freezing (``gc.freeze``) moves every object alive now out of the garbage
        collector's generations until :meth:`stop`.
        """
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())
        # What is loaded by now (modules, classes, the app: ~100k objects) lives as
        # long as the server. A full garbage collection would walk it every time, and
        # the event loop, so every session, waits it out: ~100 ms each on a 2-core
        # machine, the p99 of BabyAI over the socket route. Frozen, it is not walked.
        gc.freeze()

    async def stop(self) -> None:
        """Stop the reaper, close every env, and shut the pool down."""
        gc.unfreeze()  # a process that outlives its server (tests) collects as usual
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for session in list(self.sessions.values()):
            await self.close(session)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)

    # -- running env code -----------------------------------------------------------

    async def run(
        self, session: Session | None, fn: Callable[[], T], *, env_id: str | None = None
    ) -> T:
        """Run ``fn`` (env code) and turn its failures into the errors a client sees.

        Envs that declare ``fast_calls`` run on the event loop (no thread hop); the
        rest run on the pool under the per-call timeout. A :class:`PalaestraError`
        below 500 (episode over, unknown task, not supported, env busy) is the
        caller's and passes through untouched; anything else the env raises is
        an :class:`EnvFailedError` and breaks the session.

        Args:
            session: The session whose env runs (marked broken when it fails).
            fn: The env call.
            env_id: The env, when there is no session yet (making one).
        """
        env_id = env_id if env_id is not None else session.env_id if session else ""
        try:
            if env_id in self._inline:
                started = time.perf_counter()
                result = fn()
                self._check_inline(env_id, time.perf_counter() - started)
                return result
            future = asyncio.get_running_loop().run_in_executor(self.pool, fn)
            return await asyncio.wait_for(future, self.settings.step_timeout)
        except PalaestraError as error:
            if 0 < error.status < 500:
                raise
            failure: Exception = error
        except TimeoutError:
            if session is not None:
                session.broken = f"an env call exceeded the {self.settings.step_timeout:g}s timeout"
            raise StepTimeoutError(
                f"the env call took longer than {self.settings.step_timeout:g}s; "
                "the session is marked broken (reset or delete it)"
            ) from None
        except Exception as error:
            failure = error
        log.exception("env error in session %s", session.id if session else "-", exc_info=failure)
        if session is not None:
            session.broken = f"{type(failure).__name__}: {failure}"
        raise EnvFailedError(
            f"the env raised {type(failure).__name__}: {failure}; the session is marked broken"
        ) from None

    def _check_inline(self, env_id: str, seconds: float) -> None:
        # A "fast" env that blocks the loop goes to the pool for good. One slow call
        # can be a garbage collection that ran inside it, or the process descheduled
        # on a busy machine, so it takes INLINE_STRIKES slow calls in a row. (Wall
        # time: the thread's CPU clock is a system call, too dear to read per step.)
        if seconds <= INLINE_LIMIT_SECONDS:
            if self._strikes:
                self._strikes.pop(env_id, None)
            return
        self._strikes[env_id] = strikes = self._strikes.get(env_id, 0) + 1
        if strikes >= INLINE_STRIKES:
            self._inline.discard(env_id)
            log.warning(
                "%s declares fast_calls but %d calls in a row took over %.0f ms (the last "
                "%.0f ms); its calls now run on the thread pool",
                env_id,
                strikes,
                INLINE_LIMIT_SECONDS * 1e3,
                seconds * 1e3,
            )

    # -- sessions -------------------------------------------------------------------

    def env_class_of(self, env_id: str) -> type[TextEnv]:
        """The class served as ``env_id``, or a 422 naming the served envs."""
        try:
            return self.classes[env_id]
        except KeyError:
            served = ", ".join(sorted(self.classes))
            raise UnknownEnvError(f"env {env_id!r} is not served here; served: {served}") from None

    def get(self, session_id: str) -> Session:
        """The open session ``session_id``, or a 404."""
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFoundError(
                f"no session {session_id!r} (never created, deleted, or reaped after "
                f"{self.settings.session_ttl:g}s idle)",
            )
        return session

    async def create(
        self, env_id: str, task_id: TaskId | None, seed: int | None
    ) -> tuple[Session, str, dict[str, Any]]:
        """Open a session on ``env_id`` and reset it; 429 when full."""
        cls = self.env_class_of(env_id)
        if len(self.sessions) + self._reserved >= self.settings.max_sessions:
            raise CapacityError(
                f"the server holds its maximum of {self.settings.max_sessions} sessions; "
                "close some or retry later",
            )
        self._claim(env_id)
        self._reserved += 1
        try:
            env = await self.run(None, lambda: _make_env(env_id, cls), env_id=env_id)
            session = Session(id=self._ids.next(), env_id=env_id, env=env)
            try:
                observation, info = await self._reset(session, task_id, seed)
            except BaseException:
                self.pool.submit(env.close)
                raise
            self.sessions[session.id] = session
        except BaseException:
            self._held[env_id] -= 1
            raise
        finally:
            self._reserved -= 1
        return session, observation, info

    def _claim(self, env_id: str) -> None:
        """Count one more session of ``env_id``; 429 when its declared capacity is reached."""
        capacity = self.capacity[env_id]
        if capacity is not None and self._held[env_id] >= capacity:
            raise CapacityError(
                f"all {capacity} sessions that {env_id} can hold here are open; "
                f"retry in {CapacityError.retry_after}s"
            )
        self._held[env_id] += 1

    async def reset(
        self, session: Session, task_id: TaskId | None, seed: int | None
    ) -> tuple[str, dict[str, Any]]:
        """Reset ``session`` (a broken one gets a fresh env first)."""
        if session.broken is not None:
            old = session.env
            cls = self.classes[session.env_id]
            if self.capacity[session.env_id] is not None:
                # The old env holds one of the env's slots: free it before the new
                # one takes its place, or a full pool would refuse the replacement.
                await asyncio.get_running_loop().run_in_executor(self.pool, old.close)
            session.env = await self.run(
                None, lambda: _make_env(session.env_id, cls), env_id=session.env_id
            )
            session.broken = None
            self.pool.submit(old.close)
        return await self._reset(session, task_id, seed)

    async def _reset(
        self, session: Session, task_id: TaskId | None, seed: int | None
    ) -> tuple[str, dict[str, Any]]:
        options = None if task_id is None else {"task_id": task_id}
        if task_id is not None and session.env_id in self._prepares:
            await self._prepare(session.env_id, task_id)
        observation, info = await self.run(
            session, lambda: session.env.reset(seed=seed, options=options)
        )
        session.task_id = info.get("task_id")
        session.seed = seed
        session.actions = []
        return observation, info

    async def _prepare(self, env_id: str, task_id: TaskId) -> None:
        # A game generated on first use takes seconds, many at once far longer on a
        # busy machine: that is work, not a hung env, so it runs before the timed
        # reset, without the per-call timeout (the env bounds its own generation),
        # and on threads of its own so that it never holds up other sessions' steps.
        # A failure here is left to the reset, which reports it as its own.
        cls = self.classes[env_id]
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._prepare_pool, cls.prepare_task, task_id
            )
        except Exception as error:
            log.warning("preparing %s task %r failed: %s", env_id, task_id, error)

    async def step(
        self, session: Session, action: str
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """One step of ``session``'s env."""
        self.check_usable(session)
        if session.env.over:
            raise EpisodeOverError(
                f"the episode of task {session.task_id!r} is over after "
                f"{session.env.steps} steps; reset the session to play again",
            )
        result = await self.run(session, lambda: session.env.step(action))
        session.actions.append(action)
        return result

    async def fork(self, session: Session) -> tuple[Session, str]:
        """A new session in the same state: by snapshot/restore, else by replay."""
        self.check_usable(session)
        if session.task_id is None:
            raise EpisodeOverError("the session has no episode to fork; reset first")
        if len(self.sessions) + self._reserved >= self.settings.max_sessions:
            raise CapacityError(f"the server holds its maximum of {self.settings.max_sessions}")
        cls = self.classes[session.env_id]
        method = "snapshot" if "snapshot" in cls.capabilities() else "replay"

        def clone() -> TextEnv:
            env = _make_env(session.env_id, cls)
            if method == "snapshot":
                env.reset(seed=session.seed, options={"task_id": session.task_id})
                env.restore(session.env.snapshot())
            else:
                env.reset(seed=session.seed, options={"task_id": session.task_id})
                for action in session.actions:
                    env.step(action)
            return env

        self._claim(session.env_id)
        self._reserved += 1
        try:
            env = await self.run(session, clone)
        except BaseException:
            self._held[session.env_id] -= 1
            raise
        finally:
            self._reserved -= 1
        twin = Session(
            id=self._ids.next(),
            env_id=session.env_id,
            env=env,
            task_id=session.task_id,
            seed=session.seed,
            actions=list(session.actions),
        )
        self.sessions[twin.id] = twin
        return twin, method

    async def expert(self, session: Session) -> str:
        """The env expert's next action for ``session``."""
        self.check_usable(session)
        if "expert" not in self.classes[session.env_id].capabilities():
            raise NotSupportedError(f"{session.env_id} has no expert")
        if session.task_id is None or session.env.over:
            raise EpisodeOverError("the episode is over; reset first")
        return await self.run(session, session.env.expert_action)

    async def random_action(self, session: Session, seed: int) -> str:
        """A uniformly random valid action of ``session``'s env, drawn from ``seed``.

        The env draws from ``numpy.random.default_rng(seed)``, as in-process, so
        the same seed and state give the same action on both sides.
        """
        self.check_usable(session)
        if "random_action" not in self.classes[session.env_id].capabilities():
            raise NotSupportedError(f"{session.env_id} cannot draw a random action")
        if session.task_id is None or session.env.over:
            raise EpisodeOverError("the episode is over; reset first")
        rng = np.random.default_rng(seed)
        return await self.run(session, lambda: session.env.random_action(rng))

    async def close(self, session: Session) -> None:
        """Forget ``session`` and close its env (on the pool)."""
        if self.sessions.pop(session.id, None) is not None:
            self._held[session.env_id] -= 1
            with contextlib.suppress(Exception):
                if session.env_id in self._inline:
                    session.env.close()
                else:
                    await asyncio.get_running_loop().run_in_executor(self.pool, session.env.close)

    def check_usable(self, session: Session) -> None:
        """409 when ``session`` is broken."""
        if session.broken is not None:
            raise SessionBrokenError(
                f"session {session.id} is broken ({session.broken}); reset or delete it",
            )

    # -- reaper ---------------------------------------------------------------------

    async def reap(self) -> int:
        """Close every session idle for longer than the TTL; returns how many."""
        deadline = time.monotonic() - self.settings.session_ttl
        stale = [
            s for s in self.sessions.values() if s.last_used < deadline and not s.lock.locked()
        ]
        for session in stale:
            await self.close(session)
        if stale:
            log.info("reaped %d idle sessions", len(stale))
        return len(stale)

    async def _reap_forever(self) -> None:
        interval = min(30.0, max(0.05, self.settings.session_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:  # the reaper must outlive any one bad close
                log.exception("reaper failed")


def _make_env(env_id: str, cls: type[TextEnv]) -> TextEnv:
    env = gymnasium.make(env_id).unwrapped
    if not isinstance(env, cls):
        raise TypeError(f"{env_id} built a {type(env).__name__}, expected {cls.__name__}")
    return env


class _SessionIds:
    """Unguessable session ids (128 random bits, URL-safe), from a buffer of os.urandom.

    One system call per 256 ids instead of one per id: ``os.urandom`` releases the
    GIL, and taking it back on the event loop can wait a whole switch interval
    (5 ms) behind a busy env thread.
    """

    _BYTES = 16
    _BATCH = 256

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def next(self) -> str:
        """A new id."""
        if self._offset + self._BYTES > len(self._buffer):
            self._buffer, self._offset = os.urandom(self._BYTES * self._BATCH), 0
        chunk = self._buffer[self._offset : self._offset + self._BYTES]
        self._offset += self._BYTES
        return base64.urlsafe_b64encode(chunk).rstrip(b"=").decode()
