"""``palaestra/SQL-v0``: BIRD-style text-to-SQL over four generated SQLite databases.

The databases (retail, university, flights, hospital) and their 1,200 questions
with gold SQL are generated from fixed seeds by :mod:`.databases` and
:mod:`.questions`, built on first use into palaestra's cache
(``$PALAESTRA_CACHE/sql/``) and identical on every build; nothing is downloaded.
Agents' SQL runs on a read-only connection (:mod:`.sandbox`): opened read-only,
an authorizer that allows only reads, no extension loading, a time limit per
statement and caps on what is read.
"""

from palaestra.envs.sql.databases import DATA_VERSION, DATABASES, build, cache_dir, ensure_built
from palaestra.envs.sql.env import (
    MAX_STEPS,
    SHOWN_CHARS,
    SHOWN_ROWS,
    TIME_LIMIT,
    SQLEnv,
    database_file,
)
from palaestra.envs.sql.questions import TEST_TASKS, TRAIN_TASKS, Question, load_questions, locate
from palaestra.envs.sql.sandbox import QueryResult, Refused, Sandbox, results_match

__all__ = [
    "DATABASES",
    "DATA_VERSION",
    "MAX_STEPS",
    "SHOWN_CHARS",
    "SHOWN_ROWS",
    "TEST_TASKS",
    "TIME_LIMIT",
    "TRAIN_TASKS",
    "QueryResult",
    "Question",
    "Refused",
    "SQLEnv",
    "Sandbox",
    "build",
    "cache_dir",
    "database_file",
    "ensure_built",
    "load_questions",
    "locate",
    "results_match",
]
