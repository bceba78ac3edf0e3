"""The Runs page's API: every run and data file, an eval's results, an evolve run's stages.

``GET /api/runs`` lists the catalog (eval runs nested under the evolve run they sit
in, data files under their run) with each one's headline numbers; ``GET /api/run``
gives one run's tables and provenance; ``GET /api/run/plot`` its ``plot.png``.
A trajectories file's headline (episodes, success) comes from its index
(:mod:`palaestra.view.line_index`), so a file still being written counts up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from palaestra.agents.evaluate import wilson_interval
from palaestra.view.catalog import Catalog, FileEntry, RunEntry
from palaestra.view.deps import catalog_of
from palaestra.view.episodes_api import indexes_of
from palaestra.view.line_index import FileIndex

__all__ = ["index_rows", "router"]

router = APIRouter(tags=["runs"])
CatalogDep = Annotated[Catalog, Depends(catalog_of)]

MACRO = "macro average"


def _read_json(path: Path) -> Any:
    """A JSON file, or None when it is missing or half written."""
    try:
        with path.open("rb") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _mtime(*paths: Path) -> float | None:
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times else None


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def _evolve_kind(config: dict[str, Any]) -> str:
    if "search_tasks" in config or "mcts" in config:
        return "Agent-R"
    if "explore_tasks" in config:
        return "AgentEvol"
    return "evolve"


def _short_env(env: str) -> str:
    return env.split("/", 1)[-1]


def _title(run: RunEntry, record: dict[str, Any] | None) -> str:
    config = (record or {}).get("config") or {}
    envs = ", ".join(_short_env(e) for e in config.get("envs") or [])
    if run.kind == "eval":
        policy = config.get("policy", "?")
        return f"eval of {policy}" + (f" on {envs}" if envs else "")
    return f"{_evolve_kind(config)}" + (f" on {envs}" if envs else "")


def index_rows(index: FileIndex) -> list[dict[str, Any]]:
    """Per-env result rows from a trajectories index, as ``palaestra eval``'s summarize makes them.

    For an eval still being written (no ``results.json`` yet, or one older than its file).
    """
    table, n = index.table()
    env_codes = table.columns["env_id"][:n]
    rows = []
    for code, env in enumerate(table.vocab["env_id"]):
        mask = env_codes == code
        count = int(mask.sum())
        if not count:
            continue
        wins = int(table.columns["success"][:n][mask].sum())
        turns = int(table.columns["turns"][:n][mask].sum())
        invalid = int(table.columns["invalid_actions"][:n][mask].sum())
        rows.append(
            {
                "env": env,
                "episodes": count,
                "success": wins / count,
                "success_95": list(wilson_interval(wins, count)),
                "score": float(table.columns["score"][:n][mask].astype(np.float64).mean()),
                "turns": turns / count,
                "invalid_rate": invalid / turns if turns else 0.0,
                "format_errors": int(table.columns["format_errors"][:n][mask].sum()),
            }
        )
    return rows + _macro(rows)


def _macro(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    played = [r for r in rows if r["episodes"] and r["env"] != MACRO]
    if not played:
        return []
    k = len(played)
    return [
        {
            "env": MACRO,
            "episodes": sum(r["episodes"] for r in played),
            "success": sum(r["success"] for r in played) / k,
            "success_95": None,
            "score": sum(r["score"] for r in played) / k,
            "turns": sum(r["turns"] for r in played) / k,
            "invalid_rate": sum(r["invalid_rate"] for r in played) / k,
            "format_errors": sum(r.get("format_errors", 0) for r in played),
        }
    ]


def _with_intervals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``successes`` and (where a results file predates them) Wilson intervals."""
    out = []
    for row in rows:
        row = dict(row)
        if row.get("env") != MACRO:
            n = int(row.get("episodes", 0))
            wins = round(row.get("success", 0.0) * n)
            row["successes"] = wins
            if not row.get("success_95"):
                row["success_95"] = list(wilson_interval(wins, n))
        out.append(row)
    return out


def _file_headline(request: Request, entry: FileEntry) -> dict[str, Any]:
    if entry.kind != "trajectories":
        return {}
    try:
        index = indexes_of(request).get(entry.path)
        index.wait(timeout=0.05)
    except (KeyError, ValueError):
        return {}
    table, n = index.table()
    wins = int(table.columns["success"][:n].sum())
    return {"episodes": n, "success": wins / n if n else None, "complete": index.complete}


def _eval_headline(run: RunEntry) -> dict[str, Any]:
    results = _read_json(run.path / "results.json")
    if not isinstance(results, dict):
        return {}
    macro = next((r for r in results.get("rows", []) if r.get("env") == MACRO), None)
    return {
        "episodes": results.get("episodes_finished"),
        "success": macro.get("success") if macro else None,
    }


def _evolve_headline(record: dict[str, Any] | None) -> dict[str, Any]:
    stages = (record or {}).get("stages") or {}
    # The latest stage with a table: its greedy success, averaged over envs.
    for name in reversed(list(stages)):
        rows = stages[name].get("rows") if isinstance(stages[name], dict) else None
        if rows:
            greedy = [r for r in rows if r.get("temperature", 0.0) == 0.0] or rows
            return {
                "stages": len(stages),
                "success": sum(r["success"] for r in greedy) / len(greedy),
                "success_of": f"{greedy[0].get('policy', name)} (greedy)",
            }
    return {"stages": len(stages)}


def _run_record(run: RunEntry) -> dict[str, Any] | None:
    record = _read_json(run.path / "run.json")
    return record if isinstance(record, dict) else None


def _run_id(request: Request) -> str:
    run_id = request.query_params.get("id")
    if not run_id:
        raise ValueError("id: required (a run's id, from /api/runs)")
    return run_id


@router.get("/runs")
def runs(request: Request, catalog: CatalogDep) -> dict[str, Any]:
    """Every run and data file, in folder order, each with its parent and headline numbers.

    Reply: ``items``: ``{id, kind (eval, evolve, trajectories, trees), title, parent,
    depth, updated (seconds since the epoch), episodes, success, ...}``; a run's files
    and nested runs follow it.
    """
    run_list, files = catalog.scan()
    depth: dict[str, int] = {}
    items: list[dict[str, Any]] = []
    children: dict[str | None, list[dict[str, Any]]] = {}
    for run in run_list:
        record = _run_record(run)
        depth[run.id] = depth[run.parent] + 1 if run.parent in depth else 0
        headline = _eval_headline(run) if run.kind == "eval" else _evolve_headline(record)
        item = {
            "id": run.id,
            "kind": run.kind,
            "title": _title(run, record),
            "parent": run.parent,
            "path": str(run.path),
            "updated": _mtime(
                run.path / "run.json",
                run.path / "results.json",
                run.path / "trajectories.jsonl",
            ),
            **headline,
        }
        children.setdefault(run.parent, []).append(item)
    for entry in files:
        item = {
            "id": entry.id,
            "kind": entry.kind,
            "title": entry.path.name,
            "parent": entry.run,
            "path": str(entry.path),
            "size": entry.size,
            "updated": entry.mtime_ns / 1e9,
            **_file_headline(request, entry),
        }
        children.setdefault(entry.run, []).append(item)

    def walk(parent: str | None, level: int) -> None:
        # files first, then nested runs: a run's own data reads before its sub-runs
        for item in sorted(children.get(parent, []), key=lambda x: x["kind"] in ("eval", "evolve")):
            item["depth"] = level
            items.append(item)
            if item["kind"] in ("eval", "evolve"):
                walk(item["id"], level + 1)

    walk(None, 0)
    return {"items": items}


def _stage_table(stages: dict[str, Any]) -> dict[str, Any]:
    """The stage x (env, temperature) table of an evolve run's stages that have rows."""
    columns: list[tuple[str, float]] = []
    rows = []
    for name, stage in stages.items():
        if not isinstance(stage, dict) or not stage.get("rows"):
            continue
        cells: dict[str, Any] = {}
        policy = stage["rows"][0].get("policy", name)
        for row in stage["rows"]:
            key = (row["env"], float(row.get("temperature", 0.0)))
            if key not in columns:
                columns.append(key)
            n, wins = int(row.get("episodes", 0)), int(row.get("successes", 0))
            cells[f"{key[0]}@{key[1]:g}"] = {
                "success": row.get("success"),
                "successes": wins,
                "episodes": n,
                "success_95": list(wilson_interval(wins, n)),
                "mean_turns": row.get("mean turns"),
                "loop_rate": row.get("loop rate"),
            }
        rows.append({"stage": name, "policy": policy, "cells": cells})
    return {
        "columns": [{"key": f"{env}@{t:g}", "env": env, "temperature": t} for env, t in columns],
        "rows": rows,
    }


def _stages_list(stages: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage's own numbers (all but its table rows), in run order."""
    out = []
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            continue
        numbers = {k: v for k, v in stage.items() if k != "rows"}
        out.append({"stage": name, **numbers})
    return out


def _tasks_counts(tasks: Any) -> dict[str, dict[str, int]]:
    if not isinstance(tasks, dict):
        return {}
    return {
        env: {split: len(ids) for split, ids in splits.items() if isinstance(ids, list)}
        for env, splits in tasks.items()
        if isinstance(splits, dict)
    }


def _config_without_tasks(config: Any) -> Any:
    # The task lists run to thousands of ids: the page shows their counts instead.
    if not isinstance(config, dict):
        return config
    out = dict(config)
    if isinstance(out.get("tasks"), dict):
        out["tasks"] = {
            env: (f"{len(ids)} tasks" if isinstance(ids, list) else _tasks_counts({env: ids}))
            for env, ids in out["tasks"].items()
        }
    return out


@router.get("/run")
def run(request: Request, catalog: CatalogDep) -> dict[str, Any]:
    """One run: an eval's results table, or an evolve run's stages, with provenance.

    Reply (both): ``id, kind, title, path, updated, config, provenance, files`` (its
    data files with headlines) and ``children`` (its nested runs). An eval adds
    ``rows`` (per env and the macro average: episodes, success, successes,
    ``success_95`` (Wilson), score, turns, invalid_rate), ``live`` (the rows come from
    the trajectories file, which is ahead of ``results.json``), ``errors`` (lines of
    ``errors.jsonl``) and the counts of ``results.json``. An evolve run adds ``table``
    (stage x env x temperature), ``stages``, ``seeds``, ``tasks`` (counts), ``plot``
    (whether ``/api/run/plot`` has one) and ``report`` (``report.md``'s text, or None).
    """
    entry = catalog.run(_run_id(request))
    record = _run_record(entry) or {}
    run_list, files = catalog.scan()
    out: dict[str, Any] = {
        "id": entry.id,
        "kind": entry.kind,
        "title": _title(entry, record),
        "parent": entry.parent,
        "path": str(entry.path),
        "updated": _mtime(entry.path / "run.json", entry.path / "results.json"),
        "provenance": record.get("provenance"),
        "children": [
            {
                "id": r.id,
                "kind": r.kind,
                "title": _title(r, _run_record(r)),
                **(_eval_headline(r) if r.kind == "eval" else {}),
            }
            for r in run_list
            if r.parent == entry.id
        ],
        "files": [
            {
                "id": f.id,
                "kind": f.kind,
                "title": f.path.relative_to(entry.path).as_posix(),
                "size": f.size,
                **_file_headline(request, f),
            }
            for f in files
            if f.run == entry.id
        ],
    }
    if entry.kind == "eval":
        out["config"] = _config_without_tasks(record.get("config"))
        out.update(_eval_results(request, entry))
    else:
        stages = record.get("stages") or {}
        out["config"] = record.get("config")
        out["seeds"] = record.get("seeds")
        out["tasks"] = _tasks_counts(record.get("tasks"))
        out["table"] = _stage_table(stages)
        out["stages"] = _stages_list(stages)
        out["plot"] = (entry.path / "plot.png").is_file()
        report = entry.path / "report.md"
        out["report"] = report.read_text(encoding="utf-8") if report.is_file() else None
    return out


def _eval_results(request: Request, entry: RunEntry) -> dict[str, Any]:
    results = _read_json(entry.path / "results.json")
    results = results if isinstance(results, dict) else {}
    rows = _with_intervals(results.get("rows") or [])
    live = False
    trajectories = entry.path / "trajectories.jsonl"
    if trajectories.is_file():
        index = indexes_of(request).get(trajectories)
        index.wait(timeout=0.5)
        finished = results.get("episodes_finished")
        # An eval still writing (or resumed): its file is ahead of its table.
        if index.complete and len(index) and len(index) != finished:
            rows, live = _with_intervals(index_rows(index)), True
    return {
        "rows": rows,
        "live": live,
        "episodes_planned": results.get("episodes_planned"),
        "episodes_finished": results.get("episodes_finished"),
        "lost": results.get("lost") or [],
        "this_invocation": results.get("this_invocation"),
        "errors": _count_lines(entry.path / "errors.jsonl"),
    }


@router.get("/run/plot")
def run_plot(request: Request, catalog: CatalogDep) -> FileResponse:
    """An evolve run's ``plot.png`` (404 when it has none)."""
    entry = catalog.run(_run_id(request))
    path = entry.path / "plot.png"
    if not path.is_file():
        raise KeyError(f"run {entry.id!r} has no plot.png")
    return FileResponse(path, media_type="image/png")
