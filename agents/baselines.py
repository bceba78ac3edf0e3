"""Baseline policies that act through the env rather than a model.

``ExpertPolicy`` plays the env's expert (seed data for behaviour cloning, and
the ceiling of a table); ``RandomPolicy`` plays a uniformly random valid action
(the floor); ``NoisyExpertPolicy`` is the expert with random detours, whose
trajectories teach a cloned model to recover from states the expert alone never
visits. Their replies are rendered in the run's format, so their
trajectories look exactly like a model's and can be trained on.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any

from palaestra.agents.env_pool import EpisodeEnv

__all__ = ["EnvAction", "EnvPolicy", "ExpertPolicy", "NoisyExpertPolicy", "RandomPolicy"]


class EnvAction(str):
    """An env policy's action that says whether a model should be trained to take it.

    The rollout engine records the reply of an ``EnvAction`` with ``trained=False``
    with ``loss`` False: it stays in the conversation (its observation follows)
    but no model is trained to say it.
    """

    trained: bool

    def __new__(cls, action: str, *, trained: bool = True) -> EnvAction:
        """``action``, to be trained on or not."""
        made = super().__new__(cls, action)
        made.trained = trained
        return made


class EnvPolicy(ABC):
    """A policy that picks actions with the env's help (needs no model).

    Attributes:
        name: What trajectories record as the model.
        capability: The env capability it needs (``"expert"``, ``"random_action"``).
    """

    name: str = "env-policy"
    capability: str = ""

    @abstractmethod
    async def act(self, env: EpisodeEnv, seed: int) -> str:
        """The next action in ``env``; ``seed`` is fresh for every turn."""

    def unsupported(self, env_id: str, capabilities: frozenset[str]) -> str | None:
        """Why this policy cannot play ``env_id`` (``None`` when it can)."""
        if self.capability and self.capability not in capabilities:
            return f"{env_id} lacks the {self.capability!r} capability"
        return None

    def describe(self) -> dict[str, Any]:
        """What provenance records of this policy."""
        return {"name": self.name, "backend": type(self).__name__}

    async def aclose(self) -> None:  # noqa: B027 - nothing to free
        """Nothing to free."""


class ExpertPolicy(EnvPolicy):
    """The env's own expert (``GET .../expert`` over HTTP)."""

    name = "expert"
    capability = "expert"

    async def act(self, env: EpisodeEnv, seed: int) -> str:
        """The expert's next action."""
        return await env.expert_action()


class RandomPolicy(EnvPolicy):
    """A uniformly random valid action each turn (reproducible from the episode seed)."""

    name = "random"
    capability = "random_action"

    async def act(self, env: EpisodeEnv, seed: int) -> str:
        """A random valid action drawn from ``seed``."""
        return await env.random_action(seed)


class NoisyExpertPolicy(EnvPolicy):
    """The expert, but each turn with probability ``noise`` a random valid action instead.

    Noise injection for behaviour cloning (DART, Laskey et al. 2017): the expert's
    own episodes never leave its path, so a cloned model that strays meets states
    it was never shown and tends to loop there. With detours, the expert's next
    actions lead back from off-path states. The random detours are recorded with
    ``loss`` False (:class:`EnvAction`): only the expert's actions are trained on.

    Args:
        noise: Probability of a random detour each turn, in [0, 1).
    """

    capability = "expert"

    def __init__(self, noise: float) -> None:
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"expert noise must be in [0, 1), not {noise}")
        self.noise = noise
        self.name = f"expert:{noise:g}"

    async def act(self, env: EpisodeEnv, seed: int) -> str:
        """A random valid action (not trained on) with probability ``noise``, else the expert's."""
        if random.Random(seed).random() < self.noise:
            return EnvAction(await env.random_action(seed), trained=False)
        return EnvAction(await env.expert_action())

    def unsupported(self, env_id: str, capabilities: frozenset[str]) -> str | None:
        """Needs both the expert and random actions."""
        for needed in ("expert", "random_action"):
            if needed not in capabilities:
                return f"{env_id} lacks the {needed!r} capability"
        return None

    def describe(self) -> dict[str, Any]:
        """Name, backend and noise."""
        return {**super().describe(), "noise": self.noise}
