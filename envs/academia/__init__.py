"""``palaestra/Academia-v0``: questions about an author/paper/citation graph, answered with tools.

The graph (1,810 authors, 2,929 papers, 34,088 citations) ships as
``academia.json.gz``, made once by ``tools/make_academia_data.py``; the 1,400
questions are drawn from it by seeded templates (:mod:`.tasks`) on first use.
"""

from palaestra.envs.academia.data import Author, Graph, Paper, load_graph
from palaestra.envs.academia.env import MAX_STEPS, SEARCH_LIMIT, AcademiaEnv
from palaestra.envs.academia.tasks import (
    KINDS,
    TEST_TASKS,
    TRAIN_TASKS,
    Task,
    answer_matches,
    load_tasks,
)

__all__ = [
    "KINDS",
    "MAX_STEPS",
    "SEARCH_LIMIT",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "AcademiaEnv",
    "Author",
    "Graph",
    "Paper",
    "Task",
    "answer_matches",
    "load_graph",
    "load_tasks",
]
