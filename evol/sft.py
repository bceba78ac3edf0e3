"""Supervised fine-tuning on trajectories with ``transformers.Trainer``.

Only assistant messages whose ``loss`` flag is true are trained
(:func:`palaestra.evol.examples.tokenize_example`). Training is budgeted in
optimizer steps (``max_steps``), so runs are comparable whatever the machine.
Because it is a plain ``Trainer``, ``accelerate launch`` / ``torchrun`` (and Ray
Train, :mod:`palaestra.evol.sft_ray`) run it in several processes unchanged: the
batch of a step (``batch_size``) is split over them, so the data order and the loss
curve are those of one process, and only the main process writes the run folder
(``docs/distributed-training.md``). Checkpoints go to ``OUT/checkpoints``; a second call with
the same ``OUT`` resumes from the newest one; the final model (LoRA adapters
merged) is saved as a normal Hugging Face folder in ``OUT/model`` together with
``OUT/sft.json`` (settings, data sizes, loss curve, tokens/s). What defines the
run (the base model, a digest of the data, the settings but ``threads``,
``save_steps`` and ``logging_steps``) is written to ``OUT/identity.json`` before the
first step. A call on an ``OUT`` that holds a run, finished or not, checks it: the
same run is returned (finished) or resumed (unfinished); another model, other data
or other settings are refused (``FileExistsError``), never silently mixed.

Example::

    from palaestra.evol import SFTConfig, load_trajectories, train_sft

    result = train_sft("tiny", load_trajectories("runs/x/trajectories.jsonl"), "runs/bc",
                       SFTConfig(max_steps=300, history=0))
    print(result.model_dir, result.tokens_per_s)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from palaestra.agents.trajectory import Trajectory
from palaestra.evol.examples import IGNORE_INDEX, tokenize_example, turn_examples
from palaestra.files import write_json
from palaestra.settings import NOT_IDENTITY, identity, identity_differences

__all__ = [
    "SFTCollator",
    "SFTConfig",
    "SFTResult",
    "build_examples",
    "distributed_world",
    "is_main_process",
    "per_process_batch",
    "train_sft",
    "training_arguments",
]


@dataclass
class SFTConfig:
    """How to fine-tune.

    Attributes:
        max_steps: Optimizer steps (the budget).
        batch_size: Examples per optimizer step (before accumulation), split evenly
            over the processes of a distributed run (``accelerate launch``,
            ``torchrun``, Ray Train): the same run on one process or several.
        grad_accum: Gradient accumulation steps.
        learning_rate: Peak learning rate (cosine decay after a linear warm-up).
        warmup_ratio: Share of steps spent warming up.
        weight_decay: AdamW weight decay.
        history: Past turns per example, as the rollouts are run (``None``: whole
            conversations; ``0``: the latest observation only).
        system_prompt: Keep the system prompt in examples, as the rollouts did.
        max_length: Longest example in tokens; longer ones are dropped and counted.
        prompt_loss: Also train on the prompt's tokens (the observations, every
            token of the example): a dense next-token signal that teaches a model
            trained from scratch to read what it sees, where the replies alone give
            about one informative token per example.
        packing: Concatenate examples into rows of up to ``max_length`` tokens
            (fewer pad tokens; examples in a row can attend to each other).
        lora: Train LoRA adapters (peft) instead of every weight; merged at the end.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling.
        seed: Shuffling, dropout and initialisation seed.
        save_steps: Checkpoint every this many steps (speed only, as the next two:
            not part of the run's identity).
        threads: torch CPU threads (default: torch's choice).
        logging_steps: Record the loss every this many steps.
    """

    max_steps: int = 300
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    history: int | None = None
    system_prompt: bool = True
    max_length: int = 2048
    prompt_loss: bool = False
    packing: bool = False
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    seed: int = 0
    save_steps: int = field(default=100, metadata=NOT_IDENTITY)
    threads: int | None = field(default=None, metadata=NOT_IDENTITY)
    logging_steps: int = field(default=10, metadata=NOT_IDENTITY)


@dataclass
class SFTResult:
    """What :func:`train_sft` made.

    Attributes:
        model_dir: The trained model (a Hugging Face folder).
        steps: Optimizer steps taken.
        examples: Training examples used.
        dropped: Examples over ``max_length``.
        train_tokens: Tokens (not padding) seen in training.
        tokens_per_s: ``train_tokens`` over the training time.
        losses: ``(step, loss)`` pairs.
        seconds: Training wall time.
        processes: Training processes (1; more under ``accelerate launch``, Ray Train).
        reused: True when ``out`` already held this very run and nothing was trained.
    """

    model_dir: Path
    steps: int
    examples: int
    dropped: int
    train_tokens: int
    tokens_per_s: float
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 1
    reused: bool = False


def build_examples(
    trajectories: Sequence[Trajectory], tokenizer: Any, config: SFTConfig
) -> tuple[list[dict[str, list[int]]], int]:
    """Tokenized examples of ``trajectories`` and how many were dropped as too long."""
    examples, dropped = [], 0
    for t in trajectories:
        for conversation in turn_examples(t, config.history, system_prompt=config.system_prompt):
            encoded = tokenize_example(tokenizer, conversation, config.max_length, tools=t.tools)
            if encoded is None:
                dropped += 1
            else:
                if config.prompt_loss:
                    encoded["labels"] = list(encoded["input_ids"])
                examples.append(encoded)
    if config.packing:
        examples = _pack(examples, config.max_length, random.Random(config.seed))
    return examples, dropped


def _pack(
    examples: list[dict[str, list[int]]], max_length: int, rng: random.Random
) -> list[dict[str, list[int]]]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    rows: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": []}
    for i in order:
        example = examples[i]
        if (
            current["input_ids"]
            and len(current["input_ids"]) + len(example["input_ids"]) > max_length
        ):
            rows.append(current)
            current = {"input_ids": [], "labels": []}
        current["input_ids"] += example["input_ids"]
        current["labels"] += example["labels"]
    if current["input_ids"]:
        rows.append(current)
    return rows


class SFTCollator:
    """Pads a batch on the right; padding is masked out of attention and loss.

    Counts the real tokens it hands out (``tokens``), for a tokens/s figure.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id
        self.tokens = 0

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        """The tensors of one batch."""
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = [b["input_ids"] + [self.pad_token_id] * (width - len(b["input_ids"])) for b in batch]
        labels = [b["labels"] + [IGNORE_INDEX] * (width - len(b["labels"])) for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
        self.tokens += sum(len(b["input_ids"]) for b in batch)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder of a Trainer's output folder, if any."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def distributed_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process, as its launcher set them (``(0, 1)`` alone).

    ``torchrun``, ``accelerate launch`` (multi-process) and Ray Train's torch workers
    all set ``RANK`` and ``WORLD_SIZE`` before the training code runs; reading them
    needs no torch, so a command can tell whether it is the main process up front.
    """
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process is the main one (rank 0): the one that writes and prints."""
    return distributed_world()[0] == 0


def per_process_batch(batch_size: int, processes: int) -> int:
    """Examples per process and step when ``processes`` share a step of ``batch_size``.

    Raises:
        ValueError: ``batch_size`` does not split evenly over ``processes``.
    """
    if batch_size % processes:
        raise ValueError(
            f"batch_size {batch_size} does not split over {processes} processes: "
            f"use a multiple of {processes}"
        )
    return batch_size // processes


def training_arguments(
    config: SFTConfig, output_dir: Path, *, progress: bool, processes: int = 1
) -> Any:
    """The ``transformers.TrainingArguments`` of a run: ``config``, checkpoints in ``output_dir``.

    ``train_sft`` uses them; ``bench/sft_speed.py`` gives the same ones to a stock
    ``Trainer`` for its comparison. ``processes`` share each step's ``batch_size``.
    """
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=per_process_batch(config.batch_size, processes),
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(config.warmup_ratio * config.max_steps),
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        report_to=[],
        disable_tqdm=not progress,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        # Every parameter gets a gradient in a causal LM; the search for unused ones
        # costs an extra pass over the autograd graph per step under DDP.
        ddp_find_unused_parameters=False,
    )


def train_sft(
    model: str | Path,
    trajectories: Sequence[Trajectory],
    out: str | Path,
    config: SFTConfig | None = None,
    *,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> SFTResult:
    """Fine-tune ``model`` on ``trajectories``; resumes a run left unfinished in ``out``.

    Under ``accelerate launch`` / ``torchrun`` / Ray Train every process calls it with
    the same arguments; each trains on its share of every step's batch, the main
    process writes ``out``, and all return the same result once ``out`` is complete.

    Args:
        model: Anything :func:`palaestra.agents.resolve_model` accepts (``"tiny"``,
            a folder, ``smollm2``...).
        trajectories: The training data.
        out: The run folder (see the module doc).
        config: The settings (default :class:`SFTConfig`).
        progress: Show the trainer's progress bar.
        callbacks: ``transformers.TrainerCallback`` objects for the trainer.

    Returns:
        The result; when ``out`` already holds a finished run of the same model,
        data and settings, that run's result (``reused=True``).

    Raises:
        FileExistsError: ``out`` holds a run (finished or not) of another model,
            other data or other settings.
        ValueError: No trainable example (no assistant message with ``loss``), or
            ``batch_size`` does not split over the processes.
    """
    import torch
    from transformers import Trainer, set_seed

    from palaestra.agents.models import load_model, resolve_model

    config = config or SFTConfig()
    out = Path(out)
    summary_path = out / "sft.json"
    wanted = _run_identity(model, trajectories, config)
    done = _recorded_run(out, wanted)
    if done is not None:
        return done
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    net, tokenizer = load_model(resolve_model(str(model)), dtype="float32")
    net.train()
    examples, dropped = build_examples(trajectories, tokenizer, config)
    if not examples:
        raise ValueError(
            f"no training example in {len(trajectories)} trajectories "
            f"({dropped} over max_length={config.max_length})"
        )
    if config.lora:
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(
            net,
            LoraConfig(
                task_type="CAUSAL_LM",
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                target_modules="all-linear",
            ),
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collator = SFTCollator(pad)
    checkpoints = out / "checkpoints"
    processes = distributed_world()[1]
    args = training_arguments(config, checkpoints, progress=progress, processes=processes)
    trainer = Trainer(
        model=net,
        args=args,
        train_dataset=examples,
        data_collator=collator,
        callbacks=list(callbacks),
    )
    # Under several processes (accelerate launch, torchrun, Ray Train) every one runs
    # this function; only the main one writes the run folder, the others wait for it.
    main = trainer.is_world_process_zero()
    _own_callbacks(trainer, out / "train_log.jsonl", progress=progress and main)
    if main:
        write_json(out / IDENTITY_FILE, wanted, indent=2)
    started = time.perf_counter()
    resume = latest_checkpoint(checkpoints)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    losses = [
        (int(entry["step"]), float(entry["loss"]))
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    # Each process counted the tokens of its share of the batches.
    tokens = int(
        trainer.accelerator.reduce(
            torch.tensor(collator.tokens, device=trainer.args.device), reduction="sum"
        ).item()
    )
    staging = out / "model.tmp"
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    _save_model(trainer, tokenizer, staging, lora=config.lora, main=main)
    result = SFTResult(
        model_dir=out / "model",
        steps=trainer.state.global_step,
        examples=len(examples),
        dropped=dropped,
        train_tokens=tokens,
        tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        losses=losses,
        seconds=seconds,
        processes=processes,
    )
    if main:
        shutil.rmtree(out / "model", ignore_errors=True)
        staging.replace(out / "model")
        summary = {**wanted, **asdict(result)}
        summary["model_dir"] = "model"
        del summary["reused"]
        write_json(summary_path, summary, indent=2)
        shutil.rmtree(checkpoints, ignore_errors=True)
    # No process returns before the run folder is complete.
    trainer.accelerator.wait_for_everyone()
    return result


def _save_model(trainer: Any, tokenizer: Any, folder: Path, *, lora: bool, main: bool) -> None:
    """Save the trained model (LoRA adapters merged) and its tokenizer to ``folder``.

    Every process calls it: ``Trainer.save_model`` gathers sharded weights (DeepSpeed
    ZeRO-3, FSDP) collectively and writes on the main process only.
    """
    trainer.accelerator.wait_for_everyone()  # the main process has cleared ``folder``
    if lora:
        merged = trainer.model.merge_and_unload()
        if main:
            merged.save_pretrained(folder)
    else:
        trainer.save_model(str(folder))
    if main:
        tokenizer.save_pretrained(folder)
        # Trainer.save_model adds its pickled arguments; the model folder keeps the model.
        (folder / "training_args.bin").unlink(missing_ok=True)


def _own_callbacks(trainer: Any, log_path: Path, *, progress: bool) -> None:
    """Replace the trainer's printing with one bar (loss in it) and a log file.

    transformers prints every log dict, as text under its bar or bare without one;
    the dicts go to ``log_path`` (JSON lines, appended across resumptions) instead.
    """
    from tqdm.auto import tqdm
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LogFile(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and state.is_world_process_zero:
                with log_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    class Bar(TrainerCallback):
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.bar = tqdm(
                    total=state.max_steps, initial=state.global_step, desc="training", unit="step"
                )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if trainer.is_world_process_zero():
        log_path.parent.mkdir(parents=True, exist_ok=True)
    trainer.add_callback(LogFile())
    if progress:
        trainer.add_callback(Bar())


IDENTITY_FILE = "identity.json"
"""What defines the run in a training folder, written before its first step."""


def _run_identity(
    model: str | Path, trajectories: Sequence[Trajectory], config: SFTConfig
) -> dict[str, Any]:
    """What defines a training run: the base model, the data (a digest) and the settings."""
    digest = hashlib.sha256()
    for t in trajectories:
        digest.update(json.dumps(t.to_json(), sort_keys=True).encode("utf-8", "surrogatepass"))
    return {
        "config": identity(config),
        "model": str(model),
        "data": {"trajectories": len(trajectories), "sha256": digest.hexdigest()},
    }


def _differences(saved: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """How a recorded run (an ``identity.json`` or ``sft.json``) differs from ``mine``."""
    differ = []
    if saved.get("model") != mine["model"]:
        differ.append(f"model {saved.get('model')!r} then, {mine['model']!r} now")
    then = saved.get("data")
    if then != mine["data"]:
        now = mine["data"]["trajectories"]
        count = then.get("trajectories") if isinstance(then, dict) else None
        same_size = " of other contents" if count == now else ""
        differ.append(f"data {count} trajectories then, {now}{same_size} now")
    for key, then_value, now_value in identity_differences(saved.get("config", {}), mine["config"]):
        differ.append(f"{key} {then_value!r} then, {now_value!r} now")
    return differ


def _recorded_run(out: Path, wanted: dict[str, Any]) -> SFTResult | None:
    """The finished run ``wanted`` if ``out`` holds it; None if there is one to (re)start.

    Raises:
        FileExistsError: ``out`` holds another run, finished or not.
    """
    summary_path = out / "sft.json"
    if summary_path.exists():
        return _finished_run(out, json.loads(summary_path.read_text()), wanted)
    _check_unfinished(out, wanted)
    return None


def _finished_run(out: Path, summary: dict[str, Any], wanted: dict[str, Any]) -> SFTResult:
    """The run recorded in ``out/sft.json`` if it is the one asked for; else FileExistsError."""
    differ = _differences(summary, wanted)
    if differ:
        raise FileExistsError(
            f"{out} already holds a finished training run of other settings "
            f"({'; '.join(differ)}); choose another --out, or delete {out} to train again"
        )
    result = _result_from_json(out, summary)
    result.reused = True
    return result


def _check_unfinished(out: Path, wanted: dict[str, Any]) -> None:
    """Refuse to resume an unfinished run in ``out`` unless it is the one asked for.

    Raises:
        FileExistsError: ``out`` holds checkpoints of another model, other data or
            other settings, or checkpoints with no record of what they train.
    """
    recorded = out / IDENTITY_FILE
    if recorded.exists():
        differ = _differences(json.loads(recorded.read_text()), wanted)
        if differ:
            raise FileExistsError(
                f"{out} holds an unfinished training run of other settings "
                f"({'; '.join(differ)}); choose another --out, or delete {out} to train again"
            )
    elif latest_checkpoint(out / "checkpoints") is not None:
        raise FileExistsError(
            f"{out} holds checkpoints of an unknown training run (no {IDENTITY_FILE}); "
            f"choose another --out, or delete {out} to train again"
        )


def _result_from_json(out: Path, summary: dict[str, Any]) -> SFTResult:
    return SFTResult(
        model_dir=out / summary["model_dir"],
        steps=summary["steps"],
        examples=summary["examples"],
        dropped=summary["dropped"],
        train_tokens=summary["train_tokens"],
        tokens_per_s=summary["tokens_per_s"],
        losses=[tuple(x) for x in summary["losses"]],
        seconds=summary["seconds"],
        processes=summary.get("processes", 1),  # runs recorded before it was kept: one
    )
