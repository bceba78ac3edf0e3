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
h11 protocol with its ``h11_max_incomplete_event_size``: h11 bounds the head
too, but costs far more. Maze over HTTP at 64 sessions (bench/server_throughput.py's
driver, 2 shared cores, medians of 6 runs): the server spent 335 us of CPU per
step unguarded, 356 us with this guard and 517 us with h11; the protocol layer
alone, 65, 69 and 291 us per request (steps/s medians, 1,046 / 852 / 607, were
within this machine's noise between the first two).

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

    # How often open connections are checked against the header timeout: one timer
    # per server rather than one per request keeps the guard off the hot path.
    sweep_every = min(1.0, limits.header_timeout / 4)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        # Bytes of the request head read so far; None while a body or a response is
        # under way (the head is complete).
        _head_bytes: int | None = 0
        # Loop time the current head began (its first byte, or the connection's
        # opening); None between requests, where the keep-alive timeout rules.
        _head_since: float | None = None
        _sweeping = False  # one sweep per server (this class is made per server)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_since = self.loop.time()  # a connection that never sends a byte
            cls = type(self)
            if not cls._sweeping:
                cls._sweeping = True
                self.loop.call_later(sweep_every, _sweep, cls, self.loop, self.connections)

        def data_received(self, data: bytes) -> None:
            head = self._head_bytes
            if head is not None:
                if self._head_since is None:
                    self._head_since = self.loop.time()
                self._head_bytes = head + len(data)
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
            self._head_bytes = self._head_since = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._head_bytes = 0  # what comes next is the next request's head

    def _sweep(cls: type, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        # Close connections whose request head has taken longer than the timeout.
        deadline = loop.time() - limits.header_timeout
        for connection in list(connections):
            since = getattr(connection, "_head_since", None)  # WebSockets have none
            if since is not None and since < deadline and not connection.transport.is_closing():
                connection.transport.close()
        if connections:
            loop.call_later(sweep_every, _sweep, cls, loop, connections)
        else:
            cls._sweeping = False

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
