"""``palaestra/Todo-v0``: edit a Todoist-like to-do list into the state a goal asks for.

Offline and generated: each task id seeds its own list (an Inbox and 3-4
projects, 8-20 items) and a goal of 1-3 changes, from hand-written pools of
realistic to-do phrases (:mod:`.data`) by :mod:`.tasks` (about 0.1 ms a task,
at first use); nothing is downloaded or shipped besides the code.
"""

from palaestra.envs.todo.env import MAX_STEPS, TEST_TASKS, TRAIN_TASKS, TodoEnv
from palaestra.envs.todo.tasks import KINDS, Fact, TodoTask, make_task

__all__ = [
    "KINDS",
    "MAX_STEPS",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Fact",
    "TodoEnv",
    "TodoTask",
    "make_task",
]
