import random
import re

import gymnasium
import numpy as np
import pytest

import palaestra.envs
from palaestra.agents.heuristics import HEURISTICS
from palaestra.envs.maze import MazeCellsEnv, MazeEnv, maze_for_task
from palaestra.envs.maze.generator import DIRECTIONS

ENV_ID = "palaestra/MazeCells-v0"
SAMPLE = random.Random(2).sample(MazeCellsEnv.tasks("train"), 30) + random.Random(3).sample(
    MazeCellsEnv.tasks("test"), 30
)
_POSITION = re.compile(r"Position: \((\d+), (\d+)\)\. Goal: \((\d+), (\d+)\)\.")
_GOAL_IS = re.compile(r"^Goal is (.*)\.$", re.MULTILINE)


def position(observation: str) -> tuple[int, int]:
    found = _POSITION.search(observation)
    assert found is not None, observation
    return int(found.group(1)), int(found.group(2))


def test_registered_with_maze_v0s_tasks_and_capabilities():
    assert palaestra.envs.env_class(ENV_ID) is MazeCellsEnv
    assert isinstance(gymnasium.make(ENV_ID).unwrapped, MazeCellsEnv)
    assert MazeCellsEnv.capabilities() == MazeEnv.capabilities()
    for split in ("train", "test"):
        assert list(MazeCellsEnv.tasks(split)) == list(MazeEnv.tasks(split))


def test_a_move_crosses_the_passage_to_the_next_cell():
    env = MazeCellsEnv()
    observation, _ = env.reset(options={"task_id": 3000})
    row, column = position(observation)
    assert row % 2 == 1 and column % 2 == 1
    move = env.available_actions()[0]
    dr, dc = DIRECTIONS[move.split()[1]]
    observation, *_ = env.step(move)
    assert position(observation) == (row + 2 * dr, column + 2 * dc)
    blocked = next(d for d in DIRECTIONS if f"move {d}" not in env.available_actions())
    before = position(observation)
    observation, reward, terminated, _, info = env.step(f"move {blocked}")
    assert observation.startswith("You hit a wall") and position(observation) == before
    assert (reward, terminated, info["invalid_action"]) == (0.0, False, False)


@pytest.mark.parametrize("task_id", SAMPLE[:10])
def test_goal_line_is_the_cells_to_the_goal(task_id):
    env = MazeCellsEnv()
    observation, _ = env.reset(options={"task_id": task_id})
    goal = maze_for_task(task_id).goal
    for _ in range(5):
        row, column = position(observation)
        want = []
        if goal[0] != row:
            want.append(f"{abs(goal[0] - row) // 2} {'down' if goal[0] > row else 'up'}")
        if goal[1] != column:
            want.append(f"{abs(goal[1] - column) // 2} {'right' if goal[1] > column else 'left'}")
        found = _GOAL_IS.search(observation)
        assert found is not None and found.group(1) == ", ".join(want)
        # Between the positions and the open moves, before the map.
        lines = observation.splitlines()
        at = lines.index(found.group(0))
        assert lines[at - 1].startswith("Position: ") and lines[at + 1].startswith("Open moves: ")
        assert lines[at + 2].startswith("#")
        observation, *_, terminated, _, _ = env.step(env.expert_action())
        if terminated:
            break


@pytest.mark.parametrize("task_id", SAMPLE)
def test_expert_takes_half_the_moves_of_maze_v0(task_id):
    maze = maze_for_task(task_id)
    env = MazeCellsEnv()
    env.reset(options={"task_id": task_id})
    steps, terminated = 0, False
    while not terminated:
        *_, terminated, _, info = env.step(env.expert_action())
        steps += 1
    assert info["success"] and info["score"] == 1.0
    assert 2 * steps == maze.distance[maze.index(maze.start)]


def test_set_state_refuses_a_passage():
    env = MazeCellsEnv()
    env.reset(options={"task_id": 3})
    maze = maze_for_task(3)
    passage = next(
        (r, c)
        for r in range(maze.height)
        for c in range(maze.width)
        if maze.is_open((r, c)) and not (r % 2 and c % 2)
    )
    with pytest.raises(ValueError, match="not a cell"):
        env.set_state({"task_id": 3, "position": list(passage)})
    MazeEnv().set_state({"task_id": 3, "position": list(passage)})  # a place on Maze-v0


def test_the_heuristic_plays_it():
    env = MazeCellsEnv()
    rng = np.random.default_rng(0)
    solved = 0
    for task_id in MazeCellsEnv.tasks("test")[:30:3]:
        observation, _ = env.reset(options={"task_id": task_id})
        for _ in range(30):
            observation, _, terminated, _, info = env.step(HEURISTICS[ENV_ID](observation, rng))
            if terminated:
                solved += info["success"]
                break
    assert solved >= 5
