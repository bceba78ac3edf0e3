"""AgentEvol (Xi et al. 2024, "AgentGym"): behaviour cloning, then explore and learn.

Stages, each saved under the run folder and recorded in ``run.json`` as it ends:

1. ``baselines``: the baseline policies (e.g. random, uniform, heuristic) on the
   test tasks, for the table.
2. ``expert``: the expert plays the *base* train tasks (a small subset: the
   paper clones ~6k of ~20k instructions); its successes are the base set.
3. ``bc``: fine-tune the base model on the base set (``iter-0/sft``).
4. ``eval-0``: the BC model on the test tasks, greedy and sampled.
5. For each iteration ``i``: ``explore-i`` (the current model samples ``samples``
   episodes on each *explore* train task, the ones the base set does not hold, at
   ``explore_temperature``), ``train-i`` (keep successes at or above
   ``min_score``, the best per task, merge with the base set, then retrain from
   the base model, or continue from the last model when ``retrain="continue"``)
   and ``eval-i``.

``run_agentevol(..., resume=True)`` skips the stages ``run.json`` marks done and
resumes the interrupted one where it stopped (evaluations and explorations keep
their finished episodes; training resumes from its last checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import palaestra
from palaestra.agents.evaluate import (
    EvalConfig,
    EvalResult,
    env_packages,
    run_eval,
    wilson_interval,
)
from palaestra.agents.trajectory import Trajectory
from palaestra.envs import TaskId, env_class
from palaestra.evol.data import (
    best_per_task,
    filter_trajectories,
    load_trajectories,
    merge,
    save_trajectories,
)
from palaestra.evol.progress import StageLine, StageLines, quiet_libraries
from palaestra.evol.sft import SFTConfig, train_sft
from palaestra.files import write_json, write_text

__all__ = [
    "AgentEvolConfig",
    "AgentEvolResult",
    "plan_tasks",
    "render_evolution_table",
    "run_agentevol",
]


@dataclass
class AgentEvolConfig:
    """An AgentEvol run.

    Attributes:
        envs: Env ids to train and evaluate on.
        model: The base model (anything ``--policy``/``resolve_model`` takes as a model).
        iterations: Explore-and-learn rounds after behaviour cloning.
        base_tasks: Train tasks per env that the expert plays (the first ones).
        explore_tasks: Train tasks per env explored each round, spread over the
            train tasks after the base ones (``explore_from="rest"``) or over all
            of them (``"all"``, as the paper explores every instruction).
        explore_from: ``"rest"`` or ``"all"`` (see ``explore_tasks``).
        samples: Episodes per explored task (the paper's K).
        explore_temperature: Sampling temperature while exploring.
        min_score: Lowest score kept from exploration; a dict sets it per env.
        keep: ``"best"`` (one success per task: highest score, then fewest turns)
            or ``"all"`` successes.
        retrain: ``"base"`` (each round trains the base model afresh, as the paper
            does) or ``"continue"`` (from the previous round's model).
        sft: Training settings of behaviour cloning.
        iteration_steps: Training steps of each later round (default ``sft.max_steps``).
        eval_tasks: Test tasks per env.
        eval_temperatures: One evaluation per temperature (0 = greedy).
        baselines: ``--policy`` names evaluated for the table (``expert`` included).
        max_turns: Turn cap of every episode.
        max_tokens: Longest reply.
        history: Past turns in each prompt, in rollouts and in training (0: the
            latest observation only).
        system_prompt: Send the system prompt in rollouts and keep it in training.
        format: Reply format.
        concurrency: Episodes at once.
        seed: Seeds sampling, env randomness and training.
        tasks: Explicit ``{env: {"train": [...], "test": [...]}}`` task pools
            (default: each env's splits); see :func:`plan_tasks`.
        threads: torch CPU threads for generation and training.
    """

    envs: tuple[str, ...] = ("palaestra/Maze-v0", "palaestra/Wordle-v0")
    model: str = "tiny"
    iterations: int = 2
    base_tasks: int = 200
    explore_tasks: int = 200
    explore_from: str = "rest"
    samples: int = 2
    explore_temperature: float = 1.0
    min_score: float | dict[str, float] = 1.0
    keep: str = "best"
    retrain: str = "base"
    sft: SFTConfig = field(default_factory=SFTConfig)
    iteration_steps: int | None = None
    eval_tasks: int = 100
    eval_temperatures: tuple[float, ...] = (0.0, 1.0)
    baselines: tuple[str, ...] = ()
    max_turns: int | None = 60
    max_tokens: int = 16
    history: int | None = 0
    system_prompt: bool = True
    format: str = "react"
    concurrency: int = 32
    seed: int = 0
    tasks: dict[str, dict[str, list[TaskId]]] | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.explore_from not in ("rest", "all"):
            raise ValueError(f"explore_from must be 'rest' or 'all', not {self.explore_from!r}")
        if self.keep not in ("best", "all"):
            raise ValueError(f"keep must be 'best' or 'all', not {self.keep!r}")
        if self.retrain not in ("base", "continue"):
            raise ValueError(f"retrain must be 'base' or 'continue', not {self.retrain!r}")
        if self.iterations < 0 or self.samples < 1 or self.base_tasks < 1:
            raise ValueError("need iterations >= 0, samples >= 1 and base_tasks >= 1")
        if isinstance(self.sft, dict):
            self.sft = SFTConfig(**self.sft)
        self.envs = tuple(self.envs)
        self.eval_temperatures = tuple(self.eval_temperatures)
        self.baselines = tuple(self.baselines)


@dataclass
class AgentEvolResult:
    """What a run gives: one row per (policy stage, env, temperature), and the table."""

    rows: list[dict[str, Any]]
    table: str
    out: Path


def plan_tasks(config: AgentEvolConfig) -> dict[str, dict[str, list[TaskId]]]:
    """``{env: {"base": [...], "explore": [...], "test": [...]}}`` for the run.

    Base tasks are the first ``base_tasks`` of the train pool; explore tasks are
    ``explore_tasks`` spread evenly over the rest (or over all, see
    ``explore_from``); test tasks are ``eval_tasks`` spread evenly over the test pool.
    """
    plan = {}
    for env_id in config.envs:
        pools = (config.tasks or {}).get(env_id)
        if pools is None:
            env = env_class(env_id)()
            try:
                pools = {"train": list(env.tasks("train")), "test": list(env.tasks("test"))}
            finally:
                env.close()
        train, test = list(pools["train"]), list(pools["test"])
        base = train[: config.base_tasks]
        rest = train[config.base_tasks :] if config.explore_from == "rest" else train
        plan[env_id] = {
            "base": base,
            "explore": _spread(rest, config.explore_tasks),
            "test": _spread(test, config.eval_tasks),
        }
    return plan


def _spread(ids: Sequence[TaskId], count: int) -> list[TaskId]:
    count = min(count, len(ids))
    return [ids[(i * len(ids)) // count] for i in range(count)] if count else []


class _Manifest:
    """``run.json``: the config, the task plan, and each finished stage."""

    def __init__(self, path: Path, config: AgentEvolConfig, resume: bool) -> None:
        self.path = path
        mine = json.loads(json.dumps(asdict(config)))
        if path.exists():
            if not resume:
                raise FileExistsError(
                    f"{path.parent} already holds a run; pass --resume to continue it "
                    "or choose another --out"
                )
            saved = json.loads(path.read_text())
            differ = sorted(k for k in mine if saved["config"].get(k) != mine[k])
            if differ:
                raise ValueError(
                    f"cannot resume {path.parent}: its settings differ in {', '.join(differ)}"
                )
            self.data = saved
        else:
            self.data = {
                "config": mine,
                "provenance": {
                    "palaestra": palaestra.__version__,
                    "env_packages": env_packages(config.envs),
                },
                "tasks": plan_tasks(config),
                "stages": {},
            }
            self.save()

    @property
    def tasks(self) -> dict[str, dict[str, list[TaskId]]]:
        return self.data["tasks"]

    def done(self, stage: str) -> dict[str, Any] | None:
        return self.data["stages"].get(stage)

    def finish(self, stage: str, record: dict[str, Any]) -> None:
        self.data["stages"][stage] = record
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def _rows(label: str, temperature: float, result: EvalResult) -> list[dict[str, Any]]:
    rows = []
    for row in result.rows:
        if row["env"] == "macro average":
            continue
        rows.append(
            {
                "policy": label,
                "env": row["env"],
                "temperature": temperature,
                "episodes": row["episodes"],
                "success": row["success"],
                "successes": round(row["success"] * row["episodes"]),
                "mean turns": row["turns"],
            }
        )
    return rows


def run_agentevol(
    config: AgentEvolConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after: str | None = None,
) -> AgentEvolResult:
    """Run (or resume) AgentEvol in ``out``; returns the per-stage success table.

    Args:
        config: The run.
        out: The run folder.
        resume: Continue the run in ``out`` (skipping finished stages).
        progress: One progress line per stage (library output goes to ``out/run.log``).
        log: Where the other stage messages go (skipped stages; with
            ``progress=False``, each stage's end).
        stop_after: Stop once this stage is done (for tests of resumption).

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
        ValueError: ``resume`` with other settings, or a stage that has no data
            (the message names the stage and what to change).
    """
    out = Path(out)
    manifest = _Manifest(out / "run.json", config, resume)
    with quiet_libraries(out / "run.log"):
        return _run_stages(config, out, manifest, StageLines(progress), log, stop_after)


def _run_stages(
    config: AgentEvolConfig,
    out: Path,
    manifest: _Manifest,
    lines: StageLines,
    log: Callable[[str], None],
    stop_after: str | None,
) -> AgentEvolResult:
    from palaestra.agents.transformers_policy import TransformersPolicy

    tasks = manifest.tasks
    results: list[dict[str, Any]] = []

    def stage(name: str, work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        record = manifest.done(name)
        if record is not None:
            log(f"[{name}] done before ({record['seconds']:.0f}s); skipped")
        else:
            started = time.perf_counter()
            with lines.stage(name) as line:
                try:
                    record = work(line, *args)
                except ValueError as error:  # e.g. no training example: say which stage
                    if str(error).startswith("stage "):
                        raise
                    raise ValueError(f"stage {name!r}: {error}") from error
                record["seconds"] = round(time.perf_counter() - started, 1)
                line.finish(f"done in {record['seconds']:.0f}s")
            manifest.finish(name, record)
            if not lines.enabled:
                log(f"[{name}] done in {record['seconds']:.0f}s")
        if stop_after == name:
            raise _Stopped(name)
        return record

    def evaluate(
        line: StageLine, label: str, folder: Path, policy_name: str, model_dir: Path | None
    ) -> dict:
        rows: list[dict[str, Any]] = []
        temperatures = config.eval_temperatures if model_dir is not None else (0.0,)
        envs = config.envs if model_dir is not None else _playable(policy_name, config.envs)
        for temperature in temperatures:
            eval_config = EvalConfig(
                policy=policy_name,
                envs=envs,
                split="test",
                tasks={env: tasks[env]["test"] for env in envs},
                seed=config.seed,
                format=config.format,
                temperature=temperature,
                max_tokens=config.max_tokens,
                max_turns=config.max_turns,
                history=config.history,
                system_prompt=config.system_prompt,
                concurrency=config.concurrency,
            )
            policy = _policy(model_dir) if model_dir is not None else None
            try:
                what = "episodes" + (" (greedy)" if temperature == 0 else f" (t={temperature:g})")
                result = run_eval(
                    eval_config, folder / f"t{temperature:g}", policy=policy, resume=True,
                    progress=False, on_progress=line.episodes(what),
                )  # fmt: skip
            finally:
                if policy is not None:
                    asyncio.run(policy.aclose())
            rows += _rows(label, temperature, result)
        return {"rows": rows}

    def _policy(model_dir: Path) -> TransformersPolicy:
        return TransformersPolicy(str(model_dir), threads=config.threads)

    def train(
        line: StageLine, folder: Path, data: list[Trajectory], start: str, steps: int
    ) -> dict[str, Any]:
        sft = replace(
            config.sft,
            max_steps=steps,
            history=config.history,
            system_prompt=config.system_prompt,
        )
        if config.threads is not None:
            sft.threads = config.threads
        result = train_sft(
            start, data, folder, sft, progress=False, callbacks=[line.trainer_callback()]
        )
        return {
            "model": str(result.model_dir.relative_to(out)),
            "examples": result.examples,
            "trajectories": len(data),
            "steps": result.steps,
            "tokens_per_s": round(result.tokens_per_s),
            "final_loss": result.losses[-1][1] if result.losses else None,
        }

    try:
        for name in config.baselines:
            label = BASELINE_LABELS.get(name, name)
            folder = out / "baselines" / name
            record = stage(f"baseline-{name}", evaluate, label, folder, name, None)
            results += record["rows"]

        def collect_expert(line: StageLine) -> dict[str, Any]:
            eval_config = EvalConfig(
                policy="expert",
                envs=config.envs,
                split="train",
                tasks={env: tasks[env]["base"] for env in config.envs},
                seed=config.seed,
                format=config.format,
                max_turns=config.max_turns,
                concurrency=config.concurrency,
            )
            result = run_eval(
                eval_config, out / "base" / "expert", resume=True, progress=False,
                on_progress=line.episodes("episodes"),
            )  # fmt: skip
            kept = filter_trajectories(result.trajectories, success=True)
            _require_base_data(config, result.trajectories, kept)
            save_trajectories(kept, out / "base" / "data.jsonl")
            return {"trajectories": len(kept), "played": len(result.trajectories)}

        stage("expert", collect_expert)
        base = load_trajectories(out / "base" / "data.jsonl")
        record = stage(
            "bc", train, out / "iter-0" / "sft", base, config.model, config.sft.max_steps
        )
        model_dir = out / record["model"]
        results += stage("eval-0", evaluate, "BC", out / "iter-0" / "eval", "bc", model_dir)["rows"]
        for i in range(1, config.iterations + 1):
            folder = out / f"iter-{i}"
            current = model_dir

            def explore(line: StageLine, i: int, folder: Path, current: Path) -> dict[str, Any]:
                eval_config = EvalConfig(
                    policy=f"iter-{i - 1}",
                    envs=config.envs,
                    split="train",
                    tasks={env: tasks[env]["explore"] for env in config.envs},
                    samples=config.samples,
                    seed=config.seed + 1000 * i,
                    format=config.format,
                    temperature=config.explore_temperature,
                    max_tokens=config.max_tokens,
                    max_turns=config.max_turns,
                    history=config.history,
                    system_prompt=config.system_prompt,
                    concurrency=config.concurrency,
                )
                policy = _policy(current)
                try:
                    result = run_eval(
                        eval_config, folder / "explore", policy=policy, resume=True,
                        progress=False, on_progress=line.episodes("episodes"),
                    )  # fmt: skip
                finally:
                    asyncio.run(policy.aclose())
                kept = filter_trajectories(
                    result.trajectories, success=True, min_score=config.min_score
                )
                if config.keep == "best":
                    kept = best_per_task(kept)
                save_trajectories(merge(base, kept), folder / "data.jsonl")
                return {
                    "explored": len(result.trajectories),
                    "successes": sum(t.success for t in result.trajectories),
                    "kept": len(kept),
                    "tasks_solved": len({(t.env_id, json.dumps(t.task_id)) for t in kept}),
                }

            stage(f"explore-{i}", explore, i, folder, current)
            data = load_trajectories(folder / "data.jsonl")
            start = config.model if config.retrain == "base" else str(current)
            steps = config.iteration_steps or config.sft.max_steps
            record = stage(f"train-{i}", train, folder / "sft", data, start, steps)
            model_dir = out / record["model"]
            results += stage(
                f"eval-{i}", evaluate, f"AgentEvol {i}", folder / "eval", f"iter-{i}", model_dir
            )["rows"]
    except _Stopped:
        pass
    table = render_evolution_table(results)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", results)
    return AgentEvolResult(results, table, out)


BASELINE_LABELS = {"uniform": "uniform (any move)", "random": "random (valid moves)"}
"""Table labels of baseline policies whose ``--policy`` name says too little."""


def _playable(policy_name: str, envs: Sequence[str]) -> tuple[str, ...]:
    """The envs a baseline policy can play (the heuristic has rules for some only)."""
    from palaestra.agents.baselines import EnvPolicy
    from palaestra.agents.env_pool import LocalEnvs
    from palaestra.agents.policy_spec import make_policy

    policy = make_policy(policy_name)
    if not isinstance(policy, EnvPolicy):
        return tuple(envs)
    pool = LocalEnvs()
    specs = {env: asyncio.run(pool.spec(env)) for env in envs}
    return tuple(e for e in envs if policy.unsupported(e, specs[e].capabilities) is None)


def _require_base_data(
    config: AgentEvolConfig, played: Sequence[Trajectory], kept: Sequence[Trajectory]
) -> None:
    """Stop at the expert stage, saying why and what to change, when it yields nothing to clone.

    Raises:
        ValueError: The expert succeeded on no base task of some env.
    """
    empty = [env for env in config.envs if not any(t.env_id == env for t in kept)]
    if not empty:
        return
    reasons = []
    for env in empty:
        mine = [t for t in played if t.env_id == env]
        capped = sum(t.end == "max_turns" for t in mine)
        why = f"{env}: the expert succeeded on 0 of {len(mine)} base tasks"
        if capped:
            why += f" ({capped} stopped at max_turns={config.max_turns})"
        reasons.append(why)
    hint = (
        "raise --max-turns (the expert needs as many turns as the task takes)"
        if any(t.end == "max_turns" for t in played)
        else "choose envs whose expert solves their train tasks"
    )
    raise ValueError(
        f"stage 'expert' has no data for behaviour cloning: {'; '.join(reasons)}; {hint}"
    )


class _Stopped(Exception):
    """``stop_after`` reached."""


def render_evolution_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per policy stage, a column per env x temperature, and the macro."""
    from palaestra.tables import format_table

    envs = list(dict.fromkeys(r["env"] for r in rows))
    temperatures = sorted({r["temperature"] for r in rows})
    headers = ["policy"]
    for env in envs:
        short = env.split("/")[-1]
        headers += [f"{short} {'greedy' if t == 0 else f't={t:g}'}" for t in temperatures]
    headers.append("macro (greedy)")
    lines = []
    for label in dict.fromkeys(r["policy"] for r in rows):
        line = [label]
        macro = []
        for env in envs:
            for t in temperatures:
                row = next(
                    (
                        r
                        for r in rows
                        if r["policy"] == label and r["env"] == env and r["temperature"] == t
                    ),
                    None,
                )
                if row is None:
                    line.append("")
                    continue
                low, high = wilson_interval(row["successes"], row["episodes"])
                line.append(f"{row['success']:.1%} ({low:.0%}-{high:.0%})")
                if t == 0:
                    macro.append(row["success"])
        line.append(f"{sum(macro) / len(macro):.1%}" if macro else "")
        lines.append(line)
    return format_table(headers, lines)
