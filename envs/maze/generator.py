"""Seeded perfect mazes: one :class:`Maze` per task id, generated once and cached.

A maze of ``n x n`` cells is drawn as a ``(2n + 1) x (2n + 1)`` character map:
cells sit at odd (row, column), the characters between two cells are either a
wall ``#`` or a carved passage ``.``, and the border is all wall. The agent walks
the map one character per move, so what it reads on the map is what it gets.

Everything about a task (size, walls, start, goal) is a pure function of its id:
the generator seeds :class:`random.Random` with a string (which ``random`` hashes
with SHA-512, unlike the salted :func:`hash`), so a task id means the same maze in
every process and on every platform.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["DIRECTIONS", "SIZES", "WALL", "Maze", "maze_for_task", "size_of_task"]

SIZES: tuple[int, ...] = (5, 7, 9)
"""Maze sizes in cells per side; task ``t`` has size ``SIZES[t % len(SIZES)]``."""

WALL, FLOOR, GOAL, AGENT = "#", ".", "G", "A"

DIRECTIONS: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
}
"""Each move's (row, column) delta on the map, in the order observations list them."""

_SEED_PREFIX = "palaestra/Maze-v0:"


@dataclass(frozen=True, eq=False)
class Maze:
    """One generated maze with everything a step needs, precomputed.

    Positions are ``(row, column)`` on the character map; ``index = row * width + column``
    flattens them. Per-index tables are tuples, so a step is a few lookups.

    Attributes:
        task_id: The task this maze belongs to.
        size: Cells per side.
        height: Map rows (``2 * size + 1``).
        width: Map columns (``2 * size + 1``).
        start: The agent's first position.
        goal: The position to reach.
        base_map: The map with walls, floor and ``G``, rows joined by newlines
            (the agent's ``A`` is placed by :meth:`render`).
        open_moves: Per index, the directions not blocked by a wall.
        distance: Per index, moves of the shortest path to the goal (-1 on walls).
        expert_move: Per index, the first direction of a shortest path to the goal
            (``""`` on walls and on the goal).
    """

    task_id: int
    size: int
    height: int
    width: int
    start: tuple[int, int]
    goal: tuple[int, int]
    base_map: str
    open_moves: tuple[tuple[str, ...], ...]
    distance: tuple[int, ...]
    expert_move: tuple[str, ...]

    def index(self, position: tuple[int, int]) -> int:
        """The flat index of a map position."""
        return position[0] * self.width + position[1]

    def is_open(self, position: tuple[int, int]) -> bool:
        """Whether ``position`` lies on the map and is not a wall."""
        row, column = position
        return (
            0 <= row < self.height
            and 0 <= column < self.width
            and self.distance[row * self.width + column] >= 0
        )

    def render(self, position: tuple[int, int]) -> str:
        """The map with the agent ``A`` at ``position`` (it covers ``G`` on the goal)."""
        # base_map rows are width + 1 characters apart (the newline).
        offset = position[0] * (self.width + 1) + position[1]
        return self.base_map[:offset] + AGENT + self.base_map[offset + 1 :]


def size_of_task(task_id: int) -> int:
    """The size (cells per side) of task ``task_id``'s maze."""
    return SIZES[task_id % len(SIZES)]


@lru_cache(maxsize=4096)
def maze_for_task(task_id: int) -> Maze:
    """Generate (once; cached) the maze of ``task_id``.

    Args:
        task_id: A non-negative integer task id.

    Returns:
        The task's maze: same id, same maze, in every process.
    """
    rng = random.Random(f"{_SEED_PREFIX}{task_id}")
    size = size_of_task(task_id)
    side = 2 * size + 1
    grid = [[WALL] * side for _ in range(side)]
    _carve(grid, size, rng)

    cells = [(2 * r + 1, 2 * c + 1) for r in range(size) for c in range(size)]
    start = cells[rng.randrange(len(cells))]
    # The goal is a random cell at least half as far from the start as the farthest
    # one: far apart, but not always the single most distant dead end.
    from_start = _distances(grid, start)
    farthest = max(from_start[cell] for cell in cells)
    candidates = [cell for cell in cells if 2 * from_start[cell] >= farthest and cell != start]
    goal = candidates[rng.randrange(len(candidates))]
    grid[goal[0]][goal[1]] = GOAL

    to_goal = _distances(grid, goal)
    open_moves: list[tuple[str, ...]] = []
    distance: list[int] = []
    expert_move: list[str] = []
    for row in range(side):
        for column in range(side):
            here = to_goal.get((row, column), -1)
            distance.append(here)
            if here < 0:
                open_moves.append(())
                expert_move.append("")
                continue
            moves = tuple(
                name for name, (dr, dc) in DIRECTIONS.items() if grid[row + dr][column + dc] != WALL
            )
            open_moves.append(moves)
            expert_move.append(
                next(
                    (
                        name
                        for name in moves
                        if to_goal[(row + DIRECTIONS[name][0], column + DIRECTIONS[name][1])]
                        == here - 1
                    ),
                    "",
                )
            )
    return Maze(
        task_id=task_id,
        size=size,
        height=side,
        width=side,
        start=start,
        goal=goal,
        base_map="\n".join("".join(line) for line in grid),
        open_moves=tuple(open_moves),
        distance=tuple(distance),
        expert_move=tuple(expert_move),
    )


def _carve(grid: list[list[str]], size: int, rng: random.Random) -> None:
    """Carve a perfect maze into ``grid`` by an iterative randomized depth-first search."""
    first = (rng.randrange(size), rng.randrange(size))
    visited = {first}
    stack = [first]
    grid[2 * first[0] + 1][2 * first[1] + 1] = FLOOR
    while stack:
        r, c = stack[-1]
        unvisited = [
            (r + dr, c + dc)
            for dr, dc in DIRECTIONS.values()
            if 0 <= r + dr < size and 0 <= c + dc < size and (r + dr, c + dc) not in visited
        ]
        if not unvisited:
            stack.pop()
            continue
        nr, nc = unvisited[rng.randrange(len(unvisited))]
        grid[r + nr + 1][c + nc + 1] = FLOOR  # the wall between (r, c) and (nr, nc)
        grid[2 * nr + 1][2 * nc + 1] = FLOOR
        visited.add((nr, nc))
        stack.append((nr, nc))


def _distances(grid: list[list[str]], source: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Breadth-first distances (in moves) from ``source`` to every open map position."""
    distances = {source: 0}
    queue = deque([source])
    while queue:
        row, column = queue.popleft()
        here = distances[(row, column)]
        for dr, dc in DIRECTIONS.values():
            nxt = (row + dr, column + dc)
            if nxt not in distances and grid[nxt[0]][nxt[1]] != WALL:
                distances[nxt] = here + 1
                queue.append(nxt)
    return distances
