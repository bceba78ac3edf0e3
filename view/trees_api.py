"""The Trees page's API: Agent-R's search trees, their pairs, splices and revisions.

``GET /api/trees`` lists the trees files (no ``file``) or the trees of one file as
summary rows; ``GET /api/tree`` gives one tree's nodes (as columns), best path,
pairs, the chosen pair's paths, splice and revision; ``GET /api/tree/node`` one
node's full reply and observation. The work is :mod:`palaestra.view.tree_layout`'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from palaestra.view.catalog import Catalog, FileEntry
from palaestra.view.deps import catalog_of
from palaestra.view.tree_layout import (
    Settings,
    node_detail,
    revise_settings,
    tree_count,
    tree_reply,
    tree_row,
)

__all__ = ["router"]

router = APIRouter(tags=["trees"])

CatalogDep = Annotated[Catalog, Depends(catalog_of)]


def _trees_file(catalog: Catalog, file: str) -> FileEntry:
    entry = catalog.file(file)
    if entry.kind != "trees":
        raise ValueError(f"{file} holds {entry.kind}, not search trees")
    return entry


def _settings(
    catalog: Catalog, entry: FileEntry, alpha: float | None, beta: float | None
) -> Settings:
    """The run's revise settings, with alpha or beta overridden where the page asks."""
    settings = revise_settings(catalog, entry)
    if alpha is not None:
        settings = replace(settings, alpha=alpha)
    if beta is not None:
        settings = replace(settings, beta=beta)
    return settings


@router.get("/trees")
def trees(
    catalog: CatalogDep,
    file: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    alpha: float | None = None,
    beta: float | None = None,
) -> dict[str, Any]:
    """The trees files (without ``file``), or a page of one file's trees as summary rows.

    A row: index, env_id, task_id, split, sample, seed, model, nodes, leaves, depth,
    best_score, best_steps, successes and pairs (available at alpha/beta: the run's
    revise settings unless given).
    """
    if file is None:
        files = catalog.files("trees")
        return {
            "files": [
                {"id": f.id, "run": f.run, "size": f.size, "name": f.path.name} for f in files
            ]
        }
    entry = _trees_file(catalog, file)
    settings = _settings(catalog, entry, alpha, beta)
    count = tree_count(entry.path)
    rows = [
        tree_row(entry.path, i, settings.alpha, settings.beta)
        for i in range(offset, min(count, offset + limit))
    ]
    return {
        "file": entry.id,
        "run": entry.run,
        "count": count,
        "offset": offset,
        "limit": limit,
        "settings": {"alpha": settings.alpha, "beta": settings.beta, "source": settings.source},
        "rows": rows,
    }


@router.get("/tree")
def tree(
    catalog: CatalogDep,
    file: str,
    index: int = Query(0, ge=0),
    pair: int = Query(0, ge=0),
    alpha: float | None = None,
    beta: float | None = None,
    pair_offset: int = Query(0, ge=0),
    pair_limit: int = Query(100, ge=1, le=1000),
    nodes: bool = True,
    chars: int = Query(80, ge=0, le=100_000),
) -> dict[str, Any]:
    """One tree, and what Agent-R makes of its ``pair``-th pair.

    Nodes as columns (``nodes=false`` leaves them out), best path, pairs, the chosen
    pair's good and bad paths, splice, revision and the revision trained on.

    ``chars`` caps each node's reply and observation (``truncated`` says where);
    ``/api/tree/node`` gives them in full.
    """
    entry = _trees_file(catalog, file)
    settings = _settings(catalog, entry, alpha, beta)
    reply = tree_reply(
        entry.path,
        index,
        settings=settings,
        pair=pair,
        pair_offset=pair_offset,
        pair_limit=pair_limit,
        nodes=nodes,
        chars=chars,
    )
    return {"file": entry.id, "run": entry.run, **reply}


@router.get("/tree/node")
def tree_node(
    catalog: CatalogDep,
    file: str,
    node: int = Query(..., ge=0),
    index: int = Query(0, ge=0),
) -> dict[str, Any]:
    """One node in full: reply, observation, statistics, children and the path to it."""
    entry = _trees_file(catalog, file)
    return node_detail(entry.path, index, node)
