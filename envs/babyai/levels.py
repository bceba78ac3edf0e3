"""The BabyAI levels palaestra plays, and how a task id picks a level and a seed.

The levels are minigrid's own (``BabyAI-<Level>-v0`` in gymnasium's registry),
built from their registered entry point and keyword arguments, without
gymnasium's wrappers. Each level class is subclassed once, changing two methods
and no behaviour:

- ``_gen_grid`` without the "Sampling rejected: ..." lines minigrid prints to
  stdout while it generates a level (the same random draws, the same level),
  and with one shared ``Wall`` in every wall cell instead of one ``Wall`` per
  cell (walls have no state; see :func:`_share_walls`);
- ``gen_obs``, which every ``step`` calls: the same observation, computed
  straight from the world grid instead of slicing, rotating and re-encoding
  ``Grid`` objects (minigrid's version is most of the cost of a step).
  ``tests/envs/test_babyai.py`` checks it against minigrid's on random play.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium
import minigrid  # noqa: F401  (registers the BabyAI-* ids with gymnasium)
import numpy as np
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.roomgrid import RoomGrid
from minigrid.core.world_object import Wall
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel

__all__ = [
    "LEVELS",
    "SEED_STRIDE",
    "gym_id",
    "level_of_task",
    "make_level",
    "reset_to_task",
    "seed_of_task",
]

LEVELS: tuple[str, ...] = (
    # Navigation in one room, then through a 3x3 maze of rooms.
    "GoToRedBallGrey",
    "GoToRedBall",
    "GoToRedBallNoDists",
    "GoToObj",
    "GoToObjS4",
    "GoToObjS6",
    "GoToLocal",
    "GoToObjMaze",
    "GoToObjMazeOpen",
    "GoToObjMazeS4R2",
    "GoTo",
    "GoToOpen",
    "GoToImpUnlock",
    "GoToSeq",
    "GoToSeqS5R2",
    "GoToRedBlueBall",
    "GoToDoor",
    "GoToObjDoor",
    # Doors.
    "Open",
    "OpenRedDoor",
    "OpenDoor",
    "OpenDoorColor",
    "OpenDoorLoc",
    "OpenTwoDoors",
    "OpenRedBlueDoors",
    "OpenDoorsOrderN2",
    "OpenDoorsOrderN4",
    # Picking up and putting down.
    "Pickup",
    "UnblockPickup",
    "PickupLoc",
    "PickupDist",
    "PickupAbove",
    "PutNextLocal",
    "PutNextLocalS5N3",
    "PutNextS4N1",
    "PutNextS5N2",
    "PutNextS6N3",
    "PutNextS7N4",
    # Keys and locked doors.
    "Unlock",
    "UnlockLocal",
    "UnlockLocalDist",
    "UnlockPickup",
    "UnlockPickupDist",
    "BlockedUnlockPickup",
    # Other bonus levels.
    "ActionObjDoor",
    "FindObjS5",
    "FindObjS7",
    "KeyCorridorS3R1",
    "KeyCorridorS3R3",
    "KeyCorridorS5R3",
    "OneRoomS8",
    "OneRoomS16",
    "MoveTwoAcrossS5N2",
    "MoveTwoAcrossS8N9",
    # The whole language.
    "Synth",
    "SynthLoc",
    "SynthSeq",
    "MiniBossLevel",
    "BossLevelNoUnlock",
    "BossLevel",
)
"""The 60 levels, in task-id order: task ``t`` plays ``LEVELS[t % 60]``.

Left out of minigrid's 96 BabyAI ids: the ``Debug`` variants (strict copies of
listed levels), most size variants (``GoToLocalS*N*``, ``GoToObjMazeS*``,
``KeyCorridorS*R*``, ``OneRoomS*``, ...; a few sizes are kept), and the levels
that minigrid's bot cannot solve, so that no task lacks an expert:
``KeyInBox`` and the three ``PutNextS*N*Carrying`` (the bot fails every seed,
as its docstring says), ``UnlockToUnlock`` (the bot loops forever on about a
quarter of the seeds).
"""

_VERSIONED = {"GoToObjS6": "BabyAI-GoToObjS6-v1"}


def gym_id(level: str) -> str:
    """The gymnasium id minigrid registers ``level`` under (e.g. ``BabyAI-GoTo-v0``)."""
    return _VERSIONED.get(level, f"BabyAI-{level}-v0")


def level_of_task(task_id: int) -> str:
    """The level task ``task_id`` plays: ``LEVELS[task_id % len(LEVELS)]``."""
    return LEVELS[task_id % len(LEVELS)]


_KEY_MAY_BE_LOCKED_IN = frozenset({"GoToImpUnlock", "Unlock"})

SEED_STRIDE = 10_000
"""Above every task id, so that a task's fallback seeds are no other task's seed."""


def seed_of_task(task_id: int, attempt: int = 0) -> int:
    """The minigrid seed of task ``task_id``: the task id itself (``attempt`` 0).

    So task ``t`` is the episode ``gymnasium.make(gym_id(level_of_task(t))).reset(seed=t)``
    (for the installed minigrid version: level generation is minigrid's). The
    one exception is an impossible level (see :func:`reset_to_task`), replaced by
    the first possible one among seeds ``t + SEED_STRIDE * attempt``.
    """
    return task_id + SEED_STRIDE * attempt


def reset_to_task(world: RoomGridLevel, task_id: int) -> tuple[dict[str, Any], int]:
    """Reset ``world`` (made by :func:`make_level` for ``task_id``'s level) to the task.

    minigrid's ``GoToImpUnlock`` and ``Unlock`` mean to put the key of their
    locked room in another room, but compare numpy integers with ``is``, so
    about one seed in fifteen hides the only key inside the locked room: no one
    can finish those. They are skipped (see :func:`seed_of_task`); every other
    task plays its own seed.

    Returns:
        minigrid's first observation and the seed used.
    """
    level = level_of_task(task_id)
    attempt = 0
    while True:
        seed = seed_of_task(task_id, attempt)
        observation, _ = world.reset(seed=seed)
        if level not in _KEY_MAY_BE_LOCKED_IN or _keys_reachable(world):
            return observation, seed
        attempt += 1


def _keys_reachable(world: RoomGridLevel) -> bool:
    """Whether every locked door's key can be reached without passing a locked door."""
    grid = world.grid
    width, height, cells = grid.width, grid.height, grid.grid
    needed = {c.color for c in cells if c is not None and c.type == "door" and c.is_locked}
    start = (int(world.agent_pos[0]), int(world.agent_pos[1]))
    seen, todo, keys = {start}, [start], set()
    while todo:
        x, y = todo.pop()
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if (nx, ny) in seen or not (0 <= nx < width and 0 <= ny < height):
                continue
            seen.add((nx, ny))
            cell = cells[ny * width + nx]
            if cell is None or (cell.type == "door" and not cell.is_locked):
                todo.append((nx, ny))
            elif cell.type == "key":
                keys.add(cell.color)
    return needed <= keys


def _quiet_gen_grid(self: RoomGridLevel, width: int, height: int) -> None:
    """``RoomGridLevel._gen_grid`` without its prints: the same draws, the same level.

    minigrid prints a line to stdout each time it rejects a sampled level;
    redirecting stdout instead would swallow other threads' output too.
    """
    while True:
        try:
            RoomGrid._gen_grid(self, width, height)
            self.gen_mission()
            self.validate_instrs(self.instrs)
        except (RecursionError, RejectSampling):
            continue
        break
    self.surface = self.instrs.surface(self)
    self.mission = self.surface
    _share_walls(self.grid)


_WALL = Wall()


def _share_walls(grid: Grid) -> None:
    """Put one shared ``Wall`` in every cell that holds a plain grey wall.

    A nine-room level has about 170 wall cells, each a ``Wall`` object that lives
    as long as the episode: most of what a reset leaves for the garbage
    collector, whose full collections (a pause for every session of a server)
    come sooner and take longer the more long-lived objects there are. A wall has
    no state (nothing moves, opens or picks one up), so one instance serves them
    all and the grid encodes the same; a wall placed as an object (with a
    position) is left as it is.
    """
    cells = grid.grid
    for index, cell in enumerate(cells):
        if type(cell) is Wall and cell.color == _WALL.color and cell.cur_pos is None:
            cells[index] = _WALL


_OUTSIDE = Wall()  # what minigrid's Grid.slice puts in view cells off the grid
_FORWARD = tuple((int(dx), int(dy)) for dx, dy in DIR_TO_VEC)
_EMPTY_CODE = (OBJECT_TO_IDX["empty"], 0, 0)
_UNSEEN_CODE = (OBJECT_TO_IDX["unseen"], 0, 0)


def _fast_gen_obs(self: RoomGridLevel) -> dict[str, Any]:
    """``MiniGridEnv.gen_obs``, the same dict, without building rotated ``Grid`` copies.

    View cell ``(i, j)`` (``i`` left to right, ``j`` far to near; the agent at
    ``(size // 2, size - 1)`` facing ``j = 0``) is the world cell ``forward``
    steps ahead and ``right`` steps to the right, as in ``get_view_coords``;
    visibility is ``Grid.process_vis`` on those cells, and the agent's own cell
    shows what it carries.
    """
    size = self.agent_view_size
    half = size // 2
    ax, ay = int(self.agent_pos[0]), int(self.agent_pos[1])
    dx, dy = _FORWARD[self.agent_dir]
    grid = self.grid
    width, height, cells = grid.width, grid.height, grid.grid
    view = []  # view[j][i]
    for j in range(size):
        ahead = size - 1 - j
        bx, by = ax + ahead * dx, ay + ahead * dy
        row = []
        for i in range(size):
            right = i - half
            x, y = bx - right * dy, by + right * dx
            row.append(cells[y * width + x] if 0 <= x < width and 0 <= y < height else _OUTSIDE)
        view.append(row)
    # Grid.process_vis, row by row from the agent outwards; vis[j][i].
    vis = [[False] * size for _ in range(size)]
    vis[size - 1][half] = True
    for j in range(size - 1, -1, -1):
        row, seen = view[j], vis[j]
        above = vis[j - 1] if j > 0 else None
        for i in range(size - 1):
            if seen[i]:
                cell = row[i]
                if cell is None or cell.see_behind():
                    seen[i + 1] = True
                    if above is not None:
                        above[i + 1] = above[i] = True
        for i in range(size - 1, 0, -1):
            if seen[i]:
                cell = row[i]
                if cell is None or cell.see_behind():
                    seen[i - 1] = True
                    if above is not None:
                        above[i - 1] = above[i] = True
    view[size - 1][half] = self.carrying
    codes = []
    for i in range(size):
        for j in range(size):
            if vis[j][i]:
                cell = view[j][i]
                codes.append(_EMPTY_CODE if cell is None else cell.encode())
            else:
                codes.append(_UNSEEN_CODE)
    image = np.array(codes, dtype=np.uint8).reshape(size, size, 3)
    return {"image": image, "direction": self.agent_dir, "mission": self.mission}


def _level_class(entry_point: str) -> type[RoomGridLevel]:
    module_name, class_name = entry_point.split(":")
    base = getattr(importlib.import_module(module_name), class_name)
    name = f"Quiet{class_name}"
    cls = globals().get(name)
    if cls is None:
        methods = {"_gen_grid": _quiet_gen_grid, "gen_obs": _fast_gen_obs, "__module__": __name__}
        cls = type(name, (base,), methods)
        # Module-level, so that pickling a level (say, to another process) finds the class.
        globals()[name] = cls
    return cls


def _level_factories() -> dict[str, tuple[type[RoomGridLevel], dict[str, Any]]]:
    factories = {}
    for level in LEVELS:
        spec = gymnasium.spec(gym_id(level))
        if not isinstance(spec.entry_point, str):
            raise TypeError(f"{spec.id}: expected an import path entry point")
        factories[level] = (_level_class(spec.entry_point), dict(spec.kwargs))
    return factories


_FACTORIES = _level_factories()


def make_level(level: str) -> RoomGridLevel:
    """A fresh, unwrapped minigrid env of ``level`` (call ``reset(seed=...)`` on it).

    Raises:
        KeyError: ``level`` is not in :data:`LEVELS`.
    """
    cls, kwargs = _FACTORIES[level]
    return cls(**kwargs)
