"""Hostile requests against both servers: what each costs the server.

Each attack runs against a fresh server in its own process on loopback
(``palaestra serve-policy tiny`` or ``palaestra serve palaestra/Maze-v0``), so the
server's memory is its own to measure. While the attack runs, a prober asks
``/health`` every 20 ms on another connection. One row per attack:

- status: what the attacker got back (``-`` when the server closed the connection
  without an answer);
- time: from the attack's first byte to the answer (or the close);
- RSS before / peak / after: the server's resident memory before the attack, the
  most sampled during it (every 10 ms), and 1 s after its answer (what it left held);
- /health max: the slowest ``/health`` answer during the attack (the event loop
  was blocked at least that long).

Attacks: a 100 MB body (Content-Length announced), an 8 MB and a 3 MB prompt
(valid JSON; 3 MB is under serve-policy's body cap) against ``serve-policy``;
a 96 MB header against both servers.

    python bench/attack.py [--only NAME ...]

Run it on the commit before the limits (issue 12) and on this one to compare:
before, the 8 MB prompt blocked ``/health`` for seconds and left ~560 MB held, and
the 96 MB header took ~25 s with ~190 MB at its peak; now each is refused (413,
431) in milliseconds with the server's memory unchanged.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import psutil

from palaestra.tables import format_table
from palaestra.tour import free_port

MB = 1024 * 1024
CHUNK = 1 * MB


@dataclass
class Attack:
    name: str
    server: str  # "policy" or "env"
    head: bytes  # the request head (headers included, blank line excluded)
    body: Callable[[], Iterator[bytes]]  # the rest, sent in chunks


def _spaces_then(total: int, tail: bytes) -> Iterator[bytes]:
    """``total`` bytes: whitespace (valid JSON padding), then ``tail``."""
    left = total - len(tail)
    while left > 0:
        n = min(CHUNK, left)
        yield b" " * n
        left -= n
    yield tail


def _prompt_body(chars: int) -> bytes:
    words = ("word " * (chars // 5 + 1))[:chars]
    body = {"messages": [{"role": "user", "content": words}], "max_tokens": 1}
    return json.dumps(body).encode()


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def _post(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}"
    ).encode()


def _big_header(size: int) -> tuple[bytes, Callable[[], Iterator[bytes]]]:
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "

    def rest() -> Iterator[bytes]:
        # Not spaces: the parser skips a value's leading whitespace without keeping it.
        for _ in range(size // CHUNK):
            yield b"a" * CHUNK
        yield b"\r\n\r\n"

    return head, rest


def attacks() -> list[Attack]:
    big = 100 * MB
    empty = b'{"messages": []}'
    prompt = _prompt_body(8 * MB)
    smaller = _prompt_body(3 * MB)
    header_head, header_rest = _big_header(96 * MB)
    return [
        Attack(
            "policy: 100 MB body",
            "policy",
            _post("/v1/chat/completions", big) + b"\r\n\r\n",
            lambda: _spaces_then(big, empty),
        ),
        Attack(
            "policy: 8 MB prompt",
            "policy",
            _post("/v1/chat/completions", len(prompt)) + b"\r\n\r\n",
            lambda: _chunks(prompt),
        ),
        Attack(
            "policy: 3 MB prompt",
            "policy",
            _post("/v1/chat/completions", len(smaller)) + b"\r\n\r\n",
            lambda: _chunks(smaller),
        ),
        Attack("policy: 96 MB header", "policy", header_head, header_rest),
        Attack("env: 96 MB header", "env", header_head, header_rest),
    ]


def start(server: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if server == "policy":
        args = ["serve-policy", "tiny"]
    else:
        args = ["serve", "palaestra/Maze-v0"]
    command = [sys.executable, "-m", "palaestra.cli", *args, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "critical"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {server} server exited: {process.stderr.read().decode()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the {server} server did not start")


def _status(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0].split()
    return line[1].decode() if len(line) > 1 else "-"


def send(port: int, attack: Attack) -> tuple[str, float]:
    """Send ``attack``; the answer's status and the seconds until it (or the close)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(300)
        began = time.perf_counter()
        try:
            sock.sendall(attack.head)
            for chunk in attack.body():
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered early and closed: read what it said
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
        return _status(answer), time.perf_counter() - began


def probe(url: str, stop: threading.Event, worst: list[float]) -> None:
    """Ask ``/health`` until ``stop``; the slowest answer goes to ``worst[0]``."""
    # One more probe after the attack ends: it waits for whatever still blocks the loop.
    with httpx.Client(timeout=300) as client:
        last = False
        while not last:
            last = stop.is_set()
            began = time.perf_counter()
            try:
                client.get(url + "/health")
            except httpx.HTTPError:
                pass
            worst[0] = max(worst[0], time.perf_counter() - began)
            time.sleep(0.02)


def watch(server: psutil.Process, stop: threading.Event, peak: list[int]) -> None:
    """Sample the server's RSS every 10 ms until ``stop``; the largest goes to ``peak[0]``."""
    while not stop.is_set():
        peak[0] = max(peak[0], server.memory_info().rss)
        time.sleep(0.01)


def run(attack: Attack) -> list[str]:
    process, url = start(attack.server)
    try:
        server = psutil.Process(process.pid)
        time.sleep(1)
        before = server.memory_info().rss
        stop, worst, peak = threading.Event(), [0.0], [before]
        prober = threading.Thread(target=probe, args=(url, stop, worst))
        watcher = threading.Thread(target=watch, args=(server, stop, peak))
        prober.start()
        watcher.start()
        status, seconds = send(int(url.rsplit(":", 1)[1]), attack)
        stop.set()
        prober.join()
        watcher.join()
        time.sleep(1)
        after = server.memory_info().rss
        alive = httpx.get(url + "/health", timeout=30).status_code == 200
        return [
            attack.name,
            status,
            f"{seconds:.2f} s",
            f"{before / MB:.0f} MB",
            f"{peak[0] / MB:.0f} MB",
            f"{after / MB:.0f} MB",
            f"{worst[0] * 1000:.0f} ms",
            "yes" if alive else "no",
        ]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="run only attacks whose name contains these")
    args = parser.parse_args()
    rows = [run(a) for a in attacks() if not args.only or any(word in a.name for word in args.only)]
    header = [
        "attack",
        "status",
        "time",
        "RSS before",
        "RSS peak",
        "RSS after",
        "/health max",
        "up after",
    ]
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
