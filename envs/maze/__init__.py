"""``palaestra/Maze-v0``: seeded perfect mazes on an ASCII map, with a BFS expert."""

from palaestra.envs.maze.env import (
    ACTIONS,
    MAX_STEPS,
    TEST_TASKS,
    TRAIN_TASKS,
    MazeCellsEnv,
    MazeEnv,
)
from palaestra.envs.maze.generator import SIZES, Maze, maze_for_task

__all__ = [
    "ACTIONS",
    "MAX_STEPS",
    "SIZES",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Maze",
    "MazeCellsEnv",
    "MazeEnv",
    "maze_for_task",
]
