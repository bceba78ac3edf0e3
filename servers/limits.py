"""Limits every palaestra HTTP server keeps before a request reaches its app.

Both servers (``palaestra serve`` and ``palaestra serve-policy``) run under
uvicorn, whose default HTTP parser (httptools) reads a request head of any size
and waits for it forever. :class:`ConnectionLimits` bounds that:

- ``max_header_bytes``: a request head (request line and headers) larger than
  this is answered 431 and the connection closed, after at most one read past
  the bound (so a 96 MB header never sits in memory);
- ``header_timeout``: a connection must deliver a complete request head within
  this many seconds of its first byte (or of being opened): idle connections
  and slowloris clients are closed;
- ``limit_concurrency``: more connections or running requests than this are
  answered 503 (uvicorn's own limit);
- ``keep_alive``: how long an idle connection is kept between requests.

The guard is a subclass of uvicorn's httptools protocol rather than uvicorn's
h11 protocol with its ``h11_max_incomplete_event_size``: h11 would bound the
head too, but costs far more of the HTTP throughput (bench/attack.py's
docstring has the numbers).

:func:`read_capped_body` is the body-size cap both apps share: a body over the
cap is refused before it is read when a Content-Length announces it, and as
soon as the cap is passed otherwise (chunked bodies).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.types import Message, Receive, Scope

__all__ = ["ConnectionLimits", "bounded_http_protocol", "read_capped_body", "uvicorn_options"]


@dataclass(frozen=True)
class ConnectionLimits:
    """How much of a connection a server accepts before the app sees a request.

    Attributes:
        max_header_bytes: Largest request head (request line and headers); larger is 431.
        header_timeout: Seconds a connection has to send a complete request head,
            counted from its first byte (or from being opened); then it is closed.
        limit_concurrency: Most connections and running requests; more are answered 503.
        keep_alive: Seconds an idle connection is kept open between requests. Longer
            than the clients' pooled-connection expiry (30 s), so a client never
            reuses a connection the server has just closed.
    """

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    limit_concurrency: int = 8192
    keep_alive: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "header_timeout", "limit_concurrency", "keep_alive"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")


_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
)


def bounded_http_protocol(limits: ConnectionLimits) -> type:
    """The httptools protocol of uvicorn with ``limits``' header size and header timeout.

    Args:
        limits: The bounds.

    Returns:
        A protocol class for ``uvicorn.Config(http=...)``.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        # Bytes of the request head read so far; None while a body or a response is
        # under way (the head is complete).
        _head_bytes: int | None = 0
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            reading_head = self._head_bytes is not None
            if reading_head:
                if self._head_timer is None:
                    self._arm()
                self._head_bytes += len(data)  # type: ignore[operator]
            super().data_received(data)
            # Checked after the parser ran, so a head that completed in this read (with
            # a body behind it) is never mistaken for a large head.
            head = self._head_bytes
            if head is not None and head > limits.max_header_bytes:
                if not self.transport.is_closing():
                    message = f"request head over {limits.max_header_bytes} bytes".encode()
                    length = b"content-length: %d\r\n\r\n" % len(message)
                    self.transport.write(_TOO_LARGE + length + message)
                    self.transport.close()

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._head_bytes = 0  # what comes next is the next request's head

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self._head_bytes is not None and not self.transport.is_closing():
                self.transport.close()

    return BoundedHttpToolsProtocol


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The ``uvicorn.Config`` keywords that apply ``limits``."""
    return {
        "http": bounded_http_protocol(limits),
        "limit_concurrency": limits.limit_concurrency,
        "timeout_keep_alive": limits.keep_alive,
    }


async def read_capped_body(scope: Scope, receive: Receive, cap: int) -> Receive | None:
    """Check the body of an HTTP request against ``cap`` bytes, reading no more than that.

    Args:
        scope: The request's ASGI scope.
        receive: Its ASGI receive.
        cap: Largest accepted body.

    Returns:
        None when the body is over the cap (answer 413); otherwise the receive the
        app must use (the body read so far, replayed, then the connection's).
    """
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    if length is not None:
        return receive if length.isdigit() and int(length) <= cap else None
    if b"chunked" not in headers.get(b"transfer-encoding", b""):
        return receive
    # No announced length: read up to the cap here, then replay it to the app.
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if size > cap:
            return None
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    replay = iter(messages)

    async def replayed() -> Message:
        return next(replay, None) or await receive()

    return replayed
