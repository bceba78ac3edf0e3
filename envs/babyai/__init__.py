"""``palaestra/BabyAI-v0``: minigrid's BabyAI levels in words, with the BabyAI bot as expert."""

from palaestra.envs.babyai.env import MAX_STEPS, PRIMITIVES, TEST_TASKS, TRAIN_TASKS, BabyAIEnv
from palaestra.envs.babyai.levels import (
    LEVELS,
    SEED_STRIDE,
    gym_id,
    level_of_task,
    make_level,
    reset_to_task,
    seed_of_task,
)
from palaestra.envs.babyai.render import View, describe

__all__ = [
    "LEVELS",
    "MAX_STEPS",
    "PRIMITIVES",
    "SEED_STRIDE",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "BabyAIEnv",
    "View",
    "describe",
    "gym_id",
    "level_of_task",
    "make_level",
    "reset_to_task",
    "seed_of_task",
]
