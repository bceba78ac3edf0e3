"""Comparing two runs: ``palaestra compare``, ``/api/compare`` and the Compare page.

The runs are real ``palaestra eval`` folders on the same 12 Maze and 12 Wordle test
tasks: A is the expert capped at 30 turns (it runs out of turns on most mazes), B
the noisy expert (``expert:0.5``) with 60 turns, so tasks flip both ways.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from view_helpers import off_loop, open_route, screenshot

from palaestra.agents.trajectory import read_trajectories
from palaestra.cli import main as cli_main

ENVS = ["palaestra/Maze-v0", "palaestra/Wordle-v0"]
View = Callable[..., AbstractContextManager[str]]


def _eval(out: Path, policy: str, max_turns: int) -> Path:
    argv = ["eval", "--policy", policy, "--envs", *ENVS, "--limit", "12"]
    argv += ["--max-turns", str(max_turns), "--out", str(out), "--quiet"]
    assert off_loop(cli_main, argv) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(A, B): the expert with 30 turns, the noisy expert with 60, on the same 24 tasks."""
    root = tmp_path_factory.mktemp("compare")
    return _eval(root / "expert-30", "expert", 30), _eval(root / "noisy-60", "expert:0.5", 60)


def compare_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert cli_main(["compare", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def reference_p(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1, 2 * Fraction(sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2**n)))


def test_the_cli_json_matches_the_two_files(
    runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = runs
    result = compare_json(capsys, str(a_dir), str(b_dir), "--flips", "100")
    a = {t.key: t for t in read_trajectories(a_dir / "trajectories.jsonl")}
    b = {t.key: t for t in read_trajectories(b_dir / "trajectories.jsonl")}
    assert set(a) == set(b) and len(a) == 24
    assert [row["env"] for row in result["envs"]] == ENVS
    for row in [*result["envs"], result["overall"]]:
        keys = [k for k in a if row["env"] in ("all", a[k].env_id)]
        only_a = sum(a[k].success and not b[k].success for k in keys)
        only_b = sum(b[k].success and not a[k].success for k in keys)
        both = sum(a[k].success and b[k].success for k in keys)
        assert (row["n"], row["only_a"], row["only_b"], row["both"]) == (
            len(keys),
            only_a,
            only_b,
            both,
        )
        assert row["neither"] == len(keys) - only_a - only_b - both
        assert row["successes_a"] == sum(a[k].success for k in keys)
        assert row["score_b"] == pytest.approx(sum(b[k].score for k in keys) / len(keys))
        assert row["mcnemar_p"] == pytest.approx(reference_p(only_a, only_b), rel=1e-12)
        diff = row["score_diff"]
        assert diff["diff"] == pytest.approx(row["score_b"] - row["score_a"])
        assert diff["low"] <= diff["diff"] <= diff["high"] and diff["resamples"] == 10_000
        assert (row["unpaired_a"], row["unpaired_b"]) == (0, 0)
    overall = result["overall"]
    assert overall["only_a"] > 0 and overall["only_b"] > 0  # the runs flip both ways
    # Each flip names the two episodes by their line in their file.
    lines_a = (a_dir / "trajectories.jsonl").read_text().splitlines()
    lines_b = (b_dir / "trajectories.jsonl").read_text().splitlines()
    for key, a_wins in (("a_won", True), ("b_won", False)):
        flips = result["flips"][key]
        assert len(flips) == (overall["only_a"] if a_wins else overall["only_b"])
        for flip in flips:
            ep_a = json.loads(lines_a[flip["a"]["index"]])
            ep_b = json.loads(lines_b[flip["b"]["index"]])
            for episode in (ep_a, ep_b):
                assert (episode["env_id"], episode["task_id"]) == (flip["env"], flip["task_id"])
            assert (ep_a["success"], ep_b["success"]) == (a_wins, not a_wins)
    assert result["a"] == {
        "label": str(a_dir),
        "path": str(a_dir / "trajectories.jsonl"),
        "file": None,
        "episodes": 24,
        "duplicates": 0,
    }


def test_the_cli_prints_the_table_readings_and_flips(
    runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = runs
    result = compare_json(capsys, str(a_dir), str(b_dir))
    assert cli_main(["compare", str(a_dir), str(b_dir), "--flips", "1"]) == 0
    out = capsys.readouterr().out
    overall = result["overall"]
    assert f"A: {a_dir} (24 episodes)" in out
    assert "| env " in out and "| McNemar p |" in out and "| all " in out
    assert f"all: {overall['reading']}" in out
    assert f"B won, A lost: {overall['only_b']}" in out
    assert f"A won, B lost: {overall['only_a']}; the first 1" in out
    first = result["flips"]["a_won"][0]
    assert f"| {first['task_id']} " in out and f"| {first['a']['index'] + 1} " in out


def test_a_run_against_itself_shows_no_difference(
    runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, _ = runs
    result = compare_json(capsys, str(a_dir), str(a_dir / "trajectories.jsonl"))
    for row in [*result["envs"], result["overall"]]:
        assert row["mcnemar_p"] == 1.0
        assert row["only_a"] == row["only_b"] == 0
        for found in (row["score_diff"], row["success_diff"]):
            assert (found["diff"], found["low"], found["high"]) == (0.0, 0.0, 0.0)
    assert result["flips"] == {"a_won": [], "b_won": []}
    assert "no evidence of a difference" in result["overall"]["reading"]


def test_episodes_only_one_run_has_are_counted(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = runs
    lines = (b_dir / "trajectories.jsonl").read_bytes().splitlines(keepends=True)
    maze = [i for i, line in enumerate(lines) if b"Maze-v0" in line.split(b'"task_id"')[0]]
    dropped = set(maze[:2])
    kept = [line for i, line in enumerate(lines) if i not in dropped]
    # A repeated episode (ignored, counted) and a torn last line (a run still being written).
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b"".join([*kept, kept[0], lines[maze[0]][:40]]))
    result = compare_json(capsys, str(a_dir), str(partial))
    overall = result["overall"]
    assert (overall["n"], overall["unpaired_a"], overall["unpaired_b"]) == (22, 2, 0)
    maze_row = result["envs"][0]
    assert (maze_row["env"], maze_row["n"], maze_row["unpaired_a"]) == ("palaestra/Maze-v0", 10, 2)
    assert result["b"]["episodes"] == 22 and result["b"]["duplicates"] == 1
    assert cli_main(["compare", str(a_dir), str(partial)]) == 0
    out = capsys.readouterr().out
    assert "only in A: 2; only in B: 0; repeated episodes ignored: A 0, B 1" in out


def test_a_parquet_file_compares_like_its_jsonl(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("datasets")
    from palaestra.evol import write_parquet

    a_dir, b_dir = runs
    parquet = write_parquet(read_trajectories(b_dir / "trajectories.jsonl"), tmp_path / "b.parquet")
    from_jsonl = compare_json(capsys, str(a_dir), str(b_dir))
    from_parquet = compare_json(capsys, str(a_dir), str(parquet))
    for result in (from_jsonl, from_parquet):
        del result["b"]
    assert from_parquet == from_jsonl


def _evolve_run(runs: tuple[Path, Path], root: Path) -> Path:
    """An AgentEvol run's layout around two real evals: iter-0 (BC) and iter-1 (round 1)."""
    run = root / "evo"
    for i, source in enumerate(runs):
        shutil.copytree(source, run / f"iter-{i}" / "eval" / "t0")
    stages = {
        "eval-0": {"rows": [{"policy": "BC", "temperature": 0.0}]},
        "eval-1": {"rows": [{"policy": "AgentEvol 1", "temperature": 0.0}]},
    }
    (run / "run.json").write_text(json.dumps({"config": {}, "stages": stages}))
    return run


def test_an_evolve_run_is_refused_with_its_evals_named(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _evolve_run(runs, tmp_path)
    assert cli_main(["compare", str(run), str(runs[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run} is an evolve run, not one eval")
    assert "iter-0/eval/t0 (BC, greedy, test); iter-1/eval/t0 (AgentEvol 1, greedy, test)" in err
    # A folder of runs (not one) lists them too, and the named ones compare.
    assert cli_main(["compare", str(run / "iter-0" / "eval"), str(runs[1])]) == 2
    assert "holds several runs; compare two of its eval folders: t0 (BC" in capsys.readouterr().err
    a, b = (str(run / f"iter-{i}" / "eval" / "t0") for i in (0, 1))
    assert compare_json(capsys, a, b)["overall"]["n"] == 24


def test_bad_runs_are_one_error_line(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, _ = runs
    assert cli_main(["compare", "/no/such/run", str(a_dir)]) == 2
    assert capsys.readouterr().err == "error: no such file or folder: /no/such/run\n"
    assert cli_main(["compare", str(a_dir), str(a_dir / "results.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "results.json is not a trajectories file" in err
    damaged = tmp_path / "damaged.jsonl"
    lines = (a_dir / "trajectories.jsonl").read_text().splitlines(keepends=True)
    damaged.write_text(lines[0] + '{"env_id": "x", "task\n' + lines[1])
    assert cli_main(["compare", str(a_dir), str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {damaged}:2: not a trajectory: ") and err.count("\n") == 1
    assert cli_main(["compare", str(a_dir), str(a_dir), "--resamples", "0"]) == 2
    assert "--resamples must be at least 1" in capsys.readouterr().err


def test_the_api_gives_the_clis_comparison(
    runs: tuple[Path, Path], tmp_path: Path, view: View, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = runs
    cli = compare_json(capsys, str(a_dir), str(b_dir), "--flips", "200")
    evo = _evolve_run(runs, tmp_path)
    with view([a_dir, b_dir, evo]) as url:
        listed = httpx.get(f"{url}/api/compare/runs").json()["runs"]
        assert listed[:2] == [
            {
                "id": "expert-30",
                "kind": "eval",
                "file": "expert-30/trajectories.jsonl",
                "label": "expert, greedy, test",
            },
            {
                "id": "noisy-60",
                "kind": "eval",
                "file": "noisy-60/trajectories.jsonl",
                "label": "expert:0.5, greedy, test",
            },
        ]
        assert {r["id"]: r["label"] for r in listed[2:]} == {
            "evo/iter-0/eval/t0": "BC, greedy, test",
            "evo/iter-1/eval/t0": "AgentEvol 1, greedy, test",
        }
        reply = httpx.get(f"{url}/api/compare", params={"a": "expert-30", "b": "noisy-60"})
        assert reply.status_code == 200
        api = reply.json()
        assert api["a"]["file"] == "expert-30/trajectories.jsonl"
        assert api["b"]["label"] == "noisy-60"
        assert {k: v for k, v in api.items() if k not in "ab"} == {
            k: v for k, v in cli.items() if k not in "ab"
        }
        # A file id is a run too.
        by_file = httpx.get(
            f"{url}/api/compare", params={"a": "expert-30/trajectories.jsonl", "b": "noisy-60"}
        ).json()
        assert by_file["overall"] == api["overall"]
        refused = httpx.get(f"{url}/api/compare", params={"a": "evo", "b": "noisy-60"})
        assert refused.status_code == 400
        assert "evo/iter-0/eval/t0 (BC, greedy, test)" in refused.json()["error"]
        missing = httpx.get(f"{url}/api/compare", params={"a": "nope", "b": "noisy-60"})
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        params = {"a": "expert-30", "b": "noisy-60", "resamples": 0}
        assert httpx.get(f"{url}/api/compare", params=params).status_code == 422


def _cells(page: Any, env: str) -> dict[str, str]:
    row = page.locator(f"#compare-result tr[data-env='{env}']")
    return {
        col: row.locator(f"[data-col='{col}']").inner_text()
        for col in ("n", "both", "neither", "only_a", "only_b", "mcnemar_p", "score_diff")
    }


def test_the_page_compares_two_runs_and_links_the_flips(
    runs: tuple[Path, Path], view: View, page: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = runs
    cli = compare_json(capsys, str(a_dir), str(b_dir), "--flips", "200")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with view([a_dir, b_dir]) as url:
        open_route(page, url, "compare")
        assert "Pick run A and run B" in page.locator("#compare-empty").inner_text()
        for select, run in (("#compare-a", "expert-30"), ("#compare-b", "noisy-60")):
            # Each choice re-renders the page: wait for that render, not the last one.
            page.evaluate("delete document.body.dataset.ready")
            page.select_option(select, run)
            page.wait_for_selector("body[data-ready='compare']")
        assert "a=expert-30" in page.url and "b=noisy-60" in page.url  # the choice is in the link
        for row in [*cli["envs"], cli["overall"]]:
            cells = _cells(page, row["env"])
            assert cells["n"] == str(row["n"])
            assert (cells["only_a"], cells["only_b"]) == (str(row["only_a"]), str(row["only_b"]))
            assert (cells["both"], cells["neither"]) == (str(row["both"]), str(row["neither"]))
            assert float(cells["mcnemar_p"]) == pytest.approx(row["mcnemar_p"], rel=2e-3)
            found = row["score_diff"]
            assert cells["score_diff"] == (
                f"{found['diff']:+.3f} [{found['low']:+.3f}, {found['high']:+.3f}]"
            )
            reading = page.locator(f"#compare-readings [data-env='{row['env']}']").inner_text()
            assert reading == f"{row['env']}: {row['reading']}"
        for key in ("a_won", "b_won"):
            shown = page.locator(f"[data-flips='{key}'] tbody tr")
            assert shown.count() == len(cli["flips"][key])
            for i, flip in enumerate(cli["flips"][key]):
                assert shown.nth(i).get_attribute("data-task") == str(flip["task_id"])
        screenshot(page, "compare")
        flip = cli["flips"]["b_won"][0]
        page.locator("[data-flips='b_won'] tbody tr").first.locator("a[data-side='b']").click()
        page.wait_for_function("location.hash.startsWith('#/episode')")
        route = page.evaluate("location.hash")
        assert route == (
            "#/episode?file=noisy-60%2Ftrajectories.jsonl&index=" + str(flip["b"]["index"])
        )
    assert errors == []


def test_the_page_shows_unpaired_episodes_errors_and_updates_live(
    runs: tuple[Path, Path], tmp_path: Path, view: View, page: Any
) -> None:
    a_dir, b_dir = runs
    lines = (b_dir / "trajectories.jsonl").read_bytes().splitlines(keepends=True)
    growing = tmp_path / "growing.jsonl"
    growing.write_bytes(b"".join(lines[:-2]))  # a run still being written: 2 episodes to go
    with view([a_dir, growing]) as url:
        open_route(page, url, "compare?a=expert-30&b=growing.jsonl")
        assert (
            "2 episode(s) only in A and 0 only in B"
            in page.locator("#compare-unpaired").inner_text()
        )
        assert page.locator("tr[data-env='all'] [data-col='unpaired']").inner_text() == "2 / 0"
        assert page.locator("tr[data-env='all'] [data-col='n']").inner_text() == "22"
        with growing.open("ab") as file:
            file.write(b"".join(lines[-2:]))
        # The page polls /api/version and redraws the comparison when the file grows.
        page.wait_for_selector("#compare-unpaired", state="detached", timeout=15_000)
        assert page.locator("tr[data-env='all'] [data-col='n']").inner_text() == "24"
        open_route(page, url, "compare?a=nope&b=growing.jsonl")
        assert (
            "no run or trajectories file 'nope'"
            in page.locator("#compare-result .error").inner_text()
        )
    with view([a_dir]) as url:
        open_route(page, url, "compare")
        assert "needs two runs" in page.locator("#compare-empty").inner_text()


def test_samples_of_a_task_are_paired_by_sample_and_resampled_together(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir, b_dir = runs
    doubled = []
    for run in runs:
        lines = (run / "trajectories.jsonl").read_bytes().splitlines(keepends=True)
        again = [line.replace(b'"sample": 0,', b'"sample": 1,', 1) for line in lines]
        path = tmp_path / f"{run.name}-x2.jsonl"
        path.write_bytes(b"".join(lines + again))
        doubled.append(str(path))
    once = compare_json(capsys, str(a_dir), str(b_dir))["overall"]
    twice = compare_json(capsys, *doubled)["overall"]
    assert (twice["n"], twice["only_a"], twice["only_b"]) == (
        48,
        2 * once["only_a"],
        2 * once["only_b"],
    )
    assert twice["mcnemar_p"] == pytest.approx(reference_p(twice["only_a"], twice["only_b"]))
    assert "episodes A failed" in twice["reading"] or "episode A failed" in twice["reading"]
    # Two samples with the same outcomes are no new evidence: the interval over tasks is unchanged.
    assert twice["score_diff"] == pytest.approx(once["score_diff"])
