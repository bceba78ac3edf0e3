"""The sheet as plain data, and what can be done to it: write, insert, delete, sort, show.

A sheet is a list of rows, each a list of raw entries: ``None`` (empty), a
``float`` (a number), a ``str`` (text) or a ``str`` starting with ``=`` (a
formula). Rows are 1-based in addresses and 0-based in the list; rows and rows'
tails may be missing (empty). Every function here takes and mutates (or reads)
such a list, so an env keeps its sheet in ``self.world`` and snapshots copy it.

Rows move as in a spreadsheet, and formulas follow the cells they refer to:
inserting or deleting a row shifts the references below it (a reference to a
deleted cell becomes ``#REF!``; a range loses the row); sorting moves whole
rows, and a single reference to a moved cell follows it (so ``=C3*D3`` in a
row stays the product of that row's cells), while ranges stay as they are.
"""

from __future__ import annotations

import math
import re
from typing import Any

from palaestra.envs.sheet.formula import (
    CYCLE,
    MAX_ROWS,
    CellError,
    FormulaError,
    evaluate,
    parse,
    rewrite_refs,
)

__all__ = [
    "Grid",
    "cells_match",
    "delete_row",
    "display",
    "format_value",
    "get_raw",
    "insert_row",
    "parse_input",
    "set_raw",
    "sort_rows",
    "used_size",
]

Grid = list[list[Any]]
"""Rows of raw entries (see the module docstring)."""

_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")
_TOLERANCE = 0.01 + 1e-9
_DEPTH = 64  # formula chains deeper than this show #ERROR! rather than overflow the stack
_ERROR = CellError("#ERROR!")
_NUM = CellError("#NUM!")


def parse_input(value: float | int | str | None) -> Any:
    """The raw entry a typed value becomes: a number, text, a formula, or ``None`` (clear).

    Raises:
        FormulaError: A formula that does not parse.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise FormulaError("a cell holds a number, text or a formula, not true/false")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 1e15:
            raise FormulaError("a number in a cell is finite and below 1e15")
        return float(value)
    text = " ".join(value.split())
    if not text:
        return None
    if text.startswith("="):
        parse(text)  # refuse what does not parse before it reaches the sheet
        return "=" + text[1:].strip()
    if _NUMBER.fullmatch(text) and len(text) <= 15:
        return float(text)
    return text


def used_size(grid: Grid) -> tuple[int, int]:
    """``(rows, cols)`` of the used area: the last non-empty row and column (0, 0 if none)."""
    rows = cols = 0
    for r, row in enumerate(grid, start=1):
        for c, raw in enumerate(row, start=1):
            if raw is not None:
                rows = max(rows, r)
                cols = max(cols, c)
    return rows, cols


def get_raw(grid: Grid, row: int, col: int) -> Any:
    """The raw entry at 1-based ``row``, ``col`` (``None`` when empty)."""
    if row - 1 < len(grid) and col - 1 < len(grid[row - 1]):
        return grid[row - 1][col - 1]
    return None


def set_raw(grid: Grid, row: int, col: int, raw: Any) -> None:
    """Put a raw entry at ``row``, ``col`` (growing the lists; trimming empty tails)."""
    while len(grid) < row:
        grid.append([])
    line = grid[row - 1]
    while len(line) < col:
        line.append(None)
    line[col - 1] = raw
    _trim(grid)


def _trim(grid: Grid) -> None:
    for line in grid:
        while line and line[-1] is None:
            line.pop()
    while grid and not grid[-1]:
        grid.pop()


def display(grid: Grid) -> list[list[Any]]:
    """The shown values of the used area: formulas evaluated, rows padded to equal length."""
    rows, cols = used_size(grid)
    memo: dict[tuple[int, int], Any] = {}
    busy: set[tuple[int, int]] = set()

    def value(r: int, c: int) -> Any:
        key = (r, c)
        if key in memo:
            return memo[key]
        raw = get_raw(grid, r, c)
        if not (isinstance(raw, str) and raw.startswith("=")):
            return raw
        if key in busy:
            return CYCLE
        if len(busy) >= _DEPTH:
            return _ERROR
        busy.add(key)
        try:
            result = evaluate(parse(raw), value)
        except FormulaError:  # a stored formula whose references moved off the sheet
            result = CellError("#REF!")
        except RecursionError:  # deeply nested formulas in a long chain
            result = _ERROR
        if isinstance(result, float) and not abs(result) <= 1e15:  # NaN fails this too
            result = _NUM
        busy.discard(key)
        memo[key] = result
        return result

    return [[value(r, c) for c in range(1, cols + 1)] for r in range(1, rows + 1)]


def format_value(value: Any) -> str:
    """A shown value as text: ``12``, ``41.88``, ``North``, ``#DIV/0!``, or ``""`` for empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "#NUM!"
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return str(value)


def cells_match(shown: Any, wanted: Any) -> bool:
    """Whether a shown value counts as the wanted one.

    Numbers within 0.01; text ignoring case and runs of spaces; empty matches empty
    (and ``""``); an error value matches nothing.
    """
    if isinstance(shown, CellError):
        return False
    if shown in (None, "") or wanted in (None, ""):
        return shown in (None, "") and wanted in (None, "")
    if isinstance(wanted, float):
        return isinstance(shown, float) and abs(shown - wanted) <= _TOLERANCE
    if isinstance(shown, float):
        return False
    return " ".join(str(shown).split()).lower() == " ".join(str(wanted).split()).lower()


def _rewrite_all(grid: Grid, single: Any, span: Any) -> None:
    for line in grid:
        for c, raw in enumerate(line):
            if isinstance(raw, str) and raw.startswith("="):
                try:
                    line[c] = rewrite_refs(raw, single, span)
                except FormulaError:  # cannot happen for stored formulas; keep it as it was
                    pass


def insert_row(grid: Grid, row: int) -> None:
    """Insert an empty row at ``row``; that row and those below move down one.

    Raises:
        FormulaError: The last row of the sheet is in use (nothing would fit).
    """
    if used_size(grid)[0] >= MAX_ROWS:
        raise FormulaError(f"the sheet is full: row {MAX_ROWS} is in use")

    def single(r: int) -> int | None:
        moved = r + 1 if r >= row else r
        return moved if moved <= MAX_ROWS else None

    def span(top: int, bottom: int) -> tuple[int, int]:
        top = top + 1 if top >= row else top
        bottom = bottom + 1 if bottom >= row else bottom
        return min(top, MAX_ROWS), min(bottom, MAX_ROWS)

    _rewrite_all(grid, single, span)
    if row - 1 < len(grid):
        grid.insert(row - 1, [])
    _trim(grid)


def delete_row(grid: Grid, row: int) -> list[Any]:
    """Delete ``row``; the rows below move up one. Returns its raw entries."""

    def single(r: int) -> int | None:
        if r == row:
            return None
        return r - 1 if r > row else r

    def span(top: int, bottom: int) -> tuple[int, int] | None:
        top = top - 1 if top > row else top
        bottom = bottom - 1 if bottom >= row else bottom
        return (top, bottom) if bottom >= top else None

    removed = grid.pop(row - 1) if row - 1 < len(grid) else []
    _rewrite_all(grid, single, span)
    _trim(grid)
    return removed


def sort_rows(grid: Grid, col: int, descending: bool, first: int, last: int) -> list[int]:
    """Sort rows ``first``..``last`` by the shown values of column ``col`` (stable).

    Numbers come before text (text ignores case); empty cells go last either way.
    Returns the old row numbers in their new order.
    """
    shown = display(grid)

    def key_of(r: int) -> Any:
        value = (
            shown[r - 1][col - 1] if r - 1 < len(shown) and col - 1 < len(shown[r - 1]) else None
        )
        if value is None:
            return (3, "")
        if isinstance(value, CellError):
            return (2, str(value))
        if isinstance(value, float):
            return (0, value)
        return (1, " ".join(str(value).split()).lower())

    def empty(r: int) -> bool:
        return key_of(r)[0] == 3

    rows = list(range(first, last + 1))
    filled = sorted((r for r in rows if not empty(r)), key=key_of, reverse=descending)
    order = filled + [r for r in rows if empty(r)]
    new_of = {old: new for new, old in zip(rows, order, strict=True)}
    while len(grid) < last:
        grid.append([])
    lines = [grid[r - 1] for r in order]
    grid[first - 1 : last] = lines
    _rewrite_all(grid, lambda r: new_of.get(r, r), lambda top, bottom: (top, bottom))
    _trim(grid)
    return order
