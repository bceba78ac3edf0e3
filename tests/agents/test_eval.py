import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from cli_runner import run_cli

from palaestra.agents.evaluate import EvalConfig, run_eval, wilson_interval
from palaestra.agents.rollout import RolloutConfig
from palaestra.agents.trajectory import read_trajectories

MAZE = "palaestra/Maze-v0"
WORDLE = "palaestra/Wordle-v0"


def comparable(trajectories):
    """Trajectories without their timings (the only field that may differ between runs)."""
    return [{k: v for k, v in t.to_json().items() if k != "timings"} for t in trajectories]


def test_wilson_interval():
    assert wilson_interval(0, 0) == (0.0, 0.0)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and 0.69 < low < 0.73
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and abs((0.5 - low) - (high - 0.5)) < 1e-9


def test_seeded_random_policy_gives_identical_trajectories_over_http_and_in_process(
    tmp_path, serve
):
    with serve([MAZE, WORDLE]) as url, serve([MAZE, WORDLE]) as url2:
        config = EvalConfig(
            "random", (MAZE, WORDLE), limit=6, samples=2, rollout=RolloutConfig(seed=5),
            concurrency=8,
        )  # fmt: skip
        local = run_eval(config, tmp_path / "local", progress=False)
        remote_config = EvalConfig(**{**config.__dict__, "urls": (url, url2)})
        remote = run_eval(remote_config, tmp_path / "remote", progress=False)
    assert len(local.trajectories) == 2 * 6 * 2
    assert comparable(local.trajectories) == comparable(remote.trajectories)
    # random play differs between samples of one task: the seed reaches the policy
    by_key = {(t.env_id, t.task_id, t.sample): t.actions for t in local.trajectories}
    assert any(by_key[(e, t, 0)] != by_key[(e, t, 1)] for e, t, _ in by_key)
    assert local.rows == remote.rows


def test_the_expert_table_and_run_directory(tmp_path):
    out = tmp_path / "run"
    result = run_eval(EvalConfig("expert", (MAZE, WORDLE), limit=4), out, progress=False)
    assert [r["env"] for r in result.rows] == [MAZE, WORDLE, "macro average"]
    assert all(r["success"] == 1.0 for r in result.rows)
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result.rows))
    assert saved["provenance"]["palaestra"] and saved["provenance"]["policy"]["name"] == "expert"
    assert "| macro average" in (out / "results.md").read_text()
    assert len(read_trajectories(out / "trajectories.jsonl")) == 8
    # the test split, spread over it
    assert {t.split for t in result.trajectories} == {"test"}
    assert len({t.task_id for t in result.trajectories if t.env_id == MAZE}) == 4


def test_a_finished_run_is_not_overwritten_and_resume_checks_the_settings(tmp_path):
    out = tmp_path / "run"
    config = EvalConfig("expert", (MAZE,), limit=2)
    run_eval(config, out, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        run_eval(config, out, progress=False)
    with pytest.raises(ValueError, match="limit: 2 then, 3 now"):
        run_eval(EvalConfig("expert", (MAZE,), limit=3), out, resume=True, progress=False)
    longer = EvalConfig("expert", (MAZE,), limit=2, rollout=RolloutConfig(max_turns=9))
    with pytest.raises(ValueError, match=r"rollout\.max_turns: None then, 9 now"):
        run_eval(longer, out, resume=True, progress=False)
    # how fast it runs is no part of which episodes it plays
    faster = replace(config, concurrency=3, rollout=RolloutConfig(batch_wait_s=0.5))
    again = run_eval(faster, out, resume=True, progress=False)  # nothing left to play
    assert again.stats.episodes == 0 and len(again.trajectories) == 2


def test_run_and_result_files_are_replaced_whole_not_rewritten_in_place(tmp_path):
    # A reader that opened results.json / run.json before a resumed run still reads the
    # whole old file: the new one is written beside it and moved over it (os.replace).
    out = tmp_path / "run"
    config = EvalConfig("expert", (MAZE,), limit=2)
    run_eval(config, out, progress=False)
    names = ("run.json", "results.json", "results.md")
    old = {name: (out / name).read_bytes() for name in names}
    readers = {name: (out / name).open("rb") for name in names}
    try:
        run_eval(config, out, resume=True, progress=False)
        for name in names:
            assert readers[name].read() == old[name], name
    finally:
        for reader in readers.values():
            reader.close()
    assert json.loads((out / "results.json").read_text())["episodes_finished"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*names, "trajectories.jsonl", "errors.jsonl"]
    )


@pytest.mark.slow  # a subprocess killed midway: ~60 s; CI runs it
def test_a_killed_eval_resumes_without_losing_or_duplicating_episodes(tmp_path):
    out = tmp_path / "killed"
    args = ["eval", "--policy", "random", "--envs", MAZE, "--limit", "300", "--seed", "3"]
    args += ["--concurrency", "4", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "PALAESTRA_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "palaestra.cli", *args, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = out / "trajectories.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= 30:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = path.read_bytes()
    finished_before = before.count(b"\n")
    assert 30 <= finished_before < 300, "the run was not killed midway"

    result = run_cli(*args, "--out", str(out), "--resume", timeout=300)
    assert result.returncode == 0, result.stderr
    after = read_trajectories(path)
    keys = [t.key for t in after]
    assert len(keys) == len(set(keys)) == 300
    assert path.read_bytes().startswith(before.rsplit(b"\n", 1)[0])  # nothing rewritten
    # the same episodes as an uninterrupted run
    whole = run_eval(
        EvalConfig("random", (MAZE,), limit=300, rollout=RolloutConfig(seed=3), concurrency=4),
        tmp_path / "whole",
        progress=False,
    )
    assert sorted(map(json.dumps, comparable(after))) == sorted(
        map(json.dumps, comparable(whole.trajectories))
    )
    assert "| palaestra/Maze-v0" in result.stdout


def test_eval_cli_errors_and_help():
    result = run_cli("eval", "--help")
    assert result.returncode == 0 and "openai:URL" in result.stdout and "--resume" in result.stdout
    assert "95% Wilson" in " ".join(result.stdout.split())  # not argparse's escaped "95%%"
    result = run_cli("eval", "--policy", "expert", "--envs", "nope/Nope-v0")
    assert result.returncode == 2 and "unknown env" in result.stderr
    result = run_cli("eval", "--policy", "nonsense-model", "--envs", MAZE, "--limit", "1")
    assert result.returncode == 2 and "error:" in result.stderr


def test_seeded_tiny_model_sampling_gives_identical_trajectories_over_http_and_in_process(
    tmp_path, serve
):
    from palaestra.agents.transformers_policy import TransformersPolicy

    policy = TransformersPolicy("tiny")
    config = EvalConfig(
        "tiny", (MAZE,), limit=2, samples=2,
        rollout=RolloutConfig(temperature=1.0, max_tokens=12, max_turns=3), concurrency=1,
    )  # fmt: skip
    local = run_eval(config, tmp_path / "local", policy=policy, progress=False)
    with serve([MAZE]) as url:
        remote_config = EvalConfig(**{**config.__dict__, "urls": (url,)})
        policy = TransformersPolicy("tiny")
        remote = run_eval(remote_config, tmp_path / "remote", policy=policy, progress=False)
    assert comparable(local.trajectories) == comparable(remote.trajectories)
    replies = [m["content"] for t in local.trajectories for m in t.messages[2::2]]
    assert len(set(replies)) > 1  # sampled, not a constant
