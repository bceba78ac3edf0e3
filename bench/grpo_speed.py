"""Tokens/s of palaestra's multi-turn GRPO step against TRL's own single-turn GRPO.

Both rows are TRL 1.x's ``GRPOTrainer`` on the same start model, with the same TRL
settings (``palaestra.evol.grpo_train.trl_config``: learning rate, constant schedule,
loss, no KL term so no reference model, one iteration so no old-logps pass, one
generation per optimizer step, ``use_cpu`` without CUDA), the same temperature and
completion cap, and the same torch thread count:

- **palaestra multi-turn**: :class:`~palaestra.evol.grpo_trainer.EpisodeGRPOTrainer`
  built as ``train_grpo`` builds it. Each step plays ``group_size`` x
  ``tasks_per_step`` episodes of ``palaestra/Maze-v0``'s 5x5 mazes (task ids
  divisible by 3, as ``palaestra demo``) with the demo's rollout settings, and
  trains one row per reply: its recorded prompt ids and generated ids.
- **TRL single-turn**: the stock ``GRPOTrainer`` (no subclass) on plain-text
  prompts: row 1's recorded prompts, decoded (the round trip to the same ids is
  checked and reported). TRL's sampler repeats each prompt ``num_generations`` (=
  group size) times; its batch is row 1's mean rows per step rounded to a multiple
  of the group size (TRL's batch is fixed, the multi-turn step's rows vary). The
  reward is the completion's length in characters (trivial, but not constant, so
  the advantages are not all zero).

What differs, and so what the ratio measures:

- Generation. Multi-turn plays the episodes in lockstep: one batched ``generate``
  per turn over the episodes still running (at most ``group x tasks`` rows), up to
  ``max_turns`` calls a step, each followed by an env step and the next prompt
  rendered through the chat template; a reply ends at the end-of-turn token or the
  format's stop string. TRL makes one ``generate`` call for every completion of
  the step (all rows at once, prompts left-padded to the longest), ending at EOS
  or ``max_completion_length``.
- Rows per step: multi-turn's vary with the episodes' lengths; TRL's are fixed
  (see above). Prompt lengths have the same distribution, not the same rows.
- Multi-turn hands TRL the sampling log-probabilities it recorded; stock TRL
  without vLLM has none. Neither takes an extra forward pass for them.
- Training is TRL's ``_compute_loss`` in both: one forward/backward over the
  whole batch, then AdamW.

Per step: ``gen s`` is the wall time of ``_generate_and_score_completions`` (for
multi-turn: playing the episodes, envs included; for TRL: its ``generate``; both
with scoring and building the batch tensors), ``train s`` the rest of the step
(forward, backward, optimizer; logging), between TRL's ``on_step_begin`` and
``on_step_end``. Tokens are real tokens (padding excluded): prompt tokens of every
row plus generated tokens. ``tokens/s`` is (prompt + generated) per second of the
whole step, ``train tok/s`` the same per second of training, ``gen tok/s``
generated tokens per second of generation. The first ``--warmup`` steps are not
reported. Speed is printed, never asserted.

    python bench/grpo_speed.py [--steps 3] [--warmup 1] [--group-size 4] [--tasks-per-step 2]
        [--threads 1] [--model PATH|tiny] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback, set_seed
from transformers.utils import logging as hf_logging

from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.models import load_model, resolve_model
from palaestra.agents.rollout import RolloutConfig
from palaestra.envs import env_class
from palaestra.evol.grpo import GRPOConfig
from palaestra.evol.grpo_train import task_dataset, trl_config
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"
BC_MODEL = Path("/work/scratch/demo-s0/iter-0/sft/model")
"""The demo's BC model (seed 0) where a demo has run here; else the tiny model."""

# The demo's rollouts (palaestra/demo.py's demo_config), sampled at temperature 1.
DEMO_ROLLOUT = RolloutConfig(
    temperature=1.0, max_turns=60, max_tokens=12, history=1, system_prompt=False
)


@dataclass
class Step:
    """One optimizer step's batch and times."""

    rows: int
    prompt_lengths: list[int]
    completion_tokens: int
    padded_tokens: int
    gen_seconds: float
    step_seconds: float = float("nan")

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompt_lengths)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def train_seconds(self) -> float:
        return self.step_seconds - self.gen_seconds


@dataclass
class Measured:
    """Every step of one trainer, and the prompts its rows read."""

    steps: list[Step] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)


class _StepClock(TrainerCallback):
    """Wall time of each optimizer step (generation happens inside it, in ``training_step``)."""

    def __init__(self, measured: Measured) -> None:
        self.measured = measured
        self.started = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.measured.steps[-1].step_seconds = time.perf_counter() - self.started


def instrument(trainer: Any) -> Measured:
    """Time ``trainer``'s generation batches and steps and count their tokens.

    The wrapper is set on the instance, so the stock ``GRPOTrainer`` stays a stock
    one, and both rows are measured by the same code.
    """
    measured = Measured()
    inner = trainer._generate_and_score_completions

    def timed(inputs: list[dict[str, Any]]) -> dict[str, Any]:
        started = time.perf_counter()
        batch = inner(inputs)
        seconds = time.perf_counter() - started
        prompt_mask = batch["prompt_mask"].bool()
        completion_mask = batch["completion_mask"].bool()
        prompts = [ids[m].tolist() for ids, m in zip(batch["prompt_ids"], prompt_mask, strict=True)]
        measured.prompts += prompts
        measured.steps.append(
            Step(
                rows=len(prompts),
                prompt_lengths=[len(p) for p in prompts],
                completion_tokens=int(completion_mask.sum()),
                padded_tokens=prompt_mask.numel() + completion_mask.numel(),
                gen_seconds=seconds,
            )
        )
        return batch

    trainer._generate_and_score_completions = timed
    trainer.add_callback(_StepClock(measured))
    # TRL logs every step (logging_steps=1); its printed dicts would bury the table.
    trainer.remove_callback(PrinterCallback)
    return measured


def _load(model: str) -> tuple[Any, Any]:
    """The start model and tokenizer, set up as ``train_grpo`` sets them up."""
    net, tokenizer = load_model(resolve_model(model), dtype="float32")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return net, tokenizer


def maze_tasks() -> list[Any]:
    """The demo's 5x5 Maze train tasks (ids divisible by 3)."""
    return [t for t in env_class(MAZE).tasks("train") if int(t) % 3 == 0]


def run_multi_turn(config: GRPOConfig, model: str, out: Path, seed: int) -> Measured:
    """``config.steps`` steps of :class:`EpisodeGRPOTrainer`, built as ``train_grpo`` does."""
    from palaestra.evol.grpo_trainer import EpisodeGRPOTrainer, episode_reward

    set_seed(seed)
    net, tokenizer = _load(model)
    trainer = EpisodeGRPOTrainer(
        model=net,
        reward_funcs=[episode_reward(config.reward, config.turn_penalty)],
        args=trl_config(config, out, seed),
        train_dataset=task_dataset({MAZE: {"train": maze_tasks(), "test": []}}),
        processing_class=tokenizer,
        envs=LocalEnvs(),
        rollout=config.rollout,
        seed=seed,
    )
    measured = instrument(trainer)
    try:
        trainer.train()
    finally:
        trainer.close()
    return measured


def completion_length(completions: list[Any], **_: Any) -> list[float]:
    """A trivial reward: the completion's length in characters (varies, so advantages do)."""
    return [float(len(c)) for c in completions]


def run_single_turn(
    config: GRPOConfig, model: str, prompts: list[str], out: Path, seed: int
) -> Measured:
    """``config.steps`` steps of TRL's stock ``GRPOTrainer`` on plain-text ``prompts``."""
    from datasets import Dataset
    from trl import GRPOTrainer

    set_seed(seed)
    net, tokenizer = _load(model)
    trainer = GRPOTrainer(
        model=net,
        reward_funcs=[completion_length],
        args=trl_config(config, out, seed),
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tokenizer,
    )
    measured = instrument(trainer)
    trainer.train()
    return measured


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarize(name: str, steps: list[Step]) -> dict[str, Any]:
    """Per-step means of the measured steps, and the rates over their sums."""
    step_s = sum(s.step_seconds for s in steps)
    gen_s = sum(s.gen_seconds for s in steps)
    tokens = sum(s.tokens for s in steps)
    generated = sum(s.completion_tokens for s in steps)
    return {
        "name": name,
        "steps": len(steps),
        "rows": _mean([s.rows for s in steps]),
        "prompt": _mean([s.prompt_tokens for s in steps]),
        "generated": _mean([s.completion_tokens for s in steps]),
        "gen_s": gen_s / len(steps),
        "train_s": (step_s - gen_s) / len(steps),
        "step_s": step_s / len(steps),
        "tok_s": tokens / step_s,
        "train_tok_s": tokens / (step_s - gen_s),
        "gen_tok_s": generated / gen_s,
    }


COLUMNS = {
    "rows": ("rows/step", "{:.0f}"),
    "prompt": ("prompt tok/step", "{:.0f}"),
    "generated": ("gen tok/step", "{:.0f}"),
    "gen_s": ("gen s", "{:.2f}"),
    "train_s": ("train s", "{:.2f}"),
    "step_s": ("step s", "{:.2f}"),
    "tok_s": ("tokens/s", "{:.0f}"),
    "train_tok_s": ("train tok/s", "{:.0f}"),
    "gen_tok_s": ("gen tok/s", "{:.1f}"),
}


def table(multi: dict[str, Any], single: dict[str, Any]) -> str:
    """Both rows, and their ratio (multi-turn / single-turn) per column."""
    rows = [
        [r["name"], r["steps"], *(fmt.format(r[k]) for k, (_, fmt) in COLUMNS.items())]
        for r in (multi, single)
    ]
    rows.append(["ratio multi/single", "", *(f"{multi[k] / single[k]:.2f}" for k in COLUMNS)])
    return format_table(["trainer", "steps", *(title for title, _ in COLUMNS.values())], rows)


def lengths(steps: list[Step]) -> str:
    """Prompt tokens per row (mean, median, max), padding's share, and each step's times."""
    values = [n for s in steps for n in s.prompt_lengths]
    real = sum(s.tokens for s in steps)
    padded = sum(s.padded_tokens for s in steps)
    per_step = ", ".join(f"{s.gen_seconds:.1f}+{s.train_seconds:.1f}" for s in steps)
    return (
        f"prompt tokens/row mean {_mean(values):.0f}, median {statistics.median(values):.0f}, "
        f"max {max(values)}; padding {100 * (1 - real / padded):.0f}% of the batch; "
        f"gen+train s per step {per_step}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="measured steps per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="steps before them, not reported")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--tasks-per-step", type=int, default=2)
    parser.add_argument("--max-turns", type=int, default=DEMO_ROLLOUT.max_turns)
    parser.add_argument("--lr", type=float, default=GRPOConfig.learning_rate)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        default=None,
        help=f"start model (default: the demo's BC model {BC_MODEL} if it exists, else tiny)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: the tiny model, 1 step, no warm-up, group 2 x 1 task, 4 turns",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.group_size, args.tasks_per_step = 1, 0, 2, 1
        args.max_turns, args.model = 4, args.model or "tiny"
    model = args.model or (str(BC_MODEL) if BC_MODEL.exists() else "tiny")
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    total = args.warmup + args.steps
    config = GRPOConfig(
        envs=(MAZE,),
        model=model,
        group_size=args.group_size,
        tasks_per_step=args.tasks_per_step,
        steps=total,
        learning_rate=args.lr,
        rollout=replace(DEMO_ROLLOUT, max_turns=args.max_turns),
        save_steps=10**9,  # no checkpoint inside a timed step
        seed=args.seed,
    )
    config.check()
    load_before = os.getloadavg()[0]
    print(
        f"model {model}; {total} steps each ({args.warmup} warm-up); "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        multi = run_multi_turn(config, model, tmp / "multi", args.seed)
        measured_multi = multi.steps[args.warmup :]
        # TRL's prompts: the recorded prompts of the measured steps, as text.
        _, tokenizer = _load(model)
        first = sum(s.rows for s in multi.steps[: args.warmup])
        recorded = multi.prompts[first:]
        texts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in recorded]
        same = sum(
            tokenizer(text=t)["input_ids"] == ids for t, ids in zip(texts, recorded, strict=True)
        )
        mean_rows = _mean([s.rows for s in measured_multi])
        group = args.group_size
        prompts_per_step = max(1, round(mean_rows / group))
        print(
            f"multi-turn: {mean_rows:.1f} rows/step; TRL: {prompts_per_step} prompts x "
            f"{group} generations = {prompts_per_step * group} rows/step, from "
            f"{len(texts)} decoded prompts ({same} re-tokenize to the recorded ids)",
            flush=True,
        )
        single = run_single_turn(
            replace(config, tasks_per_step=prompts_per_step),
            model,
            texts,
            tmp / "single",
            args.seed,
        )
        measured_single = single.steps[args.warmup :]

    load_after = os.getloadavg()[0]
    print()
    print(
        table(
            summarize("palaestra multi-turn", measured_multi),
            summarize("TRL single-turn", measured_single),
        )
    )
    print()
    print(f"palaestra multi-turn: {lengths(measured_multi)}")
    print(f"TRL single-turn:      {lengths(measured_single)}")
    print(
        f"settings: {MAZE} 5x5 train mazes (ids % 3 == 0), group {group} x "
        f"{args.tasks_per_step} tasks, max_turns {args.max_turns}, max_tokens "
        f"{DEMO_ROLLOUT.max_tokens}, history {DEMO_ROLLOUT.history}, no system prompt, "
        f"temperature {DEMO_ROLLOUT.temperature:g}, lr {args.lr:g}, beta {config.beta:g}, "
        f"loss {config.loss_type}; {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; 1-minute load average {load_before:.1f} at the start, "
        f"{load_after:.1f} at the end (a shared machine's times vary with it)"
    )


if __name__ == "__main__":
    main()
