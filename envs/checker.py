"""``palaestra check``: the TextEnv contract in code.

A row of small ``check_*`` functions, each runnable alone (gymnasium's
``env_checker`` style), and :func:`check`, which runs them in order on one env id:

- :func:`check_spec`: a sane spec (instruction, splits, max steps);
- :func:`check_gymnasium_api`: gymnasium's own ``check_env``;
- :func:`check_determinism`: the same (task, seed, actions) give the same episode,
  and the info contract holds (JSON-serialisable info, ``task_id`` on every step, a
  bool ``invalid_action`` on every step, ``success`` and a ``score`` in [0, 1] on the
  last); returns the recorded episodes that later checks replay;
- :func:`check_invalid_actions`: an obviously invalid action is flagged invalid and
  changes nothing;
- :func:`check_snapshot_restore`: restoring a snapshot continues identically (where
  declared);
- :func:`check_expert`: the expert solves sampled tasks of every split (where declared);
- :func:`check_random_actions`: random actions are valid, repeatable and leave the
  env's own randomness alone (where declared);
- :func:`check_over_http`: given a second env reached over HTTP, the same episodes
  (and expert and random actions) there as in-process.

A check passes, fails, or is skipped: when the capability it checks is not
declared, when it has nothing to run on, or when a check it depends on did not
pass. It never passes on nothing. A failure that the env's code raised names the
file and line it came from; :attr:`CheckResult.traceback` has the whole traceback.

This module sees only ``palaestra.envs``: the remote env arrives as a factory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from jsonschema import Draft202012Validator

from palaestra.envs import core
from palaestra.envs.core import TaskId, TextEnv
from palaestra.envs.registration import env_class
from palaestra.envs.tools import (
    ToolCallError,
    check_tools,
    parse_tool_call,
    tool_names,
)
from palaestra.errors import ContractError

__all__ = [
    "CheckResult",
    "CheckSkipped",
    "Episode",
    "check",
    "check_determinism",
    "check_expert",
    "check_gymnasium_api",
    "check_invalid_actions",
    "check_over_http",
    "check_random_actions",
    "check_snapshot_restore",
    "check_spec",
    "play_episode",
]

EnvFactory = Callable[[], gymnasium.Env]
Status = Literal["pass", "fail", "skip"]
JUNK_ACTIONS = ("", "dance wildly", "Action: ???", "\x00\t☃ ünïcödé", "x" * 300)
INVALID_ACTION = "xyzzy-not-an-action 12345"
"""An action no world should take for one of its own (printable, in the action charset)."""
RANDOM_STEPS = 5
"""Steps taken by random actions per sampled task in the random-action checks."""

SPEC = "spec"
GYMNASIUM = "gymnasium check_env"
DETERMINISM = "determinism + info contract"
INVALID = "invalid actions"
SNAPSHOT = "snapshot/restore"
EXPERT = "expert solves sampled tasks"
RANDOM = "random actions"
HTTP = "same episodes over HTTP"

T = TypeVar("T")


@dataclass
class CheckResult:
    """One named check and how it went.

    Attributes:
        name: The check, e.g. ``"snapshot/restore"``.
        status: ``"pass"``, ``"fail"``, or ``"skip"`` (the capability is not
            declared, there was nothing to run it on, or a check it depends on
            did not pass; ``detail`` says which).
        detail: What was checked, what broke, or why it was skipped. A failure the
            env's own code raised ends with the file and line it came from.
        seconds: Time taken.
        traceback: The whole traceback of a failure that raised; ``""`` otherwise.
    """

    name: str
    status: Status
    detail: str
    seconds: float
    traceback: str = ""

    @property
    def failed(self) -> bool:
        """True when the check found a breach (or could not run to its end)."""
        return self.status == "fail"

    @property
    def skipped(self) -> bool:
        """True when the check did not run (see ``detail``)."""
        return self.status == "skip"

    @property
    def passed(self) -> bool:
        """True unless the check failed: a skipped check found nothing broken.

        ``status == "pass"`` tells the checks that ran and held.
        """
        return self.status != "fail"


class CheckSkipped(Exception):
    """Raised by a ``check_*`` function that has nothing to check; the message says why."""


@dataclass
class Episode:
    """A recorded episode: what was sent and what came back."""

    task_id: TaskId
    seed: int
    first: tuple[str, dict[str, Any]]
    actions: list[str] = field(default_factory=list)
    steps: list[tuple[str, float, bool, bool, dict[str, Any]]] = field(default_factory=list)


def _fail(message: str) -> None:
    raise ContractError(message)


def _policy_action(
    env: Any, rng: random.Random, explore: float, available: list[str] | None
) -> str:
    """The expert's action, or with probability ``explore`` a listed or a junk one."""
    if "expert" in env.capabilities() and rng.random() >= explore:
        return env.expert_action()
    if available and rng.random() < 0.5:
        return rng.choice(available)
    return rng.choice(JUNK_ACTIONS)


def play_episode(
    env: Any,
    task_id: TaskId,
    seed: int,
    *,
    actions: list[str] | None = None,
    explore: float = 0.25,
    policy_seed: int = 0,
) -> Episode:
    """Play one episode; replay ``actions`` if given, else a seeded expert-ish policy.

    Args:
        env: A ``TextEnv`` or a ``RemoteEnv`` (both have ``capabilities`` and,
            where declared, ``expert_action``).
        task_id: The task.
        seed: The reset seed.
        actions: Actions to replay verbatim (the episode stops early if it ends).
        explore: Probability of a non-expert action when generating.
        policy_seed: Seed of the generating policy.

    Returns:
        The recorded :class:`Episode`.
    """
    rng = random.Random(policy_seed)
    observation, info = env.reset(seed=seed, options={"task_id": task_id})
    episode = Episode(task_id=task_id, seed=seed, first=(observation, info))
    pending = list(actions) if actions is not None else None
    while True:
        if pending is not None:
            if not pending:
                break
            action = pending.pop(0)
        else:
            action = _policy_action(env, rng, explore, info.get("available_actions"))
        result = env.step(action)
        episode.actions.append(action)
        episode.steps.append(result)
        info = result[4]
        if result[2] or result[3]:
            break
    return episode


# -- the checks, in the order check() runs them ------------------------------------


def check_spec(cls: type[TextEnv]) -> str:
    """The class attributes: an instruction, positive ``max_steps``, disjoint train/test splits.

    Returns:
        Split sizes, ``max_steps`` and the declared capabilities.

    Raises:
        ContractError: What is wrong with the spec.
    """
    if not isinstance(cls.instruction, str) or not cls.instruction.strip():
        _fail("instruction is empty: say what the world is, the actions, and their format")
    if not isinstance(cls.max_steps, int) or cls.max_steps < 1:
        _fail(f"max_steps must be a positive int, got {cls.max_steps!r}")
    for split in ("train", "test"):
        if split not in cls.splits or len(cls.splits[split]) == 0:
            _fail(f"split {split!r} is missing or empty (splits: {sorted(cls.splits)})")
    for split, ids in cls.splits.items():
        bad = next((t for t in ids if type(t) not in (int, str)), None)
        if bad is not None:
            _fail(f"split {split!r} holds {bad!r}: task ids are int or str")
    overlap = set(cls.tasks("train")) & set(cls.tasks("test"))
    if overlap:
        _fail(f"train and test share {len(overlap)} task ids, e.g. {sorted(overlap)[:5]}")
    tools_note = ""
    if cls.tools:
        try:
            check_tools(cls.tools)
        except ValueError as error:
            _fail(f"tools: {error}")
        tools_note = f"; tools={tool_names(cls.tools)}"
    sizes = ", ".join(f"{k}={len(v)}" for k, v in cls.splits.items())
    capabilities = sorted(cls.capabilities()) or "-"
    return f"{sizes}; max_steps={cls.max_steps}; capabilities={capabilities}{tools_note}"


def check_gymnasium_api(env: TextEnv) -> str:
    """Run gymnasium's ``check_env`` on ``env`` (closed afterwards).

    Returns:
        ``"passed"``, with the first words of each warning it gave.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gymnasium_check_env(env, skip_render_check=False)
    finally:
        env.close()
    notes = sorted({str(w.message).split(".")[0] for w in caught})
    return "passed" + (f" ({len(notes)} warnings: {'; '.join(notes)[:200]})" if notes else "")


def check_determinism(
    cls: type[TextEnv], make: Callable[[], TextEnv], tasks: Sequence[TaskId], seed: int
) -> list[Episode]:
    """Each task played by a seeded expert-ish policy, then replayed by a second instance.

    The replay must give the same observations, rewards, flags and info; each
    episode must keep the info contract (:func:`_check_episode_contract`); and a
    reset by seed alone must draw the same train task in both instances.

    Returns:
        The recorded episodes (one per task), for the checks that replay them.

    Raises:
        CheckSkipped: No task to play.
        ContractError: The first breach found.
    """
    if not tasks:
        raise CheckSkipped("no task to play: the train and test splits are empty (see spec)")
    episodes = []
    with _made(make, 2) as (env_a, env_b):
        for i, task_id in enumerate(tasks):
            first = play_episode(env_a, task_id, seed + i, policy_seed=seed + i)
            _check_episode_contract(cls, first)
            again = play_episode(env_b, task_id, seed + i, actions=first.actions)
            _compare(first, again, "same task, seed and actions")
            episodes.append(first)
        for reset_seed in (seed, seed + 1):  # without a task id, the seed picks a train task
            drawn_a, drawn_b = env_a.reset(seed=reset_seed), env_b.reset(seed=reset_seed)
            if drawn_a != drawn_b:
                _fail(f"reset(seed={reset_seed}) without a task id differs between two instances")
            if cls.split_of(drawn_a[1].get("task_id")) != "train":
                _fail(
                    f"reset(seed={reset_seed}) drew {drawn_a[1].get('task_id')!r}, not a train task"
                )
    return episodes


def check_invalid_actions(
    cls: type[TextEnv], make: Callable[[], TextEnv], episodes: Sequence[Episode]
) -> str:
    """An obviously invalid action is flagged invalid and leaves the world unchanged.

    In the first two recorded episodes, at two cuts (before the first action and
    half-way), the env replays the episode up to the cut, takes
    :data:`INVALID_ACTION`, then the rest of the episode's actions. The invalid
    action must be flagged (``info["invalid_action"] is True``), must not end the
    episode, must not draw from ``np_random``, and, where the env has
    snapshot/restore, must leave the state unchanged: compared value by value when
    ``get_state()`` is plain data (dicts, lists, tuples, sets, dataclasses of
    them, numbers, strings, bytes, numpy arrays); a state holding other objects
    (a game engine, a simulator) has no comparable value, and is judged by
    behaviour alone. Then the rest
    of the actions must give what the recorded episode got (observations,
    rewards, termination, info; ``info["step"]`` aside, which counts the extra
    action): the world behaves as if the invalid action never happened.

    Raises:
        CheckSkipped: No recorded episode.
        ContractError: The first breach found.
    """
    if not episodes:
        raise CheckSkipped("no recorded episode to take an invalid action in")
    snapshots = "snapshot" in cls.capabilities()
    cuts = direct = 0
    with _made(make, 1) as (env,):
        for episode in episodes[:2]:
            for cut in sorted({0, len(episode.actions) // 2}):
                play_episode(env, episode.task_id, episode.seed, actions=episode.actions[:cut])
                where = (
                    f"task {episode.task_id!r} seed {episode.seed}, after {cut} recorded actions"
                )
                rng_before = copy.deepcopy(env.np_random.bit_generator.state)
                state_before = env.snapshot().state if snapshots else None
                *_, terminated, truncated, info = env.step(INVALID_ACTION)
                if info.get("invalid_action") is not True:
                    _fail(
                        f"{where}: the action {INVALID_ACTION!r} was not reported invalid "
                        f"(info['invalid_action']={info.get('invalid_action')!r}); return "
                        "Outcome(..., invalid=True) for an action that is not one of the world's"
                    )
                if terminated:
                    _fail(f"{where}: the invalid action {INVALID_ACTION!r} ended the episode")
                if env.np_random.bit_generator.state != rng_before:
                    _fail(f"{where}: the invalid action moved the env's np_random")
                if snapshots and state_before is not None:
                    same = _same_plain_data(state_before, env.snapshot().state)
                    direct += same is not None
                    if same is False:
                        _fail(
                            f"{where}: the invalid action changed get_state(): "
                            f"{_short(state_before)} -> {_short(env.snapshot().state)}"
                        )
                cuts += 1
                if truncated:
                    continue  # the extra step reached max_steps: nothing left to replay
                _continue_as_recorded(env, episode, cut, where)
    if not snapshots:
        how = "by behaviour only (no snapshot)"
    elif direct:
        how = f"states compared directly at {direct}"
    else:
        how = "by behaviour only (get_state() holds objects that are not plain data)"
    return f"{INVALID_ACTION!r} flagged invalid and changed nothing at {cuts} cuts; {how}"


def check_snapshot_restore(
    cls: type[TextEnv], make: Callable[[], TextEnv], episodes: Sequence[Episode]
) -> str:
    """A snapshot half-way through each recorded episode continues it identically.

    Restored in place and into another instance that moved on to another task.

    Raises:
        CheckSkipped: Snapshot not declared, or no recorded episode of 2 steps or more.
        ContractError: The first breach found.
    """
    if "snapshot" not in cls.capabilities():
        raise CheckSkipped("not declared (the framework falls back to replay)")
    usable = [e for e in episodes if len(e.actions) >= 2]
    if not usable:
        raise CheckSkipped("no recorded episode has 2 steps or more to cut in two")
    with _made(make, 2) as (env, other):
        for episode in usable:
            task_id = episode.task_id
            cut = len(episode.actions) // 2
            play_episode(env, task_id, episode.seed, actions=episode.actions[:cut])
            snap = env.snapshot()
            tail = episode.actions[cut:]
            expected = [env.step(a) for a in tail]
            for target in (env, other):  # restore in place, and into another instance
                if target is other:
                    # An env that moved on to another task must still restore exactly.
                    elsewhere = next((e.task_id for e in episodes if e.task_id != task_id), task_id)
                    other.reset(seed=episode.seed + 1, options={"task_id": elsewhere})
                target.restore(snap)
                if target._last_observation != episode.steps[cut - 1][0]:
                    _fail(f"task {task_id!r}: restore() did not bring back the observation")
                for index, action in enumerate(tail):
                    number = cut + index + 1
                    try:
                        got = target.step(action)
                    except Exception as error:
                        raise ContractError(
                            f"task {task_id!r}: after restore, step {number} raised "
                            f"{type(error).__name__}: {error}"
                        ) from error
                    if got != expected[index]:
                        _fail(
                            f"task {task_id!r}: after restore, step {number} differs:\n"
                            f"  {_short(got)}\n  vs {_short(expected[index])}"
                        )
    return f"{len(usable)} episodes continued identically after restore"


def check_expert(
    cls: type[TextEnv], make: Callable[[], TextEnv], tasks: Sequence[TaskId], seed: int
) -> str:
    """The expert alone solves every task of ``tasks``.

    Raises:
        CheckSkipped: No expert declared, or no task.
        ContractError: A task the expert failed.
    """
    if "expert" not in cls.capabilities():
        raise CheckSkipped("not declared")
    if not tasks:
        raise CheckSkipped("no task to play (see spec)")
    solved = []
    with _made(make, 1) as (env,):
        for task_id in tasks:
            episode = play_episode(env, task_id, seed, explore=0.0)
            final = episode.steps[-1][4] if episode.steps else {}
            _check_tool_calls(cls, episode.actions, f"the expert, task {task_id!r}")
            if not final.get("success"):
                _fail(
                    f"the expert failed task {task_id!r} ({cls.split_of(task_id)}) after "
                    f"{len(episode.steps)} steps; last observation: {_short(episode.steps[-1][0])}"
                )
            solved.append(len(episode.steps))
    mean = sum(solved) / len(solved)
    return f"solved {len(solved)}/{len(tasks)} sampled tasks (train+test), mean {mean:.1f} steps"


def check_random_actions(
    cls: type[TextEnv], make: Callable[[], TextEnv], tasks: Sequence[TaskId], seed: int
) -> str:
    """Random actions are valid, repeatable across instances, and leave ``np_random`` alone.

    Raises:
        CheckSkipped: ``random_action`` not declared, or no task.
        ContractError: The first breach found.
    """
    if "random_action" not in cls.capabilities():
        raise CheckSkipped("not declared")
    if not tasks:
        raise CheckSkipped("no task to play (see spec)")
    steps = 0
    with _made(make, 2) as (env, other):
        for i, task_id in enumerate(tasks):
            actions = _random_episode(env, task_id, seed + i, _checked_random_action)
            _check_tool_calls(cls, actions, f"random_action, task {task_id!r}")
            again = _random_episode(other, task_id, seed + i, _checked_random_action)
            if actions != again:
                _fail(
                    f"task {task_id!r}: two instances in the same state drew different random "
                    f"actions from the same seeds: {_short(actions)} vs {_short(again)}"
                )
            steps += len(actions)
    return f"{steps} random actions valid, repeatable, np_random untouched"


def check_over_http(
    cls: type[TextEnv],
    make: Callable[[], TextEnv],
    remote: EnvFactory | None,
    episodes: Sequence[Episode],
    seed: int,
) -> str:
    """The recorded episodes, the expert's and random actions, and a reset by seed over HTTP.

    Args:
        cls: The env class.
        make: Builds the env in-process.
        remote: Builds the same env reached over HTTP.
        episodes: The recorded episodes to replay there.
        seed: The seed of the resets compared.

    Raises:
        CheckSkipped: No server given, or no recorded episode.
        ContractError: The first difference found.
    """
    if remote is None:
        raise CheckSkipped("no server given")
    if not episodes:
        raise CheckSkipped("no recorded episode to replay")
    capabilities = cls.capabilities()
    remote_env = remote()
    try:
        for episode in episodes:
            again = play_episode(remote_env, episode.task_id, episode.seed, actions=episode.actions)
            _compare(episode, again, "in-process vs HTTP")
        with _made(make, 1) as (local,):
            if "expert" in capabilities:
                task_id = episodes[0].task_id
                local.reset(seed=seed, options={"task_id": task_id})
                remote_env.reset(seed=seed, options={"task_id": task_id})
                if local.expert_action() != remote_env.expert_action():
                    _fail("the expert's action differs in-process and over HTTP")
            if "random_action" in capabilities:
                for i, episode in enumerate(episodes[:2]):
                    here = _random_episode(
                        local, episode.task_id, seed + i, lambda e, k: e.random_action(_rng(k))
                    )
                    there = _random_episode(
                        remote_env, episode.task_id, seed + i, lambda e, k: e.random_action(k)
                    )
                    if here != there:
                        _fail(
                            f"task {episode.task_id!r}: random actions differ in-process and over "
                            f"HTTP: {_short(here)} vs {_short(there)}"
                        )
            if local.reset(seed=seed) != remote_env.reset(seed=seed):
                _fail(f"reset(seed={seed}) without a task id differs in-process and over HTTP")
    finally:
        remote_env.close()
    return f"{len(episodes)} episodes identical in-process and over HTTP"


def check(
    env_id: str,
    *,
    episodes: int = 3,
    remote: EnvFactory | None = None,
    seed: int = 0,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run every check on ``env_id``; never raises for a failed check.

    Args:
        env_id: A registered palaestra env id.
        episodes: Tasks sampled per split for the episode checks.
        remote: Builds the same env reached over HTTP; enables the HTTP check.
        seed: Seed of the task sampling and the generating policy.
        on_result: Called with each result as it is known (for live output).

    Returns:
        One :class:`CheckResult` per check, in order.
    """
    cls = env_class(env_id)

    def make() -> TextEnv:
        return gymnasium.make(env_id).unwrapped

    try:
        tasks = list(_sample_tasks(cls, episodes, random.Random(seed)))
    except Exception:  # a broken splits attribute: the spec check says what is wrong
        tasks = []
    runner = _Runner(cls, on_result)
    runner.run(SPEC, lambda: check_spec(cls))
    runner.run(GYMNASIUM, lambda: check_gymnasium_api(make()))
    recorded = runner.run(
        DETERMINISM,
        lambda: check_determinism(cls, make, tasks, seed),
        describe=lambda played: f"{len(played)} episodes replayed identically; info contract holds",
    )
    played = recorded or []
    runner.run(INVALID, lambda: check_invalid_actions(cls, make, played), needs=[DETERMINISM])
    runner.run(SNAPSHOT, lambda: check_snapshot_restore(cls, make, played), needs=[DETERMINISM])
    runner.run(EXPERT, lambda: check_expert(cls, make, tasks, seed))
    runner.run(RANDOM, lambda: check_random_actions(cls, make, tasks, seed))
    runner.run(HTTP, lambda: check_over_http(cls, make, remote, played, seed), needs=[DETERMINISM])
    return runner.results


# -- running checks ----------------------------------------------------------------


class _Runner:
    """Runs checks in order: times them, turns exceptions into results, skips dependents."""

    def __init__(self, cls: type[TextEnv], on_result: Callable[[CheckResult], None] | None) -> None:
        self.cls = cls
        self.on_result = on_result
        self.results: list[CheckResult] = []

    def run(
        self,
        name: str,
        fn: Callable[[], T],
        *,
        describe: Callable[[T], str] = str,
        needs: Sequence[str] = (),
    ) -> T | None:
        """Run ``fn`` as the check ``name``; its value when it passed, else ``None``."""
        started = time.perf_counter()
        value: T | None = None
        status: Status = "pass"
        trace = ""
        blocker = next((r for r in self.results if r.name in needs and r.status != "pass"), None)
        if blocker is not None:
            status = "skip"
            detail = f"'{blocker.name}' {'failed' if blocker.failed else 'was skipped'}"
        else:
            try:
                value = fn()
                detail = describe(value)
            except CheckSkipped as skipped:
                status, detail = "skip", str(skipped)
            except Exception as error:
                status, detail = "fail", f"{type(error).__name__}: {error}{_where(error, self.cls)}"
                trace = "".join(traceback.format_exception(error))
        result = CheckResult(name, status, detail, time.perf_counter() - started, trace)
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return value if status == "pass" else None


def _env_homes(cls: type[TextEnv]) -> list[Path]:
    """Where the code of ``cls`` and the env classes it inherits from lives.

    A class in a package counts the package's folder (its helper modules too); a
    class in a top-level module counts that file alone (its neighbours in
    site-packages are other people's code).
    """
    homes = []
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, TextEnv)) or klass is TextEnv:
            continue
        module = sys.modules.get(klass.__module__)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if path.name == "__init__.py" or "." in klass.__module__:
            homes.append(path.parent)
        else:
            homes.append(path)
    return homes


def _where(error: BaseException, cls: type[TextEnv]) -> str:
    """`` (at FILE:LINE in FUNCTION)`` for an exception the env's code raised, else ``""``.

    The place is the innermost frame in the env's own code; when the exception
    came from deeper (a library the env calls), that place is named too.
    """
    if error.__cause__ is not None:  # the checker's words about what the env raised
        error = error.__cause__
    frames = traceback.extract_tb(error.__traceback__)
    homes = _env_homes(cls)

    def in_env(frame: traceback.FrameSummary) -> bool:
        path = Path(frame.filename).resolve()
        if path in _FRAMEWORK_FILES:
            return False
        return any(path == home or home in path.parents for home in homes)

    own = [frame for frame in frames if in_env(frame)]
    if not own:
        return ""  # the checker's own verdict, or a failure over HTTP
    if frames[-1] is own[-1]:
        return f" (at {_place(own[-1])})"
    return f" (raised at {_place(frames[-1])}, from {_place(own[-1])})"


# The checker's and the base class's own frames are never "where the env raised",
# even for an env module that sits next to them.
_FRAMEWORK_FILES = frozenset(Path(m.__file__).resolve() for m in (sys.modules[__name__], core))


def _place(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    try:
        shown = str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return f"{shown}:{frame.lineno} in {frame.name}"


@contextmanager
def _made(make: Callable[[], TextEnv], count: int) -> Iterator[list[TextEnv]]:
    """``count`` fresh envs, closed afterwards (some hold processes or JVMs)."""
    envs: list[TextEnv] = []
    try:
        for _ in range(count):
            envs.append(make())
        yield envs
    finally:
        for env in envs:
            env.close()


# -- helpers of the checks ---------------------------------------------------------


def _compare(a: Episode, b: Episode, what: str) -> None:
    if a.first != b.first:
        _fail(
            f"{what}: reset(task_id={a.task_id!r}, seed={a.seed}) differs:\n"
            f"  {_short(a.first)}\n  vs {_short(b.first)}"
        )
    for i, (x, y) in enumerate(zip(a.steps, b.steps, strict=False)):
        if x != y:
            _fail(
                f"{what}: task {a.task_id!r} seed {a.seed}, step {i + 1} "
                f"(action {a.actions[i]!r}) differs:\n  {_short(x)}\n  vs {_short(y)}"
            )
    if len(a.steps) != len(b.steps):
        _fail(f"{what}: episode lengths differ ({len(a.steps)} vs {len(b.steps)} steps)")


def _continue_as_recorded(env: TextEnv, episode: Episode, cut: int, where: str) -> None:
    """Step the rest of ``episode``'s actions from ``cut``: each must give the recorded step.

    ``info["step"]`` counts the invalid action taken before, so it is left out, and
    the comparison ends where that extra step made ``max_steps`` truncate one step
    early (what truncation adds to ``info`` is then not comparable).
    """
    for index in range(cut, len(episode.actions)):
        got, expected = env.step(episode.actions[index]), episode.steps[index]
        same = got[:3] == expected[:3] and (
            got[3] != expected[3] or _without_step(got[4]) == _without_step(expected[4])
        )
        if not same:
            _fail(
                f"{where}: the invalid action changed the world: step {index + 1} (action "
                f"{episode.actions[index]!r}) then differs from the recorded episode:\n"
                f"  {_short(got)}\n  vs {_short(expected)}"
            )
        if got[2] or got[3]:
            return


def _without_step(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "step"}


def _same_plain_data(a: Any, b: Any) -> bool | None:
    """Whether two states are equal value by value; ``None`` when either is not plain data.

    Plain data: ``None``, bools, numbers, strings, bytes, numpy arrays and scalars,
    and dicts, lists, tuples, sets and dataclass instances of them, all the way
    down. Anything else compares by identity or by rules of its own (a fresh copy
    of an unchanged object would look changed, a shared one unchanged), so a state
    holding one gets no verdict here, however its other parts compare.
    """
    if not (_all_plain(a) and _all_plain(b)):
        return None
    return _plain_equal(a, b)


def _plain_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_plain_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_plain_equal(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(
            _plain_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    return bool(a == b) or (a != a and b != b)  # sets, scalars; NaN did not change either


_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, np.generic, np.ndarray)


def _all_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN_LEAVES):
        return value.dtype != object if isinstance(value, np.ndarray) else True
    if isinstance(value, dict):
        return all(_all_plain(k) and _all_plain(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_all_plain(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(_all_plain(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_tool_calls(cls: type[TextEnv], actions: Sequence[str], who: str) -> None:
    """Each action of an env with tools is a call of one of them that its schema accepts."""
    if not cls.tools:
        return
    validators = {
        t["function"]["name"]: Draft202012Validator(t["function"]["parameters"]) for t in cls.tools
    }
    for number, action in enumerate(actions, 1):
        try:
            call = parse_tool_call(action)
        except ToolCallError as error:
            _fail(f"{who}: action {number} is not a tool call ({error}): {_short(action)}")
        validator = validators.get(call.name)
        if validator is None:
            _fail(f"{who}: action {number} calls no declared tool: {_short(action)}")
        problem = next(iter(validator.iter_errors(call.arguments)), None)
        if problem is not None:
            _fail(
                f"{who}: action {number} breaks the schema of {call.name} "
                f"({problem.message}): {_short(action)}"
            )
        if action != call.action():
            _fail(f"{who}: action {number} is not the canonical text of its call: {_short(action)}")


def _check_episode_contract(cls: type[TextEnv], episode: Episode) -> None:
    where = f"task {episode.task_id!r} seed {episode.seed}"
    observation, info = episode.first
    if not isinstance(observation, str):
        _fail(f"{where}: reset() returned a {type(observation).__name__} observation, not str")
    records = [(0, info)] + [(i + 1, step[4]) for i, step in enumerate(episode.steps)]
    for index, step_info in records:
        if not isinstance(step_info, dict):
            _fail(f"{where}, step {index}: info is a {type(step_info).__name__}, not dict")
        if step_info.get("task_id") != episode.task_id:
            _fail(
                f"{where}, step {index}: info['task_id'] is {step_info.get('task_id')!r}, "
                f"expected {episode.task_id!r}"
            )
        try:
            json.dumps(step_info, allow_nan=False)
        except (TypeError, ValueError) as error:
            _fail(f"{where}, step {index}: info is not JSON-serialisable ({error}): {step_info!r}")
    for index, (obs, reward, terminated, truncated, info) in enumerate(episode.steps, start=1):
        if not isinstance(info.get("invalid_action"), bool):
            _fail(
                f"{where}, step {index}: info['invalid_action'] must be a bool on every step, "
                f"got {info.get('invalid_action')!r}"
            )
        if not isinstance(obs, str):
            _fail(f"{where}, step {index}: observation is {type(obs).__name__}, not str")
        if not isinstance(reward, float | int) or not math.isfinite(reward):
            _fail(f"{where}, step {index}: reward {reward!r} is not a finite number")
        if not isinstance(terminated, bool) or not isinstance(truncated, bool):
            _fail(f"{where}, step {index}: terminated/truncated must be bools")
        if (terminated or truncated) and index != len(episode.steps):
            _fail(f"{where}: the episode ended at step {index} but stepping went on")
    if not episode.steps:
        return
    last = episode.steps[-1]
    if not (last[2] or last[3]):
        return  # a replay cut short: nothing final to check
    final = last[4]
    if not isinstance(final.get("success"), bool):
        _fail(f"{where}: the last step's info lacks a bool 'success' (got {final!r})")
    score = final.get("score")
    if (
        isinstance(score, bool)
        or not isinstance(score, float | int)
        or not 0.0 <= score <= 1.0  # NaN fails this too
    ):
        _fail(f"{where}: the last step's info['score'] must be a float in [0, 1], got {score!r}")
    if len(episode.steps) > cls.max_steps:
        _fail(f"{where}: ran {len(episode.steps)} steps, over max_steps={cls.max_steps}")


def _random_episode(
    env: Any, task_id: TaskId, seed: int, draw: Callable[[Any, int], str]
) -> list[str]:
    """Reset to ``task_id`` and take up to :data:`RANDOM_STEPS` random actions.

    ``draw(env, k)`` gives the random action of step ``k``. Each must be a str that
    the env does not report invalid.

    Returns:
        The actions taken.
    """
    env.reset(seed=seed, options={"task_id": task_id})
    actions = []
    for k in range(RANDOM_STEPS):
        action = draw(env, seed + k)
        if not isinstance(action, str):
            _fail(f"task {task_id!r}: random_action() returned {type(action).__name__}, not str")
        actions.append(action)
        *_, terminated, truncated, info = env.step(action)
        if info.get("invalid_action") is not False:
            _fail(
                f"task {task_id!r}: the random action {action!r} (step {k + 1}) was reported "
                f"invalid (info['invalid_action']={info.get('invalid_action')!r})"
            )
        if terminated or truncated:
            break
    return actions


def _checked_random_action(env: Any, seed: int) -> str:
    """``env.random_action`` drawn from ``seed``: checked repeatable, ``np_random`` untouched."""
    before = copy.deepcopy(env.np_random.bit_generator.state)
    action = env.random_action(_rng(seed))
    if env.np_random.bit_generator.state != before:
        _fail(
            f"task {env.task_id!r}: random_action() moved the env's np_random "
            "(draw only from the generator it is given)"
        )
    if env.random_action(_rng(seed)) != action:
        _fail(f"task {env.task_id!r}: random_action() differs for the same seed and state")
    return action


def _sample_tasks(cls: type[TextEnv], per_split: int, rng: random.Random) -> Iterator[TaskId]:
    for split in ("train", "test"):
        ids = cls.tasks(split)
        for index in sorted(rng.sample(range(len(ids)), min(per_split, len(ids)))):
            yield ids[index]
