"""Task generation for the Sheet env: a starting sheet, a goal, the target sheet, a plan.

Task ``t`` is drawn from ``random.Random(f"sheet-v0-{t}")``: a theme (one of
:data:`~palaestra.envs.sheet.data.THEMES`), 5-17 data rows, 3-6 columns, and
two or three operations, always applied in this order:

1. ``fix``: one or two cells were typed wrong; the goal names them and their right values;
2. ``insert``: a row is missing; the goal gives its values and the row it goes below;
3. ``delete``: delete every row that meets a condition (a category, a number below/above);
4. ``computed`` / ``rule``: add a column computed from others, or filled by a yes/no rule;
5. ``sort``: sort the data rows by a column whose values are all distinct;
6. ``summary``: a last row with the total, average or maximum of one or two columns.

The target is computed on a plain table model; the plan (the expert's calls) is
made against that model and replayed on a real sheet by :func:`plan_states`
(on the expert's first call), which checks that the sheet then shows the target;
the tests replay every task's plan, so the plan and the env cannot disagree.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from palaestra.envs.sheet import grid as sheet
from palaestra.envs.sheet.data import THEMES, Computed, Rule, Theme
from palaestra.envs.sheet.formula import col_letter, round_half_up
from palaestra.envs.tools import tool_call_action

__all__ = ["KINDS", "TEST_TASKS", "TRAIN_TASKS", "Task", "make_task", "plan_states", "sheets_equal"]

TRAIN_TASKS = range(0, 1000)
TEST_TASKS = range(1000, 1200)
KINDS = ("fix", "insert", "delete", "computed", "rule", "sort", "summary")


class _Retry(Exception):
    """The drawn operation does not fit this table (no distinct column, a rounding tie...)."""


@dataclass(frozen=True)
class Task:
    """One task.

    Attributes:
        task_id: Its id.
        theme: The theme's name.
        title: The sheet's title.
        kinds: The operations of the goal, in order.
        goal: The goal, in words.
        initial: The starting sheet (raw entries).
        target: The target sheet's values (rows padded to equal length).
        plan: The expert's calls from the starting sheet, in order.
    """

    task_id: int
    theme: str
    title: str
    kinds: tuple[str, ...]
    goal: str
    initial: list[list[Any]] = field(repr=False)
    target: list[list[Any]] = field(repr=False)
    plan: tuple[str, ...] = field(repr=False)


class _Table:
    """The table model: a header and rows as dicts, plus an optional summary row."""

    def __init__(self, header: list[str], rows: list[dict[str, Any]]) -> None:
        self.header = header
        self.rows = rows
        self.summary: list[Any] | None = None

    def letter(self, column: str) -> str:
        return col_letter(self.header.index(column) + 1)

    def grid(self) -> list[list[Any]]:
        lines = [list(self.header)] + [[row.get(h) for h in self.header] for row in self.rows]
        if self.summary is not None:
            lines.append(list(self.summary))
        width = max(len(line) for line in lines)
        return [line + [None] * (width - len(line)) for line in lines]


def _num(value: float) -> float | int:
    """A number as the expert types it (``34`` rather than ``34.0``)."""
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


def _show(value: Any) -> str:
    return sheet.format_value(value) if isinstance(value, float) else str(value)


def _near_half(value: float, digits: int) -> bool:
    scaled = abs(value) * 10**digits
    return abs(scaled - math.floor(scaled) - 0.5) < 1e-6


def _rounded(value: float, digits: int | None) -> float:
    if digits is None:
        return round_half_up(value, 6)
    if _near_half(value, digits):
        raise _Retry  # formula and model could round a tie differently
    return round_half_up(value, digits)


# -- the operations: each changes the table and returns (goal sentence, calls) ---------------


def _fix(rng: random.Random, theme: Theme, table: _Table, initial: _Table) -> tuple[str, list[str]]:
    """Corrupt one or two cells of ``initial``; the goal restores them."""
    columns = [c for c in table.header[1:] if c in theme.numbers or c in theme.categories]
    picks = rng.sample(
        [(i, c) for i in range(len(initial.rows)) for c in columns], rng.choice((1, 2))
    )
    sentences, calls = [], []
    for index, column in sorted(picks):
        right = initial.rows[index][column]
        initial.rows[index][column] = _corrupt(rng, theme, column, right)
        cell = f"{initial.letter(column)}{index + 2}"
        key = initial.rows[index][theme.key]
        sentences.append(f"the {column} of {key} should be {_show(right)}")
        calls.append(
            tool_call_action(
                "update_cell",
                {"cell": cell, "value": _num(right) if isinstance(right, float) else right},
            )
        )
    wrong = "A value was" if len(picks) == 1 else "Two values were"
    return f"{wrong} typed wrong: {' and '.join(sentences)}.", calls


def _corrupt(rng: random.Random, theme: Theme, column: str, right: Any) -> Any:
    if column in theme.categories:
        return rng.choice([c for c in theme.categories[column] if c != right])
    text = sheet.format_value(right)
    digits = [i for i in range(len(text) - 1) if text[i].isdigit() and text[i + 1].isdigit()]
    for _ in range(10):
        if digits and rng.random() < 0.6:  # two neighbouring digits swapped
            i = rng.choice(digits)
            wrong = float(text[:i] + text[i + 1] + text[i] + text[i + 2 :])
        else:
            wrong = round(right * rng.choice((10, 0.1, 2, 0.5)), 2)
        if abs(wrong - right) > 0.01 and wrong >= 0:
            return wrong
    return right + 10


def _insert(
    rng: random.Random, theme: Theme, table: _Table, initial: _Table
) -> tuple[str, list[str]]:
    """Take one row out of ``initial``; the goal puts it back below its predecessor."""
    index = rng.randrange(1, len(initial.rows))
    row = initial.rows.pop(index)
    above = initial.rows[index - 1][theme.key]
    values = [row[h] for h in table.header]
    described = ", ".join(f"{h} {_show(row[h])}" for h in table.header[1:])
    call = tool_call_action(
        "insert_row",
        {"row": index + 2, "row_values": [_num(v) if isinstance(v, float) else v for v in values]},
    )
    return (
        f"The row of {row[theme.key]} is missing: insert it directly below the row of "
        f"{above}, with {described}.",
        [call],
    )


def _delete(rng: random.Random, theme: Theme, table: _Table) -> tuple[str, list[str]]:
    n = len(table.rows)
    options: list[tuple[str, Any]] = []
    for column in table.header[1:]:
        if column in theme.categories:
            for value in sorted({row[column] for row in table.rows}):
                options.append(
                    (f"whose {column} is {value}", lambda r, c=column, v=value: r[c] == v)
                )
        elif column in theme.numbers:
            values = sorted(row[column] for row in table.rows)
            for k in range(1, min(4, n - 4) + 1):
                if values[k - 1] < values[k]:
                    cut = _cut(values[k - 1], values[k])
                    options.append(
                        (
                            f"whose {column} is below {_show(cut)}",
                            lambda r, c=column, t=cut: r[c] < t,
                        )
                    )
                if values[n - k] > values[n - k - 1]:
                    cut = _cut(values[n - k - 1], values[n - k])
                    options.append(
                        (
                            f"whose {column} is above {_show(cut)}",
                            lambda r, c=column, t=cut: r[c] > t,
                        )
                    )
    options = [
        (text, test) for text, test in options if 1 <= sum(map(test, table.rows)) <= min(4, n - 4)
    ]
    if not options:
        raise _Retry
    text, test = rng.choice(options)
    doomed = [i for i, row in enumerate(table.rows) if test(row)]
    calls = [tool_call_action("delete_row", {"row": i + 2}) for i in reversed(doomed)]
    table.rows = [row for row in table.rows if not test(row)]
    return f"Delete every data row {text}.", calls


def _cut(low: float, high: float) -> float:
    """A round threshold strictly between two values."""
    for step in (100, 50, 25, 10, 5, 1, 0.5, 0.1, 0.01):
        cut = math.ceil((low + 1e-9) / step) * step
        if low < cut < high:
            return round(cut, 2)
    return round((low + high) / 2, 2)


def _new_column(table: _Table, header: str, values: list[Any]) -> str:
    if header in table.header:
        raise _Retry
    table.header.append(header)
    for row, value in zip(table.rows, values, strict=True):
        row[header] = value
    return table.letter(header)


def _computed(rng: random.Random, theme: Theme, table: _Table) -> tuple[str, list[str]]:
    options = [c for c in theme.computed(table.header) if c.header not in table.header]
    if not options:
        raise _Retry
    spec: Computed = rng.choice(options)
    values = [_rounded(spec.value(row), spec.digits) for row in table.rows]
    letters = {h: table.letter(h) for h in table.header}
    letter = _new_column(table, spec.header, values)
    formulas = [[spec.formula.format(r=i + 2, **letters)] for i in range(len(table.rows))]
    rounding = (
        f", rounded to {spec.digits} decimal{'s' if spec.digits > 1 else ''}" if spec.digits else ""
    )
    call = tool_call_action(
        "update_range", {"start": f"{letter}1", "values": [[spec.header], *formulas]}
    )
    return (
        f"Add a column {spec.header!r} in column {letter} (header in {letter}1) holding "
        f"{spec.phrase}{rounding} for every data row.",
        [call],
    )


def _rule(rng: random.Random, theme: Theme, table: _Table) -> tuple[str, list[str]]:
    options = [
        r for r in theme.rules(rng, table.header, table.rows) if r.header not in table.header
    ]
    if not options:
        raise _Retry
    spec: Rule = rng.choice(options)
    values = [spec.value(row) for row in table.rows]
    if len(set(values)) < 2:
        raise _Retry  # a rule that gives every row the same word tests nothing
    letter = _new_column(table, spec.header, values)
    call = tool_call_action(
        "update_range", {"start": f"{letter}1", "values": [[spec.header]] + [[v] for v in values]}
    )
    return (
        f"Add a column {spec.header!r} in column {letter} (header in {letter}1): for every "
        f"data row, {spec.phrase}.",
        [call],
    )


def _distinct(values: list[Any]) -> bool:
    if all(isinstance(v, float) for v in values):
        ordered = sorted(values)
        return all(b - a > 0.011 for a, b in itertools.pairwise(ordered))
    keys = [" ".join(str(v).split()).lower() for v in values]
    return len(set(keys)) == len(keys) and not any(isinstance(v, float) for v in values)


def _sort(rng: random.Random, theme: Theme, table: _Table) -> tuple[str, list[str]]:
    numeric = [h for h in table.header[1:] if all(isinstance(r.get(h), float) for r in table.rows)]
    options = [h for h in numeric if _distinct([r[h] for r in table.rows])]
    column = rng.choice(options) if options and rng.random() < 0.85 else theme.key
    descending = rng.random() < (0.6 if column != theme.key else 0.2)
    table.rows.sort(
        key=lambda r: r[column] if column != theme.key else r[column].lower(), reverse=descending
    )
    letter = table.letter(column)
    if column == theme.key:
        how = "in reverse alphabetical order (Z to A)" if descending else "alphabetically (A to Z)"
        text = f"Sort the data rows by {column} (column {letter}) {how}, keeping the header on top."
    else:
        how = "largest first" if descending else "smallest first"
        text = (
            f"Sort the data rows by {column} (column {letter}), {how}, keeping the header on top."
        )
    call = tool_call_action(
        "sort_rows", {"column": letter, "order": "desc" if descending else "asc"}
    )
    return text, [call]


_AGGREGATES = {
    "Total": ("the sum", "SUM", lambda v: sum(v), None),
    "Average": ("the average", "AVERAGE", lambda v: sum(v) / len(v), 2),
    "Maximum": ("the largest value", "MAX", max, None),
}


def _summary(rng: random.Random, theme: Theme, table: _Table) -> tuple[str, list[str]]:
    numeric = [h for h in table.header[1:] if all(isinstance(r.get(h), float) for r in table.rows)]
    label = rng.choice(("Total", "Total", "Average", "Maximum"))
    phrase, function, compute, digits = _AGGREGATES[label]
    columns = sorted(
        rng.sample(numeric, min(len(numeric), rng.choice((1, 1, 2)))), key=table.header.index
    )
    last = len(table.rows) + 1
    line: list[Any] = [label] + [None] * (len(table.header) - 1)
    typed: list[Any] = [label] + [""] * (max(table.header.index(c) for c in columns))
    for column in columns:
        j = table.header.index(column)
        line[j] = _rounded(compute([r[column] for r in table.rows]), digits)
        span = f"{table.letter(column)}2:{table.letter(column)}{last}"
        typed[j] = f"=ROUND({function}({span}),2)" if digits else f"={function}({span})"
    table.summary = line
    where = " and ".join(f"{c} (column {table.letter(c)})" for c in columns)
    rounding = ", rounded to 2 decimals" if digits else ""
    call = tool_call_action("update_range", {"start": f"A{last + 1}", "values": [typed]})
    return (
        f"Add a row {label!r} directly below the last data row: {label!r} in column A and "
        f"{phrase} of the data rows' {where}{rounding}; leave its other cells empty.",
        [call],
    )


# -- assembling a task -------------------------------------------------------------------------


def _draw(task_id: int, rng: random.Random) -> Task:
    theme = rng.choice(THEMES)
    optional = [c for c in theme.optional if rng.random() < 0.5]
    chosen = set(theme.columns) | set(optional)
    kinds = sorted(
        rng.sample(KINDS, rng.choice((2, 3, 3))),
        key=KINDS.index,
    )
    if "computed" in kinds and "rule" in kinds and len(kinds) == 3 and rng.random() < 0.5:
        kinds.remove("rule")
    n = rng.randint(5, 15) + (1 if "insert" in kinds else 0) + (2 if "delete" in kinds else 0)
    n = min(n, 17)
    rows = theme.rows(rng, n)
    header = [h for h in rows[0] if h == theme.key or h in chosen]
    rows = [{h: row[h] for h in header} for row in rows]
    table = _Table(list(header), copy.deepcopy(rows))
    initial = _Table(list(header), copy.deepcopy(rows))
    steps: list[tuple[str, list[str]]] = []
    # fix/insert change the starting sheet, not the table: apply them to ``initial`` in
    # reverse so the row numbers in the fix calls are those of the starting sheet.
    if "insert" in kinds:
        steps.append(_insert(rng, theme, table, initial))
    if "fix" in kinds:
        steps.insert(0, _fix(rng, theme, table, initial))
    for kind in kinds:
        if kind in ("fix", "insert"):
            continue
        operation = {
            "delete": _delete,
            "computed": _computed,
            "rule": _rule,
            "sort": _sort,
            "summary": _summary,
        }[kind]
        steps.append(operation(rng, theme, table))
    if len(steps) > 1:
        goal = " ".join(f"({i}) {text}" for i, (text, _) in enumerate(steps, start=1))
    else:
        goal = steps[0][0]
    title = rng.choice(theme.titles)
    plan = [call for _, calls in steps for call in calls]
    start = initial.grid()
    start_raw = [[v for v in line] for line in start]
    target = table.grid()
    return Task(
        task_id=task_id,
        theme=theme.name,
        title=title,
        kinds=tuple(kinds),
        goal=goal,
        initial=start_raw,
        target=target,
        plan=tuple(plan),
    )


@lru_cache(maxsize=2048)
def plan_states(task_id: int) -> tuple[list[list[Any]], ...]:
    """The shown sheet before each call of task ``task_id``'s plan (the expert's landmarks).

    Replays the plan with the env's own tool code and checks that it ends on the target.

    Raises:
        RuntimeError: A call was rejected, or the plan misses the target (a generator bug).
    """
    from palaestra.envs.sheet.env import apply_call  # the env's tools; env imports this module

    task = make_task(task_id)
    world = copy.deepcopy(task.initial)
    states = []
    for action in task.plan:
        states.append(sheet.display(world))
        apply_call(world, action)
    if not sheets_equal(sheet.display(world), task.target):
        raise RuntimeError(f"Sheet task {task_id}: the plan does not reach the target")
    return tuple(states)


def sheets_equal(shown: list[list[Any]], wanted: list[list[Any]]) -> bool:
    """Whether every cell of two shown sheets matches (:func:`grid.cells_match`), empties too."""
    rows = max(len(shown), len(wanted))
    cols = max((len(line) for line in [*shown, *wanted]), default=0)
    for r in range(rows):
        for c in range(cols):
            a = shown[r][c] if r < len(shown) and c < len(shown[r]) else None
            b = wanted[r][c] if r < len(wanted) and c < len(wanted[r]) else None
            if not sheet.cells_match(a, b):
                return False
    return True


@lru_cache(maxsize=2048)
def make_task(task_id: int) -> Task:
    """Task ``task_id`` (the same on every call and every machine)."""
    rng = random.Random(f"sheet-v0-{task_id}")
    for _ in range(50):
        try:
            return _draw(task_id, rng)
        except _Retry:
            continue  # draw again from where the generator is: still deterministic
    raise RuntimeError(f"Sheet task {task_id}: no fitting draw in 50 tries")
