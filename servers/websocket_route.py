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

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from palaestra.servers import json_codec
from palaestra.servers.operations import Operations
from palaestra.servers.protocol import SOCKET_PATH
from palaestra.servers.sessions import ApiError, Session
from palaestra.servers.wire import SocketRequest

__all__ = ["add_socket_route"]

log = logging.getLogger("palaestra.server")


def _reply(request_id: int | None, result: Any) -> str:
    return json_codec.dumps_text({"id": request_id, "ok": True, "result": result})


def _error(request_id: int | None, status: int, error: str, detail: str) -> str:
    return json_codec.dumps_text(
        {"id": request_id, "ok": False, "status": status, "error": error, "detail": detail}
    )


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
            raise ApiError(409, "no_session", "the first request on a socket is create or attach")
        return self.session

    async def handle(self, request: SocketRequest) -> Any:
        """The ``result`` of one request (or an :class:`ApiError`)."""
        ops, op = self.ops, request.op
        if op in ("create", "attach"):
            if self.session is not None:
                raise ApiError(409, "session_bound", f"this socket serves {self.session.id}")
            if op == "create":
                if request.env is None:
                    raise ApiError(422, "invalid_request", "env: field required")
                self.session, created = await ops.create(request.env, request.task_id, request.seed)
                self.owned = True
                return created
            if request.session_id is None:
                raise ApiError(422, "invalid_request", "session_id: field required")
            self.session = ops.store.get(request.session_id)
            return ops.status(self.session)
        session = self.current()
        if op == "step":
            if request.action is None:
                raise ApiError(422, "invalid_request", "action: field required")
            return await ops.step(session, request.action)
        if op == "reset":
            return await ops.reset(session, request.task_id, request.seed)
        if op == "fork":
            return await ops.fork(session)
        if op == "expert":
            return await ops.expert(session)
        if op == "random_action":
            if request.seed is None or request.seed >= 2**63:
                raise ApiError(422, "invalid_request", "seed: an integer in [0, 2**63) required")
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


def add_socket_route(app: FastAPI, ops: Operations) -> None:
    """Add ``WS /v1/ws`` to ``app``, serving sessions of ``ops``' store."""
    max_bytes = ops.store.settings.max_body_bytes

    @app.websocket(SOCKET_PATH)
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        state = _SocketSession(ops)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                if len(text) > max_bytes:
                    answer = _error(None, 413, "body_too_large", f"message over {max_bytes} bytes")
                else:
                    answer = await _answer(state, text)
                await websocket.send_text(answer)  # json_codec escapes lone surrogates
        except WebSocketDisconnect:
            pass  # the client went away, maybe mid-request: nothing to answer
        except RuntimeError as error:
            # Starlette raises RuntimeError when sending on a socket the client closed.
            log.debug("websocket closed under us: %s", error)
        finally:
            try:
                await state.release()
            except Exception:  # never let cleanup raise out of the handler
                log.exception("closing the session of a dropped socket failed")


async def _answer(state: _SocketSession, text: str) -> str:
    try:
        request = SocketRequest.model_validate_json(text)
    except ValidationError as error:
        request_id = _request_id(text)
        return _error(request_id, 422, "invalid_request", _invalid(error))
    try:
        return _reply(request.id, await state.handle(request))
    except ApiError as error:
        state.ops.metrics.errors.labels(error.error).inc()
        return _error(request.id, error.status, error.error, error.detail)
    except Exception as error:  # a bug of ours: answer it, keep the socket and the server
        log.exception("websocket request failed")
        state.ops.metrics.errors.labels("internal").inc()
        return _error(
            request.id, 500, "internal", f"internal server error ({type(error).__name__})"
        )


def _request_id(text: str) -> int | None:
    # The id of a request that failed validation, when it can be read at all.
    try:
        data = json_codec.loads(text)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
