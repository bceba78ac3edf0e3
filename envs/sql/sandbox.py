"""A read-only SQLite connection that runs an agent's SQL safely, and result matching.

Five locks on one door, because any one of them alone has had holes:

0. the statement's first word must be SELECT, WITH, VALUES or PRAGMA (so
   ``REINDEX``, ``VACUUM``, ``DROP``... never reach SQLite);
1. the file is opened read-only (``file:...?mode=ro`` URI): SQLite itself refuses
   to write it;
2. an authorizer allows only reading: ``SELECT``, reading columns, recursive CTEs,
   a few schema-reading pragmas, and functions other than ``load_extension`` and
   ``fts3_tokenizer``; it denies every write, ``ATTACH``/``DETACH``, pragma
   changes (``PRAGMA writable_schema = 1``), transactions, temp objects, ``VACUUM INTO``;
3. extension loading is switched off (``enable_load_extension(False)``);
4. a progress handler stops any statement past its time limit (an endless
   recursive CTE), ``SQLITE_LIMIT_LENGTH`` refuses any value over 100 KB and
   ``SQLITE_LIMIT_COLUMN`` any result over 100 columns, and the rows read are
   capped by count and by characters (a 10 MB result is cut).

A :class:`Sandbox` may be used from any thread (the server runs a session's
calls on its pool's threads, one at a time): ``check_same_thread=False`` and a
lock of its own.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_COLUMNS",
    "MAX_VALUE_BYTES",
    "QueryResult",
    "Refused",
    "Sandbox",
    "format_result",
    "results_match",
]

MAX_VALUE_BYTES = 100_000
"""The longest string or blob a statement may make (``SQLITE_LIMIT_LENGTH``)."""
MAX_COLUMNS = 100
"""The most columns a result may have (``SQLITE_LIMIT_COLUMN``): with the value cap,
a row (read whole before the character cap can cut it) stays under 10 MB."""

_READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "foreign_key_list"}
)
_READ_STATEMENTS = frozenset({"select", "with", "values", "pragma"})
# Lock 0: REINDEX, for one, asks the authorizer nothing, so the first word is checked too.
_HEAD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile"})
# Authorizer action codes -> words for the refusal message (``SQLITE_DROP_TABLE`` -> "DROP TABLE").
_ACTION_NAMES = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ")
    for name in (
        "SQLITE_INSERT",
        "SQLITE_UPDATE",
        "SQLITE_DELETE",
        "SQLITE_ATTACH",
        "SQLITE_DETACH",
        "SQLITE_TRANSACTION",
        "SQLITE_SAVEPOINT",
        "SQLITE_ANALYZE",
        "SQLITE_REINDEX",
        "SQLITE_ALTER_TABLE",
        "SQLITE_CREATE_TABLE",
        "SQLITE_CREATE_TEMP_TABLE",
        "SQLITE_CREATE_INDEX",
        "SQLITE_CREATE_TEMP_INDEX",
        "SQLITE_CREATE_VIEW",
        "SQLITE_CREATE_TEMP_VIEW",
        "SQLITE_CREATE_TRIGGER",
        "SQLITE_CREATE_TEMP_TRIGGER",
        "SQLITE_CREATE_VTABLE",
        "SQLITE_DROP_TABLE",
        "SQLITE_DROP_TEMP_TABLE",
        "SQLITE_DROP_INDEX",
        "SQLITE_DROP_TEMP_INDEX",
        "SQLITE_DROP_VIEW",
        "SQLITE_DROP_TEMP_VIEW",
        "SQLITE_DROP_TRIGGER",
        "SQLITE_DROP_TEMP_TRIGGER",
        "SQLITE_DROP_VTABLE",
    )
    if hasattr(sqlite3, name)
}


class Refused(Exception):
    """The statement was refused, stopped or cut; the message says why, for the agent."""


@dataclass(frozen=True)
class QueryResult:
    """The rows a statement gave, possibly cut.

    Attributes:
        columns: The column names.
        rows: The rows read (at most the cap asked for).
        more: True when the statement had rows beyond those read.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    more: bool


class Sandbox:
    """One read-only connection to one database file, with the locks above.

    Args:
        path: The SQLite file (never written).
        time_limit: Seconds a statement may run before it is stopped.
    """

    def __init__(self, path: Path, *, time_limit: float = 1.0) -> None:
        self.path = Path(path)
        self.time_limit = time_limit
        self._lock = threading.Lock()
        self._deadline = math.inf
        self._denied: str | None = None
        self._connection = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro",
            uri=True,
            check_same_thread=False,  # the server's threads take turns under self._lock
            isolation_level=None,
        )
        self._connection.execute("PRAGMA cache_size = -512")  # 512 KiB per session
        if hasattr(self._connection, "enable_load_extension"):
            # Absent where Python was built without extension loading: then none can load.
            self._connection.enable_load_extension(False)
        self._connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        self._connection.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        self._connection.set_authorizer(self._authorize)
        self._connection.set_progress_handler(self._progress, 2_000)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

    def run(self, sql: str, *, max_rows: int, max_chars: int) -> QueryResult:
        """Run one statement and read at most ``max_rows`` rows of at most ``max_chars``.

        Raises:
            Refused: The statement is not a single read, failed, ran past the time
                limit or made a value over :data:`MAX_VALUE_BYTES`; the message is
                for the agent.
        """
        head = _first_word(sql)
        if head not in _READ_STATEMENTS:
            shown = head.upper() or "an empty statement"
            raise Refused(
                f"Refused: {shown} is not a query. Only SELECT queries may run "
                "(a statement starting with SELECT, WITH, VALUES or PRAGMA)."
            )
        with self._lock:
            self._denied = None
            self._deadline = time.monotonic() + self.time_limit
            try:
                cursor = self._connection.execute(sql)
                rows: list[tuple[Any, ...]] = []
                chars = 0
                more = False
                while True:
                    row = cursor.fetchone()
                    if row is None:
                        break
                    chars += sum(len(str(v)) for v in row)
                    if len(rows) >= max_rows or chars > max_chars:
                        more = True
                        break
                    rows.append(row)
                columns = tuple(d[0] for d in cursor.description or ())
                cursor.close()
            except sqlite3.Warning as error:  # "You can only execute one statement at a time."
                raise Refused(f"{error} Send one SELECT statement.") from None
            except sqlite3.Error as error:
                raise Refused(self._explain(error)) from None
            except ValueError as error:  # a lone surrogate in the text: not UTF-8 encodable
                raise Refused(f"SQL error: the statement is not valid text ({error}).") from None
            finally:
                self._deadline = math.inf
        return QueryResult(columns, tuple(rows), more)

    # -- the locks ---------------------------------------------------------------------

    def _authorize(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        database: str | None,
        source: str | None,
    ) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() not in _DENIED_FUNCTIONS:
                return sqlite3.SQLITE_OK
            self._deny(f"the function {arg2}() is not allowed")
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _READ_PRAGMAS:
                return sqlite3.SQLITE_OK
            self._deny(f"PRAGMA {name} is not allowed (only {', '.join(sorted(_READ_PRAGMAS))})")
            return sqlite3.SQLITE_DENY
        what = _ACTION_NAMES.get(action, f"action {action}")
        target = f" ({arg1})" if arg1 else ""
        if (arg1 or "").startswith("sqlite_"):
            # SQLite's own write to its schema table: asked before the DROP or CREATE it
            # is part of (and, denied, the only question asked).
            self._deny(
                "schema changes (CREATE, DROP, ALTER) are not allowed: the database is read-only"
            )
        else:
            self._deny(f"{what.upper()}{target} is not allowed: the database is read-only")
        return sqlite3.SQLITE_DENY

    def _deny(self, reason: str) -> None:
        # The first denial names the statement; SQLite stops preparing at it anyway.
        if self._denied is None:
            self._denied = reason

    def _progress(self) -> int:
        # Non-zero interrupts the statement (sqlite3.OperationalError: interrupted).
        return 1 if time.monotonic() > self._deadline else 0

    def _explain(self, error: sqlite3.Error) -> str:
        text = str(error)
        if self._denied is not None:
            return f"Refused: {self._denied}. Only SELECT queries may run."
        if text == "interrupted":
            return (
                f"Stopped: the query ran longer than {self.time_limit:g} s "
                "(an endless recursive CTE or a huge join?)."
            )
        if "too many columns" in text:
            return f"Refused: more than {MAX_COLUMNS} columns ({text})."
        if "too big" in text:
            return f"Refused: a value longer than {MAX_VALUE_BYTES:,} bytes ({text})."
        if "readonly" in text or "read-only" in text:
            return "Refused: the database is read-only. Only SELECT queries may run."
        return f"SQL error: {text}"


def _first_word(sql: str) -> str:
    """The statement's first keyword, lower-case, after comments and opening brackets."""
    match = _HEAD.match(sql)
    return match.group(1).lower() if match else ""


# -- showing and matching results -----------------------------------------------------


def format_result(result: QueryResult, *, max_cell: int = 60) -> str:
    """A result as a small text table: the header, then one line per row."""

    def cell(value: Any) -> str:
        text = "NULL" if value is None else str(value)
        text = text.replace("\n", " ")
        return text if len(text) <= max_cell else text[: max_cell - 3] + "..."

    lines = [" | ".join(result.columns)]
    lines += [" | ".join(cell(v) for v in row) for row in result.rows]
    count = f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}"
    if result.more:
        count = f"the first {count} shown; more rows were cut"
    return "\n".join(lines) + f"\n({count})"


def _normal(value: Any) -> Any:
    """A cell as compared: numbers by value to 4 decimals (2 == 2.0), the rest as is."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        number = round(float(value), 4)
        return int(number) if number.is_integer() else number
    return value


def results_match(
    got: Sequence[Sequence[Any]], gold: Sequence[Sequence[Any]], *, ordered: bool
) -> bool:
    """Whether two results hold the same rows: columns by position, names ignored.

    Rows are compared as multisets (order ignored, duplicates counted) unless
    ``ordered`` (the gold query sorts), then as sequences. Numbers are compared
    rounded to 4 decimals, integers and equal floats alike.
    """
    got_rows = [tuple(_normal(v) for v in row) for row in got]
    gold_rows = [tuple(_normal(v) for v in row) for row in gold]
    if ordered:
        return got_rows == gold_rows
    return Counter(got_rows) == Counter(gold_rows)
