"""``palaestra compare`` on large runs: time and peak memory against the files' size.

Two real evals (the expert and ``expert:0.5`` on 60 Maze test tasks, 60 turns)
are played once; their lines are then repeated as further samples of the same
tasks (``"sample": k``) until each file reaches the size asked for. Each row runs
``palaestra compare A B --json`` in a process of its own and reports its wall
time and peak resident memory (``wait4``'s ``ru_maxrss``), with the default
10,000 bootstrap resamples. ``--naive`` adds, at the smallest size, the memory of
loading both files whole with ``read_trajectories``, which is what streaming the
summary fields avoids.

    python bench/compare_speed.py [--sizes 100,1000] [--naive] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from palaestra.cli import main as cli_main
from palaestra.tables import format_table

MB = 1024 * 1024


def play(out: Path, policy: str) -> list[bytes]:
    argv = ["eval", "--policy", policy, "--envs", "palaestra/Maze-v0", "--limit", "60"]
    assert cli_main([*argv, "--max-turns", "60", "--out", str(out), "--quiet"]) == 0
    return (out / "trajectories.jsonl").read_bytes().splitlines(keepends=True)


def grow(lines: list[bytes], path: Path, size: int) -> int:
    """Write ``lines`` as samples 0, 1, ... until ``path`` holds ``size`` bytes; the episodes."""
    written = episodes = sample = 0
    with path.open("wb") as file:
        while written < size:
            for line in lines:
                line = line.replace(b'"sample": 0,', f'"sample": {sample},'.encode(), 1)
                file.write(line)
                written += len(line)
                episodes += 1
            sample += 1
    return episodes


def measure(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return seconds, usage.ru_maxrss / 1024  # KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="MB per file, comma-separated")
    parser.add_argument("--naive", action="store_true", help="also load the smallest pair whole")
    parser.add_argument("--keep", help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="compare-bench-") as scratch:
        print(run(args, Path(args.keep or scratch)))


def run(args: argparse.Namespace, root: Path) -> str:
    """Play the two evals under ``root``, grow the files, measure; the table."""
    lines_a = play(root / "expert", "expert")
    lines_b = play(root / "noisy", "expert:0.5")
    palaestra = [sys.executable, "-m", "palaestra.cli"]
    rows = []
    for i, size_mb in enumerate(int(s) for s in args.sizes.split(",")):
        a, b = root / f"a-{size_mb}.jsonl", root / f"b-{size_mb}.jsonl"
        episodes = grow(lines_a, a, size_mb * MB)
        grow(lines_b, b, size_mb * MB)
        seconds, peak = measure([*palaestra, "compare", str(a), str(b), "--json"])
        rows.append(
            [f"{size_mb} MB x 2", episodes, "palaestra compare", f"{seconds:.1f}", f"{peak:.0f}"]
        )
        if args.naive and i == 0:
            code = (
                "import sys; from palaestra.agents.trajectory import read_trajectories as r; "
                "print(len(r(sys.argv[1])) + len(r(sys.argv[2])))"
            )
            seconds, peak = measure([sys.executable, "-c", code, str(a), str(b)])
            rows.append(
                [f"{size_mb} MB x 2", episodes, "read both whole", f"{seconds:.1f}", f"{peak:.0f}"]
            )
        if not args.keep:
            a.unlink()
            b.unlink()
    return format_table(["files", "episodes each", "what", "seconds", "peak RSS MB"], rows)


if __name__ == "__main__":
    main()
