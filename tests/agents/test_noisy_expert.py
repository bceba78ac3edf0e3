"""The noisy expert (DART): random detours, recorded but not trained on."""

from __future__ import annotations

import asyncio

import pytest

from palaestra.agents.baselines import EnvAction, NoisyExpertPolicy
from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine

MAZE = "palaestra/Maze-v0"


def test_policy_string_and_bad_noise():
    policy = make_policy("expert:0.25")
    assert isinstance(policy, NoisyExpertPolicy) and policy.noise == 0.25
    assert policy.name == "expert:0.25" and policy.describe()["noise"] == 0.25
    for spec in ("expert:1", "expert:-0.1", "expert:lots"):
        with pytest.raises(ValueError, match=r"(?i)noise"):
            make_policy(spec)
    assert EnvAction("move up", trained=False).trained is False
    assert EnvAction("move up") == "move up"


def test_detours_are_played_with_loss_off_and_the_expert_still_solves():
    async def play(noise: float):
        engine = RolloutEngine(NoisyExpertPolicy(noise), LocalEnvs(), RolloutConfig(max_turns=300))
        return await engine.run([EpisodeSpec(MAZE, t, "train", seed=t) for t in range(0, 30, 3)])

    quiet = asyncio.run(play(0.0))
    noisy = asyncio.run(play(0.5))
    assert all(t.success for t in quiet) and all(t.success for t in noisy)
    replies = lambda ts: [m for t in ts for m in t.messages if m["role"] == "assistant"]  # noqa: E731
    assert all(m["loss"] for m in replies(quiet))
    off = [m for m in replies(noisy) if not m["loss"]]
    # About half the turns are detours (each a random valid move), and they lengthen episodes.
    assert 0.3 < len(off) / len(replies(noisy)) < 0.7
    assert sum(t.turns for t in noisy) > sum(t.turns for t in quiet)
