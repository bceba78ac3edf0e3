"""What the viewer's Play proxy adds to a move: latency direct to the env server and through it.

One person plays one game at a time, so the number that matters is one call's
latency, not throughput. The env server (``palaestra serve palaestra/Maze-v0``)
and the viewer (``palaestra view --env-url``) run as their own processes; this
script steps one Maze session at a time, first straight on ``/v1/sessions/...``
(as the viewer itself does), then through ``/api/play/sessions/...``, and
asks the expert for each move the same two ways.

    python bench/view_play.py [--moves 400]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import httpx
from common import percentile  # bench/common.py

from palaestra.servers.local import free_port, start_server_process
from palaestra.tables import format_table

ENV = "palaestra/Maze-v0"


def start_viewer(env_url: str, folder: str) -> tuple[subprocess.Popen, str]:
    """``palaestra view FOLDER --env-url ENV_URL`` on a free port, once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "palaestra.cli", "view", folder, "--port", str(port)]
    process = subprocess.Popen([*command, "--env-url", env_url])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/version", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"the viewer did not start on {url}")


def play(client: httpx.Client, prefix: str, moves: int, direct: bool) -> dict[str, list[float]]:
    """Expert-then-step ``moves`` times (new episodes as needed); the calls' latencies."""
    times: dict[str, list[float]] = {"expert": [], "step": []}
    create = "/v1/sessions" if direct else "/api/play/sessions"
    body = {"env": ENV} if direct else {"env_id": ENV, "split": "train"}
    session = None
    while len(times["step"]) < moves:
        if session is None:
            reply = client.post(create, json=body).json()
            session = reply["session_id"] if direct else reply["session"]
        sent = time.perf_counter()
        action = client.get(f"{prefix}/{session}/expert").json()["action"]
        times["expert"].append(time.perf_counter() - sent)
        sent = time.perf_counter()
        step = client.post(f"{prefix}/{session}/step", json={"action": action}).json()
        times["step"].append(time.perf_counter() - sent)
        if step["terminated"] or step["truncated"]:
            client.delete(f"{prefix}/{session}")
            session = None
    if session is not None:
        client.delete(f"{prefix}/{session}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--moves", type=int, default=400, help="moves measured each way")
    args = parser.parse_args()
    server, env_url = start_server_process([ENV])
    viewer = None
    try:
        with tempfile.TemporaryDirectory() as folder:
            viewer, view_url = start_viewer(env_url, folder)
            rows = []
            for name, base, prefix, direct in (
                ("direct (/v1)", env_url, "/v1/sessions", True),
                ("via viewer (/api/play)", view_url, "/api/play/sessions", False),
            ):
                with httpx.Client(base_url=base, timeout=30) as client:
                    play(client, prefix, 20, direct)  # warm up connections and code paths
                    times = play(client, prefix, args.moves, direct)
                for call, values in times.items():
                    ms = [v * 1000 for v in values]
                    rows.append(
                        [
                            name,
                            call,
                            len(ms),
                            f"{percentile(ms, 0.5):.2f}",
                            f"{percentile(ms, 0.99):.2f}",
                        ]
                    )
            print(format_table(["route", "call", "n", "p50 ms", "p99 ms"], rows))
    finally:
        for process in (viewer, server):
            if process is not None:
                process.terminate()
                process.wait()


if __name__ == "__main__":
    main()
