"""GRPO from the BC models of demo runs, at each run's AgentEvol wall time: the learning table.

Usage (after ``palaestra demo --seed S --out runs/demo-sS`` for S = 0, 1, 2)::

    python bench/grpo_seeds.py runs/demo-s0 runs/demo-s1 runs/demo-s2 --out runs/grpo-seeds

For each demo run it trains its BC model (``iter-0/sft/model``) with GRPO on the
demo's 5x5 mazes and prompts (:func:`palaestra.demo.grpo_config`) for as long as
that run's AgentEvol round took (``explore-1`` + ``train-1``), evaluates the curve
every ``--eval-every`` steps on the demo's 100 test mazes, and prints BC, AgentEvol 1
and GRPO greedy success per seed with 95% intervals. Runs resume (``--resume``
semantics) when run again with the same ``--out``. This is how the issue-18 table
was measured (with ``--lr 5e-5 --group 8 --threads 1``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from palaestra.agents.evaluate import wilson_interval
from palaestra.demo import DEMO_PRESETS, demo_config, grpo_config
from palaestra.evol.grpo import run_grpo
from palaestra.tables import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demos", nargs="+", type=Path, help="finished `palaestra demo` folders")
    parser.add_argument("--out", type=Path, required=True, help="where the GRPO runs go")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--group", type=int, default=8, help="episodes per task per step")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lines = []
    for demo in args.demos:
        run = json.loads((demo / "run.json").read_text())
        seed, stages = run["config"]["seed"], run["stages"]
        budget = stages["explore-1"]["seconds"] + stages["train-1"]["seconds"]
        preset = replace(DEMO_PRESETS["full"], grpo_group=args.group, grpo_lr=args.lr,
                         grpo_eval_every=args.eval_every, grpo_steps=1000)  # fmt: skip
        evol = replace(demo_config(preset, threads=args.threads), seed=seed)
        config = replace(grpo_config(preset, evol, demo / stages["bc"]["model"], budget),
                         eval_temperatures=(0.0,))  # fmt: skip
        result = run_grpo(config, args.out / f"seed-{seed}", resume=True, progress=False)
        demo_rows = json.loads((demo / "results.json").read_text())
        row = {r["policy"]: r for r in demo_rows + result.rows if r["temperature"] == 0}

        def cell(r: dict) -> str:
            low, high = wilson_interval(r["successes"], r["episodes"])
            return f"{r['success']:.0%} ({low:.0%}-{high:.0%})"

        curve = ", ".join(f"{p['step']}: {p['success']:.0%}" for p in result.curve)
        lines.append([str(seed), cell(row["BC"]), cell(row["AgentEvol 1"]), cell(row["GRPO"]),
                      f"{budget:.0f}", curve])  # fmt: skip
    print(format_table(["seed", "BC", "AgentEvol 1", "GRPO", "budget s", "curve (step: greedy)"],
                       lines))  # fmt: skip


if __name__ == "__main__":
    main()
