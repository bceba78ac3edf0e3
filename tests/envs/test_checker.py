"""The checker catches each kind of contract breach, with a message that names it."""

import dataclasses
import inspect
import json
import os
import random

import gymnasium
import numpy as np
import pytest
import toy_envs

from palaestra.cli import main
from palaestra.envs import Outcome, register
from palaestra.envs.checker import CheckResult, check, check_spec


class Flaky(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        outcome = super().act(action)
        outcome.observation += f" ({random.random():.6f})"  # global RNG: not reproducible
        return outcome


class SetInInfo(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        outcome = super().act(action)
        outcome.info["seen"] = {action}
        return outcome


class ForgetfulSnapshot(toy_envs.Counter):
    def get_state(self) -> dict:
        return {}  # forgets the count

    def set_state(self, state: dict) -> None:
        pass


class LazyExpert(toy_envs.Counter):
    def expert_action(self) -> str:
        return "wait"


class NoInstruction(toy_envs.Counter):
    instruction = ""


class Overlapping(toy_envs.Counter):
    splits = {"train": range(0, 10), "test": range(5, 12)}


class NeverInvalid(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        outcome = super().act(action)
        outcome.invalid = False  # takes anything for an action of its world
        return outcome


class FlagNotBool(toy_envs.Counter):
    def step(self, action: str) -> tuple:
        observation, reward, terminated, truncated, info = super().step(action)
        info["invalid_action"] = int(info["invalid_action"])
        return observation, reward, terminated, truncated, info


class Listed(toy_envs.Counter):
    def available_actions(self) -> list[str]:
        return ["inc", "sleep 0"]


class RandomFromOwnRng(Listed):
    def random_action(self, rng: np.random.Generator) -> str:
        self.np_random.random()  # moves the env's own randomness
        return super().random_action(rng)


class RandomUnseeded(Listed):
    def random_action(self, rng: np.random.Generator) -> str:
        return random.choice(["inc", "sleep 0"])  # ignores the rng it is given


class RandomInvalid(Listed):
    def random_action(self, rng: np.random.Generator) -> str:
        return "dance"


class Counted(toy_envs.Counter):
    """A sound Counter with snapshot/restore (the state is a plain dict: compared directly)."""

    def start(self, task_id: int) -> str:
        self.strikes = 0
        return super().start(task_id)

    def get_state(self) -> dict:
        return {"count": self.count, "strikes": self.strikes}

    def set_state(self, state: dict) -> None:
        self.count, self.strikes = state["count"], state["strikes"]


class InvalidCounts(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        outcome = super().act(action)
        if outcome.invalid:
            self.count += 1  # flagged invalid, yet it moved the world on
        return outcome


class InvalidStrikes(Counted):
    def act(self, action: str) -> Outcome:
        outcome = super().act(action)
        if outcome.invalid:
            self.strikes += 1  # hidden: no observation ever shows it; only the state does
        return outcome


class InvalidDrawsRandomness(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        outcome = super().act(action)
        if outcome.invalid:
            self.np_random.random()  # the env's own randomness moves on an invalid action
        return outcome


class Machine:
    """A live object, like a game engine: it compares by identity."""

    def __init__(self, count: int) -> None:
        self.count = count


@dataclasses.dataclass
class MachineState:
    machine: Machine
    last_input: str  # changes on every input, as an interpreter's buffer does

    def __deepcopy__(self, memo: dict) -> "MachineState":
        return self  # immutable by contract, shared by snapshots (as TextWorld's EngineState)


class EngineLike(toy_envs.Counter):
    """A sound env whose state holds a live object (as TextWorld's Z-machine state does)."""

    def act(self, action: str) -> Outcome:
        self.last_input = action
        return super().act(action)

    def get_state(self) -> MachineState:
        return MachineState(Machine(self.count), getattr(self, "last_input", ""))

    def set_state(self, state: MachineState) -> None:
        self.count, self.last_input = state.machine.count, state.last_input


class FlakyCounted(Flaky, Counted):
    pass


class OneStep(Counted):
    """Every episode ends on its first step: nothing to cut in two for snapshot/restore."""

    def act(self, action: str) -> Outcome:
        return Outcome("over", done=True, success=action == "inc", invalid=action != "inc")


class Exploding(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        if getattr(self, "count", 0) == 2:
            raise ZeroDivisionError("the counter divided by zero")  # EXPLODES HERE
        return super().act(action)


class ParsesBadly(toy_envs.Counter):
    def act(self, action: str) -> Outcome:
        json.loads(action)  # PARSES HERE: the library raises, from this line
        return super().act(action)


def scored(score: object) -> type[toy_envs.Counter]:
    class BadScore(toy_envs.Counter):
        def act(self, action: str) -> Outcome:
            outcome = super().act(action)
            if outcome.done:
                outcome.score = score  # type: ignore[assignment]
            return outcome

    return BadScore


BAD_SCORES = {"Score75": 7.5, "ScoreMinus1": -1, "ScoreNaN": float("nan"), "ScoreStr": "0.5"}


BROKEN = (
    Flaky,
    SetInInfo,
    ForgetfulSnapshot,
    LazyExpert,
    NoInstruction,
    Overlapping,
    NeverInvalid,
    FlagNotBool,
    RandomFromOwnRng,
    RandomUnseeded,
    RandomInvalid,
    InvalidCounts,
    InvalidStrikes,
    InvalidDrawsRandomness,
    FlakyCounted,
    OneStep,
    Exploding,
    ParsesBadly,
)
SOUND = (Listed, Counted, EngineLike)


@pytest.fixture(scope="module", autouse=True)
def broken_envs():
    """Registered only while these tests run, so no other test sees them."""
    ids = {f"broken/{cls.__name__}-v0": cls for cls in BROKEN + SOUND}
    ids.update({f"broken/{name}-v0": scored(score) for name, score in BAD_SCORES.items()})
    for env_id, cls in ids.items():
        register(env_id, cls)
    yield
    for env_id in ids:
        del gymnasium.registry[env_id]


def failures(env_id: str) -> dict[str, str]:
    return {r.name: r.detail for r in check(env_id, episodes=2) if not r.passed}


@pytest.mark.parametrize(
    ("env_id", "check_name", "message"),
    [
        ("broken/Flaky-v0", "determinism + info contract", "same task, seed and actions: task"),
        ("broken/SetInInfo-v0", "determinism + info contract", "info is not JSON-serialisable"),
        ("broken/ForgetfulSnapshot-v0", "snapshot/restore", "after restore, step"),
        ("broken/LazyExpert-v0", "expert solves sampled tasks", "the expert failed task"),
        ("broken/NoInstruction-v0", "spec", "instruction is empty"),
        ("broken/Overlapping-v0", "spec", "train and test share 5 task ids"),
        ("broken/NeverInvalid-v0", "invalid actions", "was not reported invalid"),
        (
            "broken/FlagNotBool-v0",
            "determinism + info contract",
            "info['invalid_action'] must be a bool",
        ),
        ("broken/RandomFromOwnRng-v0", "random actions", "moved the env's np_random"),
        ("broken/RandomUnseeded-v0", "random actions", "differs for the same seed and state"),
        ("broken/RandomInvalid-v0", "random actions", "was reported invalid"),
        ("broken/InvalidCounts-v0", "invalid actions", "changed the world: step"),
        ("broken/InvalidStrikes-v0", "invalid actions", "changed get_state()"),
        ("broken/InvalidDrawsRandomness-v0", "invalid actions", "moved the env's np_random"),
    ],
)
def test_breach_is_reported(env_id, check_name, message):
    found = failures(env_id)
    assert check_name in found, found
    assert message in found[check_name]


def test_a_sound_env_passes_everything_it_declares():
    results = {r.name: r for r in check("toy/Counter-v0", episodes=2)}
    assert all(r.passed for r in results.values()), results
    assert results["snapshot/restore"].detail.startswith("not declared")
    assert results["random actions"].detail.startswith("not declared")
    assert results["same episodes over HTTP"].detail == "no server given"
    assert "flagged invalid and changed nothing" in results["invalid actions"].detail
    skipped = {name for name, r in results.items() if r.status == "skip"}
    assert skipped == {"snapshot/restore", "random actions", "same episodes over HTTP"}


def test_a_sound_env_with_a_comparable_state_passes():
    results = {r.name: r for r in check("broken/Counted-v0", episodes=2)}
    skipped = {name for name, r in results.items() if r.status != "pass"}
    assert skipped == {"random actions", "same episodes over HTTP"}, results
    assert "states compared directly" in results["invalid actions"].detail


def test_random_actions_are_checked_in_process_and_over_http(serve):
    import palaestra

    with serve(["broken/Listed-v0"]) as url:
        results = check(
            "broken/Listed-v0",
            episodes=2,
            remote=lambda: palaestra.make("broken/Listed-v0", base_url=url),
        )
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    found = {r.name: r.detail for r in results}
    assert "random actions valid, repeatable, np_random untouched" in found["random actions"]
    assert "identical" in found["same episodes over HTTP"]


def test_http_mismatch_is_reported(serve):
    import palaestra

    with serve(["palaestra/Maze-v0"]) as url:
        # Comparing Maze over HTTP against Coins-like Counter in-process must fail loudly.
        results = check(
            "toy/Counter-v0",
            episodes=1,
            remote=lambda: palaestra.make("palaestra/Maze-v0", base_url=url),
        )
    http = next(r for r in results if r.name == "same episodes over HTTP")
    assert not http.passed
    assert "in-process vs HTTP" in http.detail or "not served" in http.detail


def test_a_state_of_live_objects_is_judged_by_behaviour_not_compared():
    # Its input buffer changes on an invalid action; the world does not: no false alarm.
    results = {r.name: r for r in check("broken/EngineLike-v0", episodes=2)}
    invalid = results["invalid actions"]
    assert invalid.status == "pass", invalid
    assert "by behaviour only (get_state() holds objects that are not plain data)" in invalid.detail


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"n": 1, "xs": [1, 2]}, {"n": 1, "xs": [1, 2]}, True),
        ({"n": 1}, {"n": 2}, False),
        ((np.arange(3), float("nan")), (np.arange(3), float("nan")), True),
        ((np.arange(3),), (np.arange(1, 4),), False),
        (MachineState(Machine(1), ""), MachineState(Machine(1), ""), None),
        ({"n": 1, "engine": Machine(1)}, {"n": 2, "engine": Machine(1)}, None),
    ],
)
def test_states_are_compared_directly_only_when_plain_data(a, b, same):
    from palaestra.envs.checker import _same_plain_data

    assert _same_plain_data(a, b) is same


@pytest.mark.parametrize(("name", "score"), list(BAD_SCORES.items()))
def test_a_score_out_of_range_or_not_a_float_fails(name, score):
    found = failures(f"broken/{name}-v0")
    # The base class refuses the score (never clamps it); the check names env and value.
    for check_name in ("determinism + info contract", "expert solves sampled tasks"):
        assert check_name in found, found
        assert f"BadScore returned Outcome(score={score!r})" in found[check_name]


def test_a_check_on_what_failed_is_skipped_never_passed():
    results = {r.name: r for r in check("broken/FlakyCounted-v0", episodes=2)}
    assert results["determinism + info contract"].status == "fail"
    for name in ("invalid actions", "snapshot/restore"):
        assert results[name].status == "skip", results[name]
        assert "'determinism + info contract' failed" in results[name].detail
    assert results["expert solves sampled tasks"].status == "pass"  # needs no recorded episode


def test_a_check_that_ran_on_nothing_is_skipped_never_passed():
    results = {r.name: r for r in check("broken/OneStep-v0", episodes=2)}
    assert results["determinism + info contract"].status == "pass"
    snapshot = results["snapshot/restore"]
    assert snapshot.status == "skip" and "no recorded episode has 2 steps" in snapshot.detail


def _exploding_line() -> int:
    lines, first = inspect.getsourcelines(Exploding)
    return first + next(i for i, line in enumerate(lines) if "EXPLODES HERE" in line)


def test_an_env_exception_names_the_file_and_line_it_came_from():
    found = failures("broken/Exploding-v0")
    detail = found["determinism + info contract"]
    assert detail.startswith("ZeroDivisionError: the counter divided by zero")
    assert f"test_checker.py:{_exploding_line()} in act" in detail


def test_an_exception_from_a_library_names_where_it_rose_and_the_env_line():
    detail = failures("broken/ParsesBadly-v0")["determinism + info contract"]
    lines, first = inspect.getsourcelines(ParsesBadly)
    line = first + next(i for i, text in enumerate(lines) if "PARSES HERE" in text)
    assert detail.startswith("JSONDecodeError: ")
    assert "(raised at " in detail and f"json{os.sep}decoder.py:" in detail
    assert ", from " in detail and detail.endswith(f"test_checker.py:{line} in act)")


def test_cli_check_shows_skip_and_the_traceback_with_verbose(capsys):
    assert main(["check", "broken/Exploding-v0", "--episodes", "1"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] determinism + info contract" in out
    assert f"test_checker.py:{_exploding_line()} in act" in out
    assert "[SKIP] invalid actions" in out and "[PASS] invalid actions" not in out
    assert "Traceback" not in out
    assert "broken/Exploding-v0: 2 passed, 2 failed, 4 skipped" in out

    assert main(["check", "broken/Exploding-v0", "--episodes", "1", "--verbose"]) == 1
    out = capsys.readouterr().out
    assert "Traceback (most recent call last)" in out
    assert 'raise ZeroDivisionError("the counter divided by zero")  # EXPLODES HERE' in out


def test_each_check_runs_alone():
    assert "max_steps=5" in check_spec(toy_envs.Counter)
    with pytest.raises(Exception, match="instruction is empty"):
        check_spec(NoInstruction)
    result = CheckResult("spec", "skip", "nothing to check", 0.0)
    assert result.skipped and not result.failed and result.passed
