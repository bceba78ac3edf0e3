"""The command line, run as a user runs it (a subprocess per command)."""

import json
import os

import pytest
from cli_runner import run_cli

from palaestra.servers.local import free_port
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


def _expert_moves(task_id: int) -> list[str]:
    import palaestra

    env = palaestra.make("palaestra/Maze-v0")
    env.reset(options={"task_id": task_id})
    moves = []
    while not env.over:
        moves.append(env.expert_action())
        env.step(moves[-1])
    return moves


@pytest.mark.parametrize("where", ["in-process", "url"])
def test_play_survives_mistakes(where, maze_url):
    # An action after the end, an unknown task id (int or text): said, and the session goes on.
    url = ["--url", maze_url] if where == "url" else []
    moves = _expert_moves(2)
    script = [*moves, "move up", ":reset 99999", ":reset abc", ":reset 1", ":expert", ":quit"]
    result = cli(
        "play", "palaestra/Maze-v0", "--task-id", "2", *url, stdin="\n".join(script) + "\n"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "episode terminated after" in out and "success=True" in out
    assert "the episode is over: :reset [TASK_ID] plays again" in out
    assert "task_id 99999 is in none of MazeEnv's splits" in out
    assert "task_id 'abc' is in none of MazeEnv's splits" in out
    assert "[task 1]" in out and "expert: move " in out
    assert result.stderr == ""


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


# -- one error line, exit 1 (the run failed) or 2 (the command line was wrong) ------------


def _one_error_line(result, status: int) -> str:
    assert result.returncode == status, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def token_url(serve):
    with serve(["palaestra/Maze-v0"], token="sekrit") as url:
        yield url


@pytest.mark.parametrize("envs", ["palaestra/Maze-v0", "all"])
def test_eval_url_without_the_token_is_one_error_line(token_url, envs, tmp_path):
    result = cli("eval", "--policy", "random", "--envs", envs, "--limit", "1", "--url",
                 token_url, "--out", str(tmp_path / "run"))  # fmt: skip
    line = _one_error_line(result, 1)
    assert "bearer token" in line and "--token" in line and "PALAESTRA_TOKEN" in line


def test_eval_token_does_not_outlive_the_command(token_url, tmp_path, monkeypatch):
    # eval --token hands the token to its env clients through $PALAESTRA_TOKEN; once
    # main returns, a later server or client started by the same process must not
    # inherit it (a serve-policy started by a later test required it and never
    # answered that test's probe).
    from palaestra.cli import main

    monkeypatch.delenv("PALAESTRA_TOKEN", raising=False)
    args = ["eval", "--policy", "random", "--envs", "palaestra/Maze-v0", "--limit", "1",
            "--url", token_url, "--token", "sekrit", "--out", str(tmp_path / "run")]  # fmt: skip
    status = main(args)
    assert status == 0
    assert "PALAESTRA_TOKEN" not in os.environ


@pytest.mark.parametrize("envs", ["palaestra/Maze-v0", "all"])
def test_eval_on_a_dead_server_is_one_error_line(envs, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli("eval", "--policy", "random", "--envs", envs, "--limit", "1", "--url", dead,
                 "--out", str(tmp_path / "run"))  # fmt: skip
    assert f"cannot reach {dead}" in _one_error_line(result, 1)


def test_eval_of_an_env_the_server_does_not_serve_is_one_error_line(token_url, tmp_path):
    result = cli("eval", "--policy", "random", "--envs", "palaestra/Wordle-v0", "--url",
                 token_url, "--token", "sekrit", "--out", str(tmp_path / "run"))  # fmt: skip
    line = _one_error_line(result, 2)
    assert "does not serve 'palaestra/Wordle-v0'" in line and "palaestra/Maze-v0" in line


def test_play_on_a_dead_server_is_one_error_line():
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli("play", "palaestra/Maze-v0", "--url", dead, stdin=":quit\n")
    assert f"cannot reach {dead}" in _one_error_line(result, 1)


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--policy", "random", "--limit", "0"],
        ["eval", "--envs", "palaestra/Maze-v0"],
        ["nonsense"],
        ["data", "info"],
        ["train", "sft", "--out", "x"],
    ],
)
def test_usage_errors_are_one_error_line_with_status_2(args):
    line = _one_error_line(cli(*args), 2)
    assert line.endswith("--help)")


def test_debug_variable_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("PALAESTRA_DEBUG", "1")
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli("eval", "--policy", "random", "--envs", "palaestra/Maze-v0", "--url", dead,
                 "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "ServerUnavailableError" in result.stderr


# -- envs reachable from gymnasium alone; provenance; the tour's defaults ----------------


def test_gymnasium_make_in_a_fresh_interpreter_without_importing_palaestra():
    # gymnasium >= 1.0 loads no plugin entry points; its "module:id" form imports the
    # module that registers the env, which is how code that never imports palaestra gets it.
    import subprocess
    import sys

    probe = (
        "import sys, gymnasium\n"
        "env = gymnasium.make('palaestra:palaestra/Maze-v0')\n"
        "observation, info = env.reset(options={'task_id': 0})\n"
        "print(info['task_id'], type(env.unwrapped).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "MazeEnv"]


def test_eval_run_json_names_the_package_that_provides_each_env(tmp_path):
    from pathlib import Path

    plugin = Path(__file__).parent / "plugin"
    out = tmp_path / "run"
    result = run_cli(
        "eval", "--policy", "expert", "--envs", "acme/Coins-v0", "palaestra/Maze-v0",
        "--limit", "1", "--quiet", "--out", str(out), pythonpath=str(plugin),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    provenance = json.loads((out / "run.json").read_text())["provenance"]
    import palaestra

    assert provenance["env_packages"] == {
        "acme/Coins-v0": {"distribution": "acme-envs", "version": "0.1"},
        "palaestra/Maze-v0": {"distribution": "palaestra", "version": palaestra.__version__},
    }


def test_the_tour_plays_the_envs_the_readme_says():
    from pathlib import Path

    from palaestra.cli import build_parser
    from palaestra.tour import DEFAULT_ENVS

    assert tuple(build_parser().parse_args(["tour"]).envs) == DEFAULT_ENVS
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "`palaestra tour` serves Maze and Wordle" in readme
    assert [env.split("/")[1].split("-")[0] for env in DEFAULT_ENVS] == ["Maze", "Wordle"]
    assert "(default: palaestra/Maze-v0 palaestra/Wordle-v0" in " ".join(
        cli("tour", "--help").stdout.split()
    )


def test_exit_status_of_expected_failures_and_bugs():
    from palaestra.agents.openai_policy import PolicyRequestError
    from palaestra.cli import exit_status
    from palaestra.errors import ServerUnavailableError, UnknownTaskError

    assert exit_status(ServerUnavailableError("gone", status=0)) == 1
    assert exit_status(PolicyRequestError(500, "boom")) == 1
    assert exit_status(OSError("disk full")) == 1
    assert exit_status(UnknownTaskError("no task 9")) == 2
    assert exit_status(KeyError("unknown env")) == 2
    assert exit_status(ValueError("bad setting")) == 2
    assert exit_status(AttributeError("a bug")) is None  # raised, with its traceback
    assert exit_status(TypeError("a bug")) is None


def test_serve_on_a_taken_port_is_one_error_line(maze_url):
    port = maze_url.rsplit(":", 1)[1]
    line = _one_error_line(cli("serve", "palaestra/Maze-v0", "--port", port), 1)
    assert line == f"error: cannot serve on 127.0.0.1:{port}: Address already in use"


def test_eval_with_a_dead_policy_server_is_one_error_line(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli("eval", "--policy", f"openai:{dead}", "--envs", "palaestra/Maze-v0",
                 "--limit", "1", "--quiet", "--out", str(tmp_path / "run"))  # fmt: skip
    assert dead in _one_error_line(result, 1)
