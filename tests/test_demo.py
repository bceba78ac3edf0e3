"""What the demo plays: the 5x5 mazes of whichever Maze flavour it is given."""

import pytest

from palaestra.demo import DEMO_PRESETS, MAZE, demo_config
from palaestra.envs.maze import maze_for_task


def test_the_demo_plays_5x5_mazes_with_the_baselines():
    config = demo_config(DEMO_PRESETS["full"])
    assert config.envs == (MAZE,)
    assert {"uniform", "random", "heuristic"} <= set(config.baselines)
    pools = config.tasks[MAZE]
    assert len(pools["train"]) == 1000 and len(pools["test"]) == 100
    assert {maze_for_task(int(t)).size for t in pools["train"] + pools["test"]} == {5}


@pytest.mark.parametrize("maze", ["palaestra/Maze-v0", "palaestra/MazeCells-v0"])
def test_every_maze_flavour_plays_its_5x5_mazes(maze):
    config = demo_config(DEMO_PRESETS["quick"], envs=(maze, "palaestra/Wordle-v0"))
    assert set(config.tasks) == {maze}
    assert all(int(t) % 3 == 0 for t in config.tasks[maze]["test"])
