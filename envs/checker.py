"""``palaestra check``: the TextEnv contract in code.

Runs gymnasium's own ``check_env`` and then palaestra's contract: a sane spec
(instruction, splits, max steps), determinism under (task, seed, actions),
JSON-serialisable info with ``task_id`` on every step, a bool ``invalid_action``
on every step and ``success``/``score`` on the last, an obviously invalid action
reported as invalid, snapshot/restore continuing identically (where declared),
the expert solving sampled tasks of every split (where declared), random actions
that are valid, repeatable and leave the env's own randomness alone (where
declared), and, given a second env reached over HTTP, the same episodes (and
expert and random actions) there as in-process.

This module sees only ``palaestra.envs``: the remote env arrives as a factory.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

from palaestra.envs.core import TaskId, TextEnv
from palaestra.envs.registration import env_class
from palaestra.errors import ContractError

__all__ = ["CheckResult", "Episode", "check", "play_episode"]

EnvFactory = Callable[[], gymnasium.Env]
JUNK_ACTIONS = ("", "dance wildly", "Action: ???", "\x00\t☃ ünïcödé", "x" * 300)
INVALID_ACTION = "xyzzy-not-an-action 12345"
"""An action no world should take for one of its own (printable, in the action charset)."""
RANDOM_STEPS = 5
"""Steps taken by random actions per sampled task in the random-action checks."""


@dataclass
class CheckResult:
    """One named check and how it went."""

    name: str
    passed: bool
    detail: str
    seconds: float


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


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
    if not isinstance(score, float | int) or not 0.0 <= score <= 1.0:
        _fail(f"{where}: the last step's info['score'] must be in [0, 1], got {score!r}")
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
    results: list[CheckResult] = []
    cls = env_class(env_id)
    rng = random.Random(seed)
    tasks = list(_sample_tasks(cls, episodes, rng)) if cls.splits else []
    capabilities = cls.capabilities()
    recorded: dict[TaskId, Episode] = {}

    def make() -> TextEnv:
        return gymnasium.make(env_id).unwrapped

    def run(name: str, fn: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            detail, passed = fn(), True
        except Exception as error:
            detail, passed = f"{type(error).__name__}: {error}", False
        result = CheckResult(name, passed, detail, time.perf_counter() - started)
        results.append(result)
        if on_result is not None:
            on_result(result)

    def spec() -> str:
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
        sizes = ", ".join(f"{k}={len(v)}" for k, v in cls.splits.items())
        return f"{sizes}; max_steps={cls.max_steps}; capabilities={sorted(capabilities) or '-'}"

    def gymnasium_api() -> str:
        env = make()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gymnasium_check_env(env, skip_render_check=False)
        env.close()
        notes = sorted({str(w.message).split(".")[0] for w in caught})
        return "passed" + (f" ({len(notes)} warnings: {'; '.join(notes)[:200]})" if notes else "")

    def determinism() -> str:
        env_a, env_b = make(), make()
        for i, task_id in enumerate(tasks):
            first = play_episode(env_a, task_id, seed + i, policy_seed=seed + i)
            _check_episode_contract(cls, first)
            again = play_episode(env_b, task_id, seed + i, actions=first.actions)
            _compare(first, again, "same task, seed and actions")
            recorded[task_id] = first
        for reset_seed in (seed, seed + 1):  # without a task id, the seed picks a train task
            drawn_a, drawn_b = env_a.reset(seed=reset_seed), env_b.reset(seed=reset_seed)
            if drawn_a != drawn_b:
                _fail(f"reset(seed={reset_seed}) without a task id differs between two instances")
            if cls.split_of(drawn_a[1].get("task_id")) != "train":
                _fail(
                    f"reset(seed={reset_seed}) drew {drawn_a[1].get('task_id')!r}, not a train task"
                )
        return f"{len(tasks)} episodes replayed identically; info contract holds"

    def invalid_action() -> str:
        env = make()
        for task_id in tasks[:2]:
            env.reset(seed=seed, options={"task_id": task_id})
            *_, info = env.step(INVALID_ACTION)
            if info.get("invalid_action") is not True:
                _fail(
                    f"task {task_id!r}: the action {INVALID_ACTION!r} was not reported invalid "
                    f"(info['invalid_action']={info.get('invalid_action')!r}); return "
                    "Outcome(..., invalid=True) for an action that is not one of the world's"
                )
        return f"{INVALID_ACTION!r} reported invalid; info['invalid_action'] a bool on every step"

    def random_action() -> str:
        if "random_action" not in capabilities:
            return "not declared"
        env, other = make(), make()
        steps = 0
        for i, task_id in enumerate(tasks):
            actions = _random_episode(env, task_id, seed + i, _checked_random_action)
            again = _random_episode(other, task_id, seed + i, _checked_random_action)
            if actions != again:
                _fail(
                    f"task {task_id!r}: two instances in the same state drew different random "
                    f"actions from the same seeds: {_short(actions)} vs {_short(again)}"
                )
            steps += len(actions)
        return f"{steps} random actions valid, repeatable, np_random untouched"

    def snapshot_restore() -> str:
        if "snapshot" not in capabilities:
            return "not declared (the framework falls back to replay)"
        env, other = make(), make()
        for task_id, episode in recorded.items():
            if len(episode.actions) < 2:
                continue
            cut = len(episode.actions) // 2
            play_episode(env, task_id, episode.seed, actions=episode.actions[:cut])
            snap = env.snapshot()
            tail = episode.actions[cut:]
            expected = [env.step(a) for a in tail]
            for target in (env, other):  # restore in place, and into another instance
                if target is other:
                    # An env that moved on to another task must still restore exactly.
                    elsewhere = next((t for t in recorded if t != task_id), task_id)
                    other.reset(seed=episode.seed + 1, options={"task_id": elsewhere})
                target.restore(snap)
                if target._last_observation != episode.steps[cut - 1][0]:
                    _fail(f"task {task_id!r}: restore() did not bring back the observation")
                for index, action in enumerate(tail):
                    number = cut + index + 1
                    try:
                        got = target.step(action)
                    except Exception as error:
                        _fail(
                            f"task {task_id!r}: after restore, step {number} raised "
                            f"{type(error).__name__}: {error}"
                        )
                    if got != expected[index]:
                        _fail(
                            f"task {task_id!r}: after restore, step {number} differs:\n"
                            f"  {_short(got)}\n  vs {_short(expected[index])}"
                        )
        return f"{len(recorded)} episodes continued identically after restore"

    def expert() -> str:
        if "expert" not in capabilities:
            return "not declared"
        env = make()
        solved = []
        for task_id in tasks:
            episode = play_episode(env, task_id, seed, explore=0.0)
            final = episode.steps[-1][4] if episode.steps else {}
            if not final.get("success"):
                _fail(
                    f"the expert failed task {task_id!r} ({cls.split_of(task_id)}) after "
                    f"{len(episode.steps)} steps; last observation: {_short(episode.steps[-1][0])}"
                )
            solved.append(len(episode.steps))
        mean = sum(solved) / max(1, len(solved))
        return (
            f"solved {len(solved)}/{len(tasks)} sampled tasks (train+test), mean {mean:.1f} steps"
        )

    def over_http() -> str:
        if remote is None:
            return "skipped (no server given)"
        remote_env = remote()
        try:
            for task_id, episode in recorded.items():
                again = play_episode(remote_env, task_id, episode.seed, actions=episode.actions)
                _compare(episode, again, "in-process vs HTTP")
            if "expert" in capabilities and recorded:
                task_id = next(iter(recorded))
                local = make()
                local.reset(seed=seed, options={"task_id": task_id})
                remote_env.reset(seed=seed, options={"task_id": task_id})
                if local.expert_action() != remote_env.expert_action():
                    _fail("the expert's action differs in-process and over HTTP")
            if "random_action" in capabilities:
                local = make()
                for i, task_id in enumerate(list(recorded)[:2]):
                    here = _random_episode(
                        local, task_id, seed + i, lambda e, k: e.random_action(_rng(k))
                    )
                    there = _random_episode(
                        remote_env, task_id, seed + i, lambda e, k: e.random_action(k)
                    )
                    if here != there:
                        _fail(
                            f"task {task_id!r}: random actions differ in-process and over HTTP: "
                            f"{_short(here)} vs {_short(there)}"
                        )
            if make().reset(seed=seed) != remote_env.reset(seed=seed):
                _fail(f"reset(seed={seed}) without a task id differs in-process and over HTTP")
        finally:
            remote_env.close()
        return f"{len(recorded)} episodes identical in-process and over HTTP"

    run("spec", spec)
    run("gymnasium check_env", gymnasium_api)
    run("determinism + info contract", determinism)
    run("invalid actions reported", invalid_action)
    run("snapshot/restore", snapshot_restore)
    run("expert solves sampled tasks", expert)
    run("random actions", random_action)
    run("same episodes over HTTP", over_http)
    return results
