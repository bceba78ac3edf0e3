"""The Episodes page's API: a trajectory file's episodes, filtered and paged, and one episode.

``GET /api/episodes?file=ID&...`` filters the file's index (:mod:`palaestra.view.
line_index`): the first page of a large file answers while the rest is still being
indexed (``complete`` says whether it is done; ``indexed`` is the bytes indexed).
``GET /api/episode?file=ID&index=I`` reads that one line and derives its turns.

A trajectory records per turn the reply, the action sent and the reward; per
episode the counts of invalid actions and format errors and the total timings. It
does not record the env's ``info`` nor per-step timings, and not the observation
after the last step (the episode ended there): the turns below say what is known
(``invalid`` is None where only the episode's count is).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request

from palaestra.view.catalog import Catalog, FileEntry
from palaestra.view.deps import catalog_of
from palaestra.view.line_index import FileIndex, IndexRegistry, index_cache_dir

__all__ = ["FILTERS", "derive_turns", "index_of", "indexes_of", "router"]

router = APIRouter(tags=["episodes"])
CatalogDep = Annotated[Catalog, Depends(catalog_of)]

FILTERS = (
    "env",
    "split",
    "success",
    "min_score",
    "max_score",
    "min_turns",
    "max_turns",
    "end",
    "invalid",
    "format_errors",
    "loops",
)
"""The query parameters that filter episodes (the page keeps them in its URL)."""

MAX_LIMIT = 500
FIRST_PAGE_WAIT_S = 0.5  # how long a request waits for a fresh scan to reach its page

_registry_lock = threading.Lock()


def indexes_of(request: Request) -> IndexRegistry:
    """The app's :class:`IndexRegistry` (made on first use, cached under ``cache_root()``)."""
    state = request.app.state
    with _registry_lock:
        registry = getattr(state, "indexes", None)
        if registry is None:
            registry = state.indexes = IndexRegistry(index_cache_dir())
    return registry


def trajectory_file(catalog: Catalog, file_id: str) -> FileEntry:
    """The trajectories file ``file_id``.

    Raises:
        KeyError: No data file has that id.
        ValueError: It is not a trajectories file (a trees file).
    """
    if not file_id:
        raise ValueError("file: required (a trajectories file's id, from /api/runs)")
    entry = catalog.file(file_id)
    if entry.kind != "trajectories":
        raise ValueError(f"file {file_id!r} holds {entry.kind}, not trajectories")
    return entry


def index_of(request: Request, catalog: Catalog, file_id: str) -> FileIndex:
    """The (refreshed) index of trajectories file ``file_id`` (see :func:`trajectory_file`)."""
    return indexes_of(request).get(trajectory_file(catalog, file_id).path)


def _bool(name: str, value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError(f"{name}: expected true or false, not {value!r}")


def _number(name: str, value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}: expected a number, not {value!r}") from None


def _int(name: str, value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}: expected a whole number, not {value!r}") from None
    if number < 0:
        raise ValueError(f"{name}: expected a number >= 0, not {number}")
    return number


def matching(index: FileIndex, params: dict[str, str | None]) -> tuple[np.ndarray, int]:
    """The indices of the indexed episodes that pass the filters in ``params``, and the total.

    Raises:
        ValueError: A filter's value is malformed (the message names the parameter).
    """
    table, n = index.table()
    columns = {name: column[:n] for name, column in table.columns.items()}
    mask = np.ones(n, dtype=bool)
    for name, column in (("env", "env_id"), ("split", "split"), ("end", "end")):
        value = params.get(name)
        if value:
            vocab = table.vocab[column]
            mask &= columns[column] == (vocab.index(value) if value in vocab else -1)
    success = _bool("success", params.get("success"))
    if success is not None:
        mask &= columns["success"] == success
    for name, column, compare in (
        ("min_score", "score", np.greater_equal),
        ("max_score", "score", np.less_equal),
        ("min_turns", "turns", np.greater_equal),
        ("max_turns", "turns", np.less_equal),
    ):
        bound = _number(name, params.get(name))
        if bound is not None:
            # score is float32 in the index: compare at that precision
            mask &= compare(columns[column], np.asarray(bound, dtype=columns[column].dtype))
    for name, column in (("invalid", "invalid_actions"), ("format_errors", "format_errors")):
        has = _bool(name, params.get(name))
        if has is not None:
            mask &= (columns[column] > 0) == has
    loops = _bool("loops", params.get("loops"))
    if loops is not None:
        mask &= (columns["loops"] > 0) == loops
    return np.flatnonzero(mask), n


def _filters(request: Request) -> dict[str, str | None]:
    return {name: request.query_params.get(name) for name in FILTERS}


@router.get("/episodes")
def episodes(request: Request, catalog: CatalogDep) -> dict[str, Any]:
    """A trajectories file's episodes that pass the filters, one page of them.

    Query parameters: ``file`` (required), ``env``, ``split``, ``end`` (exact values),
    ``success`` (true/false), ``min_score``/``max_score``, ``min_turns``/``max_turns``,
    ``invalid``/``format_errors``/``loops`` (true: has some; false: has none),
    ``offset`` (default 0) and ``limit`` (default 50, at most 500).

    Reply: ``total`` (episodes indexed), ``matched`` (of them, those passing the
    filters), ``indexed``/``size`` (bytes indexed / the file's bytes), ``complete``,
    ``rows`` (summaries, with each episode's ``index`` in the file) and ``facets``
    (the env, split and end values met, for the filter selects).
    """
    file_id = request.query_params.get("file", "")
    entry = trajectory_file(catalog, file_id)
    offset = _int("offset", request.query_params.get("offset"), 0)
    limit = min(_int("limit", request.query_params.get("limit"), 50), MAX_LIMIT)
    index = indexes_of(request).get(entry.path)
    # A fresh scan of a big file: wait a moment for the page's rows, never for the whole file.
    index.wait(rows=offset + limit, timeout=FIRST_PAGE_WAIT_S)
    params = _filters(request)
    chosen, total = matching(index, params)
    table, _ = index.table()
    page = [table.row(int(i)) for i in chosen[offset : offset + limit]]
    return {
        "file": file_id,
        "path": str(entry.path),
        "total": total,
        "matched": len(chosen),
        "indexed": index.indexed_bytes,
        "size": entry.size,
        "complete": index.complete,
        "offset": offset,
        "limit": limit,
        "rows": page,
        "facets": {
            "env": sorted(table.vocab["env_id"]),
            "split": sorted(v for v in table.vocab["split"] if v),
            "end": sorted(v for v in table.vocab["end"] if v),
        },
    }


def derive_turns(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns of a trajectory: each reply with its action, reward and next observation.

    ``invalid`` is True for a reply the format could not parse (the env got the empty
    action), False where the episode counts no other invalid action, and None where
    the env rejected some actions of the episode but the file does not say which.
    """
    messages = record.get("messages") or []
    actions = record.get("actions") or []
    rewards = record.get("rewards") or []
    env_rejections = int(record.get("invalid_actions", 0) or 0) - int(
        record.get("format_errors", 0) or 0
    )
    turns = []
    replies = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    for k, i in enumerate(replies):
        after = messages[i + 1] if i + 1 < len(messages) else None
        action = actions[k] if k < len(actions) else None
        format_error = action == ""
        turns.append(
            {
                "turn": k + 1,
                "message": i,
                "reply": messages[i].get("content", ""),
                "loss": bool(messages[i].get("loss", False)),
                "action": action,
                "format_error": format_error,
                "invalid": True if format_error else (False if env_rejections <= 0 else None),
                "reward": rewards[k] if k < len(rewards) else None,
                "observation": after.get("content")
                if after is not None and after.get("role") == "user"
                else None,
            }
        )
    return turns


@router.get("/episode")
def episode(request: Request, catalog: CatalogDep) -> dict[str, Any]:
    """One episode: the whole record, its derived turns, and its neighbours in the filtered list.

    Query parameters: ``file``, ``index`` (the episode's index in the file), and the
    filters of ``/api/episodes`` (for ``prev``/``next``: the neighbouring indices among
    the episodes that pass them, or None).
    """
    file_id = request.query_params.get("file", "")
    entry = trajectory_file(catalog, file_id)
    raw = request.query_params.get("index")
    if raw is None or raw == "":
        raise ValueError("index: required (the episode's index in the file)")
    i = _int("index", raw, 0)
    index = indexes_of(request).get(entry.path)
    index.wait(rows=i + 1, timeout=FIRST_PAGE_WAIT_S * 4)
    if i >= len(index):
        if index.complete:
            raise KeyError(f"index: no episode {i} in {file_id!r} ({len(index)} episodes)")
        index.wait(rows=i + 1, timeout=30.0)  # a far episode of a file still being indexed
    record = index.record(i)
    chosen, _ = matching(index, _filters(request))
    position = int(np.searchsorted(chosen, i))
    in_list = position < len(chosen) and chosen[position] == i
    prev = int(chosen[position - 1]) if position > 0 else None
    after = position + 1 if in_list else position
    return {
        "file": file_id,
        "index": i,
        "total": len(index),
        "summary": index.summary(i),
        "record": record,
        "turns": derive_turns(record),
        "prev": prev,
        "next": int(chosen[after]) if after < len(chosen) else None,
        "position": position if in_list else None,
        "matched": len(chosen),
    }
