"""palaestra/TextWorld-v0 (generated games in a temporary cache) and palaestra/ALFWorld-v0."""

import importlib.util
import random
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra
import palaestra.envs
from palaestra.envs.checker import _sample_tasks, check
from palaestra.envs.core import Outcome, TextEnv
from palaestra.envs.textworld import (
    LEVELS,
    MAX_STEPS,
    TEST_TASKS,
    TRAIN_TASKS,
    ALFWorldEnv,
    TextWorldEnv,
    alfworld,
    games,
    spec_for_task,
)
from palaestra.envs.textworld.__main__ import main as textworld_main
from palaestra.envs.textworld.engine import clean_text, normalize_command, parser_understood
from palaestra.errors import EnvUnavailableError, UnknownTaskError

ENV_ID = "palaestra/TextWorld-v0"


class _DryRun(TextWorldEnv):
    """Records the tasks that resets draw (in every instance); plays nothing."""

    drawn: list = []

    def __init__(self, render_mode=None):
        TextEnv.__init__(self, render_mode=render_mode)

    def start(self, task_id):
        self.drawn.append(task_id)
        return "dry run"

    def act(self, action):
        return Outcome("dry run")

    def available_actions(self):
        return []

    def close(self):
        pass


def drawn_by_checker() -> list[int]:
    """The train tasks that the checker's resets by seed alone draw (gymnasium's check_env too).

    Made like the checker makes its env (``gymnasium.make``), under a temporary id,
    twice: check_env also resets twice without any seed (random tasks, made during
    the check), which only one of the two runs draws.
    """
    dry_id = "palaestra-tests/TextWorldDryRun-v0"
    palaestra.envs.register(dry_id, _DryRun)
    runs = []
    try:
        for _ in range(2):
            env = gymnasium.make(dry_id).unwrapped
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check_env(env, skip_render_check=False)
            env.reset(seed=0)  # the checker's determinism check: seeds 0 and 1
            env.reset(seed=1)
            runs.append(set(_DryRun.drawn))
            _DryRun.drawn = []
    finally:
        del gymnasium.registry[dry_id]
    return sorted(runs[0] & runs[1])


# The tasks palaestra's checker samples with episodes=2 (two per split), which the
# expert must win here too, and those its resets by seed draw: all made up front.
CHECKED = list(_sample_tasks(TextWorldEnv, 2, random.Random(0)))
NEEDED = sorted(set(CHECKED + drawn_by_checker()))
# A cooking-1 game (take, prepare meal, eat meal: 3 points) and a house-2 one (a
# 6-step quest, goal only), from those when possible.
COOKING_1 = next((t for t in NEEDED if spec_for_task(t).level.name == "cooking-1"), 6)
HOUSE_2 = next((t for t in NEEDED if spec_for_task(t).level.name == "house-2"), 5)
EXTRA = [COOKING_1, HOUSE_2]


@pytest.fixture(scope="session")
def tw_cache(tmp_path_factory):
    """A fresh game cache for the session, with the games the tests play made up front.

    Also makes ``COOKING_1`` a second time in another cache (from two threads at
    once), for the determinism and locking tests.
    """
    root = tmp_path_factory.mktemp("textworld-cache")
    other = tmp_path_factory.mktemp("textworld-cache-2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(games.CACHE_ENV, str(root))
        started = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            needed = sorted(set(NEEDED + EXTRA))
            main = pool.submit(games.ensure_games, needed, workers=2)
            twice = [pool.submit(games.ensure_games, [COOKING_1], cache=other) for _ in range(2)]
            main.result()
            second = [future.result()[0] for future in twice]
        seconds = time.perf_counter() - started
        yield {"other": second, "seconds": seconds, "count": len(needed) + 1}


@pytest.fixture
def env(tw_cache):
    environment = TextWorldEnv()
    yield environment
    environment.close()


def expert_episode(env, task_id):
    obs, info = env.reset(options={"task_id": task_id})
    steps = []
    while True:
        action = env.expert_action()
        result = env.step(action)
        steps.append((action, *result))
        if result[2] or result[3]:
            return obs, info, steps


# -- tasks, levels, cache ----------------------------------------------------------


def test_registered_with_declared_capabilities():
    assert palaestra.envs.env_class(ENV_ID) is TextWorldEnv
    assert TextWorldEnv.capabilities() == {
        "snapshot",
        "expert",
        "available_actions",
        "random_action",
    }
    assert TextWorldEnv.unavailable_reason() is None
    assert TextWorldEnv.max_steps == MAX_STEPS == 100


def test_splits_are_disjoint_and_balanced_over_levels():
    assert len(TRAIN_TASKS) == 600 and len(TEST_TASKS) == 120
    assert not set(TRAIN_TASKS) & set(TEST_TASKS)
    for ids, split in ((TRAIN_TASKS, "train"), (TEST_TASKS, "test")):
        counts = {level.name: 0 for level in LEVELS}
        for task_id in ids:
            spec = spec_for_task(task_id)
            assert spec.split == split and spec.seed == task_id
            counts[spec.level.name] += 1
        assert set(counts.values()) == {len(ids) // len(LEVELS)}
    with pytest.raises(KeyError):
        spec_for_task(720)
    with pytest.raises(UnknownTaskError):
        TextWorldEnv().reset(options={"task_id": 720})


def test_cache_dir_follows_the_env_variables(monkeypatch, tmp_path):
    version = games.cache_dir().name
    assert version.startswith(f"{games.GAMES_VERSION}-tw")
    monkeypatch.delenv(games.CACHE_ENV, raising=False)
    monkeypatch.delenv(games.ROOT_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert games.cache_dir() == tmp_path / "xdg" / "palaestra" / "textworld" / version
    monkeypatch.setenv(games.ROOT_CACHE_ENV, str(tmp_path / "all"))
    assert games.cache_dir() == tmp_path / "all" / "textworld" / version
    monkeypatch.setenv(games.CACHE_ENV, str(tmp_path / "tw"))
    assert games.cache_dir() == tmp_path / "tw" / version
    assert games.game_dir(42) == tmp_path / "tw" / version / "task-00042"


def test_generation_is_deterministic_and_locked(tw_cache):
    first = games.game_dir(COOKING_1)
    again, again_too = tw_cache["other"]
    assert again == again_too and again.parent != first.parent
    a, b = games.read_meta(first), games.read_meta(again)
    assert a["walkthrough"] == b["walkthrough"] and a["walkthrough"]
    assert a["first_observation"] == b["first_observation"]
    assert a == b
    assert (first / "game.json").read_bytes() == (again / "game.json").read_bytes()
    # The two threads shared one generation: no scratch folders are left behind.
    leftovers = [p.name for p in again.parent.iterdir() if p.name.startswith(".task-")]
    assert not leftovers
    print(f"generated {tw_cache['count']} games in {tw_cache['seconds']:.1f} s")


def test_prepare_reuses_the_cache(tw_cache, capsys):
    started = time.perf_counter()
    paths = games.ensure_games(CHECKED, progress=True)
    assert time.perf_counter() - started < 1.0
    assert [games.read_meta(p)["task_id"] for p in paths] == CHECKED
    assert games.prepare("test", limit=0) == []
    assert textworld_main(["prepare", "--split", "test", "--limit", "0"]) == 0
    assert "0 test games in" in capsys.readouterr().out


# -- text handling -----------------------------------------------------------------


def test_clean_text_drops_banner_prompt_and_status_line():
    raw = (
        "\n\n\n                    ________  ________\n"
        "                   |        \\|        \\\n"
        "                    \\$$$$$$$$| $$$$$$$$\n"
        "                      | $$   | $$  \\     >$$  $$    | $$\n\n"
        "Your goal: eat.\n\n\n\n-= Kitchen =-\nA kitchen.\n\n"
        ">                                    -= Kitchen =-0/1"
    )
    assert clean_text(raw) == "Your goal: eat.\n\n-= Kitchen =-\nA kitchen."
    end = (
        "You eat the meal.\n\n\n          *** The End ***\n\n"
        "You scored 3 out of a possible 3.\n\n\n"
        "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?\n>  "
    )
    assert clean_text(end) == (
        "You eat the meal.\n\n*** The End ***\n\nYou scored 3 out of a possible 3."
    )


def test_normalize_command():
    assert normalize_command("  Take   the\tAPPLE \n") == "Take the APPLE"
    assert normalize_command("\x00\t☃ ünïcödé") == "unicode"
    assert len(normalize_command("x" * 500)) == 120
    assert normalize_command("\\q") == "q"  # Frotz's escape commands never get through


# -- playing -----------------------------------------------------------------------


def test_first_observation_has_objective_and_room(env):
    obs, info = env.reset(options={"task_id": COOKING_1})
    assert obs.startswith("You are hungry! Let's cook a delicious meal.")
    assert "-= Kitchen =-" in obs
    assert "$$" not in obs and "\n>" not in obs and "\n\n\n" not in obs
    assert info["task_id"] == COOKING_1
    obs, _ = env.reset(options={"task_id": HOUSE_2})
    assert obs.startswith(games.read_meta(games.game_dir(HOUSE_2))["objective"][:30])
    assert "-= " in obs
    assert env.observation_space.contains(obs)


def test_available_actions_are_admissible_commands(env):
    _, info = env.reset(options={"task_id": COOKING_1})
    actions = info["available_actions"]
    assert actions == sorted(set(actions)) and {"look", "inventory"} <= set(actions)
    assert env.expert_action() in actions
    _, _, _, _, info = env.step(env.expert_action())
    assert info["available_actions"] == env.available_actions()


def test_invalid_and_refused_commands(env):
    env.reset(options={"task_id": COOKING_1})
    obs, reward, terminated, truncated, _ = env.step("dance wildly")
    assert obs == "That's not a verb I recognise."
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert env.step("")[0] == "I beg your pardon?"
    for junk in ("\x00\t☃ ünïcödé", "x" * 300, "Action: ???"):
        assert env.step(junk)[0] == "That's not a verb I recognise."
    for meta in ("undo", "restart", "quit", "save", "tw-print max_score", "print_state"):
        assert "not available" in env.step(meta)[0]
    assert "one command at a time" in env.step("look. inventory")[0]
    assert "one command at a time" in env.step("open fridge then look")[0]
    assert env.step("look.")[0].startswith("-= Kitchen =-")
    assert env.steps == 14 and not env.over


@pytest.mark.parametrize(
    ("action", "invalid"),
    [
        ("", True),  # "I beg your pardon?"
        ("xyzzy-not-an-action 12345", True),  # "That's not a verb I recognise."
        ("take", True),  # "What do you want to take?"
        ("take unicorn", True),  # "You can't see any such thing."
        ("undo", True),  # refused here
        ("look. look", True),  # refused here
        ("look", False),
        ("help", False),
        ("go up", False),  # "You can't go that way.": understood, and blocked
    ],
)
def test_invalid_action_flag(env, action, invalid):
    env.reset(options={"task_id": COOKING_1})
    assert env.step(action)[4]["invalid_action"] is invalid


def test_parser_understood_reads_the_action_trace():
    assert parser_understood("\n[going north]\nYou can't go that way.\n[going north - failed]\n\n>")
    assert parser_understood("\n[taking inventory]\nYou are carrying nothing.\n")
    assert parser_understood("\nWhich do you mean, wooden door or screen door?\n\n>")
    for error in (
        "I beg your pardon?",
        "That's not a verb I recognise.",
        "You can't see any such thing.",
        "What do you want to take?",
        "I only understood you as far as wanting to take the apple.",
    ):
        assert not parser_understood(f"\n{error}\n\n>   -= Kitchen =-0/1"), error


def test_random_action_is_an_admissible_command_drawn_from_the_given_rng(env):
    for task_id in (COOKING_1, HOUSE_2):
        env.reset(seed=1, options={"task_id": task_id})
        for seed in range(12):
            state = env.np_random.bit_generator.state
            action = env.random_action(np.random.default_rng(seed))
            assert env.np_random.bit_generator.state == state
            assert action == env.random_action(np.random.default_rng(seed))
            assert action in env.available_actions()
            *_, terminated, truncated, info = env.step(action)
            assert info["invalid_action"] is False, action
            if terminated or truncated:
                break


def test_expert_wins_sampled_train_and_test_tasks(env):
    splits = {TextWorldEnv.split_of(t) for t in CHECKED}
    assert splits == {"train", "test"}
    for task_id in CHECKED + EXTRA:
        _, _, steps = expert_episode(env, task_id)
        *_, (_, obs, _, terminated, truncated, info) = steps
        assert terminated and not truncated and info["success"], (task_id, obs)
        assert info["score"] == 1.0 and "*** The End ***" in obs
        assert len(steps) == len(games.read_meta(games.game_dir(task_id))["walkthrough"])


def test_rewards_are_points_and_score_is_their_share(env):
    _, _, steps = expert_episode(env, COOKING_1)
    rewards = [step[2] for step in steps]
    assert sum(rewards) == 3 and all(r in (0.0, 1.0) for r in rewards)
    # Truncation keeps the points so far: one of three.
    env.reset(options={"task_id": COOKING_1})
    env.step(env.expert_action())  # take the ingredient: +1
    for _ in range(MAX_STEPS - 2):
        assert env.step("look")[2:4] == (False, False)
    *_, terminated, truncated, info = env.step("look")
    assert (terminated, truncated) == (False, True)
    assert info["success"] is False and info["score"] == pytest.approx(1 / 3)


def test_losing_ends_the_episode_without_success(env):
    env.reset(options={"task_id": COOKING_1})
    take = env.expert_action()
    assert take.startswith("take ")
    food = take.removeprefix("take ").split(" from ")[0]
    env.step(take)
    obs, _, terminated, truncated, info = env.step(f"eat {food}")
    assert "*** You lost! ***" in obs
    assert terminated and not truncated
    assert info["success"] is False and info["score"] == pytest.approx(1 / 3)


def test_expert_recovers_after_a_detour(env):
    rng = random.Random(0)
    for task_id in (HOUSE_2, CHECKED[-1]):
        env.reset(options={"task_id": task_id})
        for _ in range(8):  # wander, but never eat, cook or cut (that can lose the game)
            risky = ("eat", "cook", "slice", "dice", "chop")
            choices = [a for a in env.available_actions() if not a.startswith(risky)]
            env.step(rng.choice(choices))
        info = {}
        while not env.over:
            *_, info = env.step(env.expert_action())
        assert info["success"], task_id


def test_snapshot_restore_is_exact(env, tw_cache):
    task_id = CHECKED[-1]
    env.reset(options={"task_id": task_id})
    for _ in range(6):
        env.step(env.expert_action())
    snap = env.snapshot()
    # Commands that change the game (the expert's next three) and some that do not.
    walkthrough = games.read_meta(games.game_dir(task_id))["walkthrough"]
    tail = ["dance wildly", "inventory", *walkthrough[6:9], "look"]
    expected = [env.step(a) for a in tail]
    env.restore(snap)
    assert [env.step(a) for a in tail] == expected
    other = TextWorldEnv()
    try:
        other.reset(options={"task_id": COOKING_1})  # another game, then restored
        other.restore(snap)
        assert other.task_id == task_id and other.steps == 6
        assert [other.step(a) for a in tail] == expected
    finally:
        other.close()
    env.restore(snap)  # the snapshot stays reusable
    assert [env.step(a) for a in tail] == expected


def test_same_actions_same_episode(tw_cache):
    a, b = TextWorldEnv(), TextWorldEnv()
    try:
        for task_id in (COOKING_1, HOUSE_2):
            first = a.reset(seed=1, options={"task_id": task_id})
            assert b.reset(seed=2, options={"task_id": task_id}) == first
            for action in ("look", "inventory", a.expert_action(), "dance"):
                assert a.step(action) == b.step(action)
    finally:
        a.close()
        b.close()


def test_gymnasium_make(tw_cache):
    env = gymnasium.make(ENV_ID)
    assert isinstance(env.unwrapped, TextWorldEnv)
    obs, info = env.reset(options={"task_id": COOKING_1})
    assert isinstance(obs, str) and info["task_id"] == COOKING_1
    env.close()


def test_games_load_safely_from_many_threads_at_once(tw_cache):
    """TextWorld's logic parser is one shared object: concurrent first loads corrupted it.

    Over HTTP this lost 4 of 12 episodes of a 12-session eval to "IndexError: pop
    from empty list" and "'NoneType' object ..." raised in textworld/logic/parser.py.
    """
    from textworld.logic import GameLogic

    from palaestra.envs.textworld import engine

    folders = [games.game_dir(t) for t in (COOKING_1, HOUSE_2)]
    engine._load_compiled.cache_clear()
    GameLogic.parse.cache_clear()  # TextWorld's own cache: parse again, as a fresh process does
    barrier = threading.Barrier(16)

    def load(index: int):
        barrier.wait()
        return engine.load_compiled(folders[index % 2])

    with ThreadPoolExecutor(16) as pool:
        loaded = list(pool.map(load, range(16)))
    assert {c.directory for c in loaded} == set(folders)


def test_a_reset_that_generates_its_game_is_not_cut_by_the_step_timeout(
    monkeypatch, tmp_path, serve
):
    """A game made on first use takes seconds (far more with many at once): work, not a hang.

    It is generated before the reset, outside the server's per-call timeout; before,
    a 16-task eval at concurrency 32 lost 12 episodes to 504 StepTimeoutError.
    """
    monkeypatch.setenv(games.CACHE_ENV, str(tmp_path))  # empty: the game must be made
    with serve([ENV_ID], step_timeout=1.0) as url:
        env = palaestra.make(ENV_ID, base_url=url)
        try:
            observation, info = env.reset(options={"task_id": COOKING_1})
            assert info["task_id"] == COOKING_1 and observation
            env.step(env.expert_action())
        finally:
            env.close()
    assert games.game_dir(COOKING_1).is_dir()


def test_checker_passes(tw_cache):
    results = check(ENV_ID, episodes=2)
    failures = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failures, "\n".join(failures)
    assert any(r.name == "snapshot/restore" and "identically" in r.detail for r in results)


@pytest.mark.slow
def test_expert_wins_every_level_of_both_splits(tw_cache):
    ids = [t for split in (TRAIN_TASKS, TEST_TASKS) for t in split[: 2 * len(LEVELS)]]
    games.ensure_games(ids, workers=2)
    env = TextWorldEnv()
    try:
        for task_id in ids:
            *_, (_, obs, _, terminated, _, info) = expert_episode(env, task_id)[2]
            assert terminated and info["success"] and info["score"] == 1.0, (task_id, obs)
    finally:
        env.close()


# -- ALFWorld ----------------------------------------------------------------------


def test_alfworld_is_unavailable_without_data(monkeypatch, tmp_path):
    monkeypatch.setenv(alfworld.DATA_ENV, str(tmp_path))
    reason = ALFWorldEnv.unavailable_reason()
    assert reason is not None and "ALFWorld needs" in reason
    assert str(tmp_path) in reason and "alfworld-download" in reason
    assert "json_2.1.1/train" in reason and "json_2.1.1/valid_unseen" in reason
    started = time.perf_counter()
    with pytest.raises(EnvUnavailableError, match="ALFWorld"):
        ALFWorldEnv()
    assert time.perf_counter() - started < 2.0
    assert len(ALFWorldEnv.tasks("train")) == 0 and len(ALFWorldEnv.tasks("test")) == 0
    assert ALFWorldEnv.capabilities() == {"expert", "available_actions", "random_action"}


def test_alfworld_lists_games_from_the_data_folder(monkeypatch, tmp_path):
    base = tmp_path / "json_2.1.1"

    def game(path: str, solvable: bool = True) -> None:
        folder = base / path
        folder.mkdir(parents=True)
        text = '{"pddl_domain": "...", "solvable": ' + ("true" if solvable else "false") + "}"
        (folder / "game.tw-pddl").write_text(text)

    game("train/pick_and_place_simple-Mug-None-Desk-1/trial_1")
    game("train/pick_heat_then_place_in_recep-Egg-None-Fridge-2/trial_2")
    game("train/pick_and_place_with_movable_recep-Pen-Bowl-Desk-3/trial_3")
    game("train/look_at_obj_in_light-Book-None-DeskLamp-4/trial_4", solvable=False)
    game("valid_unseen/pick_two_obj_and_place-Cup-None-Shelf-5/trial_5")
    monkeypatch.setenv(alfworld.DATA_ENV, str(tmp_path))
    assert ALFWorldEnv.tasks("train") == (
        "train/pick_and_place_simple-Mug-None-Desk-1/trial_1",
        "train/pick_heat_then_place_in_recep-Egg-None-Fridge-2/trial_2",
    )
    assert ALFWorldEnv.tasks("test") == (
        "valid_unseen/pick_two_obj_and_place-Cup-None-Shelf-5/trial_5",
    )
    reason = ALFWorldEnv.unavailable_reason()
    if importlib.util.find_spec("alfworld") is None:
        assert reason is not None and "pip install alfworld" in reason
        assert "game data" not in reason
    else:
        assert reason is None


def test_alfworld_check_never_imports_alfworld(monkeypatch, tmp_path):
    monkeypatch.setenv(alfworld.DATA_ENV, str(tmp_path))
    before = {name for name in sys.modules if name.startswith("alfworld")}
    ALFWorldEnv.unavailable_reason()
    assert {name for name in sys.modules if name.startswith("alfworld")} == before


class FakeAlfworldGame:
    """TextWorld's PDDL engine as ALFWorld plays it: admissible commands act, others do nothing."""

    admissible = ["go to desk 1", "inventory", "look"]

    def _state(self, feedback: str, won: bool = False) -> dict:
        return {
            "feedback": feedback,
            "won": won,
            "admissible_commands": list(self.admissible),
            "extra.expert_plan": ["go to desk 1"],
        }

    def reset(self) -> dict:
        return self._state("-= Welcome to TextWorld, ALFRED! =-\n\nYour task is to: find a desk.")

    def step(self, command: str) -> tuple[dict, float, bool]:
        if command.strip() not in self.admissible:
            return self._state("Nothing happens."), 0.0, False
        won = command == "go to desk 1"
        return self._state(f"You did: {command}.", won=won), float(won), won

    def close(self) -> None:
        pass


@pytest.fixture
def fake_alfworld(monkeypatch, tmp_path):
    folder = tmp_path / "json_2.1.1" / "train" / "look_at_obj_in_light-Desk-1" / "trial_1"
    folder.mkdir(parents=True)
    (folder / "game.tw-pddl").write_text('{"solvable": true}')
    (tmp_path / "json_2.1.1" / "valid_unseen").mkdir()
    monkeypatch.setenv(alfworld.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(ALFWorldEnv, "unavailable_reason", classmethod(lambda cls: None))

    def start(self: ALFWorldEnv, task_id: str) -> str:
        self._env = FakeAlfworldGame()
        self._state = self._env.reset()
        return str(self._state["feedback"])

    monkeypatch.setattr(ALFWorldEnv, "start", start)
    env = ALFWorldEnv()
    env.reset(options={"task_id": "train/look_at_obj_in_light-Desk-1/trial_1"})
    yield env
    env.close()


@pytest.mark.parametrize(
    ("action", "invalid"),
    [("", True), ("xyzzy-not-an-action 12345", True), ("go to bed 1", True), ("look", False)],
)
def test_alfworld_invalid_action_is_one_not_admissible(fake_alfworld, action, invalid):
    obs, *_, info = fake_alfworld.step(action)
    assert info["invalid_action"] is invalid
    assert (obs == "Nothing happens.") is invalid


def test_alfworld_random_action_is_an_admissible_command(fake_alfworld):
    drawn = {fake_alfworld.random_action(np.random.default_rng(seed)) for seed in range(30)}
    assert drawn == set(FakeAlfworldGame.admissible)
    assert fake_alfworld.step("  look \n")[4]["invalid_action"] is False  # spaces collapsed
