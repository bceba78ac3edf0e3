"""Running a server: in the foreground, in a background thread, or as a child process.

The thread form serves ``palaestra check`` (its over-HTTP check without
``--url``) and the tests: a real uvicorn on a real loopback socket, stopped on exit.
The process form (:func:`start_server_process`) runs ``palaestra serve`` itself,
for ``palaestra tour``, the tests that kill a server, and ``bench/``.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from palaestra.errors import ServerUnavailableError
from palaestra.servers.limits import ConnectionLimits, uvicorn_options

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "free_port",
    "is_loopback",
    "run_server",
    "serve_in_thread",
    "start_server_process",
]

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


def free_port() -> int:
    """A loopback port free now (for a server about to be started)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server_process(
    env_ids: list[str], port: int | None = None, extra_args: Sequence[str] = ()
) -> tuple[subprocess.Popen, str]:
    """Start ``palaestra serve`` as a child process; returns it and its base URL once healthy.

    The caller stops it (``process.terminate(); process.wait()``).

    Args:
        env_ids: The envs to serve.
        port: The port (default: a free one).
        extra_args: More ``palaestra serve`` flags, e.g. ``["--max-sessions", "20000"]``.

    Raises:
        ServerUnavailableError: The server exited, or was not healthy within 60 s.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "palaestra.cli", "serve", *env_ids, "--port", str(port)]
    command += list(extra_args)
    process = subprocess.Popen([*command, "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailableError(
                f"the server for {url} exited with status {process.returncode}", status=0
            )
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise ServerUnavailableError(f"the server for {url} was not healthy within 60 s", status=0)
