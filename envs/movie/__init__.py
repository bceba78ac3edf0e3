"""``palaestra/Movie-v0``: questions about films answered through a film database's tools.

An offline counterpart of AgentBoard's Movie tasks (which call the live TMDB
API): a database of its own (2,000 fictional films, 4,399 people, 29,086
credits), shipped as ``movies.json.gz`` and made by ``tools/make_movie_data.py``
from a fixed seed; eight TMDB-like lookup tools and ``finish``; 1,200 questions
from 11 templates that join several lookups (:mod:`.tasks`).
"""

from palaestra.envs.movie.data import Database, database, normalize
from palaestra.envs.movie.env import MAX_STEPS, MovieEnv
from palaestra.envs.movie.tasks import (
    TEMPLATES,
    TEST_TASKS,
    TRAIN_TASKS,
    Task,
    answer_matches,
    make_task,
)

__all__ = [
    "MAX_STEPS",
    "TEMPLATES",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Database",
    "MovieEnv",
    "Task",
    "answer_matches",
    "database",
    "make_task",
    "normalize",
]
