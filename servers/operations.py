"""What each API call does, once, for both transports (HTTP routes and the WebSocket).

Every operation takes plain values and returns the JSON-ready body the HTTP
route answers with (the same dict goes out as a WebSocket reply's ``result``),
or raises a :class:`~palaestra.errors.PalaestraError` (answered by its ``status``
and ``code``). Calls on one session take its lock, so they run one at a time
whichever transport they come from.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from palaestra.envs import TaskId
from palaestra.errors import ActionTooLongError, BadRequestError, SessionNotFoundError
from palaestra.servers.metrics import Metrics
from palaestra.servers.sessions import Session, SessionStore
from palaestra.servers.wire import ToolCallBody

__all__ = ["Operations"]

T = TypeVar("T")


class Operations:
    """The session API over one :class:`SessionStore`, with its metrics.

    Args:
        store: The sessions.
        metrics: Where steps, sessions and latencies are counted.
    """

    def __init__(self, store: SessionStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._steps = {env_id: metrics.steps.labels(env_id) for env_id in store.classes}
        self._created = {env_id: metrics.created.labels(env_id) for env_id in store.classes}

    async def locked(self, session: Session, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` holding ``session``'s lock; 404 if it was closed meanwhile."""
        async with session.lock:
            if self.store.sessions.get(session.id) is not session:
                raise SessionNotFoundError(f"session {session.id!r} was closed")
            try:
                return await call()
            finally:
                session.last_used = time.monotonic()

    async def create(
        self, env_id: str, task_id: TaskId | None, seed: int | None
    ) -> tuple[Session, dict[str, Any]]:
        """Open a session and reset it: the session and ``{session_id, observation, info}``."""
        session, observation, info = await self.store.create(env_id, task_id, seed)
        self._created[env_id].inc()
        self.metrics.active.set(len(self.store.sessions))
        return session, {"session_id": session.id, "observation": observation, "info": info}

    def action_text(self, session: Session, action: str | ToolCallBody) -> str:
        """The action string of a step body: a string as is, a tool call object encoded.

        Raises:
            BadRequestError: A tool call object for an env that declares no tools.
        """
        if isinstance(action, str):
            return action
        if "tools" not in self.store.classes[session.env_id].capabilities():
            raise BadRequestError(
                f"{session.env_id} declares no tools: send its action as a string"
            )
        return action.action()

    async def step(self, session: Session, action: str) -> dict[str, Any]:
        """One step: ``{observation, reward, terminated, truncated, info}``."""
        cap = self.store.settings.max_action_chars
        if len(action) > cap:
            raise ActionTooLongError(f"action of {len(action)} characters; the cap is {cap}")
        # What locked() does, written out: this is the hot path of every transport.
        async with session.lock:
            if self.store.sessions.get(session.id) is not session:
                raise SessionNotFoundError(f"session {session.id!r} was closed")
            try:
                started = time.perf_counter()
                observation, reward, terminated, truncated, info = await self.store.step(
                    session, action
                )
                self._steps[session.env_id].inc()
                self.metrics.step_seconds.observe(time.perf_counter() - started)
            finally:
                session.last_used = time.monotonic()
        return {
            "observation": observation,
            "reward": float(reward),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": info,
        }

    async def reset(
        self, session: Session, task_id: TaskId | None, seed: int | None
    ) -> dict[str, Any]:
        """A new episode: ``{observation, info}``."""

        async def run() -> dict[str, Any]:
            observation, info = await self.store.reset(session, task_id, seed)
            return {"observation": observation, "info": info}

        return await self.locked(session, run)

    async def fork(self, session: Session) -> dict[str, Any]:
        """A clone: ``{session_id, method}``."""

        async def run() -> dict[str, Any]:
            twin, method = await self.store.fork(session)
            self._created[session.env_id].inc()
            self.metrics.active.set(len(self.store.sessions))
            return {"session_id": twin.id, "method": method}

        return await self.locked(session, run)

    async def expert(self, session: Session) -> dict[str, Any]:
        """The expert's next action: ``{action}``."""

        async def run() -> dict[str, Any]:
            return {"action": await self.store.expert(session)}

        return await self.locked(session, run)

    async def random_action(self, session: Session, seed: int) -> dict[str, Any]:
        """A random valid action drawn from ``seed``: ``{action}``."""

        async def run() -> dict[str, Any]:
            return {"action": await self.store.random_action(session, seed)}

        return await self.locked(session, run)

    def status(self, session: Session) -> dict[str, Any]:
        """What the server knows of the session (the ``SessionStatus`` body)."""
        return {
            "session_id": session.id,
            "env": session.env_id,
            "task_id": session.task_id,
            "steps": session.env.steps,
            "done": session.done,
            "broken": session.broken,
            "idle_seconds": round(time.monotonic() - session.last_used, 3),
        }

    async def close(self, session: Session) -> None:
        """Close the session (a no-op if it is already closed)."""
        await self.store.close(session)
        self.metrics.active.set(len(self.store.sessions))
