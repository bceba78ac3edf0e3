"""bench/grpo_speed.py still runs: its ``--quick`` setting, end to end, prints both rows.

Speed is never asserted here; only that the script runs and its table has the
rows and columns the issue asks for, so the bench cannot rot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_quick_bench_prints_both_rows_and_their_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "grpo_speed.py"), "--quick", "--threads", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,  # under pytest-timeout's 300 s
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    for row in ("palaestra multi-turn", "TRL single-turn", "ratio multi/single"):
        assert f"| {row}" in out, out
    for column in ("rows/step", "gen s", "train s", "tokens/s", "gen tok/s"):
        assert column in out, out
    # TRL's prompts are the multi-turn rows' prompts, decoded: they must tokenize back.
    line = next(x for x in out.splitlines() if x.startswith("multi-turn:"))
    decoded, same = line.split(" from ")[1].split(" decoded prompts (")
    assert same.startswith(f"{decoded} re-tokenize"), line
