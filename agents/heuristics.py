"""Observation-reading baselines: what a simple rule gets from the same text a model sees.

``UniformPolicy`` (``--policy uniform``) picks uniformly among *all* actions of an
env's grammar, blocked ones included, where the grammar is a short fixed list
(Maze's four moves); elsewhere it is :class:`~palaestra.agents.RandomPolicy`.
``HeuristicPolicy`` (``--policy heuristic``) plays a one-line rule per env where
there is an obvious one: on Maze, "take an open move that brings you closer to
the goal (by row/column distance), without turning back unless it must". Both read only
``env.observation``, so they run over HTTP exactly as in-process.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from palaestra.agents.baselines import EnvPolicy
from palaestra.agents.env_pool import EpisodeEnv

__all__ = ["HEURISTICS", "UNIFORM_ACTIONS", "HeuristicPolicy", "UniformPolicy", "maze_toward_goal"]

MAZE = "palaestra/Maze-v0"
MAZE_CELLS = "palaestra/MazeCells-v0"
_MOVES = ("up", "down", "left", "right")
UNIFORM_ACTIONS: dict[str, tuple[str, ...]] = {
    env_id: tuple(f"move {m}" for m in _MOVES) for env_id in (MAZE, MAZE_CELLS)
}
"""Env id -> every action of its grammar, for envs whose grammar is a short list."""

EXPLORE = 0.25
"""How often the Maze rule takes any open move: pure greed loops in the first dead end."""

_POSITION = re.compile(r"Position: \((\d+), (\d+)\)\. Goal: \((\d+), (\d+)\)")
_OPEN = re.compile(r"Open moves: ([a-z, ]*)\.")
_MOVED = re.compile(r"^You moved (up|down|left|right)\.", re.MULTILINE)
_REVERSE = {"up": "down", "down": "up", "left": "right", "right": "left"}
_STEP = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def maze_toward_goal(observation: str, rng: np.random.Generator) -> str:
    """Maze's rule: an open move that shortens the row/column distance to the goal.

    It does not turn back the way it just came (read from "You moved ...") unless
    that is the only open move, so it walks corridors to their end; among the
    other open moves it takes one that gets closer, or with probability
    :data:`EXPLORE` (and when none gets closer) any of them. Greed alone walks
    back and forth at the mouth of the first dead end that points at the goal.

    Raises:
        ValueError: ``observation`` is not a Maze observation.
    """
    where, open_ = _POSITION.search(observation), _OPEN.search(observation)
    if where is None or open_ is None:
        raise ValueError("not a Maze observation (no 'Position: ... Goal: ...' / 'Open moves:')")
    row, col, goal_row, goal_col = map(int, where.groups())
    moves = [m.strip() for m in open_.group(1).split(",") if m.strip() in _STEP]
    if not moves:
        return "move up"
    last = _MOVED.search(observation)
    if last is not None and len(moves) > 1:
        moves = [m for m in moves if m != _REVERSE[last.group(1)]] or moves
    distance = abs(row - goal_row) + abs(col - goal_col)
    closer = [
        m
        for m in moves
        if abs(row + _STEP[m][0] - goal_row) + abs(col + _STEP[m][1] - goal_col) < distance
    ]
    pool = moves if not closer or rng.random() < EXPLORE else closer
    return f"move {pool[int(rng.integers(len(pool)))]}"


# The rule reads only positions and open moves, so it plays the cell-move variant as it is.
HEURISTICS: dict[str, Callable[[str, np.random.Generator], str]] = {
    MAZE: maze_toward_goal,
    MAZE_CELLS: maze_toward_goal,
}
"""Env id -> its rule (observation, rng) -> action."""


class UniformPolicy(EnvPolicy):
    """A uniformly random action of the env's whole grammar (blocked moves included)."""

    name = "uniform"
    capability = "random_action"

    async def act(self, env: EpisodeEnv, seed: int) -> str:
        """Any action of the grammar, or a random valid one where the grammar is open."""
        actions = UNIFORM_ACTIONS.get(env.env_id)
        if actions is None:
            return await env.random_action(seed)
        return actions[int(np.random.default_rng(seed).integers(len(actions)))]


class HeuristicPolicy(EnvPolicy):
    """The env's one-line rule from :data:`HEURISTICS`, reading the observation only."""

    name = "heuristic"

    def unsupported(self, env_id: str, capabilities: frozenset[str]) -> str | None:
        """Says so for envs without a rule in :data:`HEURISTICS`."""
        if env_id not in HEURISTICS:
            return f"{env_id} has no heuristic (there is one for {', '.join(sorted(HEURISTICS))})"
        return None

    async def act(self, env: EpisodeEnv, seed: int) -> str:
        """The rule's action for the latest observation.

        Raises:
            ValueError: The env has no heuristic.
        """
        rule = HEURISTICS.get(env.env_id)
        if rule is None:
            raise ValueError(
                f"no heuristic for {env.env_id}; there is one for {sorted(HEURISTICS)}"
            )
        return rule(env.observation, np.random.default_rng(seed))
