"""``palaestra/BabyAI-v0``: minigrid's BabyAI levels, seen and played in words."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from minigrid.core.actions import Actions
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.roomgrid_level import RoomGridLevel

from palaestra.envs.babyai.expert import Expert
from palaestra.envs.babyai.levels import LEVELS, level_of_task, make_level, reset_to_task
from palaestra.envs.babyai.render import View, describe
from palaestra.envs.core import Outcome, TaskId, TextEnv, echo_action

__all__ = ["MAX_STEPS", "PRIMITIVES", "TEST_TASKS", "TRAIN_TASKS", "BabyAIEnv"]

TRAIN_TASKS = range(0, 100 * len(LEVELS))
"""6000 ids: each level 100 times (``t % 60`` picks the level, ``t`` the seed)."""
TEST_TASKS = range(100 * len(LEVELS), 110 * len(LEVELS))
"""600 ids: each level 10 times, on seeds no train task uses."""

MAX_STEPS = 512
"""Actions per episode: above the bot's longest solution of any task (411 moves)."""

PRIMITIVES: dict[str, Actions] = {
    "turn left": Actions.left,
    "turn right": Actions.right,
    "move forward": Actions.forward,
    "pick up": Actions.pickup,
    "drop": Actions.drop,
    "toggle": Actions.toggle,
}
"""The primitive actions by name, in minigrid's order (its no-op ``done`` left out)."""

_NAMES = {action: name for name, action in PRIMITIVES.items()}
_PARSE: dict[str, Actions] = {
    **PRIMITIVES,
    "left": Actions.left,
    "right": Actions.right,
    "forward": Actions.forward,
    "move forwards": Actions.forward,
    "go forward": Actions.forward,
    "pickup": Actions.pickup,
    "pick it up": Actions.pickup,
}
_ARTICLES = ("the ", "a ", "an ")
_HELP = (
    "Reply with exactly one of: "
    + ", ".join(PRIMITIVES)
    + ", or go to <colour> <object> for an object you see (e.g. go to red ball)."
)
# minigrid's agent_dir -> (dx, dy) of a step forward.
_FORWARD = ((1, 0), (0, 1), (-1, 0), (0, -1))


class BabyAIEnv(TextEnv):
    """Follow a BabyAI mission in a grid world of rooms, seeing a 7x7 view in words.

    The worlds are minigrid's own BabyAI levels (60 of its ``BabyAI-*`` ids, see
    :data:`~palaestra.envs.babyai.levels.LEVELS`), from one room with a red ball
    to the 3x3-room ``BossLevel`` with locked doors and composite missions ("open
    a red door and put the green key next to the grey box, then ..."). Each task
    id is one fixed episode: a level and a minigrid seed.

    ## Observation

    Printable ASCII text derived only from what minigrid gives the agent: its
    egocentric ``image`` (the 7x7 cells ahead, 3 to each side, with the cells
    behind walls and closed doors hidden, as minigrid computes them; the agent's
    own cell shows what it carries), ``direction`` and ``mission``. In words: the
    mission; the compass heading and the carried object; what is in the cell in
    front; every visible object, nearest first, with its colour, a door's state
    (open, closed, locked) and where it is ("a red ball 2 steps forward and 1
    step to the left"); the nearest wall seen straight ahead, to the left and to
    the right. From the second observation on, a first line says what the last
    action did ("You moved forward.", "You cannot move forward: a wall blocks the
    way.", "You unlocked and opened the red door with your red key.", ...).

    ## Actions

    minigrid's primitives by name: ``turn left``, ``turn right``, ``move
    forward``, ``pick up``, ``drop``, ``toggle`` (minigrid's ``done``, a no-op in
    BabyAI, is not offered). And ``go to <colour> <object>`` (``go to red ball``,
    ``go to grey door``, ...) for an object in the current view: it walks a
    shortest path (breadth-first search over turns and steps on the level's
    grid, through empty floor and open doors, the parts out of view included) and
    stops facing the nearest such object. That is one action of this env but as
    many primitive steps of minigrid as the walk takes, and minigrid's step
    counter, reward and time limit count each of them; ``info["primitive_steps"]``
    says how many (0 when the world did not change). Case and extra spaces are
    ignored, as are "the"/"a" before a target; ``forward``, ``left``, ``right``
    and ``pickup`` are accepted too. An unknown action, or a ``go to`` whose
    target is not in view or cannot be reached, changes nothing and costs one
    action. ``info["invalid_action"]`` is True for an unknown action (the empty
    one included) and for a ``go to`` of nothing in view; a ``go to`` of an
    object in view that cannot be reached, like a move into a wall, is a valid
    action that was blocked. ``info["available_actions"]`` lists the six
    primitives and one ``go to`` per kind of object in view (``random_action``
    draws one of them); ``info["level"]`` and ``info["seed"]`` name the minigrid
    episode on every step.

    ## Reward, score and success

    minigrid's reward: ``1 - 0.9 * primitive steps / the level's time limit`` on
    the step that completes the mission, 0 on every other step. It is already in
    [0, 1], and it is the score. Success means the mission was completed. (The
    ``Debug`` levels, whose missions can also fail, are not among the levels.)

    ## Splits

    Task ``t`` plays level ``LEVELS[t % 60]`` with minigrid seed ``t``: the
    episode ``gymnasium.make(f"BabyAI-{level}-v0").reset(seed=t)`` of the
    installed minigrid. ``train``: ids 0-5999 (each level 100 times); ``test``:
    6000-6599 (each level 10 times). Exception: on about one seed in fifteen,
    minigrid's ``GoToImpUnlock`` and ``Unlock`` lock the only key in with the
    target; such tasks use seed ``t + 10000`` (or ``t + 20000``, ...) instead
    (:func:`~palaestra.envs.babyai.levels.reset_to_task`).

    ## Max steps

    512 actions, above the bot's longest solution of any task (411 moves, a
    ``BossLevel``). Each level also has minigrid's own time limit, in primitive
    steps: from 16 (``GoToObjS4``) to 2880 (the longest ``BossLevel`` missions).
    When it runs out first the episode ends there, reported as ``truncated``
    (as minigrid reports it), with success False, score 0, and an observation
    that says the time is up. ``truncated`` also ends the episode when this
    env's 512 actions are used up.

    ## Expert and snapshots

    ``expert_action`` is minigrid's ``BabyAIBot`` in advising mode (see
    :mod:`palaestra.envs.babyai.expert`); it solves all 6600 tasks within
    ``max_steps``. ``snapshot``/``restore`` deep-copy the minigrid world with the
    bot (about 0.5 ms for one room, 3 ms for nine).

    ## Source and licence

    minigrid (Farama Foundation, Apache-2.0), whose BabyAI levels, mission
    language, verifier and bot come from BabyAI (Chevalier-Boisvert et al.,
    "BabyAI: A Platform to Study the Sample Efficiency of Grounded Language
    Learning", ICLR 2019). The text rendering and the ``go to`` action are
    palaestra's. Nothing is downloaded.
    """

    instruction: ClassVar[str] = (
        "You are an agent in BabyAI, a grid world of square cells: one or more rooms "
        "with walls between them and doors in the walls. Objects are balls, boxes and "
        "keys; objects and doors come in six colours (red, green, blue, purple, yellow, "
        "grey). Each episode gives you a mission, such as 'go to the red ball', 'open "
        "the yellow door', 'pick up a blue key', 'put the green box next to the grey "
        "ball', or several of these joined by 'and', 'then' or 'after you'. In a "
        "mission, 'in front of you', 'behind you' and 'on your left/right' refer to "
        "where you stood at the start.\n"
        "You see only a 7x7 square of cells ahead of you (6 cells forward, 3 to each "
        "side), and not through walls or closed doors. Each observation gives the "
        "mission, the direction you face, what you carry, what is in the cell right in "
        "front of you, and each object you see with its position from you, e.g. 'a "
        "red ball 2 steps forward and 1 step to the left', plus the nearest walls "
        "straight ahead, to your left and to your right.\n"
        "Actions:\n"
        "- turn left / turn right: turn 90 degrees where you stand.\n"
        "- move forward: step into the cell in front of you (empty floor or an open "
        "door).\n"
        "- pick up: pick up the ball, box or key in front of you (you carry at most "
        "one thing).\n"
        "- drop: put what you carry on the empty cell in front of you.\n"
        "- toggle: open or close the door in front of you (a locked door opens only "
        "while you carry a key of its colour), or open the box in front of you (the "
        "box disappears and what it held, if anything, takes its place).\n"
        "- go to <colour> <object>, e.g. 'go to red ball' or 'go to grey door': walk "
        "the shortest path to an object you see now and stop facing it. It counts as "
        "one action but takes as many moves as the walk needs.\n"
        "A mission is done the moment its condition holds: 'go to' when you face the "
        "object, 'open' when you open the door, 'pick up' when you pick the object up, "
        "'put X next to Y' when you drop X on a cell beside Y. Each level has a limit "
        "on moves, and fewer moves give a higher score.\n"
        "Reply with exactly one action, e.g. 'move forward'."
    )
    max_steps: ClassVar[int] = MAX_STEPS
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}
    # Not fast_calls: steps take ~0.1 ms, but a reset generates a level (0.1-17 ms of
    # CPU), which on a server's event loop would hold up every other session.

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._world: RoomGridLevel | None = None
        self._level = ""
        self._seed = 0
        self._view = View("", {})
        self._actions: list[str] = []
        self._expert = Expert()

    @property
    def world(self) -> RoomGridLevel:
        """The unwrapped minigrid env of the current episode."""
        if self._world is None:
            raise RuntimeError("call reset() first")
        return self._world

    @property
    def level(self) -> str:
        """The current task's level, e.g. ``"GoToRedBall"`` ("" before the first reset)."""
        return self._level

    @property
    def minigrid_seed(self) -> int:
        """The seed the current task's level was generated with (see ``reset_to_task``)."""
        return self._seed

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Generate task ``task_id``'s level with its seed and describe the first view."""
        level = level_of_task(int(task_id))
        world = self._world
        if world is None or level != self._level:
            # Only the current level's world is kept: building one costs ~0.1 ms (a
            # reset several times that), while a world kept per level visited held
            # ~9,000 objects per session that every full garbage collection walks.
            world = make_level(level)
        observation, self._seed = reset_to_task(world, int(task_id))
        self._world, self._level = world, level
        self._expert = Expert()
        self._show(observation)
        return self._view.text

    def act(self, action: str) -> Outcome:
        """Apply one primitive action or one ``go to``; describe what it did and the view."""
        command = " ".join(action.lower().split())
        primitive = _PARSE.get(command)
        if primitive is not None:
            return self._primitive(primitive)
        if command.startswith("go to "):
            return self._go_to(_strip_article(command[6:]))
        return self._unchanged(f"Invalid action '{echo_action(action)}'. {_HELP}", invalid=True)

    # -- capabilities ----------------------------------------------------------------

    def available_actions(self) -> list[str]:
        """The six primitives, then ``go to <colour> <object>`` per kind of object in view."""
        return self._actions

    def expert_action(self) -> str:
        """The BabyAI bot's next primitive action, by name."""
        return _NAMES[self._expert.action(self.world)]

    def get_state(self) -> dict[str, Any]:
        """The minigrid world, the expert (it refers to the world) and the current view."""
        return {
            "level": self._level,
            "seed": self._seed,
            "world": self.world,
            "expert": self._expert,
            "view": self._view,
            "actions": self._actions,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a state from :meth:`get_state` (a private copy: it is used as is)."""
        self._level = state["level"]
        self._seed = state["seed"]
        self._world = state["world"]
        self._expert = state["expert"]
        self._view = state["view"]
        self._actions = state["actions"]

    # -- helpers -------------------------------------------------------------------

    def _show(self, observation: dict[str, Any]) -> None:
        self._view = describe(observation["image"], observation["direction"], self.world.mission)
        self._actions = [*PRIMITIVES, *(f"go to {target}" for target in self._view.targets)]

    def _unchanged(self, feedback: str, *, invalid: bool = False) -> Outcome:
        """Nothing happened in the world: the same view, no minigrid step."""
        info = {"level": self._level, "seed": self._seed, "primitive_steps": 0}
        return Outcome(f"{feedback}\n{self._view.text}", info=info, invalid=invalid)

    def _primitive(self, action: Actions) -> Outcome:
        world = self.world
        x, y = _front(world)
        ahead = world.grid.get(x, y)
        carrying = world.carrying
        door = (
            (ahead.is_open, ahead.is_locked) if ahead is not None and ahead.type == "door" else None
        )
        held = ahead.contains if ahead is not None and ahead.type == "box" else None
        observation, reward, terminated, truncated, _ = world.step(action)
        self._expert.record(action)
        feedback = _feedback(action, ahead, carrying, door, held, world.grid.get(x, y))
        return self._after(feedback, observation, float(reward), terminated, truncated, 1)

    def _go_to(self, target: str) -> Outcome:
        offsets = self._view.targets.get(target)
        if not offsets:
            seen = ", ".join(self._view.targets) or "nothing you can go to"
            return self._unchanged(
                f"You see no {echo_action(target)} to go to; you see: {seen}. "
                "You can only go to an object in your current view.",
                invalid=True,
            )
        world = self.world
        ax, ay = (int(v) for v in world.agent_pos)
        direction = int(world.agent_dir)
        dx, dy = _FORWARD[direction]
        # Forward is (dx, dy) and right is (-dy, dx) in grid coordinates.
        goals = {(ax + f * dx - r * dy, ay + f * dy + r * dx) for f, r in offsets}
        plan = _plan(world.grid, ax, ay, direction, goals)
        if plan is None:
            return self._unchanged(
                f"You cannot reach the {target}: walls, closed doors or objects are in the way."
            )
        if not plan:
            return self._unchanged(f"You are already facing the {target}.")
        total = 0.0
        taken = 0
        for action in plan:
            observation, reward, terminated, truncated, _ = world.step(action)
            self._expert.record(action)
            total += float(reward)
            taken += 1
            if terminated or truncated:
                break
        moves = f"{taken} move" if taken == 1 else f"{taken} moves"
        if taken == len(plan):
            feedback = f"You went to the {target} and now face it ({moves})."
        else:
            feedback = f"You stopped on the way to the {target} after {moves}."
        return self._after(feedback, observation, total, terminated, truncated, taken)

    def _after(
        self,
        feedback: str,
        observation: dict[str, Any],
        reward: float,
        terminated: bool,
        truncated: bool,
        steps: int,
    ) -> Outcome:
        self._show(observation)
        info = {"level": self._level, "seed": self._seed, "primitive_steps": steps}
        if terminated:
            success = reward > 0
            if success:
                feedback += f" Mission complete! Reward {reward:.3f}."
            else:
                feedback += " You failed the mission."
            return Outcome(
                f"{feedback}\n{self._view.text}",
                reward,
                done=True,
                success=success,
                score=reward if success else 0.0,
                info=info,
            )
        if truncated:
            feedback += (
                f" Time is up: this level allows {self.world.max_steps} moves. The mission failed."
            )
            return Outcome(
                f"{feedback}\n{self._view.text}", 0.0, score=0.0, info=info, truncated=True
            )
        return Outcome(f"{feedback}\n{self._view.text}", reward, info=info)


def _strip_article(target: str) -> str:
    for article in _ARTICLES:
        if target.startswith(article):
            return target[len(article) :]
    return target


def _front(world: RoomGridLevel) -> tuple[int, int]:
    dx, dy = _FORWARD[world.agent_dir]
    return int(world.agent_pos[0]) + dx, int(world.agent_pos[1]) + dy


def _name(obj: WorldObj) -> str:
    return f"{obj.color} {obj.type}" if obj.type != "wall" else "wall"


def _a(obj: WorldObj) -> str:
    if obj.type == "door":
        state = "open" if obj.is_open else "locked" if obj.is_locked else "closed"
        return f"{'an' if state == 'open' else 'a'} {state} {obj.color} door"
    return f"a {_name(obj)}"


def _feedback(
    action: Actions,
    ahead: WorldObj | None,
    carrying: WorldObj | None,
    door: tuple[bool, bool] | None,
    held: WorldObj | None,
    now_ahead: WorldObj | None,
) -> str:
    """What a primitive action did, from the cell ahead and the load before and after it."""
    if action == Actions.left:
        return "You turned left."
    if action == Actions.right:
        return "You turned right."
    if action == Actions.forward:
        if ahead is None or ahead.can_overlap():
            return "You moved forward."
        return f"You cannot move forward: {_a(ahead)} blocks the way."
    if action == Actions.pickup:
        if ahead is None:
            return "There is nothing in front of you to pick up."
        if not ahead.can_pickup():
            return f"You cannot pick up {_a(ahead)}."
        if carrying is not None:
            return (
                f"You cannot pick up the {_name(ahead)}: you already carry "
                f"{_a(carrying)}. Drop it first."
            )
        return f"You picked up the {_name(ahead)}."
    if action == Actions.drop:
        if carrying is None:
            return "You carry nothing to drop."
        if ahead is not None:
            return f"You cannot drop the {_name(carrying)}: {_a(ahead)} is in front of you."
        return f"You dropped the {_name(carrying)} in front of you."
    # toggle
    if ahead is None:
        return "There is nothing in front of you to toggle."
    if door is not None:
        was_open, was_locked = door
        if was_locked:
            if ahead.is_open:
                return (
                    f"You unlocked and opened the {ahead.color} door with your {ahead.color} key."
                )
            return f"The {ahead.color} door is locked: you need to carry a {ahead.color} key."
        return f"You {'closed' if was_open else 'opened'} the {ahead.color} door."
    if ahead.type == "box":
        if now_ahead is None:
            return f"You opened the {ahead.color} box: it was empty."
        inside = _a(held or now_ahead)
        return f"You opened the {ahead.color} box: it held {inside}, now in front of you."
    return f"Toggling {_a(ahead)} does nothing."


def _plan(
    grid: Grid, x: int, y: int, direction: int, goals: set[tuple[int, int]]
) -> list[Actions] | None:
    """A shortest list of turns and steps after which the agent faces a cell of ``goals``.

    Breadth-first search over (x, y, direction); the agent may pass empty cells
    and open doors. ``[]`` when it already faces a goal, ``None`` when none is
    reachable.
    """
    width, height, cells = grid.width, grid.height, grid.grid

    def faces_goal(cx: int, cy: int, d: int) -> bool:
        return (cx + _FORWARD[d][0], cy + _FORWARD[d][1]) in goals

    if faces_goal(x, y, direction):
        return []
    start = (x, y, direction)
    parent: dict[tuple[int, int, int], tuple[tuple[int, int, int], Actions]] = {}
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        cx, cy, d = state
        fx, fy = cx + _FORWARD[d][0], cy + _FORWARD[d][1]
        moves = [((cx, cy, (d - 1) % 4), Actions.left), ((cx, cy, (d + 1) % 4), Actions.right)]
        if 0 <= fx < width and 0 <= fy < height:
            cell = cells[fy * width + fx]
            if cell is None or (cell.type == "door" and cell.is_open):
                moves.insert(0, ((fx, fy, d), Actions.forward))
        for nxt, action in moves:
            if nxt in seen:
                continue
            seen.add(nxt)
            parent[nxt] = (state, action)
            if faces_goal(*nxt):
                plan = [action]
                while state != start:
                    state, action = parent[state]
                    plan.append(action)
                return plan[::-1]
            queue.append(nxt)
    return None
