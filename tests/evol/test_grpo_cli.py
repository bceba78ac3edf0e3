"""``palaestra train grpo`` as a user runs it: its flags, its refusals, a real tiny run."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from cli_runner import run_cli

from palaestra.cli import build_parser, main
from palaestra.evol.grpo import DEFAULT_ROLLOUT, GRPOConfig

MAZE = "palaestra/Maze-v0"

# The smallest real run: 2 train mazes, 1 step of 1 task x 2 episodes, 2 test mazes.
TINY = [
    "--envs", MAZE, "--model", "tiny", "--train-tasks", "2", "--eval-tasks", "2",
    "--steps", "1", "--group-size", "2", "--tasks-per-step", "1", "--max-turns", "4",
    "--eval-every", "1", "--threads", "1", "--quiet",
]  # fmt: skip

FLAGS = [
    "--envs", "--model", "--out", "--resume", "--steps", "--group-size", "--tasks-per-step",
    "--lr", "--warmup-steps", "--beta", "--epsilon", "--loss-type", "--scale-rewards",
    "--reward", "--turn-penalty", "--train-tasks", "--eval-every", "--eval-tasks",
    "--eval-temperatures", "--max-seconds", "--lora", "--lora-r", "--seed", "--threads",
    "--save-steps", "--url", "--token", "--format", "--temperature", "--max-tokens",
    "--max-turns", "--history", "--no-system-prompt",
]  # fmt: skip


def test_help_lists_every_flag_and_the_run_folder():
    result = run_cli("train", "grpo", "--help")
    assert result.returncode == 0, result.stderr
    for flag in FLAGS:
        assert flag in result.stdout, flag
    text = " ".join(result.stdout.split())
    assert "curve.jsonl" in text and "docs/online-rl.md" in text
    assert "grpo" in run_cli("train", "--help").stdout


def test_the_flags_defaults_are_grpo_configs():
    # One source of defaults: GRPOConfig and DEFAULT_ROLLOUT, never restated.
    args = build_parser().parse_args(["train", "grpo", "--out", "x"])
    config = GRPOConfig()
    renamed = {"learning_rate": "lr", "urls": "url"}
    flagged = {f.name for f in fields(GRPOConfig)} - {"tasks", "rollout", "token"}
    for name in flagged:
        value = getattr(args, renamed.get(name, name))
        if name in ("envs", "eval_temperatures", "urls"):
            value = tuple(value or ())
        assert value == getattr(config, name), name
    assert args.temperature == DEFAULT_ROLLOUT.temperature
    assert args.max_tokens == DEFAULT_ROLLOUT.max_tokens
    assert args.max_turns == DEFAULT_ROLLOUT.max_turns
    assert args.history == DEFAULT_ROLLOUT.history
    assert args.format == DEFAULT_ROLLOUT.format
    assert args.no_system_prompt is (not DEFAULT_ROLLOUT.system_prompt)
    from palaestra.cli_evol import GRPO_LOSS_TYPES
    from palaestra.evol.grpo import LOSS_TYPES

    assert GRPO_LOSS_TYPES == LOSS_TYPES


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--group-size", "1"], "group_size must be >= 2"),
        (["--temperature", "0"], "temperature must be > 0"),
        (["--format", "tools"], "--format tools is not supported"),
        (["--format", "xml"], "unknown --format 'xml'"),
        (["--envs", "palaestra/Nope-v0"], "unknown env 'palaestra/Nope-v0'"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--model", "no/such/folder/"], "no model 'no/such/folder/'"),
        (["--model", "tiny:x"], "bad model name 'tiny:x'"),
        (["--eval-tasks", "0"], "--eval-tasks: must be >= 1"),
        (["--loss-type", "bogus"], "--loss-type: invalid choice"),
        (["--reward", "bogus"], "--reward: invalid choice"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, flags, says):
    # In this process (main() as the console script calls it): eleven interpreters
    # importing the ML stack would cost more than the checks.
    out = tmp_path / "run"
    try:
        status = main(["train", "grpo", "--out", str(out), *flags])
    except SystemExit as exit_:  # argparse's refusals
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert says in lines[0]
    assert not out.exists()  # refused before a run folder was made


@pytest.mark.slow
def test_a_tiny_run_then_its_resume_trains_nothing_again(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "grpo", "--out", str(out), *TINY, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Loading weights" not in result.stderr  # library chatter goes to OUT/run.log
    for name in ("run.json", "results.md", "results.json", "plot.png", "run.log"):
        assert (out / name).is_file(), name
    grpo = out / "grpo"
    assert (grpo / "model" / "config.json").is_file()
    curve = [json.loads(line) for line in (grpo / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in curve] == [0, 1]
    assert all(p["episodes"] == 2 for p in curve)
    run = json.loads((out / "run.json").read_text())
    assert list(run["stages"]) == ["eval-0", "grpo", "eval-1"]
    assert run["stages"]["grpo"]["steps"] == 1
    assert run["config"]["group_size"] == 2 and run["config"]["rollout"]["max_turns"] == 4
    assert len(run["tasks"][MAZE]["train"]) == 2 and len(run["tasks"][MAZE]["test"]) == 2
    played = (grpo / "episodes.jsonl").read_text().splitlines()
    assert len(played) == 2  # one task x a group of 2
    table = (out / "results.md").read_text().strip()
    assert table in result.stdout
    assert "| start" in table and "| GRPO" in table
    assert "trained 1 GRPO step in" in result.stdout
    assert "step 0 " in result.stdout and "step 1 " in result.stdout
    assert f"model: {grpo / 'model'}" in result.stdout
    assert f"curve: {grpo / 'curve.jsonl'}" in result.stdout

    # The finished run resumed: every stage skipped, the same table, nothing played.
    logs = {p: p.read_bytes() for p in grpo.glob("*.jsonl")}
    again = run_cli("train", "grpo", "--out", str(out), *TINY, "--resume", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    for stage in ("eval-0", "grpo", "eval-1"):
        assert f"[{stage}] done before" in again.stdout
    assert table in again.stdout
    assert {p: p.read_bytes() for p in grpo.glob("*.jsonl")} == logs

    # The same folder without --resume, or resumed with other settings: refused.
    refused = run_cli("train", "grpo", "--out", str(out), *TINY)
    assert refused.returncode == 2 and "already holds a run" in refused.stderr
    other = run_cli("train", "grpo", "--out", str(out), *TINY, "--resume", "--beta", "0.1")
    assert other.returncode == 2
    assert other.stderr.splitlines() == [f"error: cannot resume {out}: its settings differ in beta"]


@pytest.mark.slow
def test_a_run_on_a_server_with_a_token(serve, tmp_path):
    out = tmp_path / "remote"
    with serve([MAZE], token="s3cret") as url:
        result = run_cli(
            "train", "grpo", "--out", str(out), *TINY, "--url", url, "--token", "s3cret",
            timeout=300,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| GRPO" in result.stdout
    assert len((out / "grpo" / "episodes.jsonl").read_text().splitlines()) == 2
    run = (out / "run.json").read_text()
    assert url in run and "s3cret" not in run  # the token is never written down


def test_the_readme_commands_of_online_rl_parse():
    # The README's GRPO commands are real: each parses with the CLI's own parser.
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Online RL (GRPO)")[1].split("\n## ")[0]
    block = section.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    commands = [line.split("#")[0].split() for line in block.splitlines() if line.strip()]
    assert [c[:3] for c in commands] == [
        ["palaestra", "train", "grpo"],
        ["palaestra", "demo", "--preset"],
    ]
    for command in commands:
        args = build_parser().parse_args(command[1:])
        assert callable(args.func)
