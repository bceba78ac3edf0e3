"""The WebSocket route ``/v1/ws``: one socket per session, the HTTP API's messages.

A socket saves what every HTTP request pays again (headers, routing, body
validation, a connection-pool round trip): stepping over it is several times
faster (``bench/server_throughput.py``). Requests and replies are
:class:`~palaestra.servers.wire.SocketRequest` / ``SocketReply`` JSON frames,
answered one at a time in order, each reply carrying its request's ``id`` so a
client that gave up waiting can drop a late reply instead of mistaking it for
the next one.

A session created on a socket belongs to it and is closed when the socket
closes, however it closes (client gone mid-message included): a client that
dies leaks nothing. An attached session stays open (the reaper frees it).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from palaestra.errors import (
    BadRequestError,
    BodyTooLargeError,
    CapacityError,
    PalaestraError,
    ServerError,
    SessionConflictError,
)
from palaestra.servers import json_codec
from palaestra.servers.operations import Operations
from palaestra.servers.sessions import Session
from palaestra.servers.wire import SocketRequest

__all__ = ["SocketApp"]

log = logging.getLogger("palaestra.server")


def _reply(request_id: int | None, result: Any) -> str:
    return json_codec.dumps_text({"id": request_id, "ok": True, "result": result})


def _error(request_id: int | None, error: PalaestraError) -> str:
    # The same status, code and detail as the HTTP answer (palaestra.errors' table).
    status = error.status if 400 <= error.status < 600 else 500
    reply = {
        "id": request_id,
        "ok": False,
        "status": status,
        "error": error.code,
        "detail": error.detail,
    }
    if isinstance(error, CapacityError):
        reply["retry_after"] = error.retry_after  # a 429's Retry-After
    return json_codec.dumps_text(reply)


def _invalid(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where or 'message'}: {item.get('msg')}")
    return "; ".join(parts) or "invalid request"


class _SocketSession:
    """The state of one socket: its session (once made) and whether it owns it."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.session: Session | None = None
        self.owned = False

    def current(self) -> Session:
        if self.session is None:
            raise SessionConflictError(
                "no session yet: the first request on a socket is create or attach"
            )
        return self.session

    async def handle(self, request: SocketRequest) -> Any:
        """The ``result`` of one request (or raises a :class:`PalaestraError`)."""
        ops, op = self.ops, request.op
        if op in ("create", "attach"):
            if self.session is not None:
                raise SessionConflictError(f"this socket already serves {self.session.id}")
            if op == "create":
                if request.env is None:
                    raise BadRequestError("env: field required")
                self.session, created = await ops.create(request.env, request.task_id, request.seed)
                self.owned = True
                return created
            if request.session_id is None:
                raise BadRequestError("session_id: field required")
            self.session = ops.store.get(request.session_id)
            return ops.status(self.session)
        session = self.current()
        if op == "step":
            if request.action is None:
                raise BadRequestError("action: field required")
            return await ops.step(session, ops.action_text(session, request.action))
        if op == "reset":
            return await ops.reset(session, request.task_id, request.seed)
        if op == "fork":
            return await ops.fork(session)
        if op == "expert":
            return await ops.expert(session)
        if op == "random_action":
            if request.seed is None:  # its range is the model's
                raise BadRequestError("seed: an integer in [0, 2**63) required")
            return await ops.random_action(session, request.seed)
        if op == "status":
            return ops.status(ops.store.get(session.id))
        # close
        await ops.close(session)
        self.session, self.owned = None, False
        return None

    async def release(self) -> None:
        """Close the owned session (the socket is gone)."""
        if self.session is not None and self.owned:
            await self.ops.close(self.session)
        self.session = None


class SocketApp:
    """The raw ASGI app of ``WS /v1/ws`` (the app's guard hands it the socket).

    Raw ASGI rather than a FastAPI route: every message would otherwise pass
    through Starlette's WebSocket state machine and the send wrappers of the
    exception and telemetry middlewares, a measurable share of a 100 us step.

    Args:
        ops: The operations of the app's session store.
    """

    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.max_bytes = ops.store.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one socket until it closes; then close the session it created."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        state = _SocketSession(self.ops)
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    return
                if kind != "websocket.receive":
                    continue
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                if len(text) > self.max_bytes:
                    # uvicorn closes the socket first (ws_max_size); other servers may not.
                    answer = _error(None, BodyTooLargeError(f"message over {self.max_bytes} bytes"))
                else:
                    answer = await _answer(state, text)
                # json_codec escapes lone surrogates, so the text always encodes.
                await send({"type": "websocket.send", "text": answer})
        except OSError as error:
            # uvicorn's ClientDisconnected: the client went away, maybe mid-request.
            log.debug("websocket closed under us: %s", error)
        finally:
            try:
                await state.release()
            except Exception:  # never let cleanup raise out of the handler
                log.exception("closing the session of a dropped socket failed")


async def _answer(state: _SocketSession, text: str) -> str:
    request_id: int | None = None
    try:
        step = _fast_step(text) if state.session is not None else None
        if step is not None:
            request_id, action = step
            return _reply(request_id, await state.ops.step(state.session, action))
        try:
            request = SocketRequest.model_validate_json(text)
        except ValidationError as error:
            request_id = _request_id(text)
            raise BadRequestError(_invalid(error)) from None
        request_id = request.id
        return _reply(request_id, await state.handle(request))
    except PalaestraError as error:
        state.ops.metrics.errors.labels(error.code).inc()
        return _error(request_id, error)
    except Exception as error:  # a bug of ours: answer it, keep the socket and the server
        log.exception("websocket request failed")
        state.ops.metrics.errors.labels(ServerError.code).inc()
        return _error(request_id, ServerError(f"internal server error ({type(error).__name__})"))


def _fast_step(text: str) -> tuple[int | None, str] | None:
    # The hot path: a well-formed {"id": int, "op": "step", "action": str} skips the
    # pydantic validation (3 us) for a plain parse: its id and action. Anything else
    # (None here) gets the full validation.
    try:
        data = json_codec.loads(text)
    except ValueError:
        return None
    if (
        type(data) is dict
        and data.get("op") == "step"
        and type(data.get("action")) is str
        and type(data.get("id", 0)) is int
        and data.keys() <= _STEP_FIELDS
    ):
        return data.get("id"), data["action"]
    return None


_STEP_FIELDS = frozenset({"id", "op", "action"})


def _request_id(text: str) -> int | None:
    # The id of a request that failed validation, when it can be read at all.
    try:
        data = json_codec.loads(text)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
