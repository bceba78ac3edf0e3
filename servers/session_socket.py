"""The client end of one session's WebSocket (``/v1/ws``).

One request at a time: each carries a fresh ``id`` and the answer with that id
is its reply. A reply that arrives after its caller gave up (a read timeout, a
cancelled task) is dropped when the next call reads past it, so a timeout never
shifts later answers onto the wrong requests. A socket the server closed (it
restarted, or was killed) turns into :class:`~palaestra.errors.ServerUnavailableError`
at once, never a hang.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from palaestra.errors import RequestTimeoutError, ServerUnavailableError
from palaestra.servers import json_codec
from palaestra.servers.protocol import RetryPolicy, error_for, retry_after_of

__all__ = ["SessionSocket"]

_GONE = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


class SessionSocket:
    """Request/reply calls over one open WebSocket.

    Args:
        ws: The connected socket.
        read_timeout: Seconds to wait for each reply.
        url: The socket's URL (for error messages).
        retry: Its ``busy_wait`` bounds the waiting out of 429 replies (default:
            ``RetryPolicy()``'s).
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        read_timeout: float,
        url: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._ws = ws
        self._read_timeout = read_timeout
        self._url = url
        self._retry = retry or RetryPolicy()
        self._last_id = 0
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return self._ws.closed

    async def call(self, op: str, **fields: Any) -> Any:
        """Send one request (``None`` fields left out) and return its reply's ``result``.

        A 429 reply (the server or the env is full; nothing was applied) is retried
        after the wait it asks for, up to the retry policy's ``busy_wait``.

        Raises:
            PalaestraError: The server answered an error (the class of its code).
            ServerUnavailableError: The socket is closed or broke.
            RequestTimeoutError: No reply within the read timeout (the socket stays usable).
        """
        busy = self._retry.busy_waits()
        while True:
            data = await self._exchange(op, fields)
            if data.get("ok"):
                return data.get("result")
            status = int(data.get("status") or 500)
            if status == 429:
                delay = busy.next(retry_after_of(data.get("retry_after")))
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
            raise error_for(status, data)

    async def _exchange(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        """One request and its reply (the parsed frame)."""
        async with self._lock:
            self._last_id += 1
            request_id = self._last_id
            message = {"id": request_id, "op": op}
            message.update((k, v) for k, v in fields.items() if v is not None)
            if self._ws.closed:
                raise ServerUnavailableError(f"the socket {self._url} is closed", status=0)
            try:
                await self._ws.send_str(json_codec.dumps_text(message))
            except (ConnectionError, aiohttp.ClientError) as error:
                raise ServerUnavailableError(
                    f"{op} on {self._url} failed: {type(error).__name__}: {error}", status=0
                ) from None
            deadline = time.monotonic() + self._read_timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeoutError(
                        f"{op} on {self._url}: no reply in {self._read_timeout:g}s"
                    )
                try:
                    reply = await self._ws.receive(timeout=remaining)
                except TimeoutError:
                    raise RequestTimeoutError(
                        f"{op} on {self._url}: no reply in {self._read_timeout:g}s"
                    ) from None
                if reply.type == aiohttp.WSMsgType.TEXT:
                    data = json_codec.loads(reply.data)
                    if data.get("id") != request_id:
                        continue  # the late reply to a request whose caller gave up
                    return data
                if reply.type in _GONE or reply.type == aiohttp.WSMsgType.ERROR:
                    raise ServerUnavailableError(
                        f"{op} on {self._url}: the server closed the socket", status=0
                    )
                # pings/pongs are handled by aiohttp; binary frames are not ours: skip

    async def aclose(self) -> None:
        """Close the socket (the server closes a session this socket created)."""
        if not self._ws.closed:
            await self._ws.close()
