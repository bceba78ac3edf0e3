"""The Runs page: the runs API over real eval and evolve runs, and the page in a real browser."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from view_helpers import off_loop, open_route, screenshot

from palaestra.agents.evaluate import wilson_interval

View = Callable[..., AbstractContextManager[str]]


@pytest.fixture(autouse=True)
def index_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test caches indexes in its own folder (never the user's cache)."""
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def evolve_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real AgentEvol run on the demo's quick budget (~35 s on 2 cores): the random and
    heuristic baselines, the expert, BC and its eval (greedy and t=1), and the demo's plot."""
    pytest.importorskip("torch")
    from palaestra.demo import DEMO_PRESETS, demo_config, plot_results
    from palaestra.evol.agentevol import run_agentevol

    out = tmp_path_factory.mktemp("runs") / "evolve"
    quick = demo_config(DEMO_PRESETS["quick"])
    config = replace(quick, baselines=("random", "heuristic"), iterations=0, concurrency=8)
    result = off_loop(run_agentevol, config, out, progress=False, log=lambda _line: None)
    plot_results(list(result.rows), out / "plot.png")
    return out


def test_runs_lists_an_eval_with_its_file_and_headline(eval_run: Path, view: View) -> None:
    results = json.loads((eval_run / "results.json").read_text())
    with view([eval_run.parent]) as url:
        items = httpx.get(f"{url}/api/runs").json()["items"]
    label = eval_run.parent.name
    run, file = items
    assert (run["id"], run["kind"], run["depth"], run["parent"]) == (
        f"{label}/eval-noisy",
        "eval",
        0,
        None,
    )
    assert run["title"] == "eval of expert:0.5 on Maze-v0"
    assert run["episodes"] == results["episodes_finished"] == 12
    assert run["success"] == results["rows"][-1]["success"]
    assert run["updated"] == pytest.approx((eval_run / "results.json").stat().st_mtime, abs=1)
    assert (file["kind"], file["parent"], file["depth"]) == ("trajectories", run["id"], 1)


def test_an_eval_runs_results_with_intervals(eval_run: Path, view: View) -> None:
    results = json.loads((eval_run / "results.json").read_text())
    record = json.loads((eval_run / "run.json").read_text())
    with view([eval_run]) as url:
        run = httpx.get(f"{url}/api/run", params={"id": "eval-noisy"}).json()
    assert [r["env"] for r in run["rows"]] == [r["env"] for r in results["rows"]]
    for mine, theirs in zip(run["rows"], results["rows"], strict=True):
        for key in ("episodes", "success", "score", "turns", "invalid_rate", "success_95"):
            assert mine[key] == theirs[key], key
    maze = run["rows"][0]
    assert maze["success_95"] == list(wilson_interval(maze["successes"], maze["episodes"]))
    assert run["live"] is False and run["errors"] == 0
    assert run["provenance"] == record["provenance"]
    assert run["config"]["policy"] == "expert:0.5"
    assert [f["id"] for f in run["files"]] == ["eval-noisy/trajectories.jsonl"]


def test_an_eval_still_writing_shows_its_rows_so_far(eval_run: Path, tmp_path: Path, view: View):
    # As `palaestra eval` leaves its folder mid-run: run.json, errors.jsonl, some lines,
    # no results.json yet.
    run = tmp_path / "running"
    run.mkdir()
    shutil.copy(eval_run / "run.json", run / "run.json")
    (run / "errors.jsonl").write_text('{"key": "x", "error": "boom"}\n')
    lines = (eval_run / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (run / "trajectories.jsonl").write_text("".join(lines[:5]))
    with view([run]) as url:
        reply = httpx.get(f"{url}/api/run", params={"id": "running"}).json()
        assert reply["live"] is True and reply["errors"] == 1
        assert reply["rows"][0]["episodes"] == 5
        with (run / "trajectories.jsonl").open("a") as file:
            file.write("".join(lines[5:8]))
        for _ in range(100):
            reply = httpx.get(f"{url}/api/run", params={"id": "running"}).json()
            if reply["rows"][0]["episodes"] == 8:
                break
        assert reply["rows"][0]["episodes"] == 8
        records = [json.loads(line) for line in lines[:8]]
        wins = sum(r["success"] for r in records)
        assert reply["rows"][0]["successes"] == wins
        turns = sum(r["turns"] for r in records)
        assert reply["rows"][0]["turns"] == pytest.approx(turns / 8)


def test_run_errors_name_the_id(eval_run: Path, view: View) -> None:
    with view([eval_run]) as url:
        cases = [
            ("run", {}, 400, "id: required"),
            ("run", {"id": "eval-nope"}, 404, "'eval-nope'"),
            ("run/plot", {"id": "eval-noisy"}, 404, "'eval-noisy' has no plot.png"),
            ("run/plot", {"id": "nope"}, 404, "'nope'"),
        ]
        for route, params, status, message in cases:
            reply = httpx.get(f"{url}/api/{route}", params=params)
            assert reply.status_code == status, (route, params, reply.text)
            assert message in reply.json()["error"], (route, params)


def test_the_run_page_shows_the_results_table(eval_run: Path, view: View, page: Any) -> None:
    results = json.loads((eval_run / "results.json").read_text())
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with view([eval_run.parent]) as url:
        open_route(page, url, "runs")
        page.click("#runs-list tr[data-kind='eval'] a")
        page.wait_for_selector("body[data-ready='run'] #results")
        rows = page.locator("#results tbody tr")
        assert rows.count() == len(results["rows"])
        for i, row in enumerate(results["rows"]):
            cells = [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
            low_high = row["success_95"]
            assert cells[:3] == [row["env"], str(row["episodes"]), f"{100 * row['success']:.1f}%"]
            dash = "\u2013"
            ci = f"{100 * low_high[0]:.0f}{dash}{100 * low_high[1]:.0f}%" if low_high else ""
            assert cells[3] == ci
            score = f"{row['score']:.3f}" if row["score"] % 1 else str(int(row["score"]))
            assert cells[4] == score
        page.click("#provenance summary")
        assert '"palaestra"' in page.locator("#provenance pre").inner_text()
        page.click(".file a")
        page.wait_for_selector("body[data-ready='episodes'] #episodes-count")
        assert page.locator("#total").inner_text() == "12"
    assert errors == []


@pytest.mark.slow  # the evolve run takes ~35 s to make
def test_an_evolve_runs_stage_table_plot_and_nested_evals(
    evolve_run: Path, view: View, page: Any
) -> None:
    record = json.loads((evolve_run / "run.json").read_text())
    stages = record["stages"]
    with view([evolve_run]) as url:
        run = httpx.get(f"{url}/api/run", params={"id": "evolve"}).json()
        assert run["kind"] == "evolve" and run["title"] == "AgentEvol on Maze-v0"
        table = run["table"]
        assert [r["stage"] for r in table["rows"]] == [s for s in stages if "rows" in stages[s]]
        assert [(c["env"], c["temperature"]) for c in table["columns"]] == [
            ("palaestra/Maze-v0", 0.0),
            ("palaestra/Maze-v0", 1.0),
        ]
        for row in table["rows"]:
            for source in stages[row["stage"]]["rows"]:
                cell = row["cells"][f"{source['env']}@{source['temperature']:g}"]
                assert (cell["success"], cell["successes"]) == (
                    source["success"],
                    source["successes"],
                )
                assert cell["success_95"] == list(
                    wilson_interval(source["successes"], source["episodes"])
                )
        assert [s["stage"] for s in run["stages"]] == list(stages)
        assert run["seeds"] == record["seeds"] and run["plot"] is True
        plot = httpx.get(f"{url}/api/run/plot", params={"id": "evolve"})
        assert plot.headers["content-type"] == "image/png"
        assert plot.content == (evolve_run / "plot.png").read_bytes()
        nested = {c["id"] for c in run["children"]}
        assert "evolve/iter-0/eval/t0" in nested and "evolve/iter-0/eval/t1" in nested
        assert "evolve/base/data.jsonl" in {f["id"] for f in run["files"]}
        items = httpx.get(f"{url}/api/runs").json()["items"]
        parents = {i["id"]: i["parent"] for i in items}
        assert parents["evolve/iter-0/eval/t0"] == "evolve"
        assert parents["evolve/iter-0/eval/t0/trajectories.jsonl"] == "evolve/iter-0/eval/t0"

        open_route(page, url, "runs")
        page.wait_for_selector("#runs-list tr[data-kind='evolve']")
        shown = page.locator("#runs-list tbody tr")
        assert [shown.nth(i).get_attribute("data-id") for i in range(shown.count())] == [
            i["id"] for i in items
        ]
        screenshot(page, "runs")
        page.click("#runs-list tr[data-kind='evolve'] a")
        page.wait_for_selector("body[data-ready='run'] #stage-table")
        page.wait_for_function("document.querySelector('#plot')?.naturalWidth > 0")
        stage_rows = page.locator("#stage-table tbody tr")
        count = stage_rows.count()
        shown_stages = [stage_rows.nth(i).get_attribute("data-stage") for i in range(count)]
        assert shown_stages == [r["stage"] for r in table["rows"]]
        bc = page.locator("#stage-table tr[data-stage='eval-0'] td").all_inner_texts()
        greedy = stages["eval-0"]["rows"][0]
        assert bc[2].startswith(f"{100 * greedy['success']:.1f}%")
        screenshot(page, "run")
        page.click("tr.child[data-id='evolve/iter-0/eval/t0'] a")
        page.wait_for_selector("body[data-ready='run'] #results")
        assert "part of" in page.locator(".run-meta").inner_text()


def test_the_run_page_updates_while_the_eval_writes(
    eval_run: Path, tmp_path: Path, view: View, page: Any
) -> None:
    run = tmp_path / "running"
    run.mkdir()
    shutil.copy(eval_run / "run.json", run / "run.json")
    lines = (eval_run / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (run / "trajectories.jsonl").write_text("".join(lines[:3]))
    with view([run]) as url:
        open_route(page, url, "run?id=running")
        page.wait_for_selector("#results tr[data-env='palaestra/Maze-v0']")
        episodes = "#results tr[data-env='palaestra/Maze-v0'] td:nth-child(2)"
        assert page.locator(episodes).inner_text() == "3"
        assert page.locator(".live-note").count() == 1
        page.click("#provenance summary")  # opened sections stay open through updates
        page.evaluate("window.__marker = 'same page'")
        with (run / "trajectories.jsonl").open("a") as file:
            file.write("".join(lines[3:10]))
        page.wait_for_function(
            f"document.querySelector({episodes!r})?.textContent === '10'", timeout=15_000
        )
        assert page.evaluate("window.__marker") == "same page"
        assert page.locator("#provenance").get_attribute("open") is not None
