"""ScienceWorld task ids: every (task, variation) of the package's splits, numbered.

Ids are ints, numbered split by split (train, then dev, then test); within a
split, task by task in the package's order (``tasks.json``: the paper's 1-1 boil
... 10-2), then variation by variation. So each split is a ``range``, and an id
never depends on a JVM: the table behind it ships in ``_table.py`` (made by
``python -m palaestra.envs.sciworld.make_table``).
"""

from __future__ import annotations

from dataclasses import dataclass

from palaestra.envs.sciworld._table import SCIENCEWORLD_VERSION, TABLE

__all__ = [
    "SCIENCEWORLD_VERSION",
    "SPLITS",
    "SPLIT_ORDER",
    "TASK_NAMES",
    "SciWorldTask",
    "task_id_of",
    "task_of",
]

SPLIT_ORDER: tuple[str, ...] = ("train", "dev", "test")

TASK_NAMES: tuple[str, ...] = tuple(row[1] for row in TABLE)
"""The 30 ScienceWorld task names, in the package's order."""

_PAPER_IDS: dict[str, str] = {row[1]: row[0] for row in TABLE}


@dataclass(frozen=True)
class SciWorldTask:
    """What a task id stands for.

    Attributes:
        task_id: The palaestra task id.
        split: ``"train"``, ``"dev"`` or ``"test"`` (ScienceWorld's own split).
        name: The ScienceWorld task name, e.g. ``"boil"``.
        paper_id: The task's number in the ScienceWorld paper, e.g. ``"1-1"``.
        variation: The variation index within the task.
    """

    task_id: int
    split: str
    name: str
    paper_id: str
    variation: int


def _number() -> tuple[list[tuple[str, int]], dict[str, range]]:
    entries: list[tuple[str, int]] = []
    splits: dict[str, range] = {}
    for column, split in enumerate(SPLIT_ORDER):
        first = len(entries)
        for row in TABLE:
            for start, stop in row[3 + column]:
                entries.extend((row[1], variation) for variation in range(start, stop))
        splits[split] = range(first, len(entries))
    return entries, splits


_ENTRIES, SPLITS = _number()
"""``SPLITS``: the task ids of each split (``train``, ``dev``, ``test``), as ranges."""

_IDS: dict[tuple[str, int], int] = {entry: i for i, entry in enumerate(_ENTRIES)}


def task_of(task_id: int) -> SciWorldTask:
    """The task and variation behind ``task_id``.

    Raises:
        KeyError: No such id.
    """
    if type(task_id) is not int or not 0 <= task_id < len(_ENTRIES):
        raise KeyError(f"no ScienceWorld task id {task_id!r} (ids are 0..{len(_ENTRIES) - 1})")
    name, variation = _ENTRIES[task_id]
    split = next(s for s, ids in SPLITS.items() if task_id in ids)
    return SciWorldTask(task_id, split, name, _PAPER_IDS[name], variation)


def task_id_of(name: str, variation: int) -> int:
    """The task id of ScienceWorld task ``name`` (e.g. ``"boil"``), variation ``variation``.

    Raises:
        KeyError: No such task or variation.
    """
    try:
        return _IDS[(name, variation)]
    except KeyError:
        raise KeyError(
            f"no ScienceWorld task {name!r} variation {variation!r}; tasks: {', '.join(TASK_NAMES)}"
        ) from None
