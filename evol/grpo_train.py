"""The ``grpo`` stage of a GRPO run: TRL set up, the steps taken, the curve, the model saved.

:func:`train_grpo` builds the task dataset, TRL's ``GRPOConfig`` from
:class:`~palaestra.evol.grpo.GRPOConfig`, the env pool and
:class:`~palaestra.evol.grpo_trainer.EpisodeGRPOTrainer`, resumes from the newest
checkpoint in ``folder/checkpoints`` when there is one, evaluates the learning curve
every ``eval_every`` steps, stops at ``steps`` or ``max_seconds`` of training time
(evaluations excluded; the clock survives a resume in ``clock.json``) and saves the
model (LoRA merged) in ``folder/model``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.agents.trajectory import Trajectory, TrajectoryWriter
from palaestra.envs import TaskId
from palaestra.evol.progress import StageLine
from palaestra.files import write_json

if TYPE_CHECKING:
    from palaestra.evol.grpo import GRPOConfig

__all__ = ["task_dataset", "train_grpo", "trl_config"]

CurvePoint = Callable[[int, Any, float], dict[str, Any]]
"""``evaluate(step, policy, train_seconds) -> point``: one point of the learning curve."""


def task_dataset(tasks: dict[str, dict[str, list[TaskId]]]) -> Any:
    """A ``datasets.Dataset`` with one row per train task (``prompt``, ``env_id``, ``task_id``).

    The ``prompt`` column is TRL's required one; the episode's real prompts are made
    by the rollout engine (``task_id`` is JSON, so int and str ids survive).
    """
    from datasets import Dataset

    rows = [
        {
            "prompt": [{"role": "user", "content": f"{env_id} task {task_id}"}],
            "env_id": env_id,
            "task_id": json.dumps(task_id),
        }
        for env_id, pools in tasks.items()
        for task_id in pools["train"]
    ]
    if not rows:
        raise ValueError("no train task to play")
    return Dataset.from_list(rows)


def trl_config(config: GRPOConfig, output_dir: Path, seed: int) -> Any:
    """TRL's ``GRPOConfig`` for a run: one generation per step, every reply its own row."""
    import torch
    from trl import GRPOConfig as TRLGRPOConfig

    return TRLGRPOConfig(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.tasks_per_step * config.group_size,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=config.group_size,
        num_iterations=1,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=config.warmup_steps,
        beta=config.beta,
        epsilon=config.epsilon,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        temperature=config.rollout.temperature,
        max_completion_length=config.rollout.max_tokens,
        logging_steps=1,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        log_completions=False,
    )


def make_trainer(
    config: GRPOConfig,
    start: str,
    tasks: dict[str, dict[str, list[TaskId]]],
    output_dir: Path,
    *,
    seed: int,
    on_episodes: Callable[[list[Trajectory]], None] | None = None,
    trainer_class: type | None = None,
) -> Any:
    """The :class:`~palaestra.evol.grpo_trainer.EpisodeGRPOTrainer` of a run, ready to train.

    Loads ``start`` (float32, left padding), builds the task dataset, TRL's config
    (checkpoints in ``output_dir``), the env pool (``config.urls`` or this process)
    and the reward function. ``trainer_class``: a subclass to build instead.
    """
    from transformers import set_seed

    from palaestra.agents.env_pool import LocalEnvs, RemoteEnvs
    from palaestra.agents.models import load_model, resolve_model
    from palaestra.evol.grpo_trainer import EpisodeGRPOTrainer, episode_reward

    set_seed(seed)
    model, tokenizer = load_model(resolve_model(start), dtype="float32")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
            target_modules="all-linear",
        )  # fmt: skip
    envs = RemoteEnvs(config.urls) if config.urls else LocalEnvs()  # token: $PALAESTRA_TOKEN
    return (trainer_class or EpisodeGRPOTrainer)(
        model=model,
        reward_funcs=[episode_reward(config.reward, config.turn_penalty)],
        args=trl_config(config, output_dir, seed),
        train_dataset=task_dataset(tasks),
        processing_class=tokenizer,
        peft_config=peft_config,
        envs=envs,
        rollout=config.rollout,
        seed=seed,
        on_episodes=on_episodes,
        drop_flat_groups=config.drop_flat_groups,
        weigh_episodes=config.weigh_episodes,
    )


def train_grpo(
    config: GRPOConfig,
    start: str,
    tasks: dict[str, dict[str, list[TaskId]]],
    folder: Path,
    *,
    seed: int,
    line: StageLine | None = None,
    evaluate: CurvePoint | None = None,
) -> dict[str, Any]:
    """Train ``start`` with GRPO on the train tasks of ``tasks``; the model in ``folder/model``.

    Args:
        config: The run's settings.
        start: The start model (a name for :func:`~palaestra.agents.models.resolve_model`).
        tasks: The run's task plan.
        folder: Where checkpoints, logs, the curve and the model go.
        seed: The stage's seed (TRL's seed, and every episode's through the trainer).
        line: The stage's progress line.
        evaluate: Gives a curve point (step 0, then every ``eval_every`` steps).

    Returns:
        The stage's record: steps, episodes, replies trained on, tokens, times.
    """
    import torch
    from transformers import TrainerCallback

    from palaestra.evol.sft import _own_callbacks, latest_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    episodes_path = folder / "episodes.jsonl"
    curve_path = folder / "curve.jsonl"
    clock_path = folder / "clock.json"
    clock = json.loads(clock_path.read_text()) if clock_path.exists() else {"train_seconds": 0.0}
    counts = {"episodes": 0, "replies": 0, "generated_tokens": 0}

    def on_episodes(played: list[Trajectory]) -> None:
        with TrajectoryWriter(episodes_path) as writer:
            for t in played:
                counts["episodes"] += 1
                counts["replies"] += t.turns
                counts["generated_tokens"] += sum(len(x["completion_ids"]) for x in t.tokens or [])
                record = {k: v for k, v in t.to_json().items() if k != "tokens"}
                writer.write({**record, "step": trainer.state.global_step})

    trainer = make_trainer(config, start, tasks, folder / "checkpoints", seed=seed,
                           on_episodes=on_episodes)  # fmt: skip
    tokenizer = trainer.processing_class
    done_points = (
        {json.loads(x)["step"] for x in curve_path.read_text().splitlines() if x.strip()}
        if curve_path.exists()
        else set()
    )

    class _Clock(TrainerCallback):
        """Training time (evaluations excluded), the curve, and the ``max_seconds`` stop."""

        started = 0.0

        def point(self, step: int) -> None:
            if evaluate is None or step in done_points:
                return
            paused = time.perf_counter()
            value = evaluate(step, trainer._policy, clock["train_seconds"])
            with curve_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(value) + "\n")
            done_points.add(step)
            self.started += time.perf_counter() - paused  # evaluation time is not training time

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            if state.global_step == 0:
                self.point(0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            now = time.perf_counter()
            clock["train_seconds"] += now - self.started
            self.started = now
            write_json(clock_path, clock)
            if config.max_seconds is not None and clock["train_seconds"] >= config.max_seconds:
                control.should_training_stop = True
                control.should_save = True
            last = control.should_training_stop or state.global_step >= state.max_steps
            if config.eval_every and (state.global_step % config.eval_every == 0 or last):
                self.point(state.global_step)

    _own_callbacks(trainer, folder / "train_log.jsonl", progress=False)
    trainer.add_callback(_Clock())
    if line is not None:
        trainer.add_callback(line.trainer_callback())
    resume = latest_checkpoint(folder / "checkpoints")
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        trainer.close()
    final = trainer.model
    if config.lora:
        final = final.merge_and_unload()
    staging = folder / "model.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    final.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(folder / "model", ignore_errors=True)
    staging.replace(folder / "model")
    seconds = clock["train_seconds"]
    return {
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "episodes_this_invocation": counts["episodes"],
        "replies_this_invocation": counts["replies"],
        "generated_tokens_this_invocation": counts["generated_tokens"],
        "seed": seed,
        "start": start,
    }
