"""``palaestra eval``: a policy over envs x a split, as a table people can paste.

A run directory holds:

- ``run.json``: the run's settings and provenance (palaestra and env package
  versions, the model, sampling, git commit);
- ``trajectories.jsonl``: one line per finished episode, written as it finishes;
- ``errors.jsonl``: episodes lost to an error (env, server or policy), with why;
- ``results.json`` / ``results.md``: the table.

``resume=True`` reads ``trajectories.jsonl`` back (dropping a line torn by a
crash), plays only the episodes that are not in it, and rebuilds the table from
all of them; it refuses when the settings that define the episodes differ.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import math
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import palaestra
from palaestra.agents.baselines import EnvPolicy
from palaestra.agents.env_pool import EnvPool, LocalEnvs, RemoteEnvs
from palaestra.agents.formats import check_format
from palaestra.agents.policy import Policy
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine, RolloutStats
from palaestra.agents.trajectory import Trajectory, TrajectoryWriter, read_trajectories
from palaestra.envs import TaskId
from palaestra.files import write_json, write_text
from palaestra.settings import NOT_IDENTITY, identity, identity_differences
from palaestra.tables import format_table

__all__ = [
    "EpisodeRunner",
    "EvalConfig",
    "EvalResult",
    "env_packages",
    "episode_loops",
    "loop_rate",
    "plan_episodes",
    "run_eval",
    "summarize",
    "wilson_interval",
]


@dataclass(frozen=True)
class EvalConfig:
    """An evaluation run.

    Attributes:
        policy: The ``--policy`` string (recorded; the policy object may be given
            to :func:`run_eval` directly).
        envs: Env ids.
        split: The split to evaluate on.
        limit: Tasks per env, evenly spread over the split (``None``: all).
        offset: Skip the split's first ``offset`` tasks (e.g. those cloned from an
            expert, when exploring the rest).
        spread: Spread the ``limit`` tasks evenly (default) or take the first ones.
        tasks: Explicit task ids per env id (replaces limit/offset/spread for the
            envs it names).
        samples: Episodes per task, with env seeds ``rollout.seed .. rollout.seed +
            samples - 1``.
        rollout: How episodes are played: format, sampling (its ``seed`` seeds the
            policy's sampling and is the first env seed), limits, prompt window.
        concurrency: Episodes at once.
        urls: palaestra servers to play on (empty: envs run in this process).

    Every field but ``concurrency`` and ``urls`` defines the run's episodes: a resumed
    run must match them (:func:`palaestra.settings.identity`).
    """

    policy: str
    envs: tuple[str, ...]
    split: str = "test"
    limit: int | None = None
    offset: int = 0
    spread: bool = True
    tasks: dict[str, list[TaskId]] | None = None
    samples: int = 1
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    concurrency: int = field(default=8, metadata=NOT_IDENTITY)
    urls: tuple[str, ...] = field(default=(), metadata=NOT_IDENTITY)

    def __post_init__(self) -> None:
        if isinstance(self.rollout, dict):  # read back from a run.json
            object.__setattr__(self, "rollout", RolloutConfig(**self.rollout))

    @property
    def seed(self) -> int:
        """The run's seed (``rollout.seed``): the first env seed, and sampling's seed."""
        return self.rollout.seed


@dataclass
class EvalResult:
    """What a run came to.

    Attributes:
        rows: One dict per env, then the macro average (``env == "macro average"``).
        table: The Markdown table.
        trajectories: Every finished trajectory of the run (resumed ones included).
        lost: Keys of episodes that ended in an error (resume plays them again).
        stats: Timing of this invocation.
    """

    rows: list[dict[str, Any]]
    table: str
    trajectories: list[Trajectory]
    lost: list[str] = field(default_factory=list)
    stats: RolloutStats = field(default_factory=RolloutStats)


@runtime_checkable
class EpisodeRunner(Protocol):
    """Plays a run's episodes somewhere other than a :class:`RolloutEngine` in this process.

    :func:`run_eval` plans the episodes, writes each trajectory as it comes back and
    makes the table; a runner only plays (e.g. on Ray workers:
    :class:`palaestra.scale.rollout_workers.RayEpisodes`). It builds the policy
    itself, wherever it plays, so it answers for it here.

    Attributes:
        name: The policy's name.
        stats: Timing of the episodes it played (summed over where they ran).
    """

    name: str
    stats: RolloutStats

    async def open(self, config: EvalConfig) -> None:
        """Get ready to play episodes of ``config`` (start workers, build the policy)."""

    def describe(self) -> dict[str, Any]:
        """The policy's provenance (:meth:`Policy.describe`), once open."""

    def unsupported(self, env_id: str) -> str | None:
        """Why the policy cannot play ``env_id`` (see :meth:`EnvPolicy.unsupported`), or None."""

    async def run(
        self,
        specs: Sequence[EpisodeSpec],
        *,
        on_trajectory: Callable[[Trajectory], None],
        on_error: Callable[[EpisodeSpec, str], None],
    ) -> None:
        """Play ``specs``: each ends in exactly one call of ``on_trajectory`` or ``on_error``."""

    def report(self) -> dict[str, Any]:
        """What results.json records of where and how the episodes ran."""

    async def aclose(self) -> None:
        """Stop what :meth:`open` started."""


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate (good for small ``n`` and 0%/100%)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(trajectories: Sequence[Trajectory], env_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per-env rows (episodes, success with 95% interval, score, turns, invalid rate) + macro."""
    rows = []
    for env_id in env_ids:
        group = [t for t in trajectories if t.env_id == env_id]
        n = len(group)
        wins = sum(t.success for t in group)
        low, high = wilson_interval(wins, n)
        turns = sum(t.turns for t in group)
        rows.append(
            {
                "env": env_id,
                "episodes": n,
                "success": wins / n if n else 0.0,
                "success_95": [low, high],
                "score": sum(t.score for t in group) / n if n else 0.0,
                "turns": turns / n if n else 0.0,
                "invalid_rate": sum(t.invalid_actions for t in group) / turns if turns else 0.0,
                "format_errors": sum(t.format_errors for t in group),
            }
        )
    played = [r for r in rows if r["episodes"]]
    if played:
        rows.append(
            {
                "env": "macro average",
                "episodes": sum(r["episodes"] for r in played),
                "success": sum(r["success"] for r in played) / len(played),
                "success_95": None,
                "score": sum(r["score"] for r in played) / len(played),
                "turns": sum(r["turns"] for r in played) / len(played),
                "invalid_rate": sum(r["invalid_rate"] for r in played) / len(played),
                "format_errors": sum(r["format_errors"] for r in played),
            }
        )
    return rows


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of :func:`summarize`'s rows."""
    headers = ["env", "episodes", "success", "95% CI", "mean score", "mean turns", "invalid"]
    cells = []
    for r in rows:
        ci = r["success_95"]
        cells.append(
            (
                r["env"],
                r["episodes"],
                f"{r['success']:.1%}",
                f"{ci[0]:.1%}-{ci[1]:.1%}" if ci else "",
                f"{r['score']:.3f}",
                f"{r['turns']:.1f}",
                f"{r['invalid_rate']:.1%}",
            )
        )
    return format_table(headers, cells)


async def plan_episodes(pool: EnvPool, config: EvalConfig) -> list[EpisodeSpec]:
    """The run's episodes: ``limit`` tasks per env spread evenly over the split, x samples."""
    specs = []
    for env_id in config.envs:
        if config.tasks is not None and env_id in config.tasks:
            for task_id in config.tasks[env_id]:
                for sample in range(config.samples):
                    specs.append(
                        EpisodeSpec(env_id, task_id, config.split, sample, config.seed + sample)
                    )
            continue
        ids = list(await pool.tasks(env_id, config.split))[config.offset :]
        if not ids:
            raise ValueError(
                f"{env_id} has no tasks in split {config.split!r} after offset {config.offset}"
            )
        count = len(ids) if config.limit is None else min(config.limit, len(ids))
        if config.spread:
            chosen = [ids[(i * len(ids)) // count] for i in range(count)]
        else:
            chosen = ids[:count]
        for task_id in chosen:
            for sample in range(config.samples):
                specs.append(
                    EpisodeSpec(env_id, task_id, config.split, sample, config.seed + sample)
                )
    return specs


def env_packages(env_ids: Sequence[str]) -> dict[str, dict[str, str] | None]:
    """Which installed distribution (and version) provides each env: its provenance.

    An env declared by a plugin's ``palaestra.envs`` entry point is credited to that
    plugin's distribution; any other to the distribution that installed the module
    of its class (``palaestra`` for the built-ins). ``None``: not installed here (an
    env known only to a server), or defined outside any distribution.
    """
    from palaestra.envs import env_class
    from palaestra.envs.registration import ENTRY_POINT_GROUP

    declared = {
        entry.name: entry.dist
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if entry.dist is not None
    }
    top_level = importlib.metadata.packages_distributions()
    found: dict[str, dict[str, str] | None] = {}
    for env_id in env_ids:
        dist = declared.get(env_id)
        if dist is not None:
            found[env_id] = {"distribution": dist.name, "version": dist.version}
            continue
        try:
            module = env_class(env_id).__module__
        except KeyError:
            found[env_id] = None
            continue
        names = top_level.get(module.split(".")[0], [])
        found[env_id] = (
            {"distribution": names[0], "version": importlib.metadata.version(names[0])}
            if names
            else None
        )
    return found


def provenance(policy: Policy | EnvPolicy | EpisodeRunner, config: EvalConfig) -> dict[str, Any]:
    """Versions, model, sampling and git commit: what a reader needs to reproduce a table."""
    packages = {}
    for name in ("gymnasium", "minigrid", "scienceworld", "textworld", "torch", "transformers"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(palaestra.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "palaestra": palaestra.__version__,
        "git_commit": commit or None,
        "envs": list(config.envs),
        "env_packages": env_packages(config.envs),
        "packages": packages,
        "policy": policy.describe(),
        "sampling": config.rollout.sampling(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _check_resumable(path: Path, config: EvalConfig) -> None:
    saved = json.loads(path.read_text())["config"]
    differ = identity_differences(saved, identity(config))
    if differ:
        details = ", ".join(f"{k}: {then!r} then, {now!r} now" for k, then, now in differ)
        raise ValueError(f"cannot resume {path.parent}: the run's settings differ ({details})")


def run_eval(
    config: EvalConfig,
    out: str | Path,
    *,
    policy: Policy | EnvPolicy | None = None,
    resume: bool = False,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    runner: EpisodeRunner | None = None,
) -> EvalResult:
    """Evaluate; write the run directory ``out``; return the table.

    Args:
        config: The run.
        out: The run directory.
        policy: The policy object (default: ``make_policy(config.policy)``, closed at
            the end; a policy given here stays open for the caller).
        resume: Continue the run in ``out``, playing only missing episodes.
        progress: Show progress bars.
        on_progress: Called with (episodes ended, episodes planned) once the
            episodes are planned and after each one ends (a caller's own progress
            display, e.g. one line per stage of AgentEvol).
        runner: Play the episodes with this runner (e.g. on Ray workers, which
            build the policy from ``config.policy``) instead of a
            ``RolloutEngine`` here; the run directory is the same either way. It
            is opened and closed here; ``policy`` must then be None.

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
        ValueError: ``resume`` with different settings, or bad settings.
    """
    out = Path(out)
    traj_path = out / "trajectories.jsonl"
    run_path = out / "run.json"
    if resume and run_path.exists():
        _check_resumable(run_path, config)
    elif traj_path.exists() and traj_path.stat().st_size > 0:
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if runner is not None:
        if policy is not None:
            raise ValueError("give run_eval a policy or a runner (which builds its own), not both")
        return asyncio.run(_run(config, out, runner, progress, on_progress, close_policy=True))
    owned = policy is None
    if policy is None:
        from palaestra.agents.policy_spec import make_policy

        policy = make_policy(config.policy)
    return asyncio.run(_run(config, out, policy, progress, on_progress, close_policy=owned))


async def _run(
    config: EvalConfig,
    out: Path,
    policy: Policy | EnvPolicy | EpisodeRunner,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
    *,
    close_policy: bool,
) -> EvalResult:
    out.mkdir(parents=True, exist_ok=True)
    traj_path = out / "trajectories.jsonl"
    done = read_trajectories(traj_path, repair=True)
    pool: EnvPool = RemoteEnvs(config.urls) if config.urls else LocalEnvs()
    runner = policy if isinstance(policy, EpisodeRunner) else None
    try:
        if runner is not None:
            await runner.open(config)
        for env_id in config.envs:
            spec = await pool.spec(env_id)
            check_format(config.rollout.format, env_id, spec.tools)
            if runner is not None:
                why = runner.unsupported(env_id)
            elif isinstance(policy, EnvPolicy):
                why = policy.unsupported(env_id, spec.capabilities)
            else:
                why = None
            if why is not None:
                raise ValueError(f"{why}: the {policy.name} policy cannot play it")
        specs = await plan_episodes(pool, config)
        planned = {s.key for s in specs}
        done = [t for t in done if t.key in planned]
        finished = {t.key for t in done}
        todo = [s for s in specs if s.key not in finished]
        record = {"config": asdict(config), "provenance": provenance(policy, config)}
        write_json(out / "run.json", record)
        engine = runner or RolloutEngine(
            policy,  # type: ignore[arg-type]  # not a runner here
            pool,
            config.rollout,
            concurrency=config.concurrency,
        )
        lost: list[str] = []

        def report() -> None:
            if on_progress is not None:
                on_progress(len(done) + len(lost), len(specs))

        report()
        with (
            TrajectoryWriter(traj_path) as writer,
            TrajectoryWriter(out / "errors.jsonl") as errors,
            _Progress(config.envs, specs, done, enabled=progress) as bar,
        ):

            def finished_one(t: Trajectory) -> None:
                writer.write(t)
                done.append(t)
                bar.advance(t)
                report()

            def failed_one(spec: EpisodeSpec, message: str) -> None:
                errors.write(
                    {
                        "key": spec.key,
                        "env_id": spec.env_id,
                        "task_id": spec.task_id,
                        "sample": spec.sample,
                        "error": message,
                    }
                )
                lost.append(spec.key)
                bar.fail(spec)
                report()

            await engine.run(todo, on_trajectory=finished_one, on_error=failed_one)
    finally:
        await pool.aclose()
        if close_policy:
            await policy.aclose()
    order = {s.key: i for i, s in enumerate(specs)}
    done.sort(key=lambda t: order[t.key])
    rows = summarize(done, config.envs)
    table = render_table(rows)
    stats = engine.stats
    summary = {
        "config": asdict(config),
        "provenance": record["provenance"],
        "rows": rows,
        "episodes_planned": len(specs),
        "episodes_finished": len(done),
        "lost": lost,
        "this_invocation": {
            "episodes": stats.episodes,
            "errors": stats.errors,
            "restarted": stats.restarted,
            "wall_s": round(stats.wall_s, 3),
            "policy_s": round(stats.policy_s, 3),
            "policy_calls": stats.calls,
            "mean_batch": round(stats.rows / stats.calls, 2) if stats.calls else None,
        },
    }
    if runner is not None:
        summary["this_invocation"]["runner"] = runner.report()
    write_json(out / "results.json", summary)
    header = (
        f"policy `{config.policy}` on split `{config.split}` "
        f"({len(done)}/{len(specs)} episodes; {config.rollout.format} format, "
        f"temperature {config.rollout.temperature}, seed {config.seed})"
    )
    write_text(out / "results.md", f"{header}\n\n{table}\n")
    return EvalResult(rows, table, done, lost, stats)


class _Progress:
    """Rich progress bars: one per env (with its running success rate), or nothing."""

    def __init__(
        self,
        env_ids: Sequence[str],
        specs: Sequence[EpisodeSpec],
        done: Sequence[Trajectory],
        *,
        enabled: bool,
    ) -> None:
        self.enabled = enabled
        self._wins = {e: sum(t.success for t in done if t.env_id == e) for e in env_ids}
        self._seen = {e: sum(1 for t in done if t.env_id == e) for e in env_ids}
        self._totals = {e: sum(1 for s in specs if s.env_id == e) for e in env_ids}
        self._tasks: dict[str, Any] = {}
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.__enter__()
        for env_id, total in self._totals.items():
            self._tasks[env_id] = self._bar.add_task(
                env_id, total=total, completed=self._seen[env_id], status=self._status(env_id)
            )
        return self

    def _status(self, env_id: str, errors: int = 0) -> str:
        seen = self._seen[env_id]
        rate = f"success {self._wins[env_id] / seen:.0%}" if seen else ""
        return rate + (f", {errors} lost" if errors else "")

    def advance(self, t: Trajectory) -> None:
        self._seen[t.env_id] += 1
        self._wins[t.env_id] += t.success
        if self._bar is not None:
            self._bar.update(self._tasks[t.env_id], advance=1, status=self._status(t.env_id))

    def fail(self, spec: EpisodeSpec) -> None:
        if self._bar is not None:
            self._bar.update(self._tasks[spec.env_id], advance=1, status="error (see errors.jsonl)")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def episode_loops(messages: Sequence[dict[str, Any]], actions: Sequence[str]) -> tuple[int, int]:
    """Loops in one episode: ``(repeated, steps)``, see :func:`loop_rate`.

    Takes a trajectory's ``messages`` and ``actions`` (not a :class:`Trajectory`), so a
    reader of raw JSON lines (``palaestra view``'s file index) counts as the table does.
    """
    repeated = steps = 0
    seen: set[tuple[str, str]] = set()
    # Observations are user messages, and tool results under the tools format.
    observations = [m["content"] for m in messages[1:] if m["role"] in ("user", "tool")]
    for observation, action in zip(observations, actions, strict=False):
        repeated += (observation, action) in seen
        seen.add((observation, action))
        steps += 1
    return repeated, steps


def loop_rate(trajectories: Sequence[Trajectory]) -> float:
    """Share of steps that repeat an (observation, action) pair met earlier in their episode.

    The same action in the same observed state is a loop: it leads where it led
    before. 0 for no steps.
    """
    repeated = steps = 0
    for t in trajectories:
        r, s = episode_loops(t.messages, t.actions)
        repeated += r
        steps += s
    return repeated / steps if steps else 0.0
