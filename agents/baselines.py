"""Baseline policies that act through the env rather than a model.

``ExpertPolicy`` plays the env's expert (seed data for behaviour cloning, and
the ceiling of a table); ``RandomPolicy`` plays a uniformly random valid action
(the floor). Their replies are rendered in the run's format, so their
trajectories look exactly like a model's and can be trained on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from palaestra.agents.env_pool import EpisodeEnv

__all__ = ["EnvPolicy", "ExpertPolicy", "RandomPolicy"]


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
