import random
import string
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra.envs
from palaestra.envs.maze import MAX_STEPS, SIZES, MazeEnv, maze_for_task
from palaestra.envs.maze.generator import DIRECTIONS, size_of_task
from palaestra.errors import UnknownTaskError

ENV_ID = "palaestra/Maze-v0"
SAMPLE = random.Random(0).sample(MazeEnv.tasks("train"), 50) + random.Random(1).sample(
    MazeEnv.tasks("test"), 50
)


def make(task_id: int = 0) -> tuple[MazeEnv, str]:
    env = MazeEnv()
    obs, _ = env.reset(options={"task_id": task_id})
    return env, obs


def bump_direction(env: MazeEnv) -> str:
    open_moves = {action.split()[1] for action in env.available_actions()}
    return next(name for name in DIRECTIONS if name not in open_moves)


def test_registered_and_checked_by_gymnasium():
    assert palaestra.envs.env_class(ENV_ID) is MazeEnv
    env = gymnasium.make(ENV_ID)
    assert isinstance(env.unwrapped, MazeEnv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        check_env(MazeEnv())
    # Only the two warnings that are not the env's doing: TextEnv declares no
    # render_fps, and a bare MazeEnv() has no spec to re-make it from.
    for warning in caught:
        assert "render fps" in str(warning.message) or "spec" in str(warning.message)


def test_capabilities():
    assert MazeEnv.capabilities() == {"snapshot", "expert", "available_actions", "random_action"}


def test_splits_are_disjoint_and_hold_every_size():
    train, test = set(MazeEnv.tasks("train")), set(MazeEnv.tasks("test"))
    assert not train & test
    for split in ("train", "test"):
        ids = MazeEnv.tasks(split)
        assert {size_of_task(t) for t in ids} == set(SIZES)
        assert {maze_for_task(t).size for t in ids[:30]} == set(SIZES)
    with pytest.raises(UnknownTaskError):
        MazeEnv().reset(options={"task_id": 10**6})


def test_same_task_same_maze_and_different_tasks_differ():
    first = {t: make(t)[1] for t in SAMPLE[:20]}
    again = {t: make(t)[1] for t in SAMPLE[:20]}
    assert first == again
    assert len(set(first.values())) == len(first)
    maze_for_task.cache_clear()  # regenerated from scratch: still the same
    assert make(SAMPLE[0])[1] == first[SAMPLE[0]]


def test_seeded_reset_without_task_is_deterministic():
    a, b = MazeEnv(), MazeEnv()
    assert a.reset(seed=7) == b.reset(seed=7)
    assert a.task_id in MazeEnv.tasks("train")


def test_first_observation_format():
    env, obs = make(0)
    maze = env._maze
    assert obs.startswith(f"Maze of {maze.size}x{maze.size} cells")
    assert set(obs) <= set(string.printable)
    lines = obs.splitlines()
    grid = lines[-maze.height :]
    assert all(len(line) == maze.width for line in grid)
    (row,) = [r for r, line in enumerate(grid) if "A" in line]
    assert (row, grid[row].index("A")) == maze.start
    assert grid[maze.goal[0]][maze.goal[1]] == "G"
    assert f"Position: ({maze.start[0]}, {maze.start[1]})." in obs
    assert f"Goal: ({maze.goal[0]}, {maze.goal[1]})." in obs


def test_mazes_are_perfect():
    for task_id in SAMPLE[:30]:
        maze = maze_for_task(task_id)
        floor = sum(d >= 0 for d in maze.distance)
        edges = sum(len(moves) for moves in maze.open_moves) // 2
        assert floor == 2 * maze.size**2 - 1  # every cell reached, plus n*n - 1 passages
        assert edges == floor - 1  # connected with no cycle: a tree
        assert maze.start != maze.goal


@pytest.mark.parametrize("task_id", SAMPLE)
def test_expert_solves(task_id):
    env, _ = make(task_id)
    maze = env._maze
    shortest = maze.distance[maze.index(maze.start)]
    for _ in range(MAX_STEPS):
        assert env.expert_action() in env.available_actions()
        obs, reward, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert reward == 1.0 and info["success"] is True and info["score"] == 1.0
    assert info["step"] == shortest
    assert "reached the goal" in obs


def test_every_task_fits_max_steps():
    for task_id in range(0, 3300, 7):
        maze = maze_for_task(task_id)
        assert 0 < maze.distance[maze.index(maze.start)] <= MAX_STEPS // 2


def test_actions_are_parsed_leniently_but_strictly():
    for spelling in ("move up", "  MOVE   Up \n", "up", "Up"):
        env, _ = make(0)
        blocked = bump_direction(env) == "up"
        obs, *_ = env.step(spelling)
        assert obs.startswith("You hit a wall" if blocked else "You moved up")
    for bad in ("go up", "move up.", "north", "", "move", "up down", "é" * 100):
        env, _ = make(0)
        obs, reward, terminated, truncated, info = env.step(bad)
        assert obs.startswith("Invalid action")
        assert "move up, move down, move left, move right" in obs
        assert reward == 0.0 and not terminated and not truncated
        assert info["step"] == 1 and info["invalid_action"] is True
        assert set(obs) <= set(string.printable)


@pytest.mark.parametrize(
    ("action", "invalid"),
    [("", True), ("xyzzy-not-an-action 12345", True), ("dance wildly", True), ("move up", False)],
)
def test_invalid_action_flag(action, invalid):
    env, _ = make(0)
    info = env.step(action)[4]
    assert info["invalid_action"] is invalid
    if invalid:
        assert env._position == env._maze.start


def test_a_move_into_a_wall_is_valid():
    env, _ = make(0)
    assert env.step(f"move {bump_direction(env)}")[4]["invalid_action"] is False


def test_random_action_is_an_open_move_drawn_from_the_given_rng():
    env, _ = make(SAMPLE[5])
    for seed in range(40):
        state = env.np_random.bit_generator.state
        action = env.random_action(np.random.default_rng(seed))
        assert env.np_random.bit_generator.state == state
        assert action == env.random_action(np.random.default_rng(seed))
        assert action in env.available_actions()
        obs, _, terminated, truncated, info = env.step(action)
        assert info["invalid_action"] is False and not obs.startswith("You hit a wall")
        if terminated or truncated:
            break


def test_wall_bump_keeps_position():
    env, first = make(0)
    start = env._position
    direction = bump_direction(env)
    obs, reward, terminated, _, info = env.step(f"move {direction}")
    assert obs.startswith(f"You hit a wall: you cannot move {direction}")
    assert env._position == start and reward == 0.0 and not terminated
    assert obs.split("\n", 1)[1] == first.split("\n", 1)[1]  # the same view
    assert info["available_actions"] == env.available_actions()


def test_available_actions_match_walls():
    env, _ = make(1)
    for _ in range(20):
        allowed = env.available_actions()
        assert allowed
        for action in ("move up", "move down", "move left", "move right"):
            probe = MazeEnv()
            probe.reset(options={"task_id": 1})
            probe.set_state(env.get_state())
            obs, *_ = probe.step(action)
            assert obs.startswith("You hit a wall") == (action not in allowed)
        env.step(random.Random(len(allowed)).choice(allowed))


def test_snapshot_restore_continues_identically():
    env, _ = make(SAMPLE[3])
    for _ in range(3):
        env.step(env.expert_action())
    snap = env.snapshot()
    script = ["move left", "bogus", "move up", "move right", "move down"] * 4
    script.append(env.expert_action())
    first = [env.step(action) for action in script if not env.over]
    env.restore(snap)
    assert env.steps == 3 and not env.over
    second = [env.step(action) for action in script if not env.over]
    assert first == second
    # restoring into an env on another task brings the snapshot's maze back
    other, _ = make(SAMPLE[4])
    other.restore(snap)
    assert [other.step(action) for action in script if not other.over] == first


def test_truncation_at_max_steps():
    env, _ = make(0)
    direction = bump_direction(env)
    for step in range(1, MAX_STEPS + 1):
        _, _, terminated, truncated, info = env.step(f"move {direction}")
        assert not terminated
        assert truncated == (step == MAX_STEPS)
    assert info["success"] is False and info["score"] == 0.0
    assert env.over
