"""The self-training commands as a user runs them: data info/filter, train sft, evolve."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli

from palaestra.agents.evaluate import EvalConfig, run_eval

MAZE, WORDLE = "palaestra/Maze-v0", "palaestra/Wordle-v0"


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("expert")
    run_eval(EvalConfig("expert", (MAZE, WORDLE), split="train", limit=6), out, progress=False)
    return out / "trajectories.jsonl"


def test_data_info_prints_the_card(expert_file):
    result = run_cli("data", "info", str(expert_file))
    assert result.returncode == 0, result.stderr
    assert "| palaestra/Maze-v0" in result.stdout and "| palaestra/Wordle-v0" in result.stdout
    assert "12 trajectories in 1 file(s)" in result.stdout
    as_json = json.loads(run_cli("data", "info", str(expert_file), "--json").stdout)
    assert {row["env"] for row in as_json} == {MAZE, WORDLE}
    assert all(row["success"] == 1.0 and row["tasks"] == 6 for row in as_json)


def test_data_filter_to_parquet_and_back(expert_file, tmp_path):
    parquet = tmp_path / "maze.parquet"
    result = run_cli(
        "data", "filter", str(expert_file), str(expert_file), "--envs", MAZE, "--best",
        "--out", str(parquet),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "6 of 24 trajectories" in result.stdout  # the second copy was a duplicate
    card = json.loads(run_cli("data", "info", str(parquet), "--json").stdout)
    assert [(row["env"], row["trajectories"]) for row in card] == [(MAZE, 6)]


def test_data_commands_report_bad_input(tmp_path):
    result = run_cli("data", "info", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2 and "no trajectory file" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"env_id": 1}\nnot json\n')
    result = run_cli("data", "info", str(broken))
    assert result.returncode == 2 and "broken.jsonl:1" in result.stderr


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "null", "5"])
def test_data_info_on_a_line_that_is_not_an_object_is_one_error_line(tmp_path, line):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(line + "\n")
    result = run_cli("data", "info", str(broken))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {broken}:1: not a trajectory: expected a JSON object, not "
        + {"[1, 2]": "list", '"text"': "str", "null": "NoneType", "5": "int"}[line]
    ]


def test_data_info_on_a_file_that_is_not_parquet_is_one_error_line(tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet\n")
    result = run_cli("data", "info", str(fake))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")


def test_train_sft_trains_and_saves_a_loadable_model(expert_file, tmp_path):
    out = tmp_path / "sft"
    result = run_cli(
        "train", "sft", "--data", str(expert_file), "--model", "tiny", "--out", str(out),
        "--steps", "3", "--batch-size", "4", "--history", "0", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trained 3 steps" in result.stdout
    assert "train_loss" not in result.stdout  # transformers' log dicts go to the log file
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 3 and "train_loss" in logged[-1]
    assert "Loading weights" not in result.stderr  # library bars go to OUT/run.log
    summary = json.loads((out / "sft.json").read_text())
    assert summary["steps"] == 3 and summary["config"]["history"] == 0
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "model")
    # The same --out again: the same run is said to be there; another run is refused.
    same = run_cli(
        "train", "sft", "--data", str(expert_file), "--model", "tiny", "--out", str(out),
        "--steps", "3", "--batch-size", "4", "--history", "0", "--quiet",
    )  # fmt: skip
    assert same.returncode == 0 and "already holds this training run" in same.stdout
    other = run_cli(
        "train", "sft", "--data", str(expert_file), "--model", "tiny", "--out", str(out),
        "--steps", "5", "--batch-size", "4", "--history", "0", "--quiet", "--success-only",
    )  # fmt: skip
    assert other.returncode == 2, other.stdout + other.stderr
    assert other.stderr.splitlines() == [
        f"error: {out} already holds a finished training run of other settings "
        f"(max_steps 3 then, 5 now); choose another --out, or delete {out} to train again"
    ]
    assert json.loads((out / "sft.json").read_text())["steps"] == 3  # untouched
    help_text = run_cli("train", "sft", "--help").stdout
    assert "--lora" in help_text and "torchrun" in " ".join(help_text.split())


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_data_filter_may_write_over_its_own_input(expert_file, tmp_path, suffix):
    # The output is one of the inputs: everything is read before the output is replaced.
    data = tmp_path / f"data{suffix}"
    assert run_cli("data", "filter", str(expert_file), "--out", str(data)).returncode == 0
    result = run_cli("data", "filter", str(data), "--envs", MAZE, "--out", str(data))
    assert result.returncode == 0, result.stderr
    assert "6 of 12 trajectories" in result.stdout
    card = json.loads(run_cli("data", "info", str(data), "--json").stdout)
    assert [(row["env"], row["trajectories"]) for row in card] == [(MAZE, 6)]
