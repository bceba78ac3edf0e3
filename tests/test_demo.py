"""What the demo plays: MazeCells' 5x5 mazes, with the previous turn in every prompt."""

from palaestra.demo import DEMO_PRESETS, MAZE, demo_config
from palaestra.envs.maze import maze_for_task


def test_the_demo_plays_5x5_mazes_cell_to_cell_with_history():
    config = demo_config(DEMO_PRESETS["full"])
    assert config.envs == (MAZE,) == ("palaestra/MazeCells-v0",)
    assert config.history >= 1
    assert {"uniform", "random", "heuristic"} <= set(config.baselines)
    pools = config.tasks[MAZE]
    assert len(pools["train"]) == 1000 and len(pools["test"]) == 100
    assert {maze_for_task(int(t)).size for t in pools["train"] + pools["test"]} == {5}
    # Whole expert paths fit the turn cap (23 cell moves at most on a 5x5 maze).
    assert DEMO_PRESETS["full"].max_turns >= 23 and DEMO_PRESETS["quick"].max_turns >= 23


def test_every_maze_flavour_plays_its_5x5_mazes():
    config = demo_config(DEMO_PRESETS["quick"], envs=("palaestra/Maze-v0", "palaestra/Wordle-v0"))
    assert set(config.tasks) == {"palaestra/Maze-v0"}
    assert all(int(t) % 3 == 0 for t in config.tasks["palaestra/Maze-v0"]["test"])
