"""Text of what a BabyAI agent sees: its 7x7 egocentric view, in words.

The input is the exact ``image`` minigrid gives the agent (``gen_obs()["image"]``):
a ``(size, size, 3)`` array of (object type, colour, state) per cell, already
rotated so that the agent stands at the bottom middle facing up, with cells
hidden by walls or closed doors marked ``unseen`` and the carried object drawn on
the agent's own cell. Nothing else about the world is read, so the text shows
exactly what the agent may know.

Everything that does not depend on the image (phrases per cell, names per
encoding) is computed once, so a view is one pass over the cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

__all__ = ["DIRECTIONS", "View", "describe", "position_phrase"]

DIRECTIONS: tuple[str, ...] = ("east", "south", "west", "north")
"""Compass names of minigrid's ``agent_dir`` 0..3 (0 points to +x, 1 to +y)."""

_UNSEEN = OBJECT_TO_IDX["unseen"]
_EMPTY = OBJECT_TO_IDX["empty"]
_WALL = OBJECT_TO_IDX["wall"]
_DOOR = OBJECT_TO_IDX["door"]
_N_TYPES = max(OBJECT_TO_IDX.values()) + 1
_N_COLOURS = max(COLOR_TO_IDX.values()) + 1
_N_STATES = max(STATE_TO_IDX.values()) + 1
_DOOR_STATES = {STATE_TO_IDX["open"]: "open", STATE_TO_IDX["closed"]: "closed"}
_DOOR_STATES[STATE_TO_IDX["locked"]] = "locked"


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _names() -> list[list[list[tuple[str, str] | None]]]:
    """``names[type][colour][state]`` -> (name with article, ``go to`` target) or None."""
    type_names = {index: name for name, index in OBJECT_TO_IDX.items()}
    colour_names = {index: name for name, index in COLOR_TO_IDX.items()}
    table: list[list[list[tuple[str, str] | None]]] = []
    for type_index in range(_N_TYPES):
        by_colour: list[list[tuple[str, str] | None]] = []
        for colour_index in range(_N_COLOURS):
            by_state: list[tuple[str, str] | None] = []
            for state in range(_N_STATES):
                kind = type_names.get(type_index, "object")
                colour = colour_names.get(colour_index, "")
                target = f"{colour} {kind}"
                if type_index in (_UNSEEN, _EMPTY, _WALL) or kind == "agent":
                    by_state.append(None)
                elif type_index == _DOOR:
                    by_state.append((_article(f"{_DOOR_STATES[state]} {target}"), target))
                else:
                    by_state.append((_article(target), target))
            by_colour.append(by_state)
        table.append(by_colour)
    return table


_NAMES = _names()


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def position_phrase(forward: int, right: int) -> str:
    """Where a cell lies from the agent, e.g. ``2 steps forward and 1 step to the left``.

    Args:
        forward: Cells ahead of the agent (0 = level with it).
        right: Cells to its right (negative = to its left).
    """
    side = ""
    if right:
        side = f"{_steps(abs(right))} to the {'right' if right > 0 else 'left'}"
    if not forward:
        return side or "here"
    ahead = f"{_steps(forward)} forward"
    return f"{ahead} and {side}" if side else ahead


@dataclass(frozen=True)
class _Layout:
    """Image-independent facts about a ``size`` x ``size`` view."""

    order: tuple[int, ...]  # flat cell indices, nearest first, the agent's cell left out
    phrase: tuple[str, ...]  # per flat index: where that cell is
    offset: tuple[tuple[int, int], ...]  # per flat index: (forward, right)
    agent: int
    front: int
    axes: tuple[tuple[int, ...], ...]  # straight ahead, to the left, to the right


@cache
def _layout(size: int) -> _Layout:
    # image[i, j]: i grows to the agent's right, j grows towards the agent, which
    # stands at (size // 2, size - 1); the flat index of (i, j) is i * size + j.
    centre, back = size // 2, size - 1
    offset = tuple((back - j, i - centre) for i in range(size) for j in range(size))
    phrase = tuple(position_phrase(f, r) for f, r in offset)
    agent = centre * size + back
    order = sorted(
        (k for k in range(size * size) if k != agent),
        key=lambda k: (offset[k][0] + abs(offset[k][1]), abs(offset[k][1]), offset[k][1]),
    )
    ahead = tuple(centre * size + j for j in range(back - 1, -1, -1))
    left = tuple(i * size + back for i in range(centre - 1, -1, -1))
    right = tuple(i * size + back for i in range(centre + 1, size))
    return _Layout(tuple(order), phrase, offset, agent, agent - 1, (ahead, left, right))


@dataclass(frozen=True)
class View:
    """One rendered view.

    Attributes:
        text: The observation text (mission, heading, carried object, what is seen).
        targets: ``go to`` targets in view (e.g. ``"red ball"``) -> their
            (forward, right) offsets from the agent, nearest first.
    """

    text: str
    targets: dict[str, tuple[tuple[int, int], ...]]


def describe(image: np.ndarray, direction: int, mission: str) -> View:
    """Describe the agent's view.

    Args:
        image: minigrid's egocentric ``image`` observation, ``(size, size, 3)``.
        direction: minigrid's ``agent_dir`` (0 east, 1 south, 2 west, 3 north).
        mission: The mission string.

    Returns:
        The :class:`View`: text such as ``a red ball 2 steps forward and 1 step to
        the left``, one line per visible object (nearest first), then the nearest
        wall straight ahead, to the left and to the right, where seen.
    """
    layout = _layout(image.shape[0])
    cells = image.reshape(-1).tolist()  # (type, colour, state) per flat index, flattened
    names = _NAMES
    phrase = layout.phrase
    lines: list[str] = []
    found: dict[str, list[tuple[int, int]]] = {}
    for k in layout.order:
        kind = cells[3 * k]
        if kind > _WALL:
            name, target = names[kind][cells[3 * k + 1]][cells[3 * k + 2]]
            lines.append(f"- {name} {phrase[k]}")
            if target in found:
                found[target].append(layout.offset[k])
            else:
                found[target] = [layout.offset[k]]
    for axis in layout.axes:
        for k in axis:
            kind = cells[3 * k]
            if kind == _WALL:
                lines.append(f"- a wall {phrase[k]}")
                break
            if kind == _UNSEEN:
                break
    carried = names[cells[3 * layout.agent]][cells[3 * layout.agent + 1]][
        cells[3 * layout.agent + 2]
    ]
    front_kind = cells[3 * layout.front]
    if front_kind == _EMPTY:
        front = "empty floor"
    elif front_kind == _WALL:
        front = "a wall"
    else:
        front = names[front_kind][cells[3 * layout.front + 1]][cells[3 * layout.front + 2]][0]
    seen = "You see:\n" + "\n".join(lines) if lines else "You see nothing but empty floor."
    text = (
        f"Mission: {mission}.\n"
        f"You face {DIRECTIONS[direction]} and carry {carried[0] if carried else 'nothing'}. "
        f"In front of you: {front}.\n{seen}"
    )
    return View(text, {target: tuple(offsets) for target, offsets in found.items()})
