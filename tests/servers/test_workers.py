"""``palaestra serve --workers N``: N processes, one port each, sessions pinned to theirs."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _two_free_ports() -> int:
    """A port P with P and P + 1 free, below the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` (32768 and up) may be handed to
    another process between this check and the server's own bind (a Ray replica
    of an earlier test restarting did so once, and this test then talked to it).
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _workers(pid: int) -> list[int]:
    # The spawned worker processes (not multiprocessing's resource tracker).
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").glob("*/children")
        for child in task.read_text().split()
    ]
    return [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _healthy(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy")


def _start(port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "palaestra.cli", "serve", "palaestra/Maze-v0"]
    command += ["--workers", "2", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_each_worker_has_its_port_and_its_own_sessions_and_sigterm_stops_all():
    port = _two_free_ports()
    server = _start(port)
    try:
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        for url in urls:
            _healthy(url, time.monotonic() + 60)
        workers = _workers(server.pid)
        assert len(workers) == 2
        created = httpx.post(f"{urls[0]}/v1/sessions", json={"env": "palaestra/Maze-v0"})
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        assert httpx.get(f"{urls[0]}/v1/sessions/{session_id}").status_code == 200
        assert httpx.get(f"{urls[1]}/v1/sessions/{session_id}").status_code == 404
        assert httpx.get(f"{urls[1]}/health").json()["sessions"] == 0
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert "2 workers" in server.stdout.read()
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)
        for url in urls:
            try:
                httpx.get(url + "/health", timeout=1)
                raise AssertionError(f"{url} still answers after SIGTERM")
            except httpx.ConnectError:
                pass
    finally:
        if server.poll() is None:
            server.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return "gone"


def test_a_dead_worker_stops_the_set():
    port = _two_free_ports()
    server = _start(port)
    try:
        for url in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"):
            _healthy(url, time.monotonic() + 60)
        first, *_ = _workers(server.pid)
        os.kill(first, signal.SIGKILL)
        assert server.wait(timeout=30) == 1
        assert "exited with status -9; stopping the others" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()


def test_workers_of_a_killed_parent_stop_themselves():
    port = _two_free_ports()
    server = _start(port)
    try:
        for url in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"):
            _healthy(url, time.monotonic() + 60)
        workers = _workers(server.pid)
        server.kill()  # SIGKILL: the parent cannot stop them
        server.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            _state(pid) not in ("gone", "Z") for pid in workers
        ):
            time.sleep(0.1)
        assert all(_state(pid) in ("gone", "Z") for pid in workers), "orphaned workers live on"
    finally:
        if server.poll() is None:
            server.kill()
