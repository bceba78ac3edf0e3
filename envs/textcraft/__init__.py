"""``palaestra/TextCraft-v0``: craft Minecraft items from base items with text commands.

- :class:`TextCraftEnv`: the env (its docstring documents observations, actions,
  scoring, splits and the expert).
- :mod:`~palaestra.envs.textcraft.recipes`: the :class:`RecipeBook` of Minecraft
  1.19's crafting recipes, read from the shipped ``recipes.json``.
- :mod:`~palaestra.envs.textcraft.tasks`: task ids -> goals, crafting trees and
  the commands shown, and the expert's planner :func:`plan`.

Source and licence: ``recipes.json`` is made once by
``tools/make_textcraft_recipes.py`` from the ``minecraft_data`` 3.20.0 package on
PyPI (MIT, Vito Gamberini and contributors), which bundles PrismarineJS's
``minecraft-data`` (MIT); the notice is in ``LICENSE.txt``. Nothing is
downloaded at run time, and ``minecraft_data`` is not needed to run the env.
"""

from palaestra.envs.textcraft.env import (
    MAX_COUNT,
    MAX_STEPS,
    TEST_TASKS,
    TRAIN_TASKS,
    TextCraftEnv,
)
from palaestra.envs.textcraft.recipes import Recipe, RecipeBook, book
from palaestra.envs.textcraft.tasks import MAX_DEPTH, TASK_SEED, Task, plan, task_for

__all__ = [
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_STEPS",
    "TASK_SEED",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Recipe",
    "RecipeBook",
    "Task",
    "TextCraftEnv",
    "book",
    "plan",
    "task_for",
]
