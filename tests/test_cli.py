"""The command line, run as a user runs it (a subprocess per command)."""

import json

import pytest
from cli_runner import run_cli

from palaestra.tables import format_table

cli = run_cli


def test_help_lists_every_command():
    out = cli("--help").stdout
    for command in ("envs", "check", "serve", "play", "tour", "demo"):
        assert command in out


def test_envs_table_and_json():
    table = cli("envs").stdout
    assert "palaestra/Maze-v0" in table and "train 3000, test 300" in table
    listed = {e["id"]: e for e in json.loads(cli("envs", "--json").stdout)}
    assert listed["palaestra/Maze-v0"]["splits"] == {"train": 3000, "test": 300}
    assert "palaestra/Wordle-v0" in listed


def test_check_passes_with_a_temporary_server():
    result = cli("check", "palaestra/Maze-v0", "--episodes", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed, 0 failed" in result.stdout


def test_check_against_a_running_server(maze_url):
    result = cli("check", "palaestra/Maze-v0", "--episodes", "2", "--url", maze_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"HTTP via {maze_url}" in result.stdout


def test_check_unknown_env_is_a_usage_error():
    result = cli("check", "palaestra/Nope-v0")
    assert result.returncode == 2
    assert "registered palaestra envs" in result.stderr


def test_serve_refuses_a_public_bind_without_token():
    result = cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0 without a token" in result.stderr


def test_serve_rejects_zero_workers():
    result = cli("serve", "palaestra/Maze-v0", "--port", "1", "--workers", "0")
    assert result.returncode == 2 and "--workers must be at least 1" in result.stderr


def test_serve_rejects_unknown_envs():
    result = cli("serve", "palaestra/Nope-v0", "--port", "1")
    assert result.returncode == 2 and "unknown env" in result.stderr


def test_play_in_the_terminal():
    result = cli(
        "play",
        "palaestra/Maze-v0",
        "--task-id",
        "0",
        stdin=":expert\n:actions\nmove sideways\n:reset 1\n:quit\n",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[task 0]" in out and "expert: move " in out and "[task 1]" in out
    assert "Invalid action 'move sideways'" in out


def test_play_to_the_end_with_the_expert_moves():
    import palaestra

    env = palaestra.make("palaestra/Maze-v0")
    env.reset(options={"task_id": 2})
    moves = []
    while not env.over:
        moves.append(env.expert_action())
        env.step(moves[-1])
    result = cli("play", "palaestra/Maze-v0", "--task-id", "2", stdin="\n".join(moves) + "\n")
    assert "episode terminated after" in result.stdout and "success=True" in result.stdout


@pytest.mark.slow
def test_tour_runs_experts_over_http(tmp_path):
    result = cli("tour", "--episodes", "3", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| palaestra/Maze-v0 " in result.stdout and "100%" in result.stdout
    assert (tmp_path / "results.md").exists()
    assert len(json.loads((tmp_path / "results.json").read_text())) >= 12


def test_format_table_aligns_columns():
    assert format_table(["a", "bb"], [(1, 2), (333, 4)]).splitlines() == [
        "| a   | bb |",
        "|-----|----|",
        "| 1   | 2  |",
        "| 333 | 4  |",
    ]


def test_prepare_says_what_it_did_and_rejects_unknown_splits():
    result = cli("prepare", "palaestra/Maze-v0", "--split", "test")
    assert result.returncode == 0 and "palaestra/Maze-v0 test: nothing prepared" in result.stdout
    result = cli("prepare", "palaestra/Maze-v0", "--split", "tset")
    assert result.returncode == 2 and "no split 'tset'" in result.stderr
