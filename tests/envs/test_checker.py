"""The checker catches each kind of contract breach, with a message that names it."""

import random

import gymnasium
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


BROKEN = (Flaky, SetInInfo, ForgetfulSnapshot, LazyExpert, NoInstruction, Overlapping)


@pytest.fixture(scope="module", autouse=True)
def broken_envs():
    """Registered only while these tests run, so no other test sees them."""
    for cls in BROKEN:
        register(f"broken/{cls.__name__}-v0", cls)
    yield
    for cls in BROKEN:
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
    assert results["same episodes over HTTP"].detail.startswith("skipped")


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
