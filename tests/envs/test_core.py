import json

import gymnasium
import numpy as np
import pytest
import toy_envs

import palaestra
from palaestra.errors import EnvError, EpisodeOverError, NotSupportedError, UnknownTaskError


def make_counter() -> toy_envs.Counter:
    return palaestra.make("toy/Counter-v0")


def test_info_contract_and_termination():
    env = make_counter()
    observation, info = env.reset(seed=1, options={"task_id": 3})
    assert observation.startswith("task 3")
    assert info == {"task_id": 3, "step": 0}
    for _ in range(2):
        _, reward, terminated, truncated, info = env.step("inc")
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert "success" not in info and "score" not in info
        assert info["invalid_action"] is False
    observation, reward, terminated, truncated, info = env.step("inc")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info == {
        "task_id": 3,
        "step": 3,
        "invalid_action": False,
        "success": True,
        "score": 1.0,
    }
    json.dumps(info)
    with pytest.raises(EpisodeOverError, match="over after 3 steps"):
        env.step("inc")


def test_truncation_at_max_steps_reports_failure():
    env = make_counter()
    env.reset(options={"task_id": 0})
    for _i in range(env.max_steps):
        _, _, terminated, truncated, info = env.step("wait")
    assert (terminated, truncated) == (False, True)
    assert info["success"] is False and info["score"] == 0.0 and info["step"] == 5


def test_seed_controls_randomness_and_task_choice():
    env = make_counter()
    first = env.reset(seed=7)
    assert env.reset(seed=7) == first
    assert first[1]["task_id"] in env.tasks("train")
    others = {env.reset(seed=s, options={"task_id": 1})[0] for s in range(20)}
    assert len(others) > 1  # the seed reaches the env's own randomness


@pytest.mark.parametrize("bad", [99, -1, "3", True, 3.0])
def test_unknown_or_mistyped_task_ids_are_rejected(bad):
    env = make_counter()
    with pytest.raises(UnknownTaskError, match="none of Counter's splits"):
        env.reset(options={"task_id": bad})


def test_step_before_reset_and_non_string_action():
    env = make_counter()
    with pytest.raises(EpisodeOverError, match="reset"):
        env.step("inc")
    env.reset(options={"task_id": 0})
    with pytest.raises(TypeError, match="strings"):
        env.step(3)


def test_capabilities_are_declared_by_overriding():
    assert toy_envs.Counter.capabilities() == frozenset({"expert"})
    env = make_counter()
    env.reset(options={"task_id": 0})
    with pytest.raises(NotSupportedError):
        env.snapshot()
    maze = palaestra.env_class("palaestra/Maze-v0")
    assert {"snapshot", "expert", "available_actions"} <= maze.capabilities()


def test_invalid_action_is_a_bool_on_every_step_and_absent_on_reset():
    env = make_counter()
    _, info = env.reset(options={"task_id": 0})
    assert "invalid_action" not in info
    assert env.step("inc")[4]["invalid_action"] is False
    assert env.step("")[4]["invalid_action"] is True
    assert env.step("xyzzy-not-an-action 12345")[4]["invalid_action"] is True


class Listed(toy_envs.Counter):
    """Lists its actions: ``random_action`` comes with ``available_actions``."""

    def available_actions(self) -> list[str]:
        return ["inc", "sleep 0", f"noise {self.noise}"]


class Drawn(toy_envs.Counter):
    """Draws its own random action without listing any."""

    def random_action(self, rng: np.random.Generator) -> str:
        return "inc" if rng.random() < 0.5 else "sleep 0"


def test_random_action_is_declared_by_listing_or_overriding():
    assert Listed.capabilities() == {"expert", "available_actions", "random_action"}
    assert Drawn.capabilities() == {"expert", "random_action"}
    assert "random_action" not in toy_envs.Counter.capabilities()


def test_default_random_action_draws_from_the_listed_actions_with_the_rng_only():
    env = Listed()
    with pytest.raises(EpisodeOverError, match="reset"):
        env.random_action(np.random.default_rng(0))
    env.reset(seed=5, options={"task_id": 1})
    state = env.np_random.bit_generator.state
    drawn = [env.random_action(np.random.default_rng(seed)) for seed in range(60)]
    assert env.np_random.bit_generator.state == state  # the env's own randomness stays put
    assert all(type(action) is str for action in drawn)
    assert set(drawn) == set(env.available_actions())
    assert drawn == [env.random_action(np.random.default_rng(seed)) for seed in range(60)]


def test_random_action_without_a_list_is_not_supported():
    env = make_counter()
    env.reset(options={"task_id": 0})
    with pytest.raises(NotSupportedError, match="random action"):
        env.random_action(np.random.default_rng(0))

    class Empty(toy_envs.Counter):
        def available_actions(self) -> list[str]:
            return []

    empty = Empty()
    empty.reset(options={"task_id": 0})
    with pytest.raises(NotSupportedError, match="no valid action"):
        empty.random_action(np.random.default_rng(0))


def test_snapshot_restores_bookkeeping_observation_and_rng():
    env = palaestra.make("palaestra/Maze-v0")
    env.reset(seed=3, options={"task_id": 4})
    env.step(env.expert_action())
    snap = env.snapshot()
    before = env.np_random.random()
    tail = [env.step(env.expert_action()) for _ in range(3)]
    env.restore(snap)
    assert env.steps == 1 and not env.over
    assert env.np_random.random() == before
    assert [env.step(env.expert_action()) for _ in range(3)] == tail


def test_tasks_names_the_splits_on_a_typo():
    with pytest.raises(KeyError, match="splits: \\['test', 'train'\\]"):
        toy_envs.Counter.tasks("tset")


def test_gymnasium_make_and_unknown_id():
    env = gymnasium.make("palaestra/Maze-v0")
    assert isinstance(env.unwrapped, palaestra.TextEnv)
    with pytest.raises(KeyError, match=r"registered palaestra envs: .*palaestra/Maze-v0"):
        palaestra.make("palaestra/Nope-v0")


def test_echo_action_keeps_observations_one_line_printable_and_short():
    from palaestra.envs import CHARSET, echo_action

    assert echo_action("  move up \n") == "move up"
    assert echo_action("a\nb\tc☃") == "a?b?c?"
    long = echo_action("x" * 100)
    assert long == "x" * 40 + "..."
    assert all(ch in CHARSET and ch not in "\n\r\t" for ch in echo_action("\x00é\n" * 30))


def test_an_unavailable_env_says_why_everywhere():
    from palaestra.envs import list_envs, register
    from palaestra.errors import EnvUnavailableError

    class NeedsData(toy_envs.Counter):
        @classmethod
        def unavailable_reason(cls) -> str | None:
            return "set NEEDS_DATA to the folder of its games"

    register("toy/NeedsData-v0", NeedsData)
    try:
        with pytest.raises(EnvUnavailableError, match="set NEEDS_DATA"):
            palaestra.make("toy/NeedsData-v0")
        info = next(i for i in list_envs() if i.id == "toy/NeedsData-v0")
        assert info.to_json()["unavailable"] == "set NEEDS_DATA to the folder of its games"
    finally:
        del gymnasium.registry["toy/NeedsData-v0"]


def test_an_outcome_can_truncate_for_the_world():
    class Timed(toy_envs.Counter):
        def act(self, action: str) -> palaestra.Outcome:
            return palaestra.Outcome("time is up", score=0.25, truncated=True)

    env = Timed()
    env.reset(options={"task_id": 0})
    _, _, terminated, truncated, info = env.step("inc")
    assert (terminated, truncated) == (False, True)
    assert info["success"] is False and info["score"] == 0.25
    with pytest.raises(EpisodeOverError):
        env.step("inc")


class Scored(toy_envs.Counter):
    """Ends on its first step with the score it is given."""

    score: object = 1.0

    def act(self, action: str) -> palaestra.Outcome:
        return palaestra.Outcome("done", done=True, score=self.score)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [7.5, -1, float("nan"), float("inf"), "0.5", [0.5], True])
def test_a_score_out_of_range_or_not_a_number_is_an_error_naming_env_and_value(bad):
    env = Scored()
    env.score = bad
    env.reset(options={"task_id": 0})
    with pytest.raises(EnvError, match=r"Scored returned Outcome\(score=") as raised:
        env.step("inc")
    assert repr(bad) in str(raised.value)
    assert not env.over and env.steps == 0  # the bad step left no half-done bookkeeping


@pytest.mark.parametrize("good", [0, 1, 0.0, 0.25, 1.0, np.float64(0.5), np.float32(0.5)])
def test_a_score_in_range_is_kept_as_a_float(good):
    env = Scored()
    env.score = good
    env.reset(options={"task_id": 0})
    *_, info = env.step("inc")
    assert info["score"] == float(good) and type(info["score"]) is float
