"""WebShop-v0's shared index and many sessions over the socket route.

1. Index: a fresh process with an empty cache generates the catalogue and builds
   the BM25 index (``bm25s``), and a second process loads it from that cache
   (read-only ``mmap``): seconds and RSS growth of each, and the size on disk.
2. Sessions: ``palaestra serve palaestra/WebShop-v0`` in its own process, and
   ``--sessions`` (default 64) sessions at once over the WebSocket route
   (``AsyncEnvClient(transport="websocket")``, one socket per session), each
   playing like a random agent for ``--seconds``: on the search page a search for
   one to four words of the instruction, elsewhere a click drawn from
   ``info["available_actions"]``, and a reset to the next test task when an
   episode ends. Reported: steps/s (resets not counted), step latency p50/p99,
   and the server's RSS fresh, with the catalogue and index loaded (one session
   open), with all sessions open, and after the run.

The server runs on CPU 0 and this script (the load) on CPU 1 where there are two.

    python bench/webshop_sessions.py [--sessions 64] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

from common import percentile, pin_server_and_load, rss_mib  # bench/common.py

from palaestra.envs.webshop import TEST_TASKS
from palaestra.servers import AsyncEnvClient
from palaestra.servers.local import start_server_process
from palaestra.tables import format_table

ENV = "palaestra/WebShop-v0"

_INDEX_PROBE = """
import json, time
from pathlib import Path
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import palaestra.envs.webshop as webshop
before = rss()
started = time.perf_counter()
webshop.catalogue()
catalogue_s = time.perf_counter() - started
catalogue_mib = rss() - before
ix = webshop.index()
total_s = time.perf_counter() - started
disk = sum(p.stat().st_size for p in ix.stats.path.iterdir()) / 2**20
print(json.dumps({"built": ix.stats.built, "catalogue_s": catalogue_s,
                  "catalogue_mib": catalogue_mib, "index_s": ix.stats.seconds,
                  "total_s": total_s, "index_mib": rss() - before - catalogue_mib,
                  "disk_mib": disk}))
"""


def index_runs() -> list[dict]:
    """Build in a fresh process with an empty cache, then load in another: their figures."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PALAESTRA_CACHE": cache}
        return [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", _INDEX_PROBE],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for _ in range(2)
        ]


_INSTRUCTION = re.compile(r"Instruction: (.*?)(?:, and price lower than|\n)")


def random_agent_action(rng: random.Random, observation: str, info: dict) -> str:
    """What the env's ``random_action`` would draw, drawn here (no extra round trip)."""
    clicks = info.get("available_actions") or []
    if clicks:
        return rng.choice(clicks)
    found = _INSTRUCTION.search(observation)
    words = found.group(1).split() if found else ["shoes"]
    picked = sorted(rng.sample(range(len(words)), rng.randint(1, min(4, len(words)))))
    return "search[" + " ".join(words[i] for i in picked) + "]"


async def drive(url: str, sessions: int, seconds: float, pid: int) -> dict[str, float]:
    latencies: list[float] = []
    resets = 0
    tasks = list(TEST_TASKS)
    async with AsyncEnvClient(url, transport="websocket", max_connections=sessions) as client:
        first = await client.create(ENV, task_id=tasks[0], seed=0)
        loaded = rss_mib(pid)
        others = (client.create(ENV, task_id=tasks[i], seed=i) for i in range(1, sessions))
        handles = [first, *await asyncio.gather(*others)]
        held = rss_mib(pid)
        deadline = time.perf_counter() + seconds

        async def loop(index: int, session) -> None:
            nonlocal resets
            rng = random.Random(index)
            next_task = index
            while time.perf_counter() < deadline:
                action = random_agent_action(rng, session.observation, session.info)
                started = time.perf_counter()
                step = await session.step(action)
                latencies.append(time.perf_counter() - started)
                if step.terminated or step.truncated:
                    next_task = (next_task + sessions) % len(tasks)
                    await session.reset(task_id=tasks[next_task], seed=index)
                    resets += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(i, h) for i, h in enumerate(handles)))
        elapsed = time.perf_counter() - started
        during = rss_mib(pid)
        await asyncio.gather(*(h.close() for h in handles))
    return {
        "loaded": loaded,
        "held": held,
        "during": during,
        "steps": len(latencies),
        "resets": resets,
        "rate": len(latencies) / elapsed,
        "p50": percentile(latencies, 0.5) * 1e3,
        "p99": percentile(latencies, 0.99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=64, help="concurrent sessions")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the run")
    args = parser.parse_args()

    built, loaded = index_runs()
    print("\nWebShop-v0 catalogue and BM25 index (one process each, empty cache then warm)\n")
    rows = [
        (
            "build (empty cache)" if run["built"] else "load (cached, mmap)",
            f"{run['catalogue_s']:.2f}",
            f"{run['catalogue_mib']:.1f}",
            f"{run['index_s']:.2f}",
            f"{run['index_mib']:.1f}",
            f"{run['disk_mib']:.1f}",
        )
        for run in (built, loaded)
    ]
    headers = ["index", "catalogue s", "catalogue MiB", "index s", "index MiB", "on disk MiB"]
    print(format_table(headers, rows))

    process, url = start_server_process([ENV])
    placement = pin_server_and_load(process.pid)
    try:
        fresh = rss_mib(process.pid)
        result = asyncio.run(drive(url, args.sessions, args.seconds, process.pid))
        after = rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    per_session = (result["held"] - result["loaded"]) * 1024 / max(1, args.sessions - 1)
    print(f"\n{args.sessions} concurrent WebShop sessions over the socket route ({placement})\n")
    headers = ["sessions", "steps", "resets", "steps/s", "step ms p50/p99", "RSS fresh MiB"]
    headers += ["loaded MiB", "all open MiB", "end of run MiB", "after close MiB", "KiB/session"]
    print(
        format_table(
            headers,
            [
                (
                    args.sessions,
                    f"{result['steps']:,}",
                    f"{result['resets']:,}",
                    f"{result['rate']:,.0f}",
                    f"{result['p50']:.1f} / {result['p99']:.1f}",
                    f"{fresh:.1f}",
                    f"{result['loaded']:.1f}",
                    f"{result['held']:.1f}",
                    f"{result['during']:.1f}",
                    f"{after:.1f}",
                    f"{per_session:.1f}",
                )
            ],
        )
    )


if __name__ == "__main__":
    main()
