"""``palaestra/Sheet-v0``: edit a small spreadsheet into the sheet a goal describes."""

from __future__ import annotations

import builtins
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from palaestra.envs.core import Outcome, TaskId
from palaestra.envs.sheet import grid as sheet
from palaestra.envs.sheet.formula import (
    MAX_COLS,
    MAX_ROWS,
    FormulaError,
    address,
    col_letter,
    col_number,
    parse_address,
    parse_range,
)
from palaestra.envs.sheet.tasks import (
    TEST_TASKS,
    TRAIN_TASKS,
    Task,
    make_task,
    plan_states,
    sheets_equal,
)
from palaestra.envs.tools import ToolCallError, ToolEnv, tool, tool_call_action
from palaestra.errors import EpisodeOverError

__all__ = ["MAX_STEPS", "SheetEnv", "apply_call"]

MAX_STEPS = 30
MAX_TEXT = 80
"""Characters a text cell may hold."""
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")

_CELL = {"type": "string", "description": "A cell address such as C7."}
_RANGE = {"type": "string", "description": "A range such as A2:D9, or one cell."}
_VALUE = {
    "type": ["string", "number"],
    "description": 'A number, text, a formula starting with "=", or "" to empty the cell.',
}
_ROW = {"type": "integer", "minimum": 1, "maximum": MAX_ROWS, "description": "A row number."}


@lru_cache(maxsize=2048)
def _changed(task_id: TaskId) -> tuple[tuple[int, int], ...]:
    """The cells (0-based row, col) whose shown value the task changes."""
    task = make_task(int(task_id))
    before = sheet.display(task.initial)
    after = task.target
    rows = max(len(before), len(after))
    cols = max(len(line) for line in [*before, *after])
    out = []
    for r in range(rows):
        for c in range(cols):
            a = before[r][c] if r < len(before) and c < len(before[r]) else None
            b = after[r][c] if r < len(after) and c < len(after[r]) else None
            if not sheet.cells_match(a, b):
                out.append((r, c))
    return tuple(out)


def _value(shown: list[list[Any]], r: int, c: int) -> Any:
    return shown[r][c] if r < len(shown) and c < len(shown[r]) else None


class SheetEnv(ToolEnv):
    """Spreadsheet editing (AgentBoard's Google Sheets tasks, offline): reach a target sheet.

    Each task is a small sheet (a header row and 5-17 data rows, 3-6 columns: a
    sales table, a grade book, a household budget, an office-supplies inventory,
    a timesheet, or quarterly store revenue) and a goal of two or three
    operations in words, e.g. "(1) Add a column 'Revenue' in column E holding
    Units * Unit price for every data row. (2) Sort the data rows by Revenue,
    largest first. (3) Add a row 'Total' directly below the last data row ...".
    Cells are addressed A1-style (A1:Z60) and hold a number, text, or a formula
    (``=`` then numbers, cell references, ranges, ``+ - * /``, parentheses,
    SUM, AVERAGE, MIN, MAX, COUNT, ROUND), evaluated by the env itself
    (:mod:`.formula`, no Python ``eval``); the sheet shows formulas' values.

    ## Observation

    Printable ASCII. The first observation names the sheet, its size and the
    goal (not the cells: read them with the tools). Tool results are short
    text: the sheet as rows of ``|``-separated values, a range cell by cell
    with formulas, or what a change did. A rejected call (a bad address, a
    formula that does not parse, a row outside the sheet) is an invalid action
    answered ``Error: ...`` that changes nothing.

    ## Actions (tool calls; one per turn)

    ``read_sheet``, ``read_range(range)``, ``update_cell(cell, value)``,
    ``update_range(start, values)`` (a 2-D block from a top-left cell),
    ``insert_row(row, row_values)``, ``delete_row(row)``,
    ``sort_rows(column, order, first_row, last_row)`` (rows 2..last by
    default: the header stays), ``clear_range(range)``, ``finish``. Inserting,
    deleting and sorting rows move formulas' references with the cells, as a
    spreadsheet does.

    ## Reward, score and success

    The target sheet is computed by the task generator. Cells match when their
    shown values do: numbers within 0.01, text ignoring case and extra spaces,
    empty with empty. Sub-goals (AgentBoard's progress rate): each cell the
    task gives a new value matches it (one sub-goal each); the cells the task
    empties (rows deleted, values moved up) are empty while the original
    headers are still there (one sub-goal); and every other cell of the sheet
    matches too (one sub-goal: nothing else was broken, no stray cells). The
    untouched start thus scores 1/(k+1) or so for k changed cells, and a wiped
    sheet 0. Score = the best fraction reached; success = all hold when
    ``finish`` is called (reward 1.0 then).

    ## Episode end

    Terminated by ``finish``; truncated after ``max_steps`` = 30.

    ## Splits

    ``train``: task ids 0-999, ``test``: 1000-1199; every theme and operation
    is in both.

    ## Expert

    Replays the generator's plan (read the sheet, then e.g. one ``update_range``
    of formulas for a new column, ``delete_row`` bottom-up, one ``sort_rows``,
    one ``update_range`` for a totals row with ``=SUM(...)``), finding its
    place by the sheet's shown values; from a sheet off the plan it repairs
    rows by their column-A labels, then rewrites the block of wrong cells in
    one call. It solves every task in 4-9 calls (5.5 on average).

    ## Source

    Generated by palaestra from fixed seeds (:mod:`.tasks`) and small built-in
    vocabularies (:mod:`.data`: products and prices, budget lines, office
    supplies, US cities and states, common given and family names); nothing
    is downloaded or shipped, and a task takes well under a millisecond to draw.
    """

    instruction: ClassVar[str] = (
        "You edit a small spreadsheet with tools until it matches a goal. Cells are "
        "addressed A1-style (columns A-Z, rows 1-60); row 1 holds the headers. A cell "
        'holds a number, text, or a formula: "=" followed by numbers, cell references '
        "(C2), ranges (C2:C9, inside functions), + - * / and parentheses, and the "
        "functions SUM, AVERAGE, MIN, MAX, COUNT and ROUND(value, decimals); the sheet "
        "shows a formula's value. Start by reading the sheet (read_sheet), then change it "
        "with update_cell, update_range, insert_row, delete_row, sort_rows and clear_range. "
        "Inserting, deleting and sorting rows move formulas' references with their cells, "
        "and row numbers of the rows below change. Leave every cell the goal does not "
        "mention as it is, and put new rows and columns right next to the table, with no "
        "gap. Your sheet is compared with the target cell by cell: numbers must match "
        "within 0.01 (round as the goal says), text ignoring case. Each turn is exactly one "
        "tool call. When the sheet matches the goal, call finish; the episode ends there."
    )
    max_steps: ClassVar[int] = MAX_STEPS
    fast_calls: ClassVar[bool] = True
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}

    # -- the episode ---------------------------------------------------------------------

    @property
    def task(self) -> Task:
        """The current task."""
        return make_task(int(self.task_id))  # type: ignore[arg-type]

    def start(self, task_id: TaskId) -> str:
        """Load the task's starting sheet; the first observation states the goal."""
        task = make_task(int(task_id))
        self.world = {"grid": [list(line) for line in task.initial], "seen": False}
        rows, cols = sheet.used_size(self.world["grid"])
        return (
            f"Sheet {task.title!r}: A1:{col_letter(cols)}{rows} (a header row and "
            f"{rows - 1} data rows, {cols} columns). Goal: {task.goal}"
        )

    def subgoals(self) -> list[bool]:
        """The task's sub-goals now (see the class docstring's "Reward, score and success").

        One per changed cell that must hold a value; one for all the changed cells that
        must end up empty (rows deleted, values moved up) together with the original
        headers still in place, so wiping the sheet reaches nothing; one for every other
        cell matching (nothing else broken, no stray cells).
        """
        shown = sheet.display(self.world["grid"])
        target = self.task.target

        def holds(r: int, c: int) -> bool:
            return sheet.cells_match(_value(shown, r, c), _value(target, r, c))

        changed = _changed(self.task_id)
        filled = [holds(r, c) for r, c in changed if _value(target, r, c) is not None]
        emptied = [(r, c) for r, c in changed if _value(target, r, c) is None]
        skip = set(changed)
        rows = max(len(shown), len(target))
        cols = max((len(line) for line in [*shown, *target]), default=0)
        rest = all(holds(r, c) for r in range(rows) for c in range(cols) if (r, c) not in skip)
        if not emptied:
            return [*filled, rest]
        headers = all(holds(0, c) for c in range(len(target[0])) if (0, c) not in skip)
        return [*filled, headers and all(holds(r, c) for r, c in emptied), rest]

    # -- tools ---------------------------------------------------------------------------

    @tool("Show the whole sheet: every used row with its shown values.", {})
    def read_sheet(self) -> str:
        """The used area, one line per row."""
        self.world["seen"] = True
        shown = sheet.display(self.world["grid"])
        if not shown:
            return "The sheet is empty."
        rows, cols = len(shown), len(shown[0])
        lines = [
            f"A1:{col_letter(cols)}{rows} ({rows} rows x {cols} columns)",
            "row | " + " | ".join(col_letter(c) for c in range(1, cols + 1)),
        ]
        for r, line in enumerate(shown, start=1):
            lines.append(f"{r} | " + " | ".join(sheet.format_value(v) for v in line))
        return "\n".join(lines)

    @tool(
        "Show the cells of a range one by one, with the formula of each formula cell.",
        {"range": _RANGE},
    )
    def read_range(self, range: str) -> str:
        """Each cell of ``range``: ``C2: 34`` or ``E2: 441.66 (=C2*D2)``."""
        top, left, bottom, right = _range(range)
        if (bottom - top + 1) * (right - left + 1) > 200:
            raise ToolCallError("a range of at most 200 cells, please (or read_sheet)")
        shown = sheet.display(self.world["grid"])
        out = []
        for r in builtins.range(top, bottom + 1):
            cells = []
            for c in builtins.range(left, right + 1):
                raw = sheet.get_raw(self.world["grid"], r, c)
                text = sheet.format_value(_value(shown, r - 1, c - 1))
                if isinstance(raw, str) and raw.startswith("="):
                    text = f"{text} ({raw})"
                cells.append(f"{address(r, c)}: {text if text else '(empty)'}")
            out.append("; ".join(cells))
        return "\n".join(out)

    @tool(
        'Set one cell to a number, text or formula ("" empties it).',
        {"cell": _CELL, "value": _VALUE},
    )
    def update_cell(self, cell: str, value: str | float) -> str:
        """Write ``value`` into ``cell`` and say what it shows now."""
        row, col = _address(cell)
        sheet.set_raw(self.world["grid"], row, col, _input(value))
        return f"{address(row, col)} = {self._describe(row, col)}"

    @tool(
        "Write a block of values: values[i][j] goes to the cell i rows below and j columns "
        'right of start (a list of rows; "" empties a cell).',
        {
            "start": {"type": "string", "description": "The top-left cell of the block, e.g. E1."},
            "values": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "minItems": 1, "items": _VALUE},
                "description": "The rows of the block, each a list of cell values.",
            },
        },
    )
    def update_range(self, start: str, values: list[list[str | float]]) -> str:
        """Write a 2-D block; show the block's values after."""
        row, col = _address(start)
        height = len(values)
        width = max(len(line) for line in values)
        if row + height - 1 > MAX_ROWS or col + width - 1 > MAX_COLS:
            raise ToolCallError(
                f"a {height}x{width} block from {address(row, col)} goes past Z{MAX_ROWS}"
            )
        raws = [[_input(v) for v in line] for line in values]  # all checked before any write
        for i, line in enumerate(raws):
            for j, raw in enumerate(line):
                sheet.set_raw(self.world["grid"], row + i, col + j, raw)
        shown = sheet.display(self.world["grid"])
        lines = [
            " | ".join(
                sheet.format_value(_value(shown, row + i - 1, col + j - 1))
                for j in range(len(line))
            )
            for i, line in enumerate(raws)
        ]
        end = address(row + height - 1, col + width - 1)
        return f"Wrote {address(row, col)}:{end}; it shows: " + "; ".join(lines)

    @tool(
        "Insert a row at the given row number (that row and those below move down one), "
        "optionally filled with values from column A on.",
        {
            "row": _ROW,
            "row_values": {
                "type": "array",
                "items": _VALUE,
                "description": "Values for the new row from column A on (may be empty).",
            },
        },
        required=["row"],
    )
    def insert_row(self, row: int, row_values: Sequence[str | float] = ()) -> str:
        """Insert a row, then fill it."""
        used = sheet.used_size(self.world["grid"])[0]
        if row > used + 1:
            raise ToolCallError(f"insert at a row from 1 to {used + 1} (the row after the last)")
        if len(row_values) > MAX_COLS:
            raise ToolCallError(f"a row has at most {MAX_COLS} cells")
        raws = [_input(v) for v in row_values]
        try:
            sheet.insert_row(self.world["grid"], row)
        except FormulaError as error:
            raise ToolCallError(str(error)) from None
        for j, raw in enumerate(raws, start=1):
            sheet.set_raw(self.world["grid"], row, j, raw)
        moved = f"; {_span(row, used)} moved down one" if row <= used else ""
        return f"Inserted row {row}{moved}. Row {row}: {self._row_text(row)}"

    @tool("Delete a row; the rows below move up one.", {"row": _ROW})
    def delete_row(self, row: int) -> str:
        """Delete a used row and say what it held."""
        used = sheet.used_size(self.world["grid"])[0]
        if row > used:
            raise ToolCallError(f"row {row} is empty: the sheet's last used row is {used}")
        text = self._row_text(row)
        sheet.delete_row(self.world["grid"], row)
        moved = f"; {_span(row + 1, used)} moved up one" if row < used else ""
        return f"Deleted row {row} ({text}){moved}."

    @tool(
        "Sort rows by the shown values of one column (numbers before text; empty cells "
        "last). By default rows 2 to the last used row: the header row stays on top.",
        {
            "column": {"type": "string", "description": "The column letter to sort by, e.g. E."},
            "order": {
                "type": "string",
                "enum": ["asc", "desc"],
                "description": "asc: smallest first.",
            },
            "first_row": {**_ROW, "description": "First row to sort (default 2)."},
            "last_row": {**_ROW, "description": "Last row to sort (default: the last used row)."},
        },
        required=["column", "order"],
    )
    def sort_rows(
        self, column: str, order: str, first_row: int = 2, last_row: int | None = None
    ) -> str:
        """Sort a block of whole rows."""
        try:
            col = col_number(column)
        except FormulaError as error:
            raise ToolCallError(str(error)) from None
        used = sheet.used_size(self.world["grid"])[0]
        last = used if last_row is None else last_row
        if not 1 <= first_row <= last <= max(used, 1) or used == 0:
            raise ToolCallError(
                f"rows to sort must run from first_row to last_row within 1..{used} "
                f"(got {first_row}..{last})"
            )
        sheet.sort_rows(self.world["grid"], col, order == "desc", first_row, last)
        header = sheet.format_value(_value(sheet.display(self.world["grid"]), 0, col - 1))
        how = "largest first" if order == "desc" else "smallest first"
        return f"Sorted rows {first_row}-{last} by column {column.upper()} ({header}), {how}."

    @tool("Empty every cell of a range.", {"range": _RANGE})
    def clear_range(self, range: str) -> str:
        """Empty a range (formulas that refer to it then see empty cells)."""
        top, left, bottom, right = _range(range)
        for r in builtins.range(top, bottom + 1):
            for c in builtins.range(left, right + 1):
                if sheet.get_raw(self.world["grid"], r, c) is not None:
                    sheet.set_raw(self.world["grid"], r, c, None)
        return f"Cleared {address(top, left)}:{address(bottom, right)}."

    @tool("Say the sheet is done; the episode ends and the sheet is compared with the goal.", {})
    def finish(self) -> Outcome:
        """End the episode."""
        wrong = sum(1 for ok in self.subgoals() if not ok)
        verdict = (
            "the sheet matches the goal" if wrong == 0 else "the sheet does not match the goal"
        )
        return self.end_episode(f"Finished: {verdict}.")

    # -- helpers -------------------------------------------------------------------------

    def _describe(self, row: int, col: int) -> str:
        raw = sheet.get_raw(self.world["grid"], row, col)
        if raw is None:
            return "(empty)"
        text = sheet.format_value(_value(sheet.display(self.world["grid"]), row - 1, col - 1))
        return f"{text} ({raw})" if isinstance(raw, str) and raw.startswith("=") else text

    def _row_text(self, row: int) -> str:
        shown = sheet.display(self.world["grid"])
        line = list(shown[row - 1]) if row - 1 < len(shown) else []
        while line and line[-1] is None:
            line.pop()
        return " | ".join(sheet.format_value(v) for v in line) or "(empty)"

    # -- expert and random actions ---------------------------------------------------------

    def expert_action(self) -> str:
        """The plan's next call where the sheet is on the plan; else a repair toward the target."""
        if not self.world["seen"]:
            return tool_call_action("read_sheet")
        task = self.task
        shown = sheet.display(self.world["grid"])
        if sheets_equal(shown, task.target):
            return tool_call_action("finish")
        states = plan_states(task.task_id)
        for index in range(len(states) - 1, -1, -1):
            if sheets_equal(shown, states[index]):
                return task.plan[index]
        return self._repair(shown, task.target)

    def _repair(self, shown: list[list[Any]], target: list[list[Any]]) -> str:
        """One step toward ``target`` from an off-plan sheet.

        Rows first (by their column-A labels): delete a row the target lacks, or insert a
        missing one with its values; then, with the row count right, rewrite the block
        that holds every differing cell in one call.
        """
        keys = [_key(line) for line in shown]
        wanted = Counter(_key(line) for line in target)
        if len(shown) > len(target):
            seen: Counter[str] = Counter()
            extra = len(shown) - 1
            for r, key in enumerate(keys):
                seen[key] += 1
                if seen[key] > wanted[key]:
                    extra = r
            return tool_call_action("delete_row", {"row": extra + 1})
        if len(shown) < len(target):
            have = Counter(keys)
            for r, line in enumerate(target):
                key = _key(line)
                if have[key] > 0:
                    have[key] -= 1
                    continue
                values = list(line)
                while values and values[-1] is None:
                    values.pop()
                arguments = {
                    "row": min(r + 1, len(shown) + 1),
                    "row_values": [_typed(v) for v in values],
                }
                return tool_call_action("insert_row", arguments)
        cols = max((len(line) for line in [*shown, *target]), default=0)
        wrong = [
            (r, c)
            for r in range(len(target))
            for c in range(cols)
            if not sheet.cells_match(_value(shown, r, c), _value(target, r, c))
        ]
        if not wrong:
            return tool_call_action("finish")
        top, bottom = min(r for r, _ in wrong), max(r for r, _ in wrong)
        left, right = min(c for _, c in wrong), max(c for _, c in wrong)
        if (top, left) == (bottom, right):
            cell = address(top + 1, left + 1)
            return tool_call_action(
                "update_cell", {"cell": cell, "value": _typed(target[top][left])}
            )
        block = [
            [_typed(_value(target, r, c)) for c in range(left, right + 1)]
            for r in range(top, bottom + 1)
        ]
        return tool_call_action(
            "update_range", {"start": address(top + 1, left + 1), "values": block}
        )

    def random_action(self, rng: np.random.Generator) -> str:
        """A random call that the sheet accepts: a tool, then arguments that fit the sheet now.

        Addresses and rows stay within one past the used area, values are the sheet's own
        shown values, "" or a few formulas, and a tool that cannot apply (deleting from an
        empty sheet, sorting fewer than two rows) is not drawn.
        """
        if self.task_id is None:
            raise EpisodeOverError("call reset() before random_action()")
        shown = sheet.display(self.world["grid"])
        rows, cols = len(shown), max((len(line) for line in shown), default=0)
        names = ["read_sheet", "read_range", "update_cell", "update_range", "clear_range", "finish"]
        if rows < MAX_ROWS:
            names.append("insert_row")
        if rows:
            names.append("delete_row")
        if rows >= 2:
            names.append("sort_rows")
        names.sort(key=[t["function"]["name"] for t in self.tools].index)

        def pick(pool: Sequence[Any]) -> Any:
            return pool[int(rng.integers(len(pool)))]

        name = pick(names)
        high_row, high_col = min(rows + 1, MAX_ROWS), min(cols + 1, MAX_COLS)
        cells = [address(r, c) for r in range(1, high_row + 1) for c in range(1, high_col + 1)]
        values: list[Any] = ["", f"=SUM(C2:C{max(rows, 2)})", "=B2*C2", "=ROUND(AVERAGE(B2:D2),1)"]
        values += [_typed(v) for line in shown for v in line if _typed(v) not in ("", None)]
        last = col_letter(max(cols, 1))
        ranges = [f"A{r}:{last}{r}" for r in range(1, high_row + 1)]
        ranges += [
            f"{col_letter(c)}1:{col_letter(c)}{max(rows, 1)}" for c in range(1, high_col + 1)
        ]
        arguments: dict[str, Any]
        if name == "read_range" or name == "clear_range":
            arguments = {"range": pick(ranges)}
        elif name == "update_cell":
            arguments = {"cell": pick(cells), "value": pick(values)}
        elif name == "update_range":
            arguments = {"start": pick(cells), "values": [[pick(values)]]}
        elif name == "insert_row":
            arguments = {"row": int(rng.integers(1, rows + 2))}
            if rows and rng.random() < 0.5:
                arguments["row_values"] = [_typed(v) for v in pick(shown)]
        elif name == "delete_row":
            arguments = {"row": int(rng.integers(1, rows + 1))}
        elif name == "sort_rows":
            arguments = {"column": col_letter(int(rng.integers(1, high_col + 1)))}
            arguments["order"] = pick(["asc", "desc"])
        else:
            arguments = {}
        return tool_call_action(name, arguments)


def _key(line: Sequence[Any]) -> str:
    """A row's label: its column-A value as compared (case and spaces ignored)."""
    return " ".join(sheet.format_value(line[0] if line else None).split()).lower()


def _span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}-{last}"


def _typed(value: Any) -> Any:
    """A shown value as a tool argument would give it (``34`` for 34.0; "" for empty)."""
    if value is None or isinstance(value, sheet.CellError):
        return ""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e15 else value
    return value


# -- input checking --------------------------------------------------------------------------


def _address(text: str) -> tuple[int, int]:
    try:
        return parse_address(text)
    except FormulaError as error:
        raise ToolCallError(str(error)) from None


def _range(text: str) -> tuple[int, int, int, int]:
    try:
        return parse_range(text)
    except FormulaError as error:
        raise ToolCallError(str(error)) from None


def _input(value: Any) -> Any:
    """A typed value as a raw entry; refuses what a cell cannot hold."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ToolCallError(f"a cell holds at most {MAX_TEXT} characters")
        if not set(" ".join(value.split())) <= _PRINTABLE:
            raise ToolCallError("cells hold printable ASCII text only")
    try:
        return sheet.parse_input(value)
    except FormulaError as error:
        if isinstance(value, str) and value.strip().startswith("="):
            raise ToolCallError(
                f"the formula {value.strip()[:40]!r} does not parse: {error}"
            ) from None
        raise ToolCallError(str(error)) from None


def apply_call(grid: list[list[Any]], action: str) -> None:
    """Apply one tool call (an action string) to ``grid`` with the env's own tool code.

    Used by the task generator to replay a plan; a rejected call raises ``RuntimeError``.
    """
    env = SheetEnv()
    env.world = {"grid": grid, "seen": True}
    try:
        call = env.read_call(action)
        getattr(env, call.name)(**call.arguments)
    except ToolCallError as error:
        raise RuntimeError(f"the call {action} was rejected: {error}") from None
