"""``palaestra/SQL-v0``: answer a question about a SQLite database with one SELECT."""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from palaestra.envs.core import CHARSET, Outcome, TaskId, TextEnv, echo_action
from palaestra.envs.sql.databases import database_path, ensure_built
from palaestra.envs.sql.questions import (
    TEST_TASKS,
    TRAIN_TASKS,
    Question,
    load_questions,
    locate,
)
from palaestra.envs.sql.sandbox import Refused, Sandbox, format_result, results_match

__all__ = [
    "MAX_STEPS",
    "SHOWN_CHARS",
    "SHOWN_ROWS",
    "SUBMIT_CHARS",
    "SUBMIT_ROWS",
    "TIME_LIMIT",
    "SQLEnv",
    "database_file",
]

MAX_STEPS = 10
SHOWN_ROWS = 20
"""Rows a ``query`` shows at most."""
SHOWN_CHARS = 2_000
"""Characters of cell text a ``query`` shows at most."""
SUBMIT_ROWS = 10_000
"""Rows a ``submit`` reads at most (every gold answer has 60 or fewer)."""
SUBMIT_CHARS = 1_000_000
"""Characters of cell text a ``submit`` reads at most."""
TIME_LIMIT = 1.0
"""Seconds one statement may run."""

_VERB = re.compile(r"\s*(query|submit|schema)\b\s*(.*)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_HELP = (
    "Reply with one action: `schema` (or `schema TABLE`), `query SELECT ...` to look at "
    "data, or `submit SELECT ...` to give your final answer."
)
_PRINTABLE = frozenset(CHARSET)


@cache
def _questions() -> dict[str, list[Question]]:
    return load_questions(ensure_built())


@cache
def _schema(database: str) -> tuple[tuple[str, tuple[tuple[str, str], ...], int], ...]:
    """Each table of ``database``: its name, (column, type) pairs, and row count."""
    sandbox = Sandbox(database_path(database, ensure_built()), time_limit=10.0)
    try:
        names = sandbox.run(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid",
            max_rows=100,
            max_chars=10_000,
        )
        tables = []
        for (name,) in names.rows:
            info = sandbox.run(f"PRAGMA table_info({name})", max_rows=100, max_chars=10_000)
            count = sandbox.run(f"SELECT COUNT(*) FROM {name}", max_rows=1, max_chars=100)
            columns = tuple((str(row[1]), str(row[2])) for row in info.rows)
            tables.append((str(name), columns, int(count.rows[0][0])))
        return tuple(tables)
    finally:
        sandbox.close()


_gold_lock = threading.Lock()
_gold: dict[tuple[str, int], tuple[tuple[Any, ...], ...]] = {}


class SQLEnv(TextEnv):
    """Text-to-SQL (BIRD-style): explore a SQLite database, then submit one SELECT.

    Each task is a question about one of four generated databases (retail
    orders, university courses, flights, hospital admissions; 4-5 tables and
    3,000-20,000 rows each) with a gold query. The agent may look at the schema
    and run exploratory queries, then submits the query it thinks answers the
    question; it is scored by running both and comparing their results.

    ## Observation

    Printable ASCII text. The first observation names the database, lists its
    tables with their columns, types and row counts, and asks the question (which
    names the columns wanted, in order). A ``query`` is answered with its result
    as a small table (header, ``|``-separated rows), at most 20 rows and 2,000
    characters of cells, and a line saying whether rows were cut; a statement
    that is not a single read, or fails, is answered with why.

    ## Actions

    * ``query <SQL>``: run one SELECT (or WITH ... SELECT, VALUES, or a
      schema-reading PRAGMA such as ``PRAGMA table_info(t)``) and see the capped
      result. Writes, ``ATTACH``, pragma changes and extension loading are
      refused; a statement is stopped after 1 s; a value over 100 KB or a result
      of over 100 columns is refused.
    * ``submit <SQL>``: the final answer; ends the episode if the statement runs.
      One that does not run (a syntax error, a refused statement) is answered
      with the error and the episode goes on.
    * ``schema``: the tables again; ``schema TABLE``: its columns and 3 rows.

    The verb is case-insensitive; a trailing ``;`` and Markdown code fences
    around the SQL are ignored. Anything else (an unknown verb, no SQL, an
    unknown table) is an invalid action (``info["invalid_action"]``) answered
    with the allowed forms. ``available_actions`` is not given (SQL cannot be
    listed); ``random_action`` draws uniformly from ``schema``, ``schema T``,
    ``query SELECT * FROM T LIMIT 5``, ``query SELECT COUNT(*) FROM T``,
    ``submit SELECT COUNT(*) FROM T`` and ``submit SELECT * FROM T LIMIT 10``
    over the database's tables ``T``.

    ## Reward, score and success

    On ``submit``: reward, score and success 1 when the submitted result equals
    the gold result, else 0. Results are compared by execution, as BIRD does:
    columns by position (names ignored), numbers rounded to 4 decimals (``2``
    equals ``2.0``), rows as a multiset (order ignored, duplicates counted)
    unless the gold query has an ``ORDER BY`` (the question then says the
    order, and no two rows of the answer tie on it), when the row order must
    match too. ``query`` and ``schema`` steps
    give 0. A truncated episode scores 0.

    ## Episode end

    Terminated by a ``submit`` that runs; truncated after ``max_steps`` = 10.

    ## Splits

    1,200 questions, 300 per database, made from 13 templates per database at
    four difficulties (``info["difficulty"]``: simple, aggregate, join, nested).
    ``train``: ids 0-959, ``test``: 960-1199; each split interleaves the four
    databases (task ``t`` of train is on ``DATABASES[t % 4]``), and every
    template has questions in both (question ``i`` of a database is a test one
    when ``i % 5 == 4``), with different parameters.

    ## Expert

    Submits the gold query at once (it always succeeds).

    ## Source

    Generated by palaestra (:mod:`palaestra.envs.sql.databases`,
    :mod:`palaestra.envs.sql.questions`) from fixed seeds and small built-in
    vocabularies (common English first and last names, US cities, real airport
    and airline names and codes, common drug names), built on first use into
    ``$PALAESTRA_CACHE/sql/`` (~2 s, 3.6 MB) and byte-identical on every build
    with the same SQLite; nothing is downloaded. The connection is read-only by
    four locks (:mod:`palaestra.envs.sql.sandbox`).
    """

    instruction: ClassVar[str] = (
        "You answer questions about a SQLite database by writing SQL. You see the "
        "database's tables and a question. You may explore the data first, then submit "
        "one SELECT query whose result answers the question. Actions:\n"
        "  schema            list the tables and their columns again\n"
        "  schema TABLE      the columns of TABLE and three of its rows\n"
        "  query SQL         run a SELECT and see its first 20 rows\n"
        "  submit SQL        your final answer; the episode ends\n"
        "Your submitted query is run and its result compared with the correct one: the "
        "columns the question asks for, in that order (names do not matter), the same "
        "rows (in the asked order when the question gives one). Numbers match to 4 "
        "decimals. The database is read-only; a query may run for 1 second.\n"
        "Reply with exactly one action, e.g.: submit SELECT COUNT(*) FROM orders"
    )
    max_steps: ClassVar[int] = MAX_STEPS
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._question: Question | None = None
        self._index = 0
        self._sandbox: Sandbox | None = None

    # -- the episode ---------------------------------------------------------------

    @classmethod
    def prepare(cls, split: str, limit: int | None = None, *, workers: int | None = None) -> int:
        """Build the databases and questions into the cache (all splits share them)."""
        ensure_built()
        return len(cls.tasks(split)[:limit])

    @classmethod
    def prepare_task(cls, task_id: TaskId) -> None:
        """Build the databases on first use (~6 s), before a server times the reset."""
        _questions()

    def start(self, task_id: TaskId) -> str:
        """Load task ``task_id``'s question and open its database read-only."""
        self._load(int(task_id))
        question = self._require_question()
        return (
            f"Database: {question.database}\n{self._tables()}\n\n"
            f"Question: {question.question}\n{_HELP}"
        )

    def act(self, action: str) -> Outcome:
        """Show the schema, run a query, or score a submission."""
        question = self._require_question()
        match = _VERB.fullmatch(action)
        if match is None:
            return Outcome(f"Invalid action '{echo_action(action)}'. {_HELP}", invalid=True)
        verb, rest = match.group(1).lower(), _clean_sql(match.group(2))
        if verb == "schema":
            return self._schema_of(rest)
        if not rest:
            return Outcome(f"`{verb}` needs a SQL statement after it. {_HELP}", invalid=True)
        sandbox = self._require_sandbox()
        if verb == "query":
            try:
                result = sandbox.run(rest, max_rows=SHOWN_ROWS, max_chars=SHOWN_CHARS)
            except Refused as refusal:
                return Outcome(_printable(f"{refusal}\nQuestion: {question.question}"))
            return Outcome(_printable(format_result(result)))
        try:
            result = sandbox.run(rest, max_rows=SUBMIT_ROWS, max_chars=SUBMIT_CHARS)
        except Refused as refusal:
            return Outcome(
                _printable(f"Your submission did not run: {refusal}\nFix it and submit again.")
            )
        gold = self._gold_rows()
        right = not result.more and results_match(result.rows, gold, ordered=question.ordered)
        shown = format_result(type(result)(result.columns, result.rows[:SHOWN_ROWS], False))
        verdict = "Correct" if right else "Wrong"
        return Outcome(
            _printable(
                f"{verdict}: your query gave {_rows(len(result.rows), result.more)}, "
                f"the answer has {_rows(len(gold), False)}.\n{shown}"
            ),
            reward=float(right),
            done=True,
            success=right,
            score=float(right),
            info={"difficulty": question.difficulty},
        )

    def close(self) -> None:
        """Close the database connection."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        super().close()

    # -- capabilities ----------------------------------------------------------------

    def expert_action(self) -> str:
        """Submit the gold query."""
        return f"submit {self._require_question().sql}"

    def random_action(self, rng: np.random.Generator) -> str:
        """A uniform draw from six action forms over this database's tables (see the docstring)."""
        tables = [name for name, _, _ in _schema(self._require_question().database)]
        table = tables[int(rng.integers(len(tables)))]
        forms = (
            "schema",
            f"schema {table}",
            f"query SELECT * FROM {table} LIMIT 5",
            f"query SELECT COUNT(*) FROM {table}",
            f"submit SELECT COUNT(*) FROM {table}",
            f"submit SELECT * FROM {table} LIMIT 10",
        )
        return forms[int(rng.integers(len(forms)))]

    def get_state(self) -> dict[str, Any]:
        """The task: nothing else changes in an episode (the database is read-only)."""
        return {"task_id": self.task_id}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a state from :meth:`get_state` (reopens the database if it differs)."""
        self._load(int(state["task_id"]))

    # -- helpers -------------------------------------------------------------------

    def _load(self, task_id: int) -> None:
        database, index = locate(task_id)
        question = _questions()[database][index]
        if self._sandbox is None or self._question is None or self._question.database != database:
            if self._sandbox is not None:
                self._sandbox.close()
            self._sandbox = Sandbox(database_path(database, ensure_built()), time_limit=TIME_LIMIT)
        self._question, self._index = question, index

    def _require_question(self) -> Question:
        if self._question is None:
            raise RuntimeError("call reset() first")
        return self._question

    def _require_sandbox(self) -> Sandbox:
        if self._sandbox is None:
            raise RuntimeError("call reset() first")
        return self._sandbox

    def _gold_rows(self) -> tuple[tuple[Any, ...], ...]:
        question = self._require_question()
        key = (question.database, self._index)
        with _gold_lock:
            rows = _gold.get(key)
        if rows is None:
            rows = (
                self._require_sandbox()
                .run(question.sql, max_rows=SUBMIT_ROWS, max_chars=SUBMIT_CHARS)
                .rows
            )
            with _gold_lock:
                _gold[key] = rows
        return rows

    def _tables(self) -> str:
        lines = ["Tables:"]
        for name, columns, count in _schema(self._require_question().database):
            described = ", ".join(f"{column} {kind}" for column, kind in columns)
            lines.append(f"  {name}({described})  -- {count} rows")
        return "\n".join(lines)

    def _schema_of(self, table: str) -> Outcome:
        if not table:
            return Outcome(self._tables())
        schema = {name.lower(): name for name, _, _ in _schema(self._require_question().database)}
        name = schema.get(table.strip().strip("`\"'[]").lower())
        if name is None:
            return Outcome(
                f"No table '{echo_action(table)}'. The tables: {', '.join(schema.values())}. "
                f"{_HELP}",
                invalid=True,
            )
        columns = next(c for n, c, _ in _schema(self._require_question().database) if n == name)
        sample = self._require_sandbox().run(
            f"SELECT * FROM {name} LIMIT 3", max_rows=3, max_chars=SHOWN_CHARS
        )
        described = ", ".join(f"{column} {kind}" for column, kind in columns)
        return Outcome(_printable(f"{name}({described})\n{format_result(sample)}"))


def _clean_sql(text: str) -> str:
    """The SQL of an action: code fences, surrounding space and trailing ``;`` removed."""
    return _FENCE.sub("", text.strip()).strip().rstrip(";").strip()


def _rows(count: int, more: bool) -> str:
    return f"{count}{'+' if more else ''} row{'' if count == 1 and not more else 's'}"


def _printable(text: str) -> str:
    """``text`` with any character outside the observation charset shown as ``?``."""
    return "".join(ch if ch in _PRINTABLE else "?" for ch in text)


def database_file(task_id: int) -> Path:
    """The SQLite file of task ``task_id``'s database (built on first use)."""
    return database_path(locate(task_id)[0], ensure_built())
