"""Online RL: multi-turn GRPO over palaestra envs, on TRL's ``GRPOTrainer``, token-exact.

A run (:func:`run_grpo`, ``palaestra train grpo``) starts from a model (the tiny
model by default, any Hugging Face model, or a BC model from ``palaestra evolve``)
and, each optimizer step, plays ``group_size`` episodes on each of
``tasks_per_step`` train tasks with the rollout engine (batched, in this process
or on palaestra servers, with the history window and format that eval uses),
scores each episode (its env score by default), and takes one GRPO step on every
reply of those episodes, with the reply's group-relative advantage. The tokens
trained on are those the model generated, as it generated them
(:mod:`palaestra.evol.grpo_trainer` says how and why).

The run folder, as the other runs' (stages on :class:`~palaestra.evol.stages.Stages`,
``--resume`` continues where a run stopped):

- ``run.json``: settings, task plan, seeds, each finished stage's record;
- ``eval-0/``: the start model on the test tasks (greedy, and each
  ``eval_temperatures``), the row ``start`` of the table (unless ``eval_start`` is off);
- ``grpo/``: training: ``checkpoints/`` (TRL's, for resuming), ``train_log.jsonl``
  (TRL's logs per step: loss, reward, KL, episode success...), ``episodes.jsonl``
  (every episode played, tokens left out), ``curve.jsonl`` (success on the test
  tasks every ``eval_every`` steps, greedy) and ``model/`` at the end;
- ``eval-1/``: the trained model on the test tasks, the row ``GRPO``;
- ``results.md`` / ``results.json`` (the table, the same columns and intervals as
  ``palaestra eval``), ``plot.png`` (the learning curve).

The GPU path: ``TransformersPolicy`` generates on the model's device (``cuda``
when there is one); TRL's vLLM generation does not apply (the episodes are played
by palaestra's engine), so the speed-up there is a larger ``tasks_per_step`` (one
batched ``generate`` per turn for every running episode). Not tested here: no GPU.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from palaestra.agents.evaluate import EvalConfig, env_packages, run_eval, wilson_interval
from palaestra.agents.rollout import RolloutConfig
from palaestra.envs import TaskId
from palaestra.evol.agentevol import (
    render_evolution_table,
    result_rows,
    seeded_model,
    spread_tasks,
)
from palaestra.evol.progress import StageLine
from palaestra.evol.stages import Stages
from palaestra.files import write_json, write_text
from palaestra.settings import NOT_IDENTITY

__all__ = ["GRPOConfig", "GRPOResult", "run_grpo"]

LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
"""TRL 1.x's loss normalisations (``trl.GRPOConfig.loss_type``)."""

DEFAULT_ROLLOUT = RolloutConfig(temperature=1.0, max_tokens=16, max_turns=60, history=0)
"""GRPO's default rollouts: sampled at temperature 1, short replies, 60 turns, the latest
observation (AgentEvol's defaults, sampled)."""


@dataclass
class GRPOConfig:
    """A GRPO run.

    Attributes:
        envs: The envs to train on.
        model: The start model (``"tiny"``, a folder such as a BC model's, a hub id
            in the local cache...). ``"tiny"`` with ``seed`` N starts from ``tiny:N``.
        tasks: Task pools per env (``{env: {"train": [...], "test": [...]}}``); the
            env's splits by default.
        train_tasks: Train tasks per env, spread evenly over its pool (``None``: all).
        group_size: Episodes per task per step (GRPO's G).
        tasks_per_step: Tasks per step (each played ``group_size`` times).
        steps: Optimizer steps.
        learning_rate: AdamW's learning rate (constant; ``warmup_steps`` first).
        warmup_steps: Linear warm-up steps.
        beta: KL coefficient to the start model (0: no reference model, TRL's default).
        epsilon: PPO clip range of the ratio.
        loss_type: TRL's loss normalisation (``"dapo"``, ``"grpo"``, ``"dr_grpo"``...).
        scale_rewards: ``"group"`` (divide by the group's std), ``"batch"`` or ``"none"``.
        reward: An episode's reward: ``"score"`` (the env's), ``"success"`` or
            ``"return"`` (the sum of step rewards).
        turn_penalty: Subtracted from the reward per turn (a shaped return).
        rollout: How episodes are played (its ``temperature`` is the sampling one,
            ``seed`` unused: the run seed derives every seed).
        eval_every: Evaluate on the test tasks (greedy) every this many steps and at the
            last one (0: only the start, step 0, read back from ``eval-0``).
        eval_tasks: Test tasks per env (spread over the test pool).
        eval_temperatures: Temperatures of the start and final evaluations; greedy
            (0) is always one, as the curve is greedy.
        max_seconds: Stop training once its wall time (evaluations excluded) passes
            this (for comparisons at equal wall time); ``None``: run every step.
        eval_start: Evaluate the start model (``eval-0``, the table's ``start`` rows);
            off when the caller has those rows already (the demo's BC).
        lora: Train LoRA adapters (merged into the saved model).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling.
        seed: The run seed.
        save_steps: Checkpoint every this many steps.
        threads: torch CPU threads.
        concurrency: Episodes at once in the evaluations.
        urls: palaestra servers to play on (empty: envs in this process); their
            bearer token is read from ``$PALAESTRA_TOKEN`` (never written to ``run.json``).
        drop_flat_groups: Leave out of the step the replies of groups whose episodes all
            got the same reward (DAPO's dynamic sampling): their advantage is 0, so they
            carry no policy gradient, and the step's cost is mostly their backward pass.
            Kept when ``beta`` > 0 (they carry the KL term).
        weigh_episodes: Give every episode of a step the same weight, whatever its
            length: each reply's advantage is scaled by (mean turns / its episode's
            turns). Without it every reply weighs the same, so a failed episode that
            loops for 60 turns pushes its tokens down three times as hard as a
            20-turn success pushes its own up, and the step lowers the probability of
            what the policy does overall (on Maze the greedy success fell from 55% to
            40% and from 41% to 15% in 10 steps at lr 2e-4 without it).
    """

    envs: tuple[str, ...] = ("palaestra/Maze-v0",)
    model: str = "tiny"
    tasks: dict[str, dict[str, list[TaskId]]] | None = None
    train_tasks: int | None = None
    group_size: int = 8
    tasks_per_step: int = 2
    steps: int = 100
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    beta: float = 0.0
    epsilon: float = 0.2
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    reward: str = "score"
    turn_penalty: float = 0.0
    rollout: RolloutConfig = field(default_factory=lambda: DEFAULT_ROLLOUT)
    eval_every: int = 25
    eval_tasks: int = 50
    eval_temperatures: tuple[float, ...] = (0.0,)
    max_seconds: float | None = None
    eval_start: bool = True
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    seed: int = 0
    save_steps: int = field(default=25, metadata=NOT_IDENTITY)
    threads: int | None = field(default=None, metadata=NOT_IDENTITY)
    concurrency: int = field(default=32, metadata=NOT_IDENTITY)
    urls: tuple[str, ...] = field(default=(), metadata=NOT_IDENTITY)
    drop_flat_groups: bool = True
    weigh_episodes: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.rollout, dict):  # read back from a run.json
            self.rollout = RolloutConfig(**self.rollout)
        self.envs = tuple(self.envs)
        self.eval_temperatures = tuple(
            dict.fromkeys((0.0, *(float(t) for t in self.eval_temperatures)))
        )
        self.urls = tuple(self.urls)

    def check(self) -> None:
        """Refuse settings that cannot run.

        Raises:
            ValueError: Naming the setting and what it must be.
        """
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be >= 2 (GRPO compares a group), not {self.group_size}"
            )
        if self.tasks_per_step < 1 or self.steps < 1:
            raise ValueError("tasks_per_step and steps must be >= 1")
        if self.rollout.temperature <= 0:
            raise ValueError(
                "the rollout temperature must be > 0: GRPO learns from sampled episodes"
            )
        if self.rollout.format == "tools":
            raise ValueError(
                "GRPO plays text formats (react, json); --format tools is not supported yet"
            )
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"loss_type must be one of {', '.join(LOSS_TYPES)}, not {self.loss_type!r}"
            )
        if self.reward not in ("score", "success", "return"):
            raise ValueError(f"reward must be score, success or return, not {self.reward!r}")
        if self.learning_rate <= 0 or self.beta < 0 or self.epsilon <= 0:
            raise ValueError("learning_rate and epsilon must be > 0, beta >= 0")
        if self.eval_every < 0 or self.eval_tasks < 1:
            raise ValueError("eval_every must be >= 0 and eval_tasks >= 1")
        if self.train_tasks is not None and self.train_tasks < 1:
            raise ValueError(f"train_tasks must be >= 1, not {self.train_tasks}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, not {self.max_seconds}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(
                f"scale_rewards must be group, batch or none, not {self.scale_rewards!r}"
            )
        if not self.envs:
            raise ValueError("no env to train on")


@dataclass
class GRPOResult:
    """What a run gives: the table rows, the table, the learning curve and the model."""

    rows: list[dict[str, Any]]
    table: str
    curve: list[dict[str, Any]]
    model_dir: Path
    out: Path


def plan_tasks(config: GRPOConfig) -> dict[str, dict[str, list[TaskId]]]:
    """``{env: {"train": [...], "test": [...]}}``: the train tasks and the test tasks."""
    from palaestra.envs import env_class

    plan = {}
    for env_id in config.envs:
        pools = (config.tasks or {}).get(env_id)
        if pools is None:
            env = env_class(env_id)()
            try:
                pools = {"train": list(env.tasks("train")), "test": list(env.tasks("test"))}
            finally:
                env.close()
        train = list(pools["train"])
        if config.train_tasks is not None:
            train = spread_tasks(train, config.train_tasks)
        plan[env_id] = {
            "train": train,
            "test": spread_tasks(list(pools["test"]), config.eval_tasks),
        }
    return plan


def run_grpo(
    config: GRPOConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after: str | None = None,
) -> GRPOResult:
    """Run (or resume) GRPO in ``out``; returns the start-vs-GRPO table and the curve.

    Args:
        config: The run.
        out: The run folder (see the module doc).
        resume: Continue the run in ``out``.
        progress: One progress line per stage.
        log: Where other messages go.
        stop_after: Stop once this stage is done (``"eval-0"``, ``"grpo"``).

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
        ValueError: Bad settings, or ``resume`` with other settings.
    """
    config.check()
    out = Path(out)
    stages = Stages(
        out, config, lambda: plan_tasks(config), resume=resume, progress=progress, log=log,
        stop_after=stop_after, provenance={"env_packages": env_packages(config.envs)},
    )  # fmt: skip
    run = _Run(config, stages)
    rows: list[dict[str, Any]] = []
    model_dir = out / "grpo" / "model"
    with stages:
        start = seeded_model(config.model, config.seed)
        if config.eval_start:
            rows += stages.run("eval-0", partial(run.evaluate, "start", start, "eval-0"))["rows"]
        record = stages.run("grpo", partial(run.train, start))
        model_dir = out / record["model"]
        rows += stages.run("eval-1", partial(run.evaluate, "GRPO", str(model_dir), "eval-1"))[
            "rows"
        ]
    table = render_evolution_table(rows)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", rows)
    curve = read_curve(out / "grpo" / "curve.jsonl")
    if curve:
        plot_curve(curve, out / "plot.png")
    return GRPOResult(rows, table, curve, model_dir, out)


def read_curve(path: Path) -> list[dict[str, Any]]:
    """The learning curve points of a run (one per evaluated step, the last kept)."""
    if not path.exists():
        return []
    points: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            point = json.loads(line)
            points[point["step"]] = point
    return [points[step] for step in sorted(points)]


def plot_curve(curve: list[dict[str, Any]], path: Path) -> Path:
    """Success on the test tasks against steps, with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in curve]
    success = [100 * p["success"] for p in curve]
    low = [100 * p["interval"][0] for p in curve]
    high = [100 * p["interval"][1] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, success, marker="o")
    ax.fill_between(steps, low, high, alpha=0.2)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("success on test tasks (greedy, %)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _Run:
    """The stages of a GRPO run: each takes its progress line last and returns its record."""

    def __init__(self, config: GRPOConfig, stages: Stages) -> None:
        self.config = config
        self.stages = stages
        self.out = stages.out
        self.tasks = stages.tasks

    def _test(self, model: str, folder: Path, temperature: float, line: StageLine | None,
              policy: Any = None) -> Any:  # fmt: skip
        """``model`` (or the given ``policy``, recorded as ``model``) on the test tasks."""
        config = self.config
        rollout = replace(config.rollout, temperature=temperature, seed=self.stages.seed("eval"))
        eval_config = EvalConfig(
            policy=model,
            envs=config.envs,
            split="test",
            tasks={env: self.tasks[env]["test"] for env in config.envs},
            rollout=rollout,
            concurrency=config.concurrency,
            urls=config.urls,
        )
        owned = policy is None
        if owned:
            from palaestra.agents.transformers_policy import TransformersPolicy

            policy = TransformersPolicy(model, device=_device(), threads=config.threads)
        try:
            what = "episodes" + (" (greedy)" if temperature == 0 else f" (t={temperature:g})")
            return run_eval(
                eval_config, folder, policy=policy, resume=True, progress=False,
                on_progress=line.episodes(what) if line is not None else None,
            )  # fmt: skip
        finally:
            if owned:
                asyncio.run(policy.aclose())

    def evaluate(self, label: str, model: str, name: str, line: StageLine) -> dict[str, Any]:
        """``eval-0`` / ``eval-1``: a model on the test tasks at each eval temperature."""
        rows: list[dict[str, Any]] = []
        for temperature in self.config.eval_temperatures:
            result = self._test(model, self.out / name / f"t{temperature:g}", temperature, line)
            rows += result_rows(label, temperature, result)
        return {"rows": rows}

    def train(self, start: str, line: StageLine) -> dict[str, Any]:
        """``grpo``: the GRPO steps, with the learning curve; the model in ``grpo/model``."""
        from palaestra.evol.grpo_train import train_grpo

        folder = self.out / "grpo"
        self.start = start
        result = train_grpo(
            self.config, start, self.tasks, folder, seed=self.stages.seed("grpo"), line=line,
            evaluate=self._curve_point,
        )  # fmt: skip
        return {**result, "model": str((folder / "model").relative_to(self.out))}

    def _curve_point(self, step: int, policy: Any, seconds: float) -> dict[str, Any]:
        """Success on the test tasks (greedy) at ``step``: a point of the curve.

        Step 0 is the start model: ``eval-0``'s greedy run, read back (same tasks,
        same seeds), not played again (played here when there is no ``eval-0``).
        """
        if step == 0 and self.config.eval_start:
            result = self._test(self.start, self.out / "eval-0" / "t0", 0.0, None, policy=policy)
        else:
            folder = self.out / "grpo" / "curve" / f"step-{step}"
            shutil.rmtree(folder, ignore_errors=True)  # a resumed run plays the step again
            result = self._test(f"grpo@{step}", folder, 0.0, None, policy=policy)
        successes = sum(t.success for t in result.trajectories)
        n = len(result.trajectories)
        return {
            "step": step,
            "train_seconds": round(seconds, 1),
            "episodes": n,
            "success": successes / n if n else 0.0,
            "interval": list(wilson_interval(successes, n)),
        }
