"""``palaestra/SciWorld-v0``: ScienceWorld's elementary-science tasks in a simulated house."""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any, ClassVar

import numpy as np

from palaestra.envs.core import CHARSET, MAX_TEXT_LENGTH, Outcome, TaskId, TextEnv
from palaestra.envs.sciworld.pool import (
    Game,
    JvmPool,
    PoolSettings,
    default_capacity,
    default_pool,
    find_java,
    jar_path,
)
from palaestra.envs.sciworld.tasks import SPLITS, SciWorldTask, task_of
from palaestra.errors import EnvError

__all__ = ["INSTRUCTION", "MAX_STEPS", "SciWorldEnv", "fold_waiting", "gold_path"]

MAX_STEPS = 200
"""Above the longest expert episode measured (179 steps: boil, variation 26)."""

INSTRUCTION = (
    "You are an agent in ScienceWorld, a text simulation of a house and its "
    "surroundings (kitchen, bathroom, workshop, art studio, greenhouse, foundry, "
    "outside, ...) where you carry out elementary-school science tasks: change the "
    "state of matter of substances, measure temperatures, build electrical circuits, "
    "test conductivity, find and classify living things, grow plants, mix chemicals "
    "and paints, study life spans, life stages, inclined planes and genetics.\n"
    "The first observation states your task and describes the room you are in. "
    "Reply with exactly one command per turn, made from these templates, where OBJ "
    "and LOC name things or places you have seen:\n"
    "  look around | look at OBJ | look in OBJ | read OBJ | inventory | task\n"
    "  go to LOC | open OBJ | close OBJ | pick up OBJ | put down OBJ | move OBJ to OBJ\n"
    "  pour OBJ in OBJ | dunk OBJ in OBJ | mix OBJ | eat OBJ | flush OBJ\n"
    "  activate OBJ | deactivate OBJ | use OBJ on OBJ | connect OBJ to OBJ | disconnect OBJ\n"
    "  focus on OBJ (names the object your task is about; focusing on a wrong one "
    "fails the task)\n"
    "  wait (ten time steps) | wait1 (one time step) | reset task (start over)\n"
    "When a command could mean several things, the game lists numbered options: "
    "reply with the number of the one you mean."
)

_ALLOWED = frozenset(CHARSET)
_GOLD: dict[tuple[str, int], tuple[str, ...]] = {}
_GOLD_LOCK = threading.Lock()
_GOLD_CACHE_SIZE = 4096
_WAIT_TICKS = 10  # the time steps of ScienceWorld's `wait` (`wait1` is one)
# ScienceWorld's answer to a command that matches none of its templates
# ("look at unicorn", "", "xyzzy"); its own string (scienceworld.input.InputParser).
_NO_MATCH = "No known action matches that input."
# Its answer when the world says nothing (PythonInterface.step): to a reply that is
# not an option's number after an ambiguous command, but also to a few parsed
# commands that do nothing ("mix ground"), which are valid.
_SILENT = "Unknown action."
_AMBIGUOUS = "Ambiguous request: Please enter the number"
_OPTION = re.compile(r"^\d+:\t", re.MULTILINE)
_SLOT = "OBJ"


def gold_path(game: Game, task: str, variation: int) -> tuple[str, ...]:
    """ScienceWorld's gold action sequence of ``(task, variation)``, cached per process.

    Generated (0.3-15 s) on a scratch game of ``game``'s JVM, so ``game``'s own
    world is untouched, then folded by :func:`fold_waiting`.
    """
    key = (task, variation)
    with _GOLD_LOCK:
        cached = _GOLD.get(key)
    if cached is None:
        cached = fold_waiting(game.jvm.gold_path(task, variation))
        with _GOLD_LOCK:
            if len(_GOLD) >= _GOLD_CACHE_SIZE:
                _GOLD.pop(next(iter(_GOLD)))
            _GOLD[key] = cached
    return cached


def fold_waiting(commands: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Fold each run of 10+ identical ``look at ...`` commands into ``wait`` commands.

    The gold agent of the inclined-plane tasks watches a block slide by looking at
    the plane once per time step, up to ~750 times in a row. A look changes
    nothing and takes one time step, ``wait`` takes ten, so ``k`` looks become
    ``k // 10`` waits and ``k % 10`` looks: the same world, 3-8x fewer commands.
    """
    folded: list[str] = []
    start = 0
    while start < len(commands):
        end = start
        while end < len(commands) and commands[end] == commands[start]:
            end += 1
        run = end - start
        if run >= _WAIT_TICKS and commands[start].startswith("look at "):
            folded += ["wait"] * (run // _WAIT_TICKS) + [commands[start]] * (run % _WAIT_TICKS)
        else:
            folded += commands[start:end]
        start = end
    return tuple(folded)


class _PoolCapacity:
    """``SciWorldEnv.capacity``: the process-wide pool's game slots, read when asked.

    A descriptor rather than a constant: the pool's size comes from the
    ``PALAESTRA_SCIWORLD_*`` variables, which a server's process may set after
    this module was imported.
    """

    def __get__(self, obj: object, owner: type | None = None) -> int:
        return default_capacity()


class _PoolResources:
    """``SciWorldEnv.resources``: the memory of the process-wide pool's JVMs, read when asked.

    A descriptor for the same reason as :class:`_PoolCapacity`: the pool's size and
    heap come from variables a server's process may set after import.
    """

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, float]:
        return {"memory": float(PoolSettings.from_env().memory_budget)}


class SciWorldEnv(TextEnv):
    """ScienceWorld: elementary-school science experiments in an interactive text world.

    Each task is one variation of one of ScienceWorld's 30 task types (boil a
    substance, build a circuit, grow a plant, find the longest-lived animal,
    determine the friction of an inclined plane, ...) in a house of rooms with
    doors, containers, devices, substances, plants and animals. Variations
    change the target substance or object, the available items and where they are.
    The simulator runs on a JVM; envs share a bounded pool of JVMs (see below).

    ## Observation

    Printable ASCII text from ScienceWorld. The first is the task description
    ("Your task is to boil water. ...") and the "look around" description of
    the starting room; later ones are the simulator's answer to the command
    ("You move to the kitchen.", "No known action matches that input.", a
    numbered list for an ambiguous command, ...).

    ## Actions

    ScienceWorld's commands (templates in ``instruction``, e.g. ``open door to
    kitchen``, ``pick up thermometer``, ``focus on water``), one per step; runs of
    whitespace (newlines included) are collapsed to one space, and anything else
    goes to the simulator as typed. Unknown commands cost a step and change
    nothing. ``available_actions`` is not offered: ScienceWorld's list of valid
    action-object combinations takes 50-370 ms and holds 400-2,700 commands per
    step.

    ``info["invalid_action"]`` is True when ScienceWorld's parser rejects the
    command: "No known action matches that input." (no template matches, the
    empty command included), or "Unknown action." to anything but an option's
    number after "Ambiguous request: Please enter the number ...". Commands it
    parses but the world refuses ("The door is not open.") are valid, and so are
    an ambiguous one (it asks which is meant) and the few that it parses but
    answers with nothing, shown as "Unknown action." (``mix ground``).

    ``random_action`` draws uniformly from ScienceWorld's action templates filled
    in every way with the names of the objects in reach (``getPossibleActions`` x
    ``getPossibleObjects``, about 2 ms a call; most are two-object commands such
    as ``connect OBJ to OBJ``, and the parser accepted all of 200 drawn in five
    tasks), or an option's number while a question is pending. It does not use
    ScienceWorld's list of valid combinations, which takes 50-370 ms a call.

    ## Reward, score and success

    ScienceWorld scores 0-100 as the task's subgoals are met, and -100 when the
    task is failed (e.g. focusing on the wrong object). ``score`` is that score
    / 100, with failure as 0. The episode terminates when ScienceWorld marks the
    task completed (success: score 1.0) or failed (score 0.0). The reward of a
    step is the change of the score clamped at 0, / 100, so the rewards of an
    episode sum to its final score less the score it starts with (some tasks
    start with subgoals met; that part is no step's reward).

    ## Splits

    ScienceWorld's own variation splits, numbered by :mod:`~palaestra.envs.sciworld.tasks`:
    ``train`` (ids 0-3591, 3,592 variations), ``dev`` (3592-5387, 1,796) and
    ``test`` (5388-7206, 1,819); within a split, task by task in the paper's order,
    then by variation. ``task_of(id)`` gives the task name and variation.
    Determinism: ScienceWorld seeds its random generator with the variation index
    on every load, and the pool keeps each game's random stream and its JVM's
    hash order its own (see :mod:`~palaestra.envs.sciworld.pool`), so a world, and
    everything that moves in it, depends only on the task id and the commands, in
    any JVM and process. The reset ``seed`` only picks the training task when no
    ``task_id`` is given: mixing it into the simulator's randomness would break the
    gold paths, which are generated on the variation's own stream.

    ## Max steps

    200: the expert needed at most 179 steps (boil, variation 26) on the 395
    variations measured (all of boil, melt, freeze and change-the-state, and
    275 sampled from every task of train and test).

    ## Expert

    ScienceWorld's gold action sequence for the task, generated once per task
    and process on a scratch game (0.3-17 s), with runs of 10+ identical ``look
    at ...`` commands folded into ``wait`` (:func:`fold_waiting`: the
    inclined-plane gold agent watches a block slide one look per time step, up to
    ~750 looks). The expert replays it, skipping the gold commands the agent
    already took in order; commands off the path are ignored, which keeps it on
    track after invalid or harmless commands. After a deviation that changes the
    world (going elsewhere, picking things up) the rest of the path may no longer
    apply: the expert is guaranteed only from the start of an episode and along
    its own path. Once the path is used up it says ``look around``. Measured, it
    solved 299 of 300 episodes (180 test, 120 train; 275 distinct variations);
    known failures are the gold paths of grow-fruit variations 6 and 8 (train),
    78 and 87 (dev): 4 of its 126, where the bees pollinate differently from when
    the path was generated, and which reach a score of about 0.5.

    ## Snapshot/restore

    Not offered: ScienceWorld cannot save or load a state (its interface has no
    such call and its world is not serialisable), so forks replay the episode.

    ## The JVM pool

    All ``SciWorldEnv`` instances of a process share one
    :class:`~palaestra.envs.sciworld.pool.JvmPool` (or the ``pool`` given): at most
    ``PALAESTRA_SCIWORLD_JVMS`` JVMs (default 2), each hosting up to
    ``PALAESTRA_SCIWORLD_GAMES`` games (default 8) with a heap of at most
    ``PALAESTRA_SCIWORLD_HEAP`` (default ``512m``). An env holds one game slot from
    construction to ``close()`` (or garbage collection); with every slot taken a
    new env waits up to ``PALAESTRA_SCIWORLD_WAIT`` seconds (default 20), then
    raises :class:`~palaestra.envs.sciworld.pool.PoolExhaustedError`. ``capacity``
    (``JVMS x GAMES``, 16 by default) declares that bound, so a server answers a
    session beyond it with 429 at once and clients wait for a slot. A game's
    calls run one at a time on its JVM. If its JVM dies, calls raise
    :class:`~palaestra.envs.sciworld.pool.JvmDiedError` at once and ``reset()``
    moves the env to a fresh JVM.

    ## Source

    ScienceWorld (Wang, Jansen, Côté and Ammanabrolu, "ScienceWorld: Is your
    Agent Smarter than a 5th Grader?", EMNLP 2022), the ``scienceworld`` Python
    package and its bundled simulator jar, Apache-2.0, Allen Institute for AI.
    Needs a Java runtime (11+): ``apt-get install openjdk-17-jre-headless``.
    """

    instruction: ClassVar[str] = INSTRUCTION
    max_steps: ClassVar[int] = MAX_STEPS
    splits: ClassVar[dict[str, range]] = SPLITS
    capacity: ClassVar[int | None] = _PoolCapacity()  # type: ignore[assignment]
    # The JVMs' heaps and their non-heap budget (2 x (512 MiB + 192 MiB) by default).
    resources: ClassVar[dict[str, float]] = _PoolResources()  # type: ignore[assignment]

    def __init__(self, render_mode: str | None = None, pool: JvmPool | None = None) -> None:
        """Take a game slot from ``pool`` (default: the process-wide pool).

        Raises:
            EnvUnavailableError: No Java or no ``scienceworld`` package here.
            PoolExhaustedError: Every slot stayed taken for the pool's wait.
        """
        super().__init__(render_mode=render_mode)
        self._pool = pool if pool is not None else default_pool()
        self._game: Game | None = None
        self._release: weakref.finalize | None = None
        self._task: SciWorldTask | None = None
        self._points = 0  # ScienceWorld's latest score, -100..100
        self._commands: list[str] = []  # this episode's commands, for the expert
        self._choices = 0  # options of a pending "Ambiguous request" question
        self._acquire()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why ScienceWorld cannot run here: no ``scienceworld`` package, or no Java."""
        if jar_path() is None:
            return "the scienceworld package (with its jar) is missing: pip install scienceworld"
        if find_java() is None:
            return (
                "no `java` executable on PATH or in $JAVA_HOME (ScienceWorld runs on a JVM); "
                "install a Java 11+ runtime, e.g. `apt-get install openjdk-17-jre-headless`"
            )
        return None

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Load the task's variation, then describe the task and the first room."""
        task = task_of(int(task_id))
        if self._game is None or not self._game.alive:
            self._drop()  # closed, or its JVM died: move to a live one
            self._acquire()
        game = self._require_game()
        self._task = None
        description, look, points = game.run(lambda sw: _load(sw, task.name, task.variation))
        self._task = task
        # Some tasks start with subgoals met (e.g. the agent stands in the right room):
        # that score is the episode's start, not a reward for whatever comes first
        # (an invalid first action used to earn it).
        self._points = points
        self._commands = []
        self._choices = 0
        return _clean(f"{description}\n\n{look}")

    def act(self, action: str) -> Outcome:
        """Send the command to ScienceWorld; score it."""
        game = self._require_game()
        command = " ".join(action.split())
        observation, points, completed = game.run(lambda sw: _step(sw, command))
        self._commands.append(command)
        answer = observation.lstrip()
        invalid = answer.startswith(_NO_MATCH) or (self._choices > 0 and answer.startswith(_SILENT))
        self._choices = _choices(observation)
        reward = (max(points, 0) - max(self._points, 0)) / 100
        self._points = points
        failed = points < 0
        return Outcome(
            _clean(observation),
            reward=reward,
            done=completed or failed,
            success=completed and not failed and points >= 100,
            score=max(points, 0) / 100,
            invalid=invalid,
        )

    def close(self) -> None:
        """Give the game slot back to the pool (a later ``reset`` takes a new one)."""
        self._drop()
        super().close()

    # -- capabilities ----------------------------------------------------------------

    def random_action(self, rng: np.random.Generator) -> str:
        """A uniformly random valid command, drawn with ``rng`` (see the class docstring).

        While ScienceWorld waits for the number of an option (after an ambiguous
        command), one of the option numbers; otherwise uniform over ScienceWorld's
        action templates filled in every way with the object names in reach
        (``getPossibleActions`` x ``getPossibleObjects``, about 2 ms; its parser
        accepted each of 200 drawn in five tasks). Not ScienceWorld's
        ``getValidActionObjectCombinations``: it takes 50-370 ms a call.

        Raises:
            EnvError: ``reset`` was never called, or ScienceWorld lists no action.
        """
        if self._task is None:
            raise EnvError("call reset() before random_action()")
        if self._choices:
            return str(int(rng.integers(self._choices)))
        templates, objects = self._require_game().run(_templates_and_objects)
        total = sum(len(objects) ** template.count(_SLOT) for template in templates)
        if total == 0:
            raise EnvError("ScienceWorld lists no action now")
        return _nth_command(templates, objects, int(rng.integers(total)))

    def expert_action(self) -> str:
        """The next command of the task's gold path (see the class docstring)."""
        if self._task is None:
            raise EnvError("call reset() before expert_action()")
        gold = gold_path(self._require_game(), self._task.name, self._task.variation)
        position = 0
        for command in self._commands:
            if position < len(gold) and command == gold[position]:
                position += 1
        return gold[position] if position < len(gold) else "look around"

    # -- helpers -------------------------------------------------------------------

    @property
    def game(self) -> Game | None:
        """The game slot this env holds (``None`` once closed)."""
        return self._game

    @property
    def task(self) -> SciWorldTask | None:
        """The current task's name, variation and split (``None`` before a reset)."""
        return self._task

    def _acquire(self) -> None:
        game = self._pool.acquire()
        self._game = game
        # Gives the slot back when the env is closed or garbage-collected.
        self._release = weakref.finalize(self, self._pool.release, game)

    def _drop(self) -> None:
        if self._release is not None:
            self._release()
        self._release = None
        self._game = None

    def _require_game(self) -> Game:
        if self._game is None:
            raise EnvError("this SciWorldEnv is closed; reset() takes a new game slot")
        return self._game


def _load(sw: Any, task: str, variation: int) -> tuple[str, str, int]:
    error = sw.load(task, variation, "", False)
    if error:
        raise EnvError(f"ScienceWorld could not load {task!r} variation {variation}: {error}")
    # As ScienceWorld's own reset(): the first look around is a step of the game.
    look = str(sw.step("look around"))
    return str(sw.getTaskDescription()), look, round(100 * float(sw.getScore()))


def _templates_and_objects(sw: Any) -> tuple[list[str], list[str]]:
    """ScienceWorld's action templates and the object names in reach, both sorted."""
    templates = sorted({str(template) for template in sw.getPossibleActions()})
    objects = sorted({str(name) for name in sw.getPossibleObjects()})
    return templates, objects


def _nth_command(templates: list[str], objects: list[str], index: int) -> str:
    """Command ``index`` of ``templates`` filled in every way with ``objects``.

    Numbered template by template; within a template, ``index`` is a number in
    base ``len(objects)`` with one digit per slot.
    """
    for template in templates:
        parts = template.split(_SLOT)
        size = len(objects) ** (len(parts) - 1)
        if index >= size:
            index -= size
            continue
        command = parts[0]
        for k, part in enumerate(parts[1:]):
            place = len(objects) ** (len(parts) - 2 - k)
            command += objects[(index // place) % len(objects)] + part
        return command
    raise IndexError(f"no command {index} among the filled templates")


def _choices(observation: str) -> int:
    """The number of options ScienceWorld waits for one of (0 when it waits for none)."""
    if not observation.lstrip().startswith(_AMBIGUOUS):
        return 0
    return len(_OPTION.findall(observation))


def _step(sw: Any, command: str) -> tuple[str, int, bool]:
    observation = str(sw.step(command))
    return observation, round(100 * float(sw.getScore())), bool(sw.getCompleted())


def _clean(text: str) -> str:
    """``text`` inside the observation space: known characters only, bounded length."""
    if not _ALLOWED.issuperset(text):
        text = "".join(ch if ch in _ALLOWED else "?" for ch in text)
    return text[:MAX_TEXT_LENGTH]
