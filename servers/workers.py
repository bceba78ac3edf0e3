"""``palaestra serve --workers N``: N independent server processes, one port each.

Why one port per worker rather than N processes behind one shared port: a
session lives in the memory of the process that created it, and a kernel-shared
port (SO_REUSEPORT, uvicorn's ``--workers``) hands each new connection to any
process, so a session's next HTTP request would land on a worker that has never
heard of it. With a port each, a session is pinned to its worker by its URL, and
clients spread sessions over the URLs (``palaestra eval --url`` repeated,
``RemoteEnvs(urls)``, ``AsyncEnvClient`` per URL). Env code of one worker
never slows another: each has its own event loop, GIL and thread pool.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from types import FrameType

from palaestra.servers.limits import ConnectionLimits
from palaestra.servers.sessions import Settings

__all__ = ["run_workers", "worker_urls"]

# How often a worker checks that its parent is still alive.
ORPHAN_CHECK_SECONDS = 0.5


def worker_urls(host: str, port: int, workers: int) -> list[str]:
    """The base URLs of ``workers`` workers serving from ``port`` up."""
    return [f"http://{host}:{port + i}" for i in range(workers)]


def _serve_one(
    env_ids: list[str],
    settings: Settings,
    host: str,
    port: int,
    level: str,
    limits: ConnectionLimits | None,
) -> None:
    # The body of one worker process (spawned: a fresh interpreter).
    from palaestra.servers.app import create_app
    from palaestra.servers.local import run_server

    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    run_server(create_app(env_ids, settings), host, port, log_level=level, limits=limits)


def _exit_with_parent(parent: int) -> None:
    # A parent killed with SIGKILL cannot stop its workers: they notice they were
    # orphaned (re-parented) and shut down gracefully themselves.
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_workers(
    env_ids: list[str],
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    limits: ConnectionLimits | None = None,
) -> int:
    """Run ``workers`` server processes on ``port`` .. ``port + workers - 1`` until stopped.

    Stops every worker on Ctrl-C or SIGTERM, and all of them when one dies (a
    supervisor can then restart the set).

    Args:
        env_ids: The envs every worker serves.
        settings: Each worker's limits (``max_sessions`` is per worker).
        host: Interface to bind.
        port: The first worker's port.
        workers: How many.
        log_level: uvicorn's log level.
        limits: Each worker's connection limits (default :class:`ConnectionLimits`'s).

    Returns:
        0 when stopped by a signal, 1 when a worker died.
    """
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_serve_one,
            args=(env_ids, settings, host, port + i, log_level, limits),
            name=f"palaestra-worker-{i}",
        )
        for i in range(workers)
    ]
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        for process in processes:
            process.start()
        ready = multiprocessing.connection.wait([p.sentinel for p in processes])
        # A closed sentinel can come a moment before the exit status: join to read it.
        for process in (p for p in processes if p.sentinel in ready):
            process.join(timeout=5)
            print(
                f"error: worker {process.name} (port {port + processes.index(process)}) exited "
                f"with status {process.exitcode}; stopping the others",
                file=sys.stderr,
                flush=True,
            )
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        signal.signal(signal.SIGTERM, previous)
