"""AgentEvol end to end on a tiny budget, resumption after a crash, and the demo CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cli_runner import run_cli

from palaestra.demo import DEMO_PRESETS, demo_config
from palaestra.evol.agentevol import AgentEvolConfig, run_agentevol

pytest.importorskip("torch")

QUICK = DEMO_PRESETS["quick"]


def tiny_config(**changes: object) -> AgentEvolConfig:
    config = demo_config(QUICK, envs=("palaestra/Maze-v0", "palaestra/Wordle-v0"))
    return replace(config, **{"baselines": ("random",), "concurrency": 8, **changes})


def snapshot(folder: Path) -> dict[str, int]:
    """Modification times of every file but the manifest and the final tables."""
    skip = {"run.json", "results.md", "results.json"}
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and not (p.parent == folder and p.name in skip)
    }


@pytest.mark.slow
def test_two_iterations_run_and_a_crash_between_stages_resumes(tmp_path):
    out = tmp_path / "run"
    logs: list[str] = []
    partial = run_agentevol(
        tiny_config(), out, progress=False, log=logs.append, stop_after="explore-1"
    )
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert list(stages) == ["baseline-random", "expert", "bc", "eval-0", "explore-1"]
    assert {r["policy"] for r in partial.rows} == {"random (valid moves)", "BC"}
    before = snapshot(out)
    with pytest.raises(FileExistsError, match="--resume"):
        run_agentevol(tiny_config(), out, progress=False, log=logs.append)
    with pytest.raises(ValueError, match="samples"):
        run_agentevol(tiny_config(samples=3), out, resume=True, progress=False)

    logs.clear()
    result = run_agentevol(tiny_config(), out, resume=True, progress=False, log=logs.append)
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert list(stages) == [
        "baseline-random", "expert", "bc", "eval-0", "explore-1", "train-1", "eval-1",
        "explore-2", "train-2", "eval-2",
    ]  # fmt: skip
    skipped = [line for line in logs if "skipped" in line]
    assert len(skipped) == 5  # nothing finished was recomputed...
    after = snapshot(out)
    assert {k: after[k] for k in before} == before  # ...or rewritten
    # Every stage's data, model and table are there.
    for i in (1, 2):
        assert (out / f"iter-{i}" / "sft" / "model" / "config.json").exists()
        assert (out / f"iter-{i}" / "data.jsonl").exists()
    policies = [r["policy"] for r in result.rows]
    assert {"random (valid moves)", "BC", "AgentEvol 1", "AgentEvol 2"} <= set(policies)
    assert "AgentEvol 2" in (out / "results.md").read_text()
    # The kept exploration data is the base set plus the best success per task.
    base = (out / "base" / "data.jsonl").read_text().splitlines()
    merged = (out / "iter-1" / "data.jsonl").read_text().splitlines()
    assert merged[: len(base)] == base
    keys = [(json.loads(x)["env_id"], json.loads(x)["task_id"]) for x in merged[len(base) :]]
    assert len(keys) == len(set(keys))


def test_a_crash_after_training_but_before_the_record_does_not_retrain(tmp_path, monkeypatch):
    import palaestra.evol.agentevol as agentevol

    out = tmp_path / "run"
    config = tiny_config(iterations=0, baselines=())
    real = agentevol.train_sft

    def crashing(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt  # dies before run.json records the stage

    monkeypatch.setattr(agentevol, "train_sft", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_agentevol(config, out, progress=False)
    assert "bc" not in json.loads((out / "run.json").read_text())["stages"]
    summary = out / "iter-0" / "sft" / "sft.json"
    written = summary.stat().st_mtime_ns
    monkeypatch.setattr(agentevol, "train_sft", real)
    result = run_agentevol(config, out, resume=True, progress=False)
    assert {r["policy"] for r in result.rows} == {"BC"}
    assert json.loads((out / "run.json").read_text())["stages"]["bc"]["steps"] == QUICK.steps
    assert summary.stat().st_mtime_ns == written  # the finished model was reused


@pytest.mark.slow
def test_demo_quick_preset_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    envs = ("--envs", "palaestra/Maze-v0", "palaestra/Wordle-v0")
    result = run_cli("demo", "--preset", "quick", "--out", str(out), "--quiet", *envs, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("results.md", "results.json", "run.json", "report.md", "plot.png"):
        assert (out / name).exists(), name
    table = (out / "results.md").read_text()
    for label in ("uniform", "random", "heuristic", "BC", "AgentEvol 1", "AgentEvol 2", "GRPO"):
        assert f"| {label}" in table
    assert "Maze-v0 greedy" in table and "Wordle-v0 t=1" in table
    again = run_cli("demo", "--preset", "quick", "--out", str(out), "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.mark.slow  # ~3 min on 2 busy cores
def test_demo_quick_preset_runs_on_its_defaults_one_line_per_stage(tmp_path):
    # As the README offers it: no flags; the report lands in ./runs/demo.
    result = run_cli("demo", "--preset", "quick", cwd=str(tmp_path), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = tmp_path / "runs" / "demo"
    stages = list(json.loads((out / "run.json").read_text())["stages"])
    assert "bc" in stages and "eval-2" in stages
    # then the Agent-R run from the same BC model, its stages in its own manifest
    agent_r = list(json.loads((out / "agent-r" / "run.json").read_text())["stages"])
    assert "search-1" in agent_r and "revise-1" in agent_r
    stages += agent_r
    # then GRPO from the same BC model, for as long as AgentEvol's first round took
    grpo = json.loads((out / "grpo" / "run.json").read_text())["stages"]
    assert list(grpo) == ["grpo", "eval-1"] and grpo["grpo"]["steps"] >= 1
    stages += list(grpo)
    lines = result.stdout.strip().splitlines()
    # One line per stage (and a stage's notice, such as an empty Agent-R round), then
    # the table and the closing line: no log dicts, no inner bars.
    before = lines[: lines.index("")]
    assert all(line.startswith("[") for line in before)
    done = [line.split()[0] for line in before if "done in" in line]
    assert done == [f"[{s}]" for s in stages]
    table = lines[len(before) :]
    assert table[1].startswith("| policy") and "| BC" in result.stdout and "| GRPO" in result.stdout
    assert table[-1].startswith("demo finished in")
    assert "{'loss'" not in result.stdout and "Loading weights" not in result.stdout
    assert (out / "run.log").exists()
    assert (out / "iter-0" / "sft" / "train_log.jsonl").read_text().count("loss") >= 1


def test_a_stage_without_data_says_which_and_what_to_change(tmp_path):
    result = run_cli(
        "evolve", "agentevol", "--envs", "palaestra/Maze-v0", "--base-tasks", "3",
        "--max-turns", "2", "--eval-tasks", "1", "--out", str(tmp_path / "run"), "--quiet",
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "error: stage 'expert' has no data for behaviour cloning: palaestra/Maze-v0: the "
        "expert succeeded on 0 of 3 base tasks (3 stopped at max_turns=2); raise --max-turns "
        "(the expert needs as many turns as the task takes)"
    ]
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    version = manifest["provenance"]["palaestra"]
    assert manifest["provenance"]["env_packages"] == {
        "palaestra/Maze-v0": {"distribution": "palaestra", "version": version}
    }


def test_training_killed_midway_resumes_from_its_last_checkpoint(tmp_path):
    from transformers import TrainerCallback

    from palaestra.evol.data import load_trajectories
    from palaestra.evol.sft import SFTConfig, train_sft

    class Crash(TrainerCallback):
        def __init__(self, at: int | None) -> None:
            self.at, self.steps = at, []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)
            if state.global_step == self.at:
                raise KeyboardInterrupt

    expert = tmp_path / "expert"
    run_agentevol(
        tiny_config(iterations=0, baselines=()), expert, progress=False, stop_after="expert"
    )
    data = load_trajectories(expert / "base" / "data.jsonl")
    config = SFTConfig(max_steps=4, batch_size=4, save_steps=2, history=0)
    crash = Crash(at=3)
    with pytest.raises(KeyboardInterrupt):
        train_sft("tiny", data, tmp_path / "sft", config, progress=False, callbacks=[crash])
    assert crash.steps == [1, 2, 3]
    assert (tmp_path / "sft" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "sft" / "model").exists()
    watch = Crash(at=None)
    result = train_sft("tiny", data, tmp_path / "sft", config, progress=False, callbacks=[watch])
    assert watch.steps == [3, 4]  # resumed after step 2, not from scratch
    assert result.steps == 4 and (result.model_dir / "config.json").exists()
    assert not (tmp_path / "sft" / "checkpoints").exists()
