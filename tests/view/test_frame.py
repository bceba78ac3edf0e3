"""The viewer's frame: catalog, token guard, version polling, static page, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from view_helpers import open_route

from palaestra.cli import main as cli_main
from palaestra.view import Catalog


def test_the_catalog_finds_eval_runs_and_their_files(eval_run: Path) -> None:
    catalog = Catalog([eval_run.parent])
    runs, files = catalog.scan()
    label = eval_run.parent.name
    assert [(r.id, r.kind) for r in runs] == [(f"{label}/eval-noisy", "eval")]
    assert [(f.id, f.kind, f.run) for f in files] == [
        (f"{label}/eval-noisy/trajectories.jsonl", "trajectories", f"{label}/eval-noisy")
    ]
    with pytest.raises(KeyError, match="no run"):
        catalog.run("nope")


def test_the_catalog_names_a_missing_path() -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        Catalog(["/no/such/run"])


def test_the_catalog_nests_an_evolve_runs_stages_and_finds_trees(tmp_path: Path) -> None:
    run = tmp_path / "evo"
    (run / "iter-1" / "eval" / "t0").mkdir(parents=True)
    (run / "iter-1" / "sft" / "model").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {}, "stages": {}}))
    (run / "iter-1" / "eval" / "t0" / "results.json").write_text("[]")
    (run / "iter-1" / "eval" / "t0" / "trajectories.jsonl").write_text("")
    tree = {"env_id": "e/E-v0", "task_id": 1, "nodes": [{"id": 0}]}
    (run / "iter-1" / "trees.jsonl").write_text(json.dumps(tree) + "\n")
    (run / "iter-1" / "sft" / "model" / "x.jsonl").write_text('{"env_id": 1, "messages": []}\n')
    runs, files = Catalog([run]).scan()
    assert [(r.id, r.kind, r.parent) for r in runs] == [
        ("evo", "evolve", None),
        ("evo/iter-1/eval/t0", "eval", "evo"),
    ]
    assert {(f.id, f.kind, f.run) for f in files} == {
        ("evo/iter-1/eval/t0/trajectories.jsonl", "trajectories", "evo/iter-1/eval/t0"),
        ("evo/iter-1/trees.jsonl", "trees", "evo"),
    }


def test_the_token_guard_takes_a_header_or_the_links_cookie(
    eval_run: Path, view: Callable[..., AbstractContextManager[str]]
) -> None:
    with view([eval_run], token="s3cret") as url:
        assert httpx.get(f"{url}/api/version").status_code == 401
        assert httpx.get(f"{url}/").status_code == 401
        ok = httpx.get(f"{url}/api/version", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        with httpx.Client(base_url=url, follow_redirects=True) as client:
            assert client.get("/?token=wrong").status_code == 401
            landing = client.get("/?token=s3cret")
            assert landing.status_code == 200 and "palaestra view" in landing.text
            assert "token" not in str(landing.url)
            assert client.get("/api/version").status_code == 200  # the cookie now


def test_the_version_changes_when_a_run_grows(
    eval_run: Path, tmp_path: Path, view: Callable[..., AbstractContextManager[str]]
) -> None:
    run = tmp_path / "live"
    run.mkdir()
    lines = (eval_run / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (run / "trajectories.jsonl").write_text(lines[0])
    with view([run]) as url:
        before = httpx.get(f"{url}/api/version").json()["version"]
        assert httpx.get(f"{url}/api/version").json()["version"] == before
        with (run / "trajectories.jsonl").open("a") as file:
            file.write(lines[1])
        assert httpx.get(f"{url}/api/version").json()["version"] != before


def test_the_page_and_its_scripts_are_served(
    eval_run: Path, view: Callable[..., AbstractContextManager[str]]
) -> None:
    with view([eval_run]) as url:
        html = httpx.get(f"{url}/")
        assert html.status_code == 200 and 'src="/static/main.js"' in html.text
        for name in ("main.js", "core.js", "style.css", "pages/runs.js"):
            assert httpx.get(f"{url}/static/{name}").status_code == 200, name


def test_the_page_renders_in_a_real_browser(
    eval_run: Path, view: Callable[..., AbstractContextManager[str]], page: Any
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with view([eval_run]) as url:
        open_route(page, url, "runs")
        assert page.title() == "palaestra view"
        assert page.locator("#nav a.active").inner_text() == "Runs"
    assert errors == []


def test_view_refuses_a_public_bind_without_a_token(
    eval_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["view", str(eval_run), "--host", "0.0.0.0"]) == 2
    assert "without a token" in capsys.readouterr().err


def test_view_names_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["view", "/no/such/run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: palaestra view: no such file or folder: /no/such/run"
    )


def test_the_favicon_is_answered_with_no_content_not_a_404(
    eval_run: Path, view: Callable[..., AbstractContextManager[str]]
) -> None:
    # Browsers ask for /favicon.ico on every page; a 404 there lands in every console.
    with view([eval_run]) as url:
        assert httpx.get(f"{url}/favicon.ico").status_code == 204
