"""The FastAPI app that serves any set of registered text envs.

``create_app(["palaestra/Maze-v0", ...], Settings(...))`` gives an ASGI app with
the routes of DESIGN.md; ``palaestra serve`` runs it under uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from palaestra.envs.registration import list_envs
from palaestra.errors import (
    WIRE_ERRORS,
    BadRequestError,
    BodyTooLargeError,
    CapacityError,
    PalaestraError,
    ServerError,
    UnauthorizedError,
    UnknownSplitError,
)
from palaestra.servers import json_codec
from palaestra.servers.auth import bearer_matches, origin_allowed
from palaestra.servers.limits import read_capped_body
from palaestra.servers.metrics import Metrics
from palaestra.servers.operations import Operations
from palaestra.servers.protocol import SOCKET_PATH
from palaestra.servers.sessions import SessionStore, Settings
from palaestra.servers.websocket_route import SocketApp
from palaestra.servers.wire import (
    CreateSession,
    EnvSpec,
    ExpertAction,
    Forked,
    Health,
    Problem,
    RandomAction,
    ResetRequest,
    ResetResult,
    SessionCreated,
    SessionStatus,
    StepRequest,
    StepResult,
    TaskList,
)

__all__ = ["create_app"]


def _documented_errors() -> dict[int | str, dict[str, Any]]:
    # The OpenAPI responses, from palaestra.errors' table: each status with its codes.
    codes: dict[int, list[str]] = {}
    for code, cls in WIRE_ERRORS.items():
        codes.setdefault(cls.status, []).append(code)
    return {
        status: {"model": Problem, "description": "error: " + ", ".join(sorted(names))}
        for status, names in sorted(codes.items())
    }


def json_response(body: Any, status: int = 200) -> Response:
    r"""``body`` as compact UTF-8 JSON (bodies are built as dicts; no model round trip).

    A lone surrogate (the JSON escape ``"\ud800"`` decodes to one, and an env may
    echo it) has no UTF-8 form: it goes out as that same escape, which the client
    decodes back to the string the env returned.
    """
    return Response(json_codec.dumps(body), status_code=status, media_type="application/json")


def problem(status: int, error: str, detail: str) -> Response:
    """A JSON problem response (the body of every error)."""
    return json_response({"status": status, "error": error, "detail": detail}, status)


def problem_for(error: PalaestraError) -> Response:
    """The answer to ``error``: its class's status and code (palaestra.errors' table)."""
    status = error.status if 400 <= error.status < 600 else 500
    response = problem(status, error.code, error.detail)
    if isinstance(error, CapacityError):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


class _Guard:
    """Pure ASGI middleware: the token, the body-size cap, and the socket hand-off.

    The bearer token is required on every route but /health; ``/v1/ws`` goes to
    the socket app, unless its upgrade carries a foreign ``Origin`` (a web page:
    see :func:`~palaestra.servers.auth.origin_allowed`), refused with 403.

    Written as raw ASGI rather than ``BaseHTTPMiddleware`` to stay off the hot
    path's cost (no extra task or stream wrapping per request). The token guards
    the WebSocket too (its upgrade request is refused with 403 before it is
    accepted). Bodies over the cap are refused with 413 before they are read when
    a Content-Length announces them, and as soon as the cap is passed otherwise
    (chunked bodies), so a huge body never sits in memory.
    """

    def __init__(self, app: ASGIApp, settings: Settings, socket_app: ASGIApp) -> None:
        self.app = app
        self.settings = settings
        self.socket_app = socket_app
        self.expected = settings.token.encode() if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if kind == "websocket" and not origin_allowed(
            headers.get(b"origin", b"").decode("latin-1"),
            headers.get(b"host", b"").decode("latin-1"),
            self.settings.allowed_origins,
        ):
            # Closing before accepting answers the upgrade with HTTP 403.
            await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
            return
        if self.expected is not None and scope["path"] != "/health":
            given = headers.get(b"authorization", b"")
            if not bearer_matches(given, self.expected):
                if kind == "websocket":
                    # Closing before accepting answers the upgrade with HTTP 403.
                    await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                    return
                status = 401 if not given else 403
                detail = "missing bearer token" if not given else "wrong bearer token"
                response = problem_for(UnauthorizedError(detail, status=status))
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        if kind == "websocket":
            # The session socket goes straight to its raw ASGI app (no per-message
            # framework wrappers); any other WebSocket path gets the router's 403.
            app = self.socket_app if scope["path"] == SOCKET_PATH else self.app
            await app(scope, receive, send)
            return
        cap = self.settings.max_body_bytes
        checked = await read_capped_body(scope, receive, cap)
        if checked is None:
            await _too_large(cap)(scope, receive, send)
            return
        await self.app(scope, checked, send)


def _too_large(cap: int) -> Response:
    return problem_for(BodyTooLargeError(f"request body over {cap} bytes"))


def create_app(env_ids: list[str] | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the HTTP app serving ``env_ids`` (default: every registered palaestra env).

    Args:
        env_ids: Registered env ids to serve.
        settings: Limits and the token; defaults are safe for loopback use.

    Returns:
        The FastAPI app; its ``state.store`` is the :class:`SessionStore`.
    """
    settings = settings or Settings()
    if env_ids is None:
        env_ids = [info.id for info in list_envs() if info.unavailable is None]
    store = SessionStore(list(env_ids), settings)
    metrics = Metrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.start()
        try:
            yield
        finally:
            await store.stop()

    app = FastAPI(
        title="palaestra",
        summary="Text environments for LLM agents, behind one gymnasium-style HTTP API.",
        version="1",
        lifespan=lifespan,
        responses=_documented_errors(),
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    ops = Operations(store, metrics)
    app.state.store = store
    app.state.metrics = metrics
    app.add_middleware(_Guard, settings=settings, socket_app=SocketApp(ops))

    @app.exception_handler(PalaestraError)
    async def _palaestra_error(_: Request, error: PalaestraError) -> Response:
        metrics.errors.labels(error.code).inc()
        return problem_for(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> Response:
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {item.get('msg')}")
        metrics.errors.labels(BadRequestError.code).inc()
        return problem_for(BadRequestError("; ".join(parts) or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400:
            # FastAPI's answer to a body json.loads cannot read (not UTF-8, nested too
            # deep, an int of over 4300 digits): a bad body like any other, so a 422.
            metrics.errors.labels(BadRequestError.code).inc()
            return problem_for(
                BadRequestError(
                    "body: not readable as UTF-8 JSON (bad UTF-8, nested too deep, or a number "
                    "too long)"
                )
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        response = problem(error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})  # the Allow of a 405
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> Response:
        # Never a stack trace on the wire; the log has it.
        metrics.errors.labels(ServerError.code).inc()
        return problem_for(ServerError(f"internal server error ({type(error).__name__})"))

    # -- envs -----------------------------------------------------------------------

    @app.get("/v1/envs", response_model=list[EnvSpec], tags=["envs"])
    async def get_envs() -> list[EnvSpec]:
        """The envs served here, with their instructions, splits and capabilities."""
        return [
            EnvSpec(
                id=env_id,
                instruction=cls.instruction,
                splits={name: len(ids) for name, ids in cls.splits.items()},
                max_steps=cls.max_steps,
                capabilities=sorted(cls.capabilities()),
                capacity=store.capacity[env_id],
                tools=list(cls.tools) if "tools" in cls.capabilities() else None,
            )
            for env_id, cls in store.classes.items()
        ]

    @app.get("/v1/tasks", response_model=TaskList, tags=["envs"])
    async def get_tasks(env: str = Query(), split: str = Query()) -> TaskList:
        """The task ids of one split of one env."""
        cls = store.env_class_of(env)
        if split not in cls.splits:
            raise UnknownSplitError(f"{env} has splits {sorted(cls.splits)}")
        return TaskList(env=env, split=split, task_ids=list(cls.splits[split]))

    # -- sessions -------------------------------------------------------------------

    @app.post("/v1/sessions", response_model=SessionCreated, status_code=201, tags=["sessions"])
    async def create_session(body: CreateSession) -> Response:
        """Open a session on an env and reset it."""
        _, created = await ops.create(body.env, body.task_id, body.seed)
        return json_response(created, 201)

    @app.post("/v1/sessions/{session_id}/step", response_model=StepResult, tags=["sessions"])
    async def step(session_id: str, body: StepRequest) -> Response:
        """Apply one action; gymnasium's five-tuple."""
        session = store.get(session_id)
        return json_response(await ops.step(session, ops.action_text(session, body.action)))

    @app.post("/v1/sessions/{session_id}/reset", response_model=ResetResult, tags=["sessions"])
    async def reset(session_id: str, body: ResetRequest | None = None) -> Response:
        """Start a new episode in the session (a broken session gets a fresh env)."""
        body = body or ResetRequest()
        return json_response(await ops.reset(store.get(session_id), body.task_id, body.seed))

    @app.post(
        "/v1/sessions/{session_id}/fork", response_model=Forked, status_code=201, tags=["sessions"]
    )
    async def fork(session_id: str) -> Response:
        """Clone the session into a new, independent one (snapshot/restore, else replay)."""
        return json_response(await ops.fork(store.get(session_id)), 201)

    @app.get("/v1/sessions/{session_id}/expert", response_model=ExpertAction, tags=["sessions"])
    async def expert(session_id: str) -> Response:
        """The next action of the env's scripted expert (where the env declares one)."""
        return json_response(await ops.expert(store.get(session_id)))

    @app.get(
        "/v1/sessions/{session_id}/random_action", response_model=RandomAction, tags=["sessions"]
    )
    async def random_action(
        session_id: str,
        seed: int = Query(ge=0, lt=2**63, description="Seed of the draw (numpy default_rng)."),
    ) -> Response:
        """A uniformly random valid action now (where the env declares ``random_action``).

        The env draws it from ``numpy.random.default_rng(seed)`` without touching its
        own randomness: the same seed in the same state gives the same action, here
        and in-process.
        """
        return json_response(await ops.random_action(store.get(session_id), seed))

    @app.get("/v1/sessions/{session_id}", response_model=SessionStatus, tags=["sessions"])
    async def status(session_id: str) -> Response:
        """Env, task, step count, and whether the episode is done or the session broken."""
        return json_response(ops.status(store.get(session_id)))

    @app.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
    async def delete(session_id: str) -> Response:
        """Close the session and free its env."""
        await ops.close(store.get(session_id))
        return Response(status_code=204)

    # -- operations -------------------------------------------------------------------

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        """Liveness: always open, even when a token is set."""
        return Health(status="ok", sessions=len(store.sessions), envs=sorted(store.classes))

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def get_metrics() -> Response:
        """Prometheus metrics: steps, sessions, errors, step latency."""
        metrics.active.set(len(store.sessions))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
