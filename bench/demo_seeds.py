"""The demo over several run seeds: one table of BC, AgentEvol and Agent-R with the baselines.

Runs ``palaestra demo --seed S`` for each seed (or reads finished demo folders) and
prints, per policy: success per seed and over all seeds' episodes (pooled, with a
Wilson 95% interval), greedy and sampled at t=1, then mean turns and loop rate
(greedy). Each seed's run is a full demo: its own tiny model init, training data
order, sampling and env seeds.

    python bench/demo_seeds.py --seeds 0 1 2 [--out runs/demo-seeds] [--threads N]
    python bench/demo_seeds.py --read runs/demo-seeds/seed-0 runs/demo-seeds/seed-1 ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from palaestra.agents.evaluate import wilson_interval
from palaestra.tables import format_table


def run_seeds(seeds: list[int], out: Path, threads: int | None) -> list[Path]:
    """Run the demo once per seed, one after the other; returns the run folders."""
    folders = []
    for seed in seeds:
        folder = out / f"seed-{seed}"
        command = [sys.executable, "-m", "palaestra", "demo", "--out", str(folder)]
        command += ["--seed", str(seed), "--quiet"]
        if threads is not None:
            command += ["--threads", str(threads)]
        if (folder / "run.json").exists():
            command.append("--resume")
        started = time.perf_counter()
        subprocess.run(command, check=True)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        folders.append(folder)
    return folders


def table(folders: list[Path]) -> str:
    """The Markdown table over the runs in ``folders``."""
    runs = [json.loads((f / "results.json").read_text()) for f in folders]
    policies = list(dict.fromkeys(r["policy"] for rows in runs for r in rows))
    lines = []
    for policy in policies:
        line = [policy]
        for temperature in (0.0, 1.0):
            rows = [
                next((r for r in rows if r["policy"] == policy and r["temperature"] == t), None)
                for rows in runs
                for t in (temperature,)
            ]
            if any(r is None for r in rows):
                line += ["", ""]
                continue
            per_seed = " / ".join(f"{r['success']:.0%}" for r in rows)
            wins = sum(r["successes"] for r in rows)
            total = sum(r["episodes"] for r in rows)
            low, high = wilson_interval(wins, total)
            line += [per_seed, f"{wins / total:.1%} ({low:.0%}-{high:.0%})"]
        greedy = [
            r for rows in runs for r in rows if r["policy"] == policy and r["temperature"] == 0
        ]
        line.append(f"{statistics.fmean(r['mean turns'] for r in greedy):.1f}")
        loops = [r["loop rate"] for r in greedy if "loop rate" in r]
        line.append(f"{statistics.fmean(loops):.1%}" if loops else "")
        lines.append(line)
    headers = [
        "policy",
        "greedy per seed",
        "greedy pooled (95% CI)",
        "t=1 per seed",
        "t=1 pooled (95% CI)",
        "mean turns",
        "loop rate",
    ]
    return format_table(headers, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/demo-seeds"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--read", type=Path, nargs="+", help="finished demo folders to tabulate")
    args = parser.parse_args()
    folders = args.read or run_seeds(args.seeds, args.out, args.threads)
    print(table(folders))


if __name__ == "__main__":
    main()
