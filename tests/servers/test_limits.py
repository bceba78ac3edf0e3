"""Connection limits of both servers: request head size, header-read timeout, connection count.

Raw sockets against real uvicorn servers on loopback: the limits act before any
HTTP client library would let a request this malformed or this slow be sent.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from palaestra.servers import Settings, create_app, serve_in_thread
from palaestra.servers.limits import ConnectionLimits

ENVS = ["toy/Counter-v0"]


@contextmanager
def env_server(limits: ConnectionLimits | None = None) -> Iterator[tuple[str, int]]:
    with serve_in_thread(create_app(ENVS, Settings()), limits=limits) as url:
        yield url, int(url.rsplit(":", 1)[1])


def read_answer(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_a_huge_request_head_is_refused_with_431():
    with env_server() as (url, port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ")
            try:
                for _ in range(64):  # up to 4 MB, far past the 64 KiB bound
                    sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed by the server, as it should
            answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert httpx.get(f"{url}/health").status_code == 200  # the server is still up


def test_a_large_body_behind_a_small_head_is_not_mistaken_for_a_large_head():
    # The head bound counts the head only, even when head and body arrive in one read.
    with env_server(ConnectionLimits(max_header_bytes=1024)) as (url, port):
        body = b" " * 30_000 + b'{"env": "nope"}'
        head = b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # Head and body in one write, so they likely reach the server in one read.
            sock.sendall(
                head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
            )
            answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 422 "), answer[:80]  # the app read it, no 431
        many = [httpx.get(f"{url}/health") for _ in range(3)]
        assert [r.status_code for r in many] == [200] * 3


def test_idle_and_slow_connections_are_closed_after_the_header_timeout():
    with env_server(ConnectionLimits(header_timeout=0.5)) as (url, port):
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        with idle, slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            slow.settimeout(0.1)
            closed = False
            # Slowloris: a header line every 0.1 s never finishes the head.
            for i in range(300):
                try:
                    slow.sendall(b"X-%d: a\r\n" % i)
                    if slow.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
            assert closed, "a slowloris client kept its connection for 30 s"
            assert read_answer(idle) == b""  # closed without a word
        # A connection between requests is not cut by the header timeout: keep-alive rules it.
        with httpx.Client() as client:
            assert client.get(f"{url}/health").status_code == 200
            time.sleep(1.0)
            assert client.get(f"{url}/health").status_code == 200


def test_limit_concurrency_answers_503_beyond_it():
    with env_server(ConnectionLimits(limit_concurrency=3)) as (url, port):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            time.sleep(0.2)  # let the server register them
            assert httpx.get(f"{url}/health").status_code == 503
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="header_timeout"):
        ConnectionLimits(header_timeout=0)


def test_the_flags_reach_both_commands():
    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "palaestra.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    for command in ("serve", "serve-policy"):
        helped = cli(command, "--help")
        for flag in ("--max-header-bytes", "--header-timeout", "--limit-concurrency"):
            assert flag in helped.stdout, (command, flag)
    refused = cli("serve", "palaestra/Maze-v0", "--port", "1", "--header-timeout", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: header_timeout must be positive, not 0.0"
