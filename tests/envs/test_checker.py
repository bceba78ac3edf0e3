"""The checker catches each kind of contract breach, with a message that names it."""

import random

import gymnasium
import numpy as np
import pytest
import toy_envs

from palaestra.envs import Outcome, register
from palaestra.envs.checker import check


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
)
SOUND = (Listed,)


@pytest.fixture(scope="module", autouse=True)
def broken_envs():
    """Registered only while these tests run, so no other test sees them."""
    for cls in BROKEN + SOUND:
        register(f"broken/{cls.__name__}-v0", cls)
    yield
    for cls in BROKEN + SOUND:
        del gymnasium.registry[f"broken/{cls.__name__}-v0"]


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
        ("broken/NeverInvalid-v0", "invalid actions reported", "was not reported invalid"),
        (
            "broken/FlagNotBool-v0",
            "determinism + info contract",
            "info['invalid_action'] must be a bool",
        ),
        ("broken/RandomFromOwnRng-v0", "random actions", "moved the env's np_random"),
        ("broken/RandomUnseeded-v0", "random actions", "differs for the same seed and state"),
        ("broken/RandomInvalid-v0", "random actions", "was reported invalid"),
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
    assert results["same episodes over HTTP"].detail.startswith("skipped")
    assert "reported invalid" in results["invalid actions reported"].detail


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
