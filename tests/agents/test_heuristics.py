import numpy as np
import pytest

from palaestra.agents.evaluate import EvalConfig, run_eval
from palaestra.agents.heuristics import maze_toward_goal
from palaestra.agents.rollout import RolloutConfig

MAZE = "palaestra/Maze-v0"
OBS = """You moved down.
Position: (2, 5). Goal: (7, 9).
Open moves: up, down, right. Blocked: left.
#####"""


def test_maze_rule_never_turns_back_and_prefers_moves_toward_the_goal():
    picks = [maze_toward_goal(OBS, np.random.default_rng(s)) for s in range(400)]
    assert "move up" not in picks  # it came down: going up is turning back
    assert set(picks) == {"move down", "move right"}
    assert 150 < picks.count("move down") < 250  # both get closer: an even split
    farther = [
        maze_toward_goal(OBS.replace("(7, 9)", "(7, 3)"), np.random.default_rng(s))
        for s in range(400)
    ]
    assert 300 < farther.count("move down") < 390  # right leads away: taken only when exploring
    dead_end = OBS.replace("Open moves: up, down, right. Blocked: left.", "Open moves: up.")
    assert maze_toward_goal(dead_end, np.random.default_rng(0)) == "move up"
    with pytest.raises(ValueError, match="not a Maze observation"):
        maze_toward_goal("hello", np.random.default_rng(0))


def test_baselines_rank_as_expected_on_maze(tmp_path):
    def success(policy: str) -> float:
        config = EvalConfig(
            policy, (MAZE,), limit=30, rollout=RolloutConfig(max_turns=200), concurrency=8
        )
        [row, _] = run_eval(config, tmp_path / policy, progress=False).rows
        return row["success"]

    heuristic, random_valid, uniform = success("heuristic"), success("random"), success("uniform")
    assert heuristic > random_valid >= uniform * 0.5
    assert heuristic >= 0.5


def test_heuristic_refuses_envs_without_a_rule(tmp_path):
    config = EvalConfig("heuristic", ("palaestra/Wordle-v0",), limit=1)
    with pytest.raises(ValueError, match="no heuristic"):
        run_eval(config, tmp_path / "w", progress=False)
