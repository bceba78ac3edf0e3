"""``palaestra evolve agent-r`` end to end on a tiny budget, its settings, and ``tree show``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from palaestra.agents.rollout import RolloutConfig
from palaestra.cli import main
from palaestra.evol.agent_r import AgentRConfig, run_agent_r
from palaestra.evol.agentevol import AgentEvolConfig, run_agentevol
from palaestra.evol.data import load_trajectories
from palaestra.evol.mcts import load_trees
from palaestra.evol.sft import SFTConfig

CELLS = "palaestra/MazeCells-v0"
FIVE = {  # the 5x5 mazes
    CELLS: {"train": list(range(0, 300, 3)), "test": list(range(3000, 3060, 3))},
}


def bc_run(tmp_path):
    """A BC model on 30 expert episodes: it replies in the format, moves at random-ish.

    Moving at random solves 13% of these mazes within 100 turns (2% within 30), so
    a search of 5 trees with episodes of up to 100 turns finds solved leaves.
    """
    config = AgentEvolConfig(
        envs=(CELLS,),
        iterations=0,
        base_tasks=30,
        sft=SFTConfig(max_steps=60, batch_size=8, learning_rate=3e-3, save_steps=1000),
        eval_tasks=2,
        eval_temperatures=(0.0,),
        rollout=RolloutConfig(max_tokens=12, max_turns=30, history=1, system_prompt=False),
        tasks=FIVE,
        concurrency=16,
    )
    out = tmp_path / "evol"
    run_agentevol(config, out, progress=False, log=lambda _: None)
    return out


def test_settings_are_checked():
    with pytest.raises(ValueError, match="judge"):
        AgentRConfig(judge="oracle")
    with pytest.raises(ValueError, match="revise_from"):
        AgentRConfig(revise_from="leaf")
    with pytest.raises(ValueError, match="iterations"):
        AgentRConfig(iterations=0)
    config = AgentRConfig(alphas=(0.5, 0.7))
    assert [config.alpha(i) for i in (1, 2, 3)] == [0.5, 0.7, 0.7]


def test_start_from_a_folder_without_bc_is_refused(tmp_path, capsys):
    config = AgentRConfig(start_from=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="no finished BC stage"):
        run_agent_r(config, tmp_path / "r", progress=False)
    code = main(["evolve", "agent-r", "--start-from", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and "no finished BC stage" in capsys.readouterr().err


@pytest.mark.slow  # ~4 min on 2 quiet cores: BC, one search/revise/train/eval round, a resume
@pytest.mark.timeout(900)
def test_one_iteration_end_to_end_then_tree_show(tmp_path, capsys):
    evol = bc_run(tmp_path)
    out = tmp_path / "agent-r"
    argv = [
        "evolve", "agent-r", "--start-from", str(evol), "--out", str(out),
        "--envs", CELLS, "--iterations", "1", "--search-tasks", "5", "--simulations", "4",
        "--pairs-per-tree", "2", "--judge", "expert", "--revise-from", "error",
        "--max-depth", "100", "--iteration-steps", "10", "--batch-size", "8", "--lr", "3e-3",
        "--eval-tasks", "2", "--history", "1", "--max-turns", "100", "--max-tokens", "12",
        "--no-system-prompt", "--concurrency", "16", "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Agent-R 1" in printed and "tree show" in printed
    manifest = json.loads((out / "run.json").read_text())
    stages = manifest["stages"]
    assert list(stages) == ["bc", "search-1", "revise-1", "train-1", "eval-1"]
    assert stages["bc"]["from"] == str(evol)
    # The run searched from the BC model's weights, adopted byte for byte.
    adopted = (out / "iter-0/sft/model/model.safetensors").read_bytes()
    assert adopted == (evol / "iter-0/sft/model/model.safetensors").read_bytes()

    trees = load_trees(out / "iter-1" / "trees.jsonl")
    assert len(trees) == stages["search-1"]["trees"] == 5
    for tree in trees:
        assert tree.check() == []
        assert all(leaf.finished for leaf in tree.leaves())
    solved = sum(leaf.success for t in trees for leaf in t.leaves())
    assert solved > 0, "no solved leaf: the test's BC model is too weak to make data"

    revise = stages["revise-1"]
    data = load_trajectories(out / "iter-1" / "data.jsonl")
    assert len(data) == revise["trajectories"] == revise["revisions"] + revise["goods"] > 0
    assert sum(t.spliced for t in data) == revise["revisions"]
    assert all(t.success for t in data)  # revisions are scored as their good path
    assert "agreement" in revise  # MazeCells has an expert: both judges ran
    # Revisions from the error's own state: the repaired trees hold the searches on.
    assert revise["revise_from"] == "error" and revise["repair_errors"] == 0
    assert revise["repaired"] == revise["revisions"]
    assert revise["repaired"] + revise["unrepaired"] == revise["pairs"]
    repaired = load_trees(out / "iter-1" / "repaired.jsonl")
    assert all(len(a.nodes) >= len(b.nodes) for a, b in zip(repaired, trees, strict=True))
    assert all(t.check() == [] for t in repaired)
    assert stages["train-1"]["trajectories"] == len(data)
    assert stages["train-1"]["base_model"] == str(out / "iter-0/sft/model")
    [row] = [r for r in stages["eval-1"]["rows"] if r["temperature"] == 0]
    assert row["policy"] == "Agent-R 1" and 0 <= row["loop rate"] <= 1

    # Resume: everything is done, nothing runs again; changed settings are refused.
    assert main([*argv, "--resume"]) == 0
    assert "done before" in capsys.readouterr().out
    changed = [*argv, "--resume", "--alphas", "0.9"]
    assert main(changed) == 2
    assert "differ in alphas" in capsys.readouterr().err

    assert main(["tree", "show", str(out / "iter-1" / "trees.jsonl"), "--no-color"]) == 0
    shown = capsys.readouterr().out
    assert f"{CELLS} task" in shown and "best path:" in shown and "#0 root" in shown


def test_a_round_without_data_trains_nothing_and_says_why(tmp_path):
    """An untrained model solves no maze in a tiny search: the round is recorded as empty."""
    evol = tmp_path / "evol"
    config = AgentEvolConfig(
        envs=(CELLS,), iterations=0, base_tasks=4,
        sft=SFTConfig(max_steps=1, batch_size=4, save_steps=1000), eval_tasks=1,
        eval_temperatures=(0.0,), tasks=FIVE,
        rollout=RolloutConfig(max_tokens=8, max_turns=30, history=0, system_prompt=False),
    )  # fmt: skip
    run_agentevol(config, evol, progress=False, log=lambda _: None)
    logs: list[str] = []
    r = AgentRConfig(
        envs=(CELLS,), start_from=str(evol), iterations=1, search_tasks=1,
        alphas=(1.0,), eval_tasks=1, tasks=FIVE, rollout=replace(config.rollout, max_turns=3),
    )  # fmt: skip
    result = run_agent_r(r, tmp_path / "r", progress=False, log=logs.append)
    stages = json.loads((tmp_path / "r" / "run.json").read_text())["stages"]
    assert list(stages) == ["bc", "search-1", "revise-1"]
    assert stages["revise-1"]["trajectories"] == 0 and "alpha=1" in stages["revise-1"]["empty"]
    assert any("nothing to train on" in line for line in logs)
    assert result.rows == []
