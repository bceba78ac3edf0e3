"""SFT tokens/s of ``palaestra.evol.train_sft`` against a stock ``transformers.Trainer``.

Both train the tiny model on the same pre-tokenized examples (expert Maze
trajectories cut with ``history=0`` by ``build_examples``), with the same batch
size, steps, learning rate schedule, seed and torch thread count. The stock run
uses ``DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)`` (padding on
the right). Tokens are the real (non-pad) tokens handed to the model; seconds
are the wall time of ``trainer.train()``. Each trainer is warmed up with a few
steps, then run ``--repeats`` times (alternating) and the best run is reported.
Target: ratio (ours / stock) >= 0.95.

    python bench/sft_speed.py [--steps 60] [--batch-size 16] [--threads N] [--tasks 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

from palaestra.agents.evaluate import EvalConfig, run_eval
from palaestra.agents.models import load_model, resolve_model
from palaestra.evol.data import load_trajectories
from palaestra.evol.examples import IGNORE_INDEX
from palaestra.evol.sft import SFTConfig, build_examples, train_sft, training_arguments
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"


class CountingCollator:
    """Wraps a collator and counts the real tokens it hands out."""

    def __init__(self, inner):
        self.inner = inner
        self.tokens = 0

    def __call__(self, batch):
        self.tokens += sum(len(b["input_ids"]) for b in batch)
        return self.inner([dict(b) for b in batch])


def run_ours(trajectories, config, out):
    result = train_sft("tiny", trajectories, out, config, progress=False)
    final = result.losses[-1][1] if result.losses else float("nan")
    return result.train_tokens, result.seconds, result.steps, final


def run_stock(examples, config, out):
    set_seed(config.seed)
    net, tokenizer = load_model(resolve_model("tiny"), dtype="float32")
    net.train()
    tokenizer.padding_side = "right"
    collator = CountingCollator(
        DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    )
    args = training_arguments(config, out, progress=False)  # the same as ours
    trainer = Trainer(model=net, args=args, train_dataset=examples, data_collator=collator)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    final = float(losses[-1]) if losses else float("nan")
    return collator.tokens, seconds, trainer.state.global_step, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--tasks", type=int, default=64, help="expert Maze train tasks")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps of the warm-up runs")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per trainer")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_eval(
            EvalConfig("expert", (MAZE,), split="train", limit=args.tasks),
            tmp / "expert",
            progress=False,
        )
        trajectories = load_trajectories(tmp / "expert" / "trajectories.jsonl")

        def config(steps):
            return SFTConfig(
                max_steps=steps,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                history=0,
                save_steps=10**9,  # no checkpoint inside the timed run
                threads=torch.get_num_threads(),
            )

        _, tokenizer = load_model(resolve_model("tiny"))
        examples, dropped = build_examples(trajectories, tokenizer, config(args.steps))
        mean = sum(len(e["input_ids"]) for e in examples) / len(examples)
        print(
            f"{len(trajectories)} expert trajectories -> {len(examples)} examples "
            f"({dropped} dropped), mean {mean:.0f} tokens; threads: {torch.get_num_threads()}",
            flush=True,
        )

        runs = {"palaestra train_sft": run_ours, "transformers Trainer": run_stock}
        data = {"palaestra train_sft": trajectories, "transformers Trainer": examples}
        for name, run in runs.items():  # warm-up, not reported
            run(data[name], config(args.warmup_steps), tmp / f"warm-{name.split()[0]}")
        best: dict[str, tuple] = {}
        for repeat in range(args.repeats):
            for name, run in runs.items():
                tokens, seconds, steps, loss = run(
                    data[name], config(args.steps), tmp / f"{name.split()[0]}-{repeat}"
                )
                print(f"  {name} run {repeat + 1}: {tokens / seconds:.0f} tokens/s", flush=True)
                if name not in best or tokens / seconds > best[name][0] / best[name][1]:
                    best[name] = (tokens, seconds, steps, loss)

    stock = best["transformers Trainer"][0] / best["transformers Trainer"][1]
    rows = []
    for name, (tokens, seconds, steps, loss) in best.items():
        rate = tokens / seconds
        rows.append(
            (
                name,
                steps,
                tokens,
                f"{seconds:.1f}",
                f"{rate:.0f}",
                f"{loss:.3f}",
                f"{rate / stock:.2f}",
            )
        )
    print()
    print(
        format_table(
            ["trainer", "steps", "tokens", "seconds", "tokens/s", "final loss", "ratio"], rows
        )
    )
    ours = best["palaestra train_sft"][0] / best["palaestra train_sft"][1]
    verdict = "meets" if ours / stock >= 0.95 else "misses"
    print(f"\nratio {ours / stock:.2f} {verdict} the target >= 0.95")


if __name__ == "__main__":
    main()
