"""``palaestra/Sheet-v0``: edit a small spreadsheet into the sheet a goal describes.

An offline take on AgentBoard's Google Sheets tasks. Each of the 1,200 tasks
(train 0-999, test 1000-1199) is drawn from a fixed seed by :mod:`.tasks`: one
of six kinds of table (sales, grades, budget, inventory, timesheet, store
revenue; vocabularies written out in :mod:`.data`), 5-17 data rows and 3-6
columns, and a goal of two or three operations (fix named cells, insert a
missing row, delete rows by a condition, add a computed or rule-filled column,
sort, add a totals row). Formulas are evaluated by :mod:`.formula` (no Python
``eval``); rows are inserted, deleted and sorted by :mod:`.grid`, references
following their cells. Nothing is downloaded or shipped: tasks are made on
first use in well under a millisecond each.
"""

from palaestra.envs.sheet.env import MAX_STEPS, SheetEnv, apply_call
from palaestra.envs.sheet.formula import FormulaError, evaluate, parse
from palaestra.envs.sheet.tasks import KINDS, TEST_TASKS, TRAIN_TASKS, Task, make_task

__all__ = [
    "KINDS",
    "MAX_STEPS",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "FormulaError",
    "SheetEnv",
    "Task",
    "apply_call",
    "evaluate",
    "make_task",
    "parse",
]
