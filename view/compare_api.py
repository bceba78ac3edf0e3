"""The Compare page's API: two runs compared on the tasks both played.

- ``GET /api/compare/runs``: what can be compared: ``{"runs": [{"id", "kind",
  "file", "label"}]}``, every eval run (``kind`` "eval", ``label`` naming its
  stage, e.g. "BC, greedy, test") and every trajectories file outside one
  (``kind`` "file"); ``file`` is the trajectories file's id.
- ``GET /api/compare?a=&b=[&seed=&resamples=&flips=]``: ``a`` and ``b`` are run
  ids or trajectories file ids; the reply is :func:`palaestra.view.compare.compare_runs`'s
  dict (what ``palaestra compare --json`` prints), with the file ids episode
  links need. An evolve run is refused (400) with its eval runs listed; an
  unknown id is a 404.

A result is cached per (runs, their files' size and time, settings): the page
asks again on every live update, and a file that has not changed gives the
same answer at once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from palaestra.view.catalog import Catalog, FileEntry, RunEntry
from palaestra.view.compare import RunRef, compare_runs
from palaestra.view.deps import catalog_of
from palaestra.view.evals import describe_eval

__all__ = ["comparable_runs", "resolve_catalog_run", "router"]

router = APIRouter(tags=["compare"])

MAX_RESAMPLES = 100_000  # a bound on one request's work
CatalogDep = Annotated[Catalog, Depends(catalog_of)]


def _eval_file(run: RunEntry, files: list[FileEntry]) -> FileEntry | None:
    target = run.path / "trajectories.jsonl"
    return next((f for f in files if f.path == target), None)


def comparable_runs(catalog: Catalog) -> list[dict[str, Any]]:
    """Every eval run and every trajectories file outside one, as the page's selects list them."""
    runs, files = catalog.scan()
    trajectories = [f for f in files if f.kind == "trajectories"]
    out: list[dict[str, Any]] = []
    taken: set[str] = set()
    for run in runs:
        if run.kind != "eval":
            continue
        found = _eval_file(run, trajectories)
        if found is None:
            continue
        taken.add(found.id)
        out.append(
            {"id": run.id, "kind": "eval", "file": found.id, "label": describe_eval(run.path)}
        )
    for entry in trajectories:
        if entry.id not in taken:
            out.append({"id": entry.id, "kind": "file", "file": entry.id, "label": entry.path.name})
    return out


def resolve_catalog_run(catalog: Catalog, run_id: str) -> RunRef:
    """The run (eval run id, or trajectories file id) the page asks for.

    Raises:
        KeyError: No run or file has this id.
        ValueError: It is an evolve run (the message lists its eval runs) or not a
            trajectories file.
    """
    runs, files = catalog.scan()
    run = next((r for r in runs if r.id == run_id), None)
    if run is not None:
        if run.kind == "evolve":
            evals = [r for r in runs if r.kind == "eval" and r.id.startswith(run_id + "/")]
            listing = "; ".join(f"{r.id} ({describe_eval(r.path)})" for r in evals)
            raise ValueError(
                f"{run_id} is an evolve run, not one eval; compare two of its eval runs: "
                + (listing or "none yet")
            )
        found = _eval_file(run, files)
        if found is None:
            raise ValueError(f"{run_id} has no trajectories.jsonl yet")
        return RunRef(run_id, found.path, found.id)
    entry = next((f for f in files if f.id == run_id), None)
    if entry is None:
        raise KeyError(f"no run or trajectories file {run_id!r} under the viewed paths")
    if entry.kind != "trajectories":
        raise ValueError(f"{run_id} is a {entry.kind} file, not trajectories")
    return RunRef(run_id, entry.path, entry.id)


def _stamp(run: RunRef) -> tuple[int, int]:
    stat = run.path.stat()
    return stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=8)
def _compare_cached(
    a: RunRef,
    b: RunRef,
    stamps: tuple[tuple[int, int], tuple[int, int]],
    seed: int,
    resamples: int,
    flips: int,
) -> dict[str, Any]:
    # The stamps are in the key only: a file that changed is a new key.
    return compare_runs(a, b, seed=seed, resamples=resamples, flips=flips)


@router.get("/compare/runs")
def runs(catalog: CatalogDep) -> dict[str, list[dict[str, Any]]]:
    """The runs the page offers to compare."""
    return {"runs": comparable_runs(catalog)}


@router.get("/compare")
def compare(
    catalog: CatalogDep,
    a: str = Query(..., description="run A: an eval run id or a trajectories file id"),
    b: str = Query(..., description="run B (differences are B - A)"),
    seed: int = Query(0, description="seed of the bootstrap"),
    resamples: int = Query(10_000, ge=1, le=MAX_RESAMPLES, description="bootstrap resamples"),
    flips: int = Query(200, ge=0, description="flipped tasks listed per direction"),
) -> dict[str, Any]:
    """Runs A and B compared on their shared episodes (see :func:`compare_runs`)."""
    run_a, run_b = resolve_catalog_run(catalog, a), resolve_catalog_run(catalog, b)
    return _compare_cached(run_a, run_b, (_stamp(run_a), _stamp(run_b)), seed, resamples, flips)
