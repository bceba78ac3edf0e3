"""The Play page's API: a proxy from the page to a running ``palaestra serve``.

The browser talks only to the viewer (same origin); the viewer talks to the env
server given by ``--env-url`` with palaestra's own :class:`AsyncEnvClient`, so the
env server's token never reaches the page. The client and its connection pool
live on the app (:class:`Play`, made in the router's lifespan and closed after
it); the viewer keeps the sessions the page opened and deletes them when the
page asks, when more than :data:`MAX_SESSIONS` are open (the oldest goes), and
when the viewer shuts down.

Routes (under ``/api``): ``GET play/envs``, ``GET play/tasks``, ``POST
play/sessions``, ``POST play/sessions/{id}/step``, ``GET
play/sessions/{id}/expert``, ``DELETE play/sessions/{id}``. Errors answer
``{"error": sentence}``: 503 without ``--env-url``, 502 when the env server
cannot be reached or refuses the token, 410 for a session the env server has
closed (reaped when idle, or restarted), 404 for a session this viewer never
opened, and the env server's own 4xx (unknown task, episode over, ...) as is.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from palaestra.errors import (
    PalaestraError,
    RequestTimeoutError,
    ServerUnavailableError,
    SessionNotFoundError,
    UnauthorizedError,
)
from palaestra.servers.async_client import AsyncEnvClient, AsyncSession
from palaestra.servers.protocol import RetryPolicy, Timeouts

__all__ = ["MAX_SESSIONS", "NO_ENV_URL", "Play", "PlayError", "router"]

#: Sessions one viewer keeps open on the env server; opening one more closes the oldest.
MAX_SESSIONS = 32

#: What the page shows when the viewer was started without ``--env-url``.
NO_ENV_URL = (
    "No env server: start one with `palaestra serve palaestra/Maze-v0 --port 8000` and pass "
    "--env-url http://127.0.0.1:8000 to `palaestra view` (and --env-token if it has a token)."
)

T = TypeVar("T")


class PlayError(Exception):
    """An error the page shows as is: ``status`` and a sentence that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PlaySession:
    """One session the page opened: the client's handle and what the page is shown."""

    def __init__(self, handle: AsyncSession, split: str, task_id: Any) -> None:
        self.handle = handle
        self.split = split
        self.task_id = task_id
        self.steps = 0
        self.total_reward = 0.0
        self.done = False


class Play:
    """The viewer's link to one env server: the client, the task lists, the open sessions.

    Args:
        url: The ``palaestra serve`` URL.
        token: Its bearer token (None: an open server).
    """

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        # A person waits on every call: fail a dead server in well under a second
        # (one retry) rather than after the client's whole backoff.
        self.client = AsyncEnvClient(
            self.url,
            token=token or "",
            timeouts=Timeouts(connect=3.0, read=60.0, write=10.0, pool=10.0),
            retry=RetryPolicy(attempts=2, backoff=0.1, busy_wait=5.0),
            max_connections=16,
        )
        self.sessions: OrderedDict[str, PlaySession] = OrderedDict()
        # Task lists do not change during a server's life; a few are kept.
        self._tasks: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()

    async def call(self, awaitable: Awaitable[T], session_id: str | None = None) -> T:
        """Await a client call, turning its errors into sentences for the page."""
        try:
            return await awaitable
        except SessionNotFoundError:
            if session_id is None:
                raise PlayError(404, "the env server has no such session") from None
            self.sessions.pop(session_id, None)
            raise PlayError(
                410,
                f"the env server no longer has session {session_id}: it closes sessions "
                "left idle longer than its session TTL (`palaestra serve --session-ttl`), "
                "and forgets them all when it restarts. Start a new episode.",
            ) from None
        except UnauthorizedError as error:
            raise PlayError(
                502,
                f"the env server at {self.url} refused the viewer's token ({error.detail}): "
                "pass its token to `palaestra view` with --env-token or $PALAESTRA_TOKEN",
            ) from None
        except ServerUnavailableError as error:
            if error.status == 0:
                reason = error.detail.removeprefix(f"cannot reach {self.url}: ")
                raise PlayError(
                    502,
                    f"cannot reach the env server at {self.url}: is `palaestra serve` running "
                    f"there? ({reason})",
                ) from None
            raise PlayError(
                502, f"the env server at {self.url} is unavailable: {error.detail}"
            ) from None
        except RequestTimeoutError as error:
            raise PlayError(
                504, f"the env server at {self.url} did not answer: {error.detail}"
            ) from None
        except PalaestraError as error:
            status = error.status if 400 <= error.status < 500 else 502
            raise PlayError(status, f"{error.detail} ({error.code})") from None

    async def tasks(self, env_id: str, split: str) -> list[Any]:
        """The task ids of one split (asked once per server life)."""
        key = (env_id, split)
        if key not in self._tasks:
            self._tasks[key] = await self.call(self.client.tasks(env_id, split))
            while len(self._tasks) > 16:
                self._tasks.popitem(last=False)
        self._tasks.move_to_end(key)
        return self._tasks[key]

    def session(self, session_id: str) -> PlaySession:
        """A session this viewer opened (404 for any other)."""
        found = self.sessions.get(session_id)
        if found is None:
            raise PlayError(
                404,
                f"no session {session_id} in this viewer: it was closed (New task, "
                f"more than {MAX_SESSIONS} games open, or a viewer restart). Start a new episode.",
            )
        self.sessions.move_to_end(session_id)
        return found

    async def close(self, session_id: str) -> None:
        """Delete one session on the env server (one it has already closed is fine)."""
        play = self.sessions.pop(session_id, None)
        if play is None:
            return
        try:
            await play.handle.close()
        except SessionNotFoundError:
            pass

    async def aclose(self) -> None:
        """Delete every open session, then close the client's connections."""
        try:
            for session_id in list(self.sessions):
                try:
                    await self.close(session_id)
                except PalaestraError:
                    # The env server is down or refuses: its reaper will close the rest.
                    self.sessions.clear()
                    break
        finally:
            await self.client.aclose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Make the client on the viewer's start; close its sessions and pool on its stop."""
    url = getattr(app.state, "env_url", None)
    app.state.play = Play(url, getattr(app.state, "env_token", None)) if url else None
    try:
        yield
    finally:
        if app.state.play is not None:
            await app.state.play.aclose()


router = APIRouter(tags=["play"], lifespan=lifespan)


def play_of(request: Request) -> Play:
    """The app's :class:`Play`, or the 503 that says how to start an env server."""
    play = getattr(request.app.state, "play", None)
    if play is None:
        raise PlayError(503, NO_ENV_URL)
    return play


def error_reply(error: PlayError) -> JSONResponse:
    """The JSON answer to a :class:`PlayError`."""
    return JSONResponse({"error": error.message}, status_code=error.status)


class NewSession(BaseModel):
    """The body of ``POST /api/play/sessions``."""

    env_id: str
    split: str = "test"
    task_id: int | str | None = Field(None, description="None: a random task of the split")
    seed: int | None = None


class Action(BaseModel):
    """The body of ``POST /api/play/sessions/{id}/step``."""

    action: str


@router.get("/play/envs")
async def play_envs(request: Request) -> Response:
    """The served envs and their splits.

    Replies ``{env_url, envs: [{id, description, splits, max_steps, expert,
    available_actions}]}``; without ``--env-url``, ``envs`` is empty and ``setup``
    says how to start an env server.
    """
    if getattr(request.app.state, "play", None) is None:
        return JSONResponse({"env_url": None, "envs": [], "setup": NO_ENV_URL})
    try:
        play = play_of(request)
        specs = await play.call(play.client.envs())
    except PlayError as error:
        return error_reply(error)
    envs = [
        {
            "id": spec["id"],
            "description": spec.get("instruction", ""),
            "splits": spec.get("splits", {}),
            "max_steps": spec.get("max_steps"),
            "expert": "expert" in spec.get("capabilities", []),
            "available_actions": "available_actions" in spec.get("capabilities", []),
        }
        for spec in specs
    ]
    return JSONResponse({"env_url": play.url, "envs": envs})


@router.get("/play/tasks")
async def play_tasks(
    request: Request,
    env: str = Query(),
    split: str = Query("test"),
    offset: int = Query(0, ge=0),
    limit: int = Query(200, ge=1, le=5000),
) -> Response:
    """One page of a split's task ids: ``{env, split, total, offset, task_ids}``."""
    try:
        play = play_of(request)
        ids = await play.tasks(env, split)
    except PlayError as error:
        return error_reply(error)
    return JSONResponse(
        {
            "env": env,
            "split": split,
            "total": len(ids),
            "offset": offset,
            "task_ids": ids[offset : offset + limit],
        }
    )


def _task_of(ids: list[Any], wanted: int | str | None, split: str) -> Any:
    """The task id to open: ``wanted`` as the split spells it, or a random one when None.

    Ids may be ints or strings; the page sends what was typed.
    """
    if wanted is None or wanted == "":
        if not ids:
            raise PlayError(400, f"the split {split!r} has no tasks")
        return random.choice(ids)
    for task_id in ids:
        if task_id == wanted or str(task_id) == str(wanted):
            return task_id
    raise PlayError(400, f"no task {wanted!r} in the split {split!r} ({len(ids)} tasks)")


def _step_reply(play: PlaySession, step: Any) -> dict[str, Any]:
    info = step.info
    play.steps += 1
    play.total_reward += step.reward
    play.done = step.terminated or step.truncated
    return {
        "observation": step.observation,
        "reward": step.reward,
        "terminated": step.terminated,
        "truncated": step.truncated,
        "invalid": bool(info.get("invalid_action", False)),
        "score": info.get("score"),
        "success": info.get("success"),
        "available_actions": info.get("available_actions"),
        "steps": play.steps,
        "total_reward": play.total_reward,
        "info": info,
    }


@router.post("/play/sessions")
async def play_create(request: Request, body: NewSession) -> Response:
    """Open a session on a task (a random one when ``task_id`` is None).

    Replies ``{session, env_id, split, task_id, observation, available_actions, info}``.
    """
    try:
        play = play_of(request)
        task_id = _task_of(await play.tasks(body.env_id, body.split), body.task_id, body.split)
        handle = await play.call(play.client.create(body.env_id, task_id, body.seed))
    except PlayError as error:
        return error_reply(error)
    play.sessions[handle.id] = PlaySession(handle, body.split, task_id)
    while len(play.sessions) > MAX_SESSIONS:
        oldest = next(iter(play.sessions))
        try:
            await play.call(play.close(oldest))
        except PlayError:
            play.sessions.pop(oldest, None)
    return JSONResponse(
        {
            "session": handle.id,
            "env_id": body.env_id,
            "split": body.split,
            "task_id": task_id,
            "observation": handle.observation,
            "available_actions": handle.info.get("available_actions"),
            "info": handle.info,
        }
    )


@router.post("/play/sessions/{session_id}/step")
async def play_step(request: Request, session_id: str, body: Action) -> Response:
    """Apply the page's action.

    Replies ``{observation, reward, terminated, truncated, invalid, score, success,
    available_actions, steps, total_reward, info}``.
    """
    try:
        play = play_of(request)
        session = play.session(session_id)
        step = await play.call(session.handle.step(body.action), session_id)
    except PlayError as error:
        return error_reply(error)
    return JSONResponse(_step_reply(session, step))


@router.get("/play/sessions/{session_id}/expert")
async def play_expert(request: Request, session_id: str) -> Response:
    """The env expert's next action: ``{action}``."""
    try:
        play = play_of(request)
        session = play.session(session_id)
        action = await play.call(session.handle.expert_action(), session_id)
    except PlayError as error:
        return error_reply(error)
    return JSONResponse({"action": action})


@router.delete("/play/sessions/{session_id}")
async def play_delete(request: Request, session_id: str) -> Response:
    """Close a session (one already closed, here or by the env server, is fine): 204."""
    try:
        play = play_of(request)
        await play.call(play.close(session_id))
    except PlayError as error:
        return error_reply(error)
    return Response(status_code=204)
