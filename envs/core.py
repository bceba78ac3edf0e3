"""The text-environment protocol: ``TextEnv`` and the ``Outcome`` of one action.

A palaestra env is a ``gymnasium.Env[str, str]``. Subclasses write two small
methods, :meth:`TextEnv.start` and :meth:`TextEnv.act`; the base class does the
rest: spaces, seeding, task choice, step counting, truncation at ``max_steps``,
the ``info`` contract (``task_id`` always; ``invalid_action`` on every step;
``success`` and ``score`` on the last step), and the optional capabilities
(``snapshot``/``restore``, ``expert_action``, ``available_actions``,
``random_action``).
"""

from __future__ import annotations

import copy
import numbers
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from palaestra.errors import (
    EnvError,
    EnvUnavailableError,
    EpisodeOverError,
    NotSupportedError,
    UnknownTaskError,
)

__all__ = ["CHARSET", "EnvSnapshot", "Outcome", "TaskId", "TextEnv", "echo_action"]

TaskId = int | str
"""A task id: an ``int`` or a ``str``, stable across versions of one env id."""

# gymnasium's Text space checks every character against a charset; ours is all
# printable ASCII plus tab/newline and the few box characters envs may draw.
CHARSET: str = string.printable + "·█░"

MAX_TEXT_LENGTH = 1 << 16
_TEXT_SPACE = spaces.Text(max_length=MAX_TEXT_LENGTH, charset=CHARSET)

_ECHO_CHARS = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def echo_action(action: str, limit: int = 40) -> str:
    """``action`` made safe to quote in an observation: one line, printable, short.

    Envs quote invalid actions back ("Invalid action '...'"); an LLM's reply may hold
    newlines, unicode or a whole essay, none of which belongs in the next observation.
    """
    text = action.strip()
    shown = "".join(ch if ch in _ECHO_CHARS else "?" for ch in text[:limit])
    return shown + "..." if len(text) > limit else shown


@dataclass
class Outcome:
    """What one action did, as returned by :meth:`TextEnv.act`.

    Attributes:
        observation: The text the agent sees next.
        reward: The reward of this step (the env's own scale; ``score`` is the 0..1 one).
        done: True when the task ended (won or lost): gymnasium's ``terminated``.
        success: Whether the task was accomplished (read when the episode ends).
        score: Progress in [0, 1] (read when the episode ends); defaults to
            ``1.0`` on success and ``0.0`` otherwise. Anything else (7.5, -1, NaN,
            ``"0.5"``, a bool) makes :meth:`TextEnv.step` raise
            :class:`~palaestra.errors.EnvError`: it is never clamped nor coerced.
        info: Extra JSON-serialisable entries for this step's ``info``.
        truncated: True when a time limit of the underlying world ended the episode
            (gymnasium's ``truncated``; e.g. minigrid's own step limit). The base
            class truncates at ``max_steps`` by itself.
        invalid: True when the env rejected the action as not an action of this
            world (unknown verb, malformed, not a word, an object that is not
            there, ...): it had no effect on the world. An action the world
            understood but that failed (walking into a wall, opening a locked
            door) is valid. Reported as ``info["invalid_action"]``.
    """

    observation: str
    reward: float = 0.0
    done: bool = False
    success: bool = False
    score: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    invalid: bool = False


@dataclass(frozen=True)
class EnvSnapshot:
    """An opaque copy of an env's state, made by :meth:`TextEnv.snapshot`."""

    env_id: str | None
    task_id: TaskId
    steps: int
    over: bool
    success: bool
    score: float
    observation: str
    rng: Any
    state: Any


class TextEnv(gymnasium.Env[str, str]):
    """Base class of every palaestra environment: text observations, text actions.

    Subclasses set the class attributes ``instruction``, ``max_steps`` and
    ``splits`` and implement :meth:`start` and :meth:`act`. Optional, declared by
    overriding: :meth:`get_state`/:meth:`set_state` (enables
    :meth:`snapshot`/:meth:`restore`), :meth:`expert_action`,
    :meth:`available_actions` and :meth:`random_action` (which overriding
    :meth:`available_actions` provides too).

    The ``info`` dict, JSON-serialisable, holds:

    - ``task_id`` and ``step`` (steps taken so far), always;
    - ``invalid_action`` (bool), on every ``step`` (not on ``reset``): whether
      the env rejected the action as not an action of this world (see
      :attr:`Outcome.invalid`);
    - ``success`` (bool) and ``score`` (float in [0, 1]) once the episode ended;
    - ``available_actions`` (list of str) while it goes on, where the env lists them;
    - the env's own entries (:attr:`Outcome.info`).

    Attributes:
        instruction: The task-independent system prompt: what the world is, which
            actions exist, and their format.
        max_steps: Steps after which the episode is truncated.
        splits: Task ids per split; at least ``"train"`` and ``"test"``. Ranges are
            fine (membership is O(1)).
        task_id: The current task (``None`` before the first reset).
        fast_calls: True when every reset and step is pure computation that ends in
            well under a millisecond (no I/O, no subprocess): a server then runs
            them on its event loop instead of its thread pool, saving a thread hop
            per call. Such calls cannot be interrupted by the server's per-call
            timeout; a call over 50 ms makes the server fall back to the pool for
            this env (and log it).
        capacity: The most instances of this env one process can hold at once
            (e.g. ScienceWorld's pool of game slots), or None for no limit. A
            server answers a session beyond it with 429 and a ``Retry-After`` at
            once, advertises it in ``GET /v1/envs``, and the rollout engine keeps
            at most this many episodes of the env open per server.
        tools: Function definitions in the OpenAI chat API's shape, for envs whose
            actions are tool calls (see :mod:`palaestra.envs.tools`); empty for
            text envs.
        resources: What one server process needs to host this env, beyond a plain
            Python process, in Ray's resource names: ``"num_cpus"`` (CPUs) and
            ``"memory"`` (bytes), e.g. ScienceWorld's JVM pool or WebShop's
            search index. ``palaestra serve --ray`` reserves them for each replica
            (:mod:`palaestra.scale`); empty: nothing beyond the default.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    instruction: ClassVar[str] = ""
    max_steps: ClassVar[int] = 50
    fast_calls: ClassVar[bool] = False
    capacity: ClassVar[int | None] = None
    splits: ClassVar[Mapping[str, Sequence[TaskId]]] = {}
    tools: ClassVar[Sequence[Mapping[str, Any]]] = ()
    resources: ClassVar[Mapping[str, float]] = {}

    def __init__(self, render_mode: str | None = None) -> None:
        reason = type(self).unavailable_reason()
        if reason is not None:
            raise EnvUnavailableError(f"{type(self).__name__} is unavailable: {reason}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', not {render_mode!r}")
        self.render_mode = render_mode
        # Shallow copies of one pristine space: building a Text space indexes its
        # charset (~85 us and ~10 KB each); the copies share that read-only index
        # and still get their own random generator when first seeded or sampled.
        self.observation_space = copy.copy(_TEXT_SPACE)
        self.action_space = copy.copy(_TEXT_SPACE)
        self.task_id: TaskId | None = None
        self._steps = 0
        self._over = False
        self._success = False
        self._score = 0.0
        self._last_observation = ""

    # -- what a subclass writes ---------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Set up ``task_id`` and return the first observation.

        Use ``self.np_random`` for any randomness beyond the task itself, so that
        ``seed`` reproduces it.
        """
        raise NotImplementedError

    def act(self, action: str) -> Outcome:
        """Apply one action (any string: an invalid one gets a helpful observation).

        Return ``Outcome(..., invalid=True)`` for an action the world rejects as not
        one of its actions (it must then leave the world unchanged).
        """
        raise NotImplementedError

    def available_actions(self) -> list[str] | None:
        """The actions valid now, where the env can list them; ``None`` otherwise."""
        return None

    def expert_action(self) -> str:
        """The next action of the env's scripted solver.

        Raises:
            NotSupportedError: The env has no expert.
        """
        raise NotSupportedError(f"{type(self).__name__} has no expert")

    def random_action(self, rng: np.random.Generator) -> str:
        """A uniformly random valid action in the current state, drawn with ``rng`` only.

        Never draws from ``self.np_random`` (the env's own randomness does not
        move), nor changes the env: the same state and the same ``rng`` state give
        the same action. The default picks one of :meth:`available_actions`;
        envs that cannot list their actions may override this instead.

        Args:
            rng: The generator to draw from, e.g. ``numpy.random.default_rng(seed)``.

        Raises:
            NotSupportedError: The env cannot list its actions now.
            EpisodeOverError: ``reset`` was never called.
        """
        if self.task_id is None:
            raise EpisodeOverError("call reset() before random_action()")
        actions = self.available_actions()
        if actions is None:
            raise NotSupportedError(f"{type(self).__name__} cannot draw a random action")
        if not actions:
            raise NotSupportedError(f"{type(self).__name__} lists no valid action now")
        return str(actions[int(rng.integers(len(actions)))])

    def get_state(self) -> Any:
        """Return the env's own mutable state (override together with :meth:`set_state`).

        The base class deep-copies what this returns, so returning live objects is fine.
        """
        raise NotSupportedError(f"{type(self).__name__} does not support snapshot/restore")

    def set_state(self, state: Any) -> None:
        """Load a state returned by :meth:`get_state` (a private copy: keep it)."""
        raise NotSupportedError(f"{type(self).__name__} does not support snapshot/restore")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this env cannot run here (missing data or software), or ``None`` if it can.

        Override for envs that need something not every machine has; the message
        should say how to get it. Constructing an unavailable env raises
        :class:`~palaestra.errors.EnvUnavailableError` with it, and ``palaestra envs``
        shows it.
        """
        return None

    @classmethod
    def prepare(cls, split: str, limit: int | None = None, *, workers: int | None = None) -> int:
        """Build ahead of time whatever the tasks of ``split`` need (generated games, caches).

        Envs whose tasks are made on the fly need nothing; envs that generate data on
        first use (TextWorld) override this. ``palaestra prepare ENV_ID`` calls it.

        Args:
            split: The split whose tasks to prepare.
            limit: Only the first ``limit`` tasks.
            workers: Processes to use, where the env builds in parallel.

        Returns:
            The number of tasks prepared (0 when there is nothing to do).
        """
        return 0

    @classmethod
    def prepare_task(cls, task_id: TaskId) -> None:
        """Build what ``task_id`` needs before its first reset (e.g. generate its game).

        Envs that make data on first use (TextWorld) override this; the rest need
        nothing. A server calls it before a reset to a given task, outside the
        per-call timeout and off the threads that run env calls, so a slow first
        use is not mistaken for a hung env. Must be safe to call from several
        threads at once.
        """

    # -- declared capabilities -------------------------------------------------------

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """The optional capabilities this env class declares by overriding them.

        Returns:
            A subset of ``{"snapshot", "expert", "available_actions", "random_action",
            "tools"}`` (``random_action`` comes with ``available_actions``; ``tools``
            with a non-empty ``tools``).
        """
        declared = set()
        if cls.get_state is not TextEnv.get_state and cls.set_state is not TextEnv.set_state:
            declared.add("snapshot")
        if cls.expert_action is not TextEnv.expert_action:
            declared.add("expert")
        if cls.available_actions is not TextEnv.available_actions:
            declared.add("available_actions")
            declared.add("random_action")
        if cls.random_action is not TextEnv.random_action:
            declared.add("random_action")
        if cls.tools:
            declared.add("tools")
        return frozenset(declared)

    @classmethod
    def tasks(cls, split: str) -> Sequence[TaskId]:
        """The task ids of ``split`` (e.g. ``"train"`` or ``"test"``).

        Raises:
            KeyError: No such split; the message lists the env's splits.
        """
        try:
            return cls.splits[split]
        except KeyError:
            raise KeyError(
                f"{cls.__name__} has no split {split!r}; its splits: {sorted(cls.splits)}"
            ) from None

    @classmethod
    def split_of(cls, task_id: object) -> str | None:
        """The split that holds ``task_id``, or ``None`` when none does.

        Only exact ``int``/``str`` ids count: ``True``, ``5.0`` or ``"5"`` never
        stand in for the task ``5``.
        """
        if type(task_id) not in (int, str):
            return None
        for name, ids in cls.splits.items():
            try:
                if task_id in ids:
                    return name
            except TypeError:
                continue
        return None

    # -- gymnasium API -----------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode.

        Args:
            seed: Seeds ``self.np_random`` (randomness beyond the task). Without a
                ``task_id`` option, it also picks a training task.
            options: ``{"task_id": ...}`` picks the task.

        Returns:
            The first observation and ``info`` (with ``task_id``).

        Raises:
            UnknownTaskError: ``task_id`` is in none of the splits.
        """
        super().reset(seed=seed)
        task_id = (options or {}).get("task_id")
        if isinstance(task_id, np.integer):
            task_id = int(task_id)
        if task_id is None:
            train = self.tasks("train")
            task_id = train[int(self.np_random.integers(len(train)))]
            if isinstance(task_id, np.integer):
                task_id = int(task_id)
        elif self.split_of(task_id) is None:
            raise UnknownTaskError(
                f"task_id {task_id!r} is in none of {type(self).__name__}'s splits "
                f"({self._describe_splits()})"
            )
        self.task_id = task_id
        self._steps = 0
        self._over = False
        self._success = False
        self._score = 0.0
        self._last_observation = self.start(task_id)
        return self._last_observation, self._info({})

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply ``action``; gymnasium's five-tuple.

        ``info["invalid_action"]`` says whether the env rejected the action as not
        an action of its world (:attr:`Outcome.invalid`).

        Raises:
            EpisodeOverError: The episode already ended (or ``reset`` was never called).
        """
        if self.task_id is None:
            raise EpisodeOverError("call reset() before step()")
        if self._over:
            raise EpisodeOverError(
                f"the episode of task {self.task_id!r} is over after {self._steps} steps; "
                "call reset() to start another"
            )
        if not isinstance(action, str):
            raise TypeError(f"actions are strings, not {type(action).__name__}")
        outcome = self.act(action)
        score = self._checked_score(outcome.score)
        self._steps += 1
        terminated = bool(outcome.done)
        truncated = not terminated and (outcome.truncated or self._steps >= self.max_steps)
        info = dict(outcome.info)
        info["invalid_action"] = bool(outcome.invalid)
        if terminated or truncated:
            self._over = True
            self._success = bool(outcome.success) and terminated
            self._score = score if score is not None else float(self._success)
        self._last_observation = outcome.observation
        return outcome.observation, float(outcome.reward), terminated, truncated, self._info(info)

    def render(self) -> str | None:
        """In ``ansi`` mode, the latest observation."""
        if self.render_mode == "ansi":
            return self._last_observation
        return None

    # -- snapshot / restore -------------------------------------------------------

    def snapshot(self) -> EnvSnapshot:
        """Copy the whole episode state (task, steps, env state) for search.

        Raises:
            NotSupportedError: The env does not declare snapshot support.
        """
        if self.task_id is None:
            raise EpisodeOverError("call reset() before snapshot()")
        return EnvSnapshot(
            env_id=self.spec.id if self.spec else None,
            task_id=self.task_id,
            steps=self._steps,
            over=self._over,
            success=self._success,
            score=self._score,
            observation=self._last_observation,
            rng=copy.deepcopy(self.np_random.bit_generator.state),
            state=copy.deepcopy(self.get_state()),
        )

    def restore(self, snapshot: EnvSnapshot) -> None:
        """Return to the state captured by :meth:`snapshot` (the snapshot stays reusable)."""
        if not isinstance(snapshot, EnvSnapshot):
            raise TypeError(f"restore() takes an EnvSnapshot, not {type(snapshot).__name__}")
        # Bookkeeping first, so that set_state sees the snapshot's task.
        self.task_id = snapshot.task_id
        self._steps = snapshot.steps
        self._over = snapshot.over
        self._success = snapshot.success
        self._score = snapshot.score
        self._last_observation = snapshot.observation
        # Randomness the env draws after the snapshot must repeat too.
        self.np_random.bit_generator.state = copy.deepcopy(snapshot.rng)
        self.set_state(copy.deepcopy(snapshot.state))

    # -- properties ---------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    @property
    def over(self) -> bool:
        """True once the current episode terminated or was truncated."""
        return self._over

    # -- helpers ------------------------------------------------------------------

    def _info(self, extra: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"task_id": self.task_id, "step": self._steps}
        info.update(extra)
        if self._over:
            info["success"] = self._success
            info["score"] = self._score
        else:
            actions = self.available_actions()
            if actions is not None:
                info["available_actions"] = list(actions)
        return info

    def _checked_score(self, score: object) -> float | None:
        """``Outcome.score`` as a float, or an error naming the env and the value.

        Never clamped nor coerced: a score of 7.5, NaN or ``"0.5"`` is a bug in the
        env, and clamping it would hide the bug from ``palaestra check``.
        """
        if score is None:
            return None
        if (
            isinstance(score, bool)
            or not isinstance(score, numbers.Real)
            or not 0.0 <= float(score) <= 1.0  # NaN fails this too
        ):
            raise EnvError(
                f"{type(self).__name__} returned Outcome(score={score!r}) on task "
                f"{self.task_id!r}: a score is a float in [0, 1] (a bool or a str is not one)"
            )
        return float(score)

    @classmethod
    def _describe_splits(cls) -> str:
        parts = []
        for name, ids in cls.splits.items():
            if isinstance(ids, range) and ids.step == 1:
                parts.append(f"{name}: {ids.start}..{ids.stop - 1}")
            else:
                parts.append(f"{name}: {len(ids)} ids")
        return ", ".join(parts)
