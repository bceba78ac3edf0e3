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
their finished episodes; training resumes from its last checkpoint); the stages
run on :class:`palaestra.evol.stages.Stages`.

One run seed (``AgentEvolConfig.seed``) derives every random choice: the tiny
model's initial weights (``model="tiny"`` trains ``tiny:SEED``, the tiny recipe
built with that seed; seed 0 is the default tiny model), the training seed of
each stage (data order, dropout), the sampling seeds and the env seeds of every
evaluation and exploration. ``run.json`` records each derived seed under ``seeds``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.agents.evaluate import (
    EpisodeRunner,
    EvalConfig,
    EvalResult,
    env_packages,
    loop_rate,
    run_eval,
    wilson_interval,
)
from palaestra.agents.rollout import RolloutConfig
from palaestra.agents.trajectory import Trajectory
from palaestra.envs import TaskId, env_class
from palaestra.evol.data import (
    best_per_task,
    filter_trajectories,
    load_trajectories,
    merge,
    save_trajectories,
)
from palaestra.evol.progress import StageLine
from palaestra.evol.sft import SFTConfig, train_sft
from palaestra.evol.stages import Stages
from palaestra.files import write_json, write_text
from palaestra.settings import NOT_IDENTITY

if TYPE_CHECKING:
    from palaestra.agents.transformers_policy import TransformersPolicy

__all__ = [
    "AgentEvolConfig",
    "AgentEvolResult",
    "plan_tasks",
    "render_evolution_table",
    "run_agentevol",
    "seeded_model",
]


DEFAULT_ROLLOUT = RolloutConfig(max_tokens=16, max_turns=60, history=0)
"""AgentEvol's default rollout settings: short replies, 60 turns, the latest observation."""


@dataclass
class AgentEvolConfig:
    """An AgentEvol run.

    Attributes:
        envs: Env ids to train and evaluate on.
        model: The base model (anything ``--policy``/``resolve_model`` takes as a
            model); ``"tiny"`` is built with the run seed (see :func:`seeded_model`).
        iterations: Explore-and-learn rounds after behaviour cloning.
        base_tasks: Train tasks per env that the expert plays (the first ones).
        expert_noise: Probability of a random detour per turn of the expert's
            episodes (:class:`~palaestra.agents.baselines.NoisyExpertPolicy`; the
            detours are not trained on): shows BC how to get back on the path.
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
        sft: Training settings of behaviour cloning (its ``history`` and
            ``system_prompt`` are the rollout's, its ``seed`` is derived per stage).
        iteration_steps: Training steps of each later round (default ``sft.max_steps``).
        eval_tasks: Test tasks per env.
        eval_temperatures: One evaluation per temperature (0 = greedy).
        baselines: ``--policy`` names evaluated for the table (``expert`` included).
        rollout: How every episode is played (format, reply and turn limits,
            history window, system prompt); each stage sets its own temperature
            and a seed derived from ``seed``, so those two fields are not used.
        seed: The run seed: every random choice derives from it (module doc).
        tasks: Explicit ``{env: {"train": [...], "test": [...]}}`` task pools
            (default: each env's splits); see :func:`plan_tasks`.
        concurrency: Episodes at once (speed only: a resumed run may change it).
        threads: torch CPU threads for generation and training (speed only).
        ray: Play every stage's episodes on Ray rollout workers
            (:class:`palaestra.scale.rollout_workers.RayEpisodes`): the cluster's
            address, ``""`` for Ray's default, ``None`` (default) for no Ray.
        ray_workers: Rollout workers with ``ray`` (default: one per node).
    """

    envs: tuple[str, ...] = ("palaestra/Maze-v0", "palaestra/Wordle-v0")
    model: str = "tiny"
    iterations: int = 2
    base_tasks: int = 200
    expert_noise: float = 0.0
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
    rollout: RolloutConfig = DEFAULT_ROLLOUT
    seed: int = 0
    tasks: dict[str, dict[str, list[TaskId]]] | None = None
    concurrency: int = field(default=32, metadata=NOT_IDENTITY)
    threads: int | None = field(default=None, metadata=NOT_IDENTITY)
    ray: str | None = field(default=None, metadata=NOT_IDENTITY)
    ray_workers: int | None = field(default=None, metadata=NOT_IDENTITY)

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
        if isinstance(self.rollout, dict):
            self.rollout = RolloutConfig(**self.rollout)
        self.envs = tuple(self.envs)
        self.eval_temperatures = tuple(self.eval_temperatures)
        self.baselines = tuple(self.baselines)


def seeded_model(model: str, seed: int) -> str:
    """The base model of a run with seed ``seed``: ``"tiny"`` becomes ``"tiny:SEED"``.

    The tiny model is initialised at random from its recipe's seed (weights and the
    episodes its tokenizer is trained on), so a run seed must reach it; ``tiny:0``
    is the default tiny model. Any other model (``tiny:N`` named explicitly, a
    folder, a hub model) has fixed weights and is returned as is.
    """
    return f"tiny:{seed}" if model == "tiny" and seed != 0 else model


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
            "explore": spread_tasks(rest, config.explore_tasks),
            "test": spread_tasks(test, config.eval_tasks),
        }
    return plan


def spread_tasks(ids: Sequence[TaskId], count: int) -> list[TaskId]:
    """``count`` of ``ids`` spread evenly over them (all of them when there are fewer)."""
    count = min(count, len(ids))
    return [ids[(i * len(ids)) // count] for i in range(count)] if count else []


def result_rows(label: str, temperature: float, result: EvalResult) -> list[dict[str, Any]]:
    """The table rows of one evaluation of ``label`` at ``temperature``, one per env."""
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
                "loop rate": round(
                    loop_rate([t for t in result.trajectories if t.env_id == row["env"]]), 4
                ),
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
    stages = Stages(
        out, config, lambda: plan_tasks(config), resume=resume, progress=progress, log=log,
        stop_after=stop_after, provenance={"env_packages": env_packages(config.envs)},
    )  # fmt: skip
    run = _Run(config, stages)
    rows: list[dict[str, Any]] = []
    with stages:
        for name in config.baselines:
            rows += stages.run(f"baseline-{name}", partial(run.baseline, name))["rows"]
        stages.run("expert", run.expert)
        record = stages.run("bc", partial(run.train, 0, run.base_model))
        model_dir = out / record["model"]
        rows += stages.run("eval-0", partial(run.evaluate, 0, model_dir))["rows"]
        for i in range(1, config.iterations + 1):
            stages.run(f"explore-{i}", partial(run.explore, i, model_dir))
            start = run.base_model if config.retrain == "base" else str(model_dir)
            record = stages.run(f"train-{i}", partial(run.train, i, start))
            model_dir = out / record["model"]
            rows += stages.run(f"eval-{i}", partial(run.evaluate, i, model_dir))["rows"]
    table = render_evolution_table(rows)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", rows)
    return AgentEvolResult(rows, table, out)


class _Run:
    """AgentEvol's stages: each takes its progress line last and returns its record.

    Iteration ``i`` keeps its files in ``iter-i/``: ``sft/`` (training), ``eval/``,
    and for ``i >= 1`` ``explore/`` and ``data.jsonl`` (base set + kept successes).
    """

    def __init__(self, config: AgentEvolConfig, stages: Stages) -> None:
        self.config = config
        self.stages = stages
        self.out = stages.out
        self.tasks = stages.tasks
        self.base_model = seeded_model(config.model, config.seed)

    def _eval_config(
        self, policy: str, envs: Sequence[str], split: str, pool: str, rollout: RolloutConfig
    ) -> EvalConfig:
        return EvalConfig(
            policy=policy,
            envs=tuple(envs),
            split=split,
            tasks={env: self.tasks[env][pool] for env in envs},
            rollout=rollout,
            concurrency=self.config.concurrency,
        )

    def _policy(self, model_dir: Path) -> TransformersPolicy:
        from palaestra.agents.transformers_policy import TransformersPolicy

        return TransformersPolicy(str(model_dir), threads=self.config.threads)

    def _runner(self, policy: str) -> EpisodeRunner | None:
        """Ray rollout workers that build ``policy`` (a ``--policy`` string), with ``ray``."""
        if self.config.ray is None:
            return None
        from palaestra.scale.rollout_workers import RayEpisodes

        return RayEpisodes(
            policy,
            address=self.config.ray or None,
            workers=self.config.ray_workers,
            policy_options={"threads": self.config.threads},
        )

    def _test(
        self, line: StageLine, label: str, folder: Path, policy_name: str, model_dir: Path | None
    ) -> dict[str, Any]:
        """Evaluate on the test tasks: same env seeds for every policy, one run per temperature."""
        config = self.config
        rows: list[dict[str, Any]] = []
        temperatures = config.eval_temperatures if model_dir is not None else (0.0,)
        envs = config.envs if model_dir is not None else _playable(policy_name, config.envs)
        seed = self.stages.seed("eval")
        for temperature in temperatures:
            rollout = replace(config.rollout, temperature=temperature, seed=seed)
            eval_config = self._eval_config(policy_name, envs, "test", "test", rollout)
            runner = self._runner(str(model_dir) if model_dir is not None else policy_name)
            policy = self._policy(model_dir) if model_dir is not None and not runner else None
            try:
                what = "episodes" + (" (greedy)" if temperature == 0 else f" (t={temperature:g})")
                result = run_eval(
                    eval_config, folder / f"t{temperature:g}", policy=policy, resume=True,
                    progress=False, on_progress=line.episodes(what), runner=runner,
                )  # fmt: skip
            finally:
                if policy is not None:
                    asyncio.run(policy.aclose())
            rows += result_rows(label, temperature, result)
        return {"rows": rows, "seed": seed}

    def baseline(self, name: str, line: StageLine) -> dict[str, Any]:
        """``baseline-NAME``: a baseline policy on the test tasks, greedy."""
        folder = self.out / "baselines" / name
        return self._test(line, BASELINE_LABELS.get(name, name), folder, name, None)

    def evaluate(self, i: int, model_dir: Path, line: StageLine) -> dict[str, Any]:
        """``eval-i``: the model of iteration ``i`` on the test tasks."""
        label, policy = ("BC", "bc") if i == 0 else (f"AgentEvol {i}", f"iter-{i}")
        return self._test(line, label, self.out / f"iter-{i}" / "eval", policy, model_dir)

    def expert(self, line: StageLine) -> dict[str, Any]:
        """``expert``: the expert on the base tasks; its successes are the base set."""
        config = self.config
        seed = self.stages.seed("expert")
        rollout = replace(config.rollout, temperature=0.0, seed=seed)
        expert = f"expert:{config.expert_noise:g}" if config.expert_noise > 0 else "expert"
        eval_config = self._eval_config(expert, config.envs, "train", "base", rollout)
        result = run_eval(
            eval_config, self.out / "base" / "expert", resume=True, progress=False,
            on_progress=line.episodes("episodes"), runner=self._runner(expert),
        )  # fmt: skip
        kept = filter_trajectories(result.trajectories, success=True)
        _require_base_data(config, result.trajectories, kept)
        save_trajectories(kept, self.out / "base" / "data.jsonl")
        return {"trajectories": len(kept), "played": len(result.trajectories), "seed": seed}

    def explore(self, i: int, current: Path, line: StageLine) -> dict[str, Any]:
        """``explore-i``: the current model samples the explore tasks; keep its successes."""
        config = self.config
        folder = self.out / f"iter-{i}"
        seed = self.stages.seed("explore", i)
        rollout = replace(config.rollout, temperature=config.explore_temperature, seed=seed)
        eval_config = self._eval_config(f"iter-{i - 1}", config.envs, "train", "explore", rollout)
        eval_config = replace(eval_config, samples=config.samples)
        runner = self._runner(str(current))
        policy = self._policy(current) if runner is None else None
        try:
            result = run_eval(
                eval_config, folder / "explore", policy=policy, resume=True,
                progress=False, on_progress=line.episodes("episodes"), runner=runner,
            )  # fmt: skip
        finally:
            if policy is not None:
                asyncio.run(policy.aclose())
        kept = filter_trajectories(result.trajectories, success=True, min_score=config.min_score)
        if config.keep == "best":
            kept = best_per_task(kept)
        base = load_trajectories(self.out / "base" / "data.jsonl")
        save_trajectories(merge(base, kept), folder / "data.jsonl")
        return {
            "explored": len(result.trajectories),
            "successes": sum(t.success for t in result.trajectories),
            "kept": len(kept),
            "tasks_solved": len({(t.env_id, json.dumps(t.task_id)) for t in kept}),
            "seed": seed,
        }

    def train(self, i: int, start: str, line: StageLine) -> dict[str, Any]:
        """``bc`` (``i = 0``, on the base set) or ``train-i`` (on ``iter-i/data.jsonl``)."""
        config = self.config
        if i == 0:
            data = load_trajectories(self.out / "base" / "data.jsonl")
            steps = config.sft.max_steps
            seed = self.stages.seed("sft", "bc")
        else:
            data = load_trajectories(self.out / f"iter-{i}" / "data.jsonl")
            steps = config.iteration_steps or config.sft.max_steps
            seed = self.stages.seed("sft", i)
        sft = replace(
            config.sft,
            max_steps=steps,
            history=config.rollout.history,
            system_prompt=config.rollout.system_prompt,
            seed=seed,
        )
        if config.threads is not None:
            sft.threads = config.threads
        folder = self.out / f"iter-{i}" / "sft"
        result = train_sft(
            start, data, folder, sft, progress=False, callbacks=[line.trainer_callback()]
        )
        return {
            "model": str(result.model_dir.relative_to(self.out)),
            "base_model": start,
            "examples": result.examples,
            "trajectories": len(data),
            "steps": result.steps,
            "tokens_per_s": round(result.tokens_per_s),
            "final_loss": result.losses[-1][1] if result.losses else None,
            "seed": seed,
        }


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
            why += f" ({capped} stopped at max_turns={config.rollout.max_turns})"
        reasons.append(why)
    hint = (
        "raise --max-turns (the expert needs as many turns as the task takes)"
        if any(t.end == "max_turns" for t in played)
        else "choose envs whose expert solves their train tasks"
    )
    raise ValueError(
        f"stage 'expert' has no data for behaviour cloning: {'; '.join(reasons)}; {hint}"
    )


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
