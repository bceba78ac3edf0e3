"""Trajectory data: JSONL on disk, Hugging Face ``datasets`` and Parquet views, filters.

JSONL (one :class:`~palaestra.agents.Trajectory` per line, as ``palaestra eval``
writes it) is the canonical file. :func:`to_dataset` gives a
``datasets.Dataset`` (messages as a list of ``{role, content, loss}``), which
:func:`write_parquet` saves and :func:`read_parquet` reads back, so
``JSONL -> Dataset -> Parquet -> JSONL`` returns the same trajectories.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.agents.trajectory import Trajectory, TrajectoryWriter, read_trajectories
from palaestra.files import atomic_path

if TYPE_CHECKING:
    import datasets

__all__ = [
    "best_per_task",
    "dataset_card",
    "filter_trajectories",
    "from_dataset",
    "load_trajectories",
    "merge",
    "read_parquet",
    "save_trajectories",
    "to_dataset",
    "write_parquet",
]

# task ids may be ints or strings across envs: the Dataset column holds them as JSON text.
_JSON_COLUMNS = ("task_id", "timings")


def load_trajectories(paths: str | Path | Sequence[str | Path]) -> list[Trajectory]:
    """Trajectories from JSONL files (or Parquet files written by :func:`write_parquet`).

    Raises:
        FileNotFoundError: A path does not exist.
        ValueError: A line is not a trajectory.
    """
    out: list[Trajectory] = []
    for path in [paths] if isinstance(paths, str | Path) else paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no trajectory file at {path}")
        out += read_parquet(path) if path.suffix == ".parquet" else read_trajectories(path)
    return out


def save_trajectories(trajectories: Iterable[Trajectory], path: str | Path) -> Path:
    """Write ``trajectories`` to a JSONL file atomically (a temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, TrajectoryWriter(tmp) as writer:
        for t in trajectories:
            writer.write(t)
    return path


def to_dataset(trajectories: Sequence[Trajectory]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one row per trajectory."""
    import datasets

    rows = []
    for t in trajectories:
        row = t.to_json()
        for column in _JSON_COLUMNS:
            row[column] = json.dumps(row[column])
        row["messages"] = [
            {"role": m["role"], "content": m["content"], "loss": bool(m.get("loss", False))}
            for m in row["messages"]
        ]
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def from_dataset(dataset: datasets.Dataset) -> list[Trajectory]:
    """Inverse of :func:`to_dataset`."""
    out = []
    for row in dataset:
        row = dict(row)
        for column in _JSON_COLUMNS:
            row[column] = json.loads(row[column])
        out.append(Trajectory.from_json(row))
    return out


def write_parquet(trajectories: Sequence[Trajectory], path: str | Path) -> Path:
    """Save ``trajectories`` as Parquet (through :func:`to_dataset`), atomically."""
    path = Path(path)
    import datasets

    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per write is noise in a command's output
    try:
        with atomic_path(path) as tmp:
            to_dataset(trajectories).to_parquet(str(tmp))
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return path


def read_parquet(path: str | Path) -> list[Trajectory]:
    """Trajectories from a Parquet file of :func:`write_parquet`.

    Raises:
        ValueError: The file is not Parquet (``pyarrow.ArrowInvalid``), or a row is
            not a trajectory.
    """
    import datasets
    import pyarrow.parquet

    # Read the table directly: no copy into the datasets cache (and no progress bars), and
    # a file of no trajectories (which has no columns) reads back as empty.
    table = pyarrow.parquet.read_table(str(path))
    if table.num_rows == 0:
        return []
    try:
        return from_dataset(datasets.Dataset(table))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a trajectory file: {error!r}") from None


def filter_trajectories(
    trajectories: Iterable[Trajectory],
    *,
    envs: Sequence[str] | None = None,
    split: str | None = None,
    success: bool | None = None,
    min_score: float | dict[str, float] | None = None,
) -> list[Trajectory]:
    """The trajectories that pass every given filter.

    Args:
        trajectories: The input.
        envs: Keep only these env ids.
        split: Keep only this split.
        success: Keep only successes (True) or failures (False).
        min_score: Keep scores at or above this; a dict gives a threshold per env
            id (envs missing from it keep everything).
    """
    out = []
    for t in trajectories:
        if envs is not None and t.env_id not in envs:
            continue
        if split is not None and t.split != split:
            continue
        if success is not None and t.success != success:
            continue
        if min_score is not None:
            bar = min_score.get(t.env_id) if isinstance(min_score, dict) else min_score
            if bar is not None and t.score < bar:
                continue
        out.append(t)
    return out


def _rank(t: Trajectory) -> tuple[float, int, int]:
    return (-t.score, t.turns, t.invalid_actions)


def best_per_task(trajectories: Iterable[Trajectory]) -> list[Trajectory]:
    """One trajectory per (env, task): the highest score, then the fewest turns.

    Ties keep the first seen, so the result is deterministic for a given order.
    """
    best: dict[tuple[str, str], Trajectory] = {}
    for t in trajectories:
        key = (t.env_id, json.dumps(t.task_id))
        if key not in best or _rank(t) < _rank(best[key]):
            best[key] = t
    return list(best.values())


def merge(*groups: Iterable[Trajectory]) -> list[Trajectory]:
    """Concatenate groups, dropping exact duplicates (same env, task and actions)."""
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for group in groups:
        for t in group:
            key = (t.env_id, json.dumps(t.task_id), tuple(t.actions))
            if key not in seen:
                seen.add(key)
                out.append(t)
    return out


def dataset_card(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """Per (env, split): trajectories, distinct tasks, success rate, mean score and turns."""
    groups: dict[tuple[str, str], list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        groups[(t.env_id, str(t.split))].append(t)
    rows = []
    for (env_id, split), ts in sorted(groups.items()):
        rows.append(
            {
                "env": env_id,
                "split": split,
                "trajectories": len(ts),
                "tasks": len({json.dumps(t.task_id) for t in ts}),
                "success": sum(t.success for t in ts) / len(ts),
                "mean score": sum(t.score for t in ts) / len(ts),
                "mean turns": sum(t.turns for t in ts) / len(ts),
                "assistant turns": sum(
                    1 for t in ts for m in t.messages if m["role"] == "assistant" and m.get("loss")
                ),
            }
        )
    return rows
