import contextlib
import gc
import io
import pickle
import random
import string
import types
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from gymnasium.utils.env_checker import check_env
from minigrid.core.actions import Actions
from minigrid.core.world_object import Ball, Box, Door, Key, Wall
from minigrid.minigrid_env import MiniGridEnv

import palaestra.envs
from palaestra.envs.babyai import (
    LEVELS,
    MAX_STEPS,
    PRIMITIVES,
    SEED_STRIDE,
    BabyAIEnv,
    describe,
    gym_id,
    level_of_task,
    make_level,
    reset_to_task,
)
from palaestra.envs.babyai import expert as expert_module
from palaestra.envs.checker import check
from palaestra.errors import UnknownTaskError

ENV_ID = "palaestra/BabyAI-v0"
N = len(LEVELS)
# One task of every level from each split.
SAMPLE_TRAIN = [random.Random(level).randrange(100) * N + level for level in range(N)]
SAMPLE_TEST = [6000 + random.Random(level).randrange(10) * N + level for level in range(N)]


def make(task_id: int = 0) -> tuple[BabyAIEnv, str]:
    env = BabyAIEnv()
    obs, _ = env.reset(options={"task_id": task_id})
    return env, obs


def play_expert(env: BabyAIEnv) -> dict:
    while True:
        *_, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            return info


def front(env: BabyAIEnv) -> tuple[int, int]:
    x, y = env.world.front_pos
    return int(x), int(y)


def minigrid_view(world: MiniGridEnv) -> set[tuple[str, tuple[int, int]]]:
    """(``colour type``, (forward, right)) of every object minigrid's own view shows."""
    grid, vis = MiniGridEnv.gen_obs_grid(world)  # minigrid's Grid-based version
    size = world.agent_view_size
    seen = set()
    for i in range(size):
        for j in range(size):
            cell = grid.get(i, j)
            agent = (i, j) == (size // 2, size - 1)  # shows the carried object
            if vis[i, j] and cell is not None and cell.type != "wall" and not agent:
                seen.add((f"{cell.color} {cell.type}", (size - 1 - j, i - size // 2)))
    return seen


# -- spec ----------------------------------------------------------------------------


def test_registered_and_checked_by_gymnasium():
    assert palaestra.envs.env_class(ENV_ID) is BabyAIEnv
    env = gymnasium.make(ENV_ID)
    assert isinstance(env.unwrapped, BabyAIEnv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    for warning in caught:
        assert "render fps" in str(warning.message) or "spec" in str(warning.message)


def test_capabilities_and_instruction():
    assert BabyAIEnv.capabilities() == {"snapshot", "expert", "available_actions", "random_action"}
    for action in [*PRIMITIVES, "go to <colour> <object>", "exactly one action"]:
        assert action in BabyAIEnv.instruction
    assert MAX_STEPS == BabyAIEnv.max_steps == 512


def test_levels_are_minigrids_and_construct():
    assert len(LEVELS) == len(set(LEVELS)) >= 40
    assert LEVELS[0] == "GoToRedBallGrey" and LEVELS[-1] == "BossLevel"
    for level in LEVELS:
        spec = gymnasium.spec(gym_id(level))
        world = make_level(level)
        # A direct subclass of the class minigrid registers.
        assert type(world).__mro__[1] is load_env_creator(spec.entry_point)
        world.reset(seed=0)
        assert world.agent_view_size == 7 and not world.see_through_walls


def test_splits_are_disjoint_and_hold_every_level():
    train, test = BabyAIEnv.tasks("train"), BabyAIEnv.tasks("test")
    assert (len(train), len(test)) == (6000, 600)
    assert not set(train) & set(test)
    assert max(test) < SEED_STRIDE
    for ids in (train, test):
        assert {level_of_task(t) for t in ids} == set(LEVELS)
    with pytest.raises(UnknownTaskError):
        BabyAIEnv().reset(options={"task_id": 6600})


@pytest.mark.parametrize("task_id", [0, 13, 59, 6000 + 37])
def test_tasks_are_minigrids_own_episodes(task_id):
    env, _ = make(task_id)
    assert env.minigrid_seed == task_id
    original = gymnasium.make(gym_id(level_of_task(task_id))).unwrapped
    with contextlib.redirect_stdout(io.StringIO()):
        original.reset(seed=task_id)
    assert original.mission == env.world.mission
    assert original.grid.encode().tolist() == env.world.grid.encode().tolist()
    assert tuple(original.agent_pos) == tuple(env.world.agent_pos)
    assert original.agent_dir == env.world.agent_dir
    assert original.max_steps == env.world.max_steps


@pytest.mark.parametrize(("task_id", "level"), [(4932, "GoToImpUnlock"), (2498, "Unlock")])
def test_impossible_seeds_are_skipped(task_id, level):
    # On these seeds minigrid hides the only key of the locked door inside its room.
    original = gymnasium.make(gym_id(level)).unwrapped
    with contextlib.redirect_stdout(io.StringIO()):
        original.reset(seed=task_id)
    (door,) = [c for c in original.grid.grid if c is not None and c.type == "door" and c.is_locked]
    keys = [c for c in original.grid.grid if c is not None and c.type == "key"]
    assert [key.color for key in keys].count(door.color) == 1
    env, _ = make(task_id)
    assert env.level == level
    assert env.minigrid_seed == task_id + SEED_STRIDE
    assert play_expert(env)["success"]
    assert reset_to_task(make_level(level), task_id + 60)[1] == task_id + 60  # the usual case


# -- observation ------------------------------------------------------------------------


def test_first_observation_hand_checked():
    # Task 0: GoToRedBallGrey, seed 0. The agent stands at (6, 5) facing west; the red
    # ball is at (2, 2): 4 cells west (forward) and 3 north (to its right).
    env, obs = make(0)
    assert env.level == "GoToRedBallGrey"
    assert tuple(env.world.agent_pos) == (6, 5) and env.world.agent_dir == 2
    lines = obs.splitlines()
    assert lines[0] == "Mission: go to the red ball."
    assert lines[1] == "You face west and carry nothing. In front of you: empty floor."
    assert lines[2] == "You see:"
    assert "- a red ball 4 steps forward and 3 steps to the right" in lines
    assert "- a grey key 1 step forward and 1 step to the left" in lines
    assert lines[-2:] == ["- a wall 6 steps forward", "- a wall 2 steps to the left"]
    assert set(obs) <= set(string.printable)


def test_view_is_what_minigrid_shows_the_agent():
    # Every object minigrid's own (occluded, partial) view holds is listed where it
    # is, and nothing else: across levels, random play, carried objects, doors.
    rng = random.Random(3)
    checked = 0
    for task_id in range(0, 6000, 97):
        env, _ = make(task_id)
        for _ in range(25):
            listed = {(t, o) for t, offsets in env._view.targets.items() for o in offsets}
            assert listed == minigrid_view(env.world)
            assert env.available_actions()[6:] == [f"go to {t}" for t in env._view.targets]
            checked += 1
            *_, terminated, truncated, _ = env.step(rng.choice([*PRIMITIVES, "move forward"]))
            if terminated or truncated:
                break
    assert checked > 500


def test_fast_gen_obs_is_minigrids():
    rng = random.Random(0)
    states = 0
    for task_id in range(0, 6000, 131):
        world = make_level(level_of_task(task_id))
        world.reset(seed=task_id)
        for _ in range(60):
            ours, theirs = world.gen_obs(), MiniGridEnv.gen_obs(world)
            assert ours["image"].dtype == theirs["image"].dtype
            assert np.array_equal(ours["image"], theirs["image"])
            assert (ours["direction"], ours["mission"]) == (theirs["direction"], theirs["mission"])
            states += 1
            action = rng.choice([*Actions][:6] + [Actions.forward] * 3)
            *_, terminated, truncated, _ = world.step(action)
            if terminated or truncated:
                break
    assert states > 1000


def test_describe_carried_object_doors_and_occlusion():
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    image[:, :, 0] = 1  # all empty floor, all visible
    image[3, 6] = (6, 0, 0)  # carrying a red ball
    image[3, 5] = (4, 4, 2)  # a locked yellow door just ahead
    image[3, 4] = (0, 0, 0)  # hidden behind it
    image[1, 6] = (2, 5, 0)  # a wall two cells to the left
    image[5, 2] = (7, 2, 0)  # a blue box
    view = describe(image, 3, "open the yellow door")
    assert view.text.splitlines() == [
        "Mission: open the yellow door.",
        "You face north and carry a red ball. In front of you: a locked yellow door.",
        "You see:",
        "- a locked yellow door 1 step forward",
        "- a blue box 4 steps forward and 2 steps to the right",
        "- a wall 2 steps to the left",
    ]
    assert view.targets == {"yellow door": ((1, 0),), "blue box": ((4, 2),)}


# -- actions ------------------------------------------------------------------------------


def test_action_parsing():
    for spelling, expected in [
        ("turn left", "You turned left."),
        ("  Turn   LEFT ", "You turned left."),
        ("left", "You turned left."),
        ("right", "You turned right."),
        ("forward", "You moved forward."),
        ("move forward", "You moved forward."),
        ("pickup", "There is nothing in front of you to pick up."),
        ("drop", "You carry nothing to drop."),
        ("toggle", "There is nothing in front of you to toggle."),
    ]:
        env, _ = make(0)
        obs, reward, terminated, truncated, info = env.step(spelling)
        assert obs.splitlines()[0] == expected, spelling
        assert info["primitive_steps"] == 1 and env.world.step_count == 1
        assert reward == 0.0 and not terminated and not truncated
    for bad in ("", "dance", "turn", "go left", "move forward please", "é" * 100, "go to"):
        env, first = make(0)
        obs, reward, terminated, truncated, info = env.step(bad)
        assert obs.startswith("Invalid action '"), bad
        assert "turn left, turn right, move forward, pick up, drop, toggle" in obs
        assert obs.split("\n", 1)[1] == first  # the same view
        assert info["primitive_steps"] == 0 and env.world.step_count == 0 and info["step"] == 1
        assert info["invalid_action"] is True
        assert set(obs) <= set(string.printable)


@pytest.mark.parametrize(
    ("action", "invalid"),
    [
        ("", True),
        ("xyzzy-not-an-action 12345", True),
        ("go to purple ball", True),  # nothing like it in view
        ("turn left", False),
        ("go to red ball", False),
    ],
)
def test_invalid_action_flag(action, invalid):
    env, _ = make(0)
    assert env.step(action)[4]["invalid_action"] is invalid


def test_available_actions():
    env, _ = make(0)
    actions = env.available_actions()
    assert actions[:6] == list(PRIMITIVES)
    assert set(actions[6:]) == {
        "go to grey key",
        "go to grey ball",
        "go to grey box",
        "go to red ball",
    }
    _, _, _, _, info = env.step("turn left")
    assert info["available_actions"] == env.available_actions()


def test_go_to_completes_a_goto_mission_in_one_action():
    env, _ = make(0)
    obs, reward, terminated, truncated, info = env.step("go to the Red Ball")
    steps = info["primitive_steps"]
    assert steps == env.world.step_count > 1
    assert terminated and not truncated and info["success"] is True
    assert reward == pytest.approx(1 - 0.9 * steps / 64) == info["score"]
    assert obs.startswith(f"You went to the red ball and now face it ({steps} moves).")
    assert "Mission complete!" in obs.splitlines()[0]
    assert env.world.grid.get(*front(env)).type == "ball"
    assert env.steps == 1


def test_go_to_faces_the_nearest_and_stops():
    env, _ = make(0)
    obs, _, terminated, _, info = env.step("go to grey key")
    assert not terminated
    cell = env.world.grid.get(*front(env))
    assert (cell.type, cell.color) == ("key", "grey")
    assert info["primitive_steps"] == 2  # turn left, forward: the key 1 ahead and 1 left
    assert obs.splitlines()[0] == "You went to the grey key and now face it (2 moves)."
    assert obs.splitlines()[2].endswith("In front of you: a grey key.")


def test_go_to_refusals_change_nothing():
    env, first = make(0)
    obs, _, _, _, info = env.step("go to purple ball")
    assert obs.startswith("You see no purple ball to go to; you see: grey key, grey ball")
    assert info["primitive_steps"] == 0 and obs.endswith(first)
    assert info["invalid_action"] is True
    # Walled in: visible (the view is from before), but no path leads there.
    for x, y in ((1, 2), (3, 2), (2, 1), (2, 3)):
        env.world.grid.set(x, y, Wall())
    obs, _, _, _, info = env.step("go to red ball")
    assert obs.startswith("You cannot reach the red ball")
    assert info["primitive_steps"] == 0 and env.world.step_count == 0
    assert info["invalid_action"] is False  # a valid action, blocked
    # Already there.
    env.world.grid.set(*front(env), Ball("blue"))
    env.step("turn left")
    env.step("turn right")
    obs, _, _, _, info = env.step("go to blue ball")
    assert obs.startswith("You are already facing the blue ball.")
    assert info["primitive_steps"] == 0 and env.world.step_count == 2
    assert info["invalid_action"] is False


def test_random_action_is_an_available_action_drawn_from_the_given_rng():
    for task_id in (0, 7, 59):
        env, _ = make(task_id)
        for seed in range(15):
            state = env.np_random.bit_generator.state
            action = env.random_action(np.random.default_rng(seed))
            assert env.np_random.bit_generator.state == state
            assert action == env.random_action(np.random.default_rng(seed))
            assert action in env.available_actions()
            *_, terminated, truncated, info = env.step(action)
            assert info["invalid_action"] is False
            if terminated or truncated:
                break


def test_primitive_feedback():
    env, _ = make(0)
    world = env.world
    ahead = front(env)

    def say(action: str) -> str:
        return env.step(action)[0].splitlines()[0]

    world.grid.set(*ahead, Key("red"))
    assert say("pick up") == "You picked up the red key."
    assert world.carrying.type == "key"
    world.grid.set(*ahead, Ball("green"))
    assert say("pick up") == (
        "You cannot pick up the green ball: you already carry a red key. Drop it first."
    )
    assert say("drop") == "You cannot drop the red key: a green ball is in front of you."
    assert say("move forward") == "You cannot move forward: a green ball blocks the way."
    world.grid.set(*ahead, None)
    assert say("drop") == "You dropped the red key in front of you."
    assert world.carrying is None
    world.grid.set(*ahead, Door("yellow", is_locked=True))
    assert say("toggle") == "The yellow door is locked: you need to carry a yellow key."
    assert say("pick up") == "You cannot pick up a locked yellow door."
    world.grid.set(*ahead, Door("red", is_locked=True))
    world.carrying = Key("red")
    assert say("toggle") == "You unlocked and opened the red door with your red key."
    assert say("toggle") == "You closed the red door."
    assert say("move forward") == "You cannot move forward: a closed red door blocks the way."
    assert say("toggle") == "You opened the red door."
    world.grid.set(*ahead, Box("blue", contains=Ball("purple")))
    obs = env.step("toggle")[0]
    assert obs.startswith("You opened the blue box: it held a purple ball, now in front of you.")
    assert "In front of you: a purple ball." in obs
    world.grid.set(*ahead, Box("grey"))
    assert say("toggle") == "You opened the grey box: it was empty."
    assert say("toggle") == "There is nothing in front of you to toggle."
    world.grid.set(*ahead, Wall())
    assert say("move forward") == "You cannot move forward: a wall blocks the way."
    assert say("toggle") == "Toggling a wall does nothing."


# -- episode end -------------------------------------------------------------------------


def test_minigrid_time_limit_ends_the_episode():
    env, _ = make(1)
    env.world.max_steps = env.world.step_count + 2
    assert not env.step("turn left")[2]
    obs, reward, terminated, truncated, info = env.step("turn left")
    assert truncated and not terminated  # as minigrid reports it
    assert info["success"] is False and info["score"] == 0.0 and reward == 0.0
    assert "Time is up: this level allows 2 moves." in obs


def test_truncation_at_max_steps():
    env, _ = make(59)  # BossLevel: minigrid allows at least 576 moves
    assert env.world.max_steps > MAX_STEPS
    for step in range(1, MAX_STEPS + 1):
        _, _, terminated, truncated, info = env.step("turn left")
        assert not terminated
        assert truncated == (step == MAX_STEPS)
    assert info["success"] is False and info["score"] == 0.0 and env.over


# -- determinism, expert, snapshots -------------------------------------------------------


def test_same_task_same_episode():
    script = ["move forward", "turn left", "go to grey box", "pick up", "toggle", "bogus"] * 3
    a, b = BabyAIEnv(), BabyAIEnv()
    b.reset(options={"task_id": 60})  # the same level first: the world is reused
    for task_id in (0, 17, 59):
        first = [a.reset(options={"task_id": task_id})] + [a.step(x) for x in script]
        again = [b.reset(options={"task_id": task_id})] + [b.step(x) for x in script]
        assert first == again
    assert a.reset(seed=3) == b.reset(seed=3)
    assert BabyAIEnv.split_of(a.task_id) == "train"


@pytest.mark.parametrize("task_id", SAMPLE_TRAIN + SAMPLE_TEST)
def test_expert_solves(task_id):
    env, _ = make(task_id)
    info = play_expert(env)
    assert info["success"] is True and 0 < info["score"] <= 1
    assert env.steps <= MAX_STEPS and env._expert.failures == 0


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test"])
def test_expert_solves_every_task(split):
    # About 1 minute per 3000 tasks; all 6600 pass.
    env = BabyAIEnv()
    for task_id in BabyAIEnv.tasks(split):
        env.reset(options={"task_id": task_id})
        assert play_expert(env)["success"], (task_id, env.level)


def test_expert_recovers_from_detours():
    rng = random.Random(5)
    for task_id in (0, 7, 13, 27, 33, 40, 52, 6000 + 46):
        env, _ = make(task_id)
        assert env.expert_action() == env.expert_action()  # asking twice changes nothing
        for _ in range(6):
            env.step(rng.choice(env.available_actions()))
            if env.over:
                break
        if not env.over:
            env.step(env.expert_action())
            env.step(rng.choice(["turn left", "move forward", "toggle"]))
        if not env.over:
            assert play_expert(env)["success"], (task_id, env.level)


def test_expert_completes_a_mission_met_at_the_start():
    # Task 4817 starts facing the grey door it must go to; minigrid checks missions after
    # a step, so the bot's "done" becomes a drop onto the door: a no-op that ends it.
    env, obs = make(4817)
    assert "In front of you: a closed grey door." in obs
    assert env.expert_action() == "drop"
    obs, reward, terminated, _, info = env.step("drop")
    assert terminated and info["success"] and reward == pytest.approx(1 - 0.9 / 576)
    assert env._expert.failures == 0


def test_expert_survives_a_lost_bot(monkeypatch):
    original = expert_module._Bot.replan
    calls = []

    def lost_once(self, action_taken=None):
        calls.append(action_taken)
        if len(calls) == 3:
            raise AssertionError("lost")
        return original(self, action_taken)

    monkeypatch.setattr(expert_module._Bot, "replan", lost_once)
    env, _ = make(13)  # GoToSeq: a new bot starts over from what is seen now
    assert play_expert(env)["success"]
    assert env._expert.failures == 1


def test_expert_bounds_a_looping_bot(monkeypatch):
    monkeypatch.setattr(expert_module, "PLAN_BUDGET", 0)  # every plan now "loops"
    env, _ = make(13)
    assert env.expert_action() == "turn left"
    assert env._expert.failures == 2


def test_snapshot_restore_continues_identically():
    env, _ = make(SAMPLE_TRAIN[27])
    for _ in range(3):
        env.step(env.expert_action())
    snap = env.snapshot()
    script = ["turn left", "bogus", "move forward", "go to grey door", "toggle"] * 2

    def run(target: BabyAIEnv) -> list:
        out = [target.step(a) for a in script]
        while not target.over:
            out.append(target.step(target.expert_action()))
        return out

    first = run(env)
    env.restore(snap)
    assert env.steps == 3 and not env.over
    assert run(env) == first
    other, _ = make(SAMPLE_TEST[5])
    other.restore(snap)
    assert other.level == env.level and run(other) == first


def test_snapshot_restore_cycles_keep_the_expert():
    # A search restores one snapshot again and again. Copying the bot's subgoal stack
    # appended its items through the planning budget, so each copy spent some of it
    # and a few cycles later restore() raised BotStuckError.
    env, _ = make(59)  # BossLevel: the bot holds a deep stack of subgoals
    env.step(env.expert_action())
    for _ in range(30):
        env.restore(env.snapshot())
    assert play_expert(env)["success"] and env._expert.failures == 0


def test_snapshots_pickle():
    # Worker processes may ship snapshots: the level classes must be importable.
    env, _ = make(59)
    env.step(env.expert_action())
    snap = pickle.loads(pickle.dumps(env.snapshot()))
    script = [env.expert_action(), "turn left", "go to red door"]
    expected = [env.step(action) for action in script]
    other = BabyAIEnv()
    other.restore(snap)
    assert [other.step(action) for action in script] == expected


# -- what a session holds (a server's full garbage collections walk all of it) ----------


def tracked_from(root: object) -> int:
    """How many objects the garbage collector tracks that ``root`` reaches (code left out)."""
    seen, todo = {id(root)}, [root]
    while todo:
        for ref in gc.get_referents(todo.pop()):
            code = isinstance(ref, (type, types.ModuleType, types.FunctionType))
            if id(ref) not in seen and gc.is_tracked(ref) and not code:
                seen.add(id(ref))
                todo.append(ref)
    return len(seen)


def test_an_env_holds_only_its_current_world():
    env, _ = make(59)
    one_level = tracked_from(env)
    for task_id in range(N):
        env.reset(options={"task_id": task_id})
    env.reset(options={"task_id": 59})
    # One world kept per level visited made this ~8,900, against ~160 for one level.
    assert tracked_from(env) < 1.5 * one_level


def test_wall_cells_share_one_wall():
    env, _ = make(59)  # BossLevel: nine rooms, about 170 wall cells
    walls = {id(cell) for cell in env.world.grid.grid if cell is not None and cell.type == "wall"}
    assert len(walls) == 1  # (the grid still encodes as minigrid's: see above)


def test_no_stdout(capsys):
    # minigrid prints "Sampling rejected: ..." when it generates GoToImpUnlock seed 12.
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        gymnasium.make(gym_id("GoToImpUnlock")).unwrapped.reset(seed=12)
    assert "Sampling rejected" in printed.getvalue()
    capsys.readouterr()
    for task_id in (12, 72, 59, 6000 + 13):
        env, _ = make(task_id)
        play_expert(env)
    assert capsys.readouterr().out == ""


def test_checker_passes():
    results = check(ENV_ID, episodes=2)
    assert all(result.passed for result in results), [r for r in results if not r.passed]
