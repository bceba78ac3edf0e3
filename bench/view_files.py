"""``palaestra view`` on a 1 GB trajectory file: how long each step takes, what memory it holds.

The file is made from real episodes: a ``palaestra eval`` of the noisy expert on
Maze (some succeed, some loop and run out of turns), its lines repeated with new
task ids until the file reaches ``--gb`` gigabytes. The viewer runs as its own
process (``palaestra view FILE``, a fresh index cache), and each step is timed
over HTTP as the page asks:

- first page: the first ``/api/episodes`` (50 rows) on a cold server and cache;
  it answers while the rest of the file is still being indexed;
- index complete: from that request until ``/api/episodes`` says ``complete``;
- filtered query: failures with loops and at least 30 turns, a page from the middle;
- last episode: ``/api/episode`` of the file's last line;
- reopen: a new server on the same file: the first page, from the cached index;
- runs list: ``/api/runs`` (it reads the file's headline from the index).

The server's RSS is sampled every 20 ms: at start, at its peak while indexing, and
after; the growth is what the index and its scan hold (the file itself is never
read whole).

    python bench/view_files.py [--gb 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
from common import rss_mib  # bench/common.py

from palaestra.servers.local import free_port
from palaestra.tables import format_table


def make_file(folder: Path, gigabytes: float) -> tuple[Path, int]:
    """A trajectory file of ``gigabytes`` GB from a real eval's episodes; (path, episodes)."""
    source = folder / "eval"
    subprocess.run(
        [sys.executable, "-m", "palaestra.cli", "eval", "--policy", "expert:0.3",
         "--envs", "palaestra/Maze-v0", "--limit", "60", "--max-turns", "60",
         "--out", str(source), "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    records = [
        orjson.loads(line)
        for line in (source / "trajectories.jsonl").read_bytes().split(b"\n")
        if line
    ]
    path = folder / "big.jsonl"
    target = int(gigabytes * 1e9)
    written = count = 0
    with path.open("wb") as file:
        copy = 0
        while written < target:
            for record in records:
                record["task_id"] = count  # every line its own task: a file of distinct episodes
                line = orjson.dumps(record) + b"\n"
                file.write(line)
                written += len(line)
                count += 1
                if written >= target:
                    break
            copy += 1
    return path, count


class Server:
    """``palaestra view FILE`` in its own process, with its RSS sampled every 20 ms."""

    def __init__(self, path: Path, cache: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "PALAESTRA_CACHE": str(cache)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "palaestra.cli", "view", str(path), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                httpx.get(f"{self.url}/api/version", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        self.start_rss = rss_mib(self.process.pid)
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.process.pid))
            time.sleep(0.02)

    def get(self, route: str, **params: object) -> tuple[float, dict]:
        started = time.perf_counter()
        reply = httpx.get(f"{self.url}/api/{route}", params=params, timeout=120)
        seconds = time.perf_counter() - started
        reply.raise_for_status()
        return seconds, reply.json()

    def close(self) -> float:
        self._stop.set()
        self._sampler.join()
        rss = rss_mib(self.process.pid)
        self.process.terminate()
        self.process.wait(timeout=30)
        return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="file size in GB (default 1)")
    parser.add_argument("--keep", help="make the file in this folder and keep it")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="view-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        run(folder, args.gb)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, gigabytes: float) -> None:
    """Make the file in ``folder``, time the viewer on it, print the table."""
    started = time.perf_counter()
    path, episodes = make_file(folder, gigabytes)
    size = path.stat().st_size
    made = time.perf_counter() - started
    print(f"{path}: {size / 1e9:.2f} GB, {episodes} episodes (made in {made:.0f} s)")
    file_id = path.name
    cache = folder / "cache"
    rows: list[tuple[str, str, str]] = []

    server = Server(path, cache)
    seconds, first = server.get("episodes", file=file_id, limit=50)
    note = f"{len(first['rows'])} rows; {first['total']} episodes indexed so far"
    rows.append(("first page (cold server, cold cache)", f"{seconds:.3f}", note))
    clock = time.perf_counter() - seconds
    while True:
        _, data = server.get("episodes", file=file_id, limit=1)
        if data["complete"]:
            break
        time.sleep(0.05)
    total = time.perf_counter() - clock
    rows.append(
        (
            "index complete",
            f"{total:.2f}",
            f"{data['total']} episodes, {size / 1e6 / total:.0f} MB/s",
        )
    )
    filters = {"success": "false", "loops": "true", "min_turns": 30}
    seconds, data = server.get("episodes", file=file_id, limit=1, **filters)
    middle = data["matched"] // 2
    seconds, data = server.get("episodes", file=file_id, limit=50, offset=middle, **filters)
    rows.append(
        (
            "filtered query (a middle page)",
            f"{seconds:.3f}",
            f"{data['matched']} of {data['total']} match",
        )
    )
    seconds, data = server.get("episode", file=file_id, index=data["total"] - 1)
    rows.append(("last episode", f"{seconds:.3f}", f"{len(data['turns'])} turns"))
    seconds, data = server.get("runs")
    rows.append(("runs list", f"{seconds:.3f}", f"{len(data['items'])} item(s)"))
    after = server.close()
    rows.append(("server RSS (MiB)", "", f"start {server.start_rss:.0f}, peak {server.peak:.0f} "
                 f"(+{server.peak - server.start_rss:.0f}), after {after:.0f}"))  # fmt: skip

    again = Server(path, cache)
    seconds, data = again.get("episodes", file=file_id, limit=50)
    rows.append(("reopen: first page (cached index)", f"{seconds:.3f}",
                 f"complete {data['complete']}, {data['total']} episodes"))  # fmt: skip
    after = again.close()
    growth = again.peak - again.start_rss
    note = f"start {again.start_rss:.0f}, peak {again.peak:.0f} (+{growth:.0f})"
    rows.append(("reopened server RSS (MiB)", "", note))
    print(format_table(["step", "seconds", "notes"], rows))


if __name__ == "__main__":
    main()
