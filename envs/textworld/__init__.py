"""``palaestra/TextWorld-v0``: household and cooking quests made by TextWorld's generator.

Also ``palaestra/ALFWorld-v0`` (:class:`ALFWorldEnv`), where the ``alfworld``
package and its game data are installed.
"""

from palaestra.envs.textworld.alfworld import ALFWorldEnv
from palaestra.envs.textworld.env import MAX_STEPS, TextWorldEnv
from palaestra.envs.textworld.games import (
    LEVELS,
    TEST_TASKS,
    TRAIN_TASKS,
    Level,
    cache_dir,
    ensure_game,
    prepare,
    spec_for_task,
)

__all__ = [
    "LEVELS",
    "MAX_STEPS",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "ALFWorldEnv",
    "Level",
    "TextWorldEnv",
    "cache_dir",
    "ensure_game",
    "prepare",
    "spec_for_task",
]
