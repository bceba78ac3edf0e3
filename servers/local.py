"""Running a server: under uvicorn in the foreground, or in a background thread.

The thread form serves ``palaestra check`` (its over-HTTP check without
``--url``) and the tests: a real uvicorn on a real loopback socket, stopped on exit.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from palaestra.servers.limits import ConnectionLimits, uvicorn_options

__all__ = ["KEEP_ALIVE_SECONDS", "is_loopback", "run_server", "serve_in_thread"]

KEEP_ALIVE_SECONDS = ConnectionLimits.keep_alive


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server off the network (``localhost``, 127.x, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config(
    app: FastAPI, host: str, port: int, log_level: str, limits: ConnectionLimits | None
) -> uvicorn.Config:
    store = getattr(app.state, "store", None)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Bounded request heads, header-read timeout, connection limit, keep-alive.
        **uvicorn_options(limits or ConnectionLimits()),
        access_log=False,
        # The sans-I/O websockets protocol: ~2-3x the messages/s of uvicorn's default
        # (legacy) websockets protocol at 8 sockets on one core (bench/server_throughput.py).
        ws="websockets-sansio",
        # A WebSocket message may be as large as an HTTP body, no larger.
        ws_max_size=store.settings.max_body_bytes if store is not None else 64 * 1024,
    )


def run_server(
    app: FastAPI,
    host: str,
    port: int,
    log_level: str = "info",
    limits: ConnectionLimits | None = None,
) -> None:
    """Serve ``app`` in the foreground until interrupted.

    Args:
        app: The ASGI app.
        host: Interface to bind.
        port: Port to bind.
        log_level: uvicorn's log level.
        limits: Connection limits (default :class:`ConnectionLimits`'s).
    """
    uvicorn.Server(_config(app, host, port, log_level, limits)).run()


@contextmanager
def serve_in_thread(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    limits: ConnectionLimits | None = None,
) -> Iterator[str]:
    """Serve ``app`` on a background thread; yields its base URL, stops it on exit.

    Args:
        app: The ASGI app.
        host: Interface to bind (loopback by default).
        port: Port; 0 picks a free one.
        log_level: uvicorn's log level.
        limits: Connection limits (default :class:`ConnectionLimits`'s).

    Yields:
        ``"http://HOST:PORT"`` once the server accepts connections.
    """
    server = uvicorn.Server(_config(app, host, port, log_level, limits))
    thread = threading.Thread(target=server.run, name="palaestra-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
