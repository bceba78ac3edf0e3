"""Wall time of one tiny SFT run in 1 process and in 2 (accelerate launch, Ray Train).

Every row is the same run as a user starts it (one ``palaestra train sft`` command,
a fresh run folder): the tiny model on expert Maze trajectories, ``--batch-size``
examples per step whatever the number of processes, the same steps and seed.

- ``1 process``: ``python -m palaestra train sft`` (torch's threads: one per core),
  and the same with ``--threads 1``, as each process of the other rows runs;
- ``accelerate launch``: ``accelerate launch --config_file
  examples/accelerate/cpu-2-processes.yaml -m palaestra train sft`` (gloo);
- ``Ray Train``: ``... --ray ADDRESS --ray-workers N`` on a local
  ``ray.cluster_utils.Cluster`` of 2 nodes x 1 CPU started by this script (its
  start is not timed; each row's driver connects to it and starts its workers).

Each row runs ``--repeats`` times, the rows alternating, and the fastest run is
kept. ``wall s`` is the command from start to exit (imports, model load, process
start-up, training, saving); ``train s`` is ``trainer.train()`` alone (``sft.json``,
the main process's clock). ``vs 1 process`` compares wall times. ``max |dloss|`` is
the largest gap between the row's logged losses and the one-process run's, step
by step (0: the same curve). Run on a quiet machine: every row shares its CPUs.

    python bench/sft_distributed.py [--steps 30] [--batch-size 16] [--tasks 32]
                                    [--repeats 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from palaestra.agents.evaluate import EvalConfig, run_eval
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(command: list[str], out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    summary = json.loads((out / "sft.json").read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {
        "wall": wall,
        "train": summary["seconds"],
        "tokens_per_s": summary["tokens_per_s"],
        "processes": summary["processes"],
        "losses": [e["loss"] for e in log if "loss" in e],
    }


@contextmanager
def ray_cluster(wanted: bool) -> Iterator[str | None]:
    """The address of a 2 nodes x 1 CPU local cluster while the block runs (None: no Ray)."""
    if not wanted:
        yield None
        return
    from ray.cluster_utils import Cluster

    nodes = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "object_store_memory": 150 * 2**20,
        },
    )
    try:
        nodes.add_node(num_cpus=1, object_store_memory=150 * 2**20)
        nodes.wait_for_nodes()
        yield nodes.address
    finally:
        nodes.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=32, help="expert Maze train tasks")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Train rows")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row (best kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_eval(
            EvalConfig("expert", (MAZE,), split="train", limit=args.tasks),
            tmp / "expert",
            progress=False,
        )
        data = tmp / "expert" / "trajectories.jsonl"
        train = [
            "train", "sft", "--data", str(data), "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--history", "0", "--logging-steps", "1",
            "--save-steps", str(10**6), "--quiet",
        ]  # fmt: skip
        cli = [sys.executable, "-m", "palaestra"]
        accelerate = [
            str(Path(sys.executable).with_name("accelerate")), "launch",
            "--config_file", str(ROOT / "examples" / "accelerate" / "cpu-2-processes.yaml"),
        ]  # fmt: skip
        launchers: list[tuple[str, list[str]]] = [
            ("1 process", [*cli, *train]),
            # torch's default is a thread per core; the other rows run a thread per
            # process (torchrun's and Ray's OMP_NUM_THREADS=1)
            ("1 process, --threads 1", [*cli, *train, "--threads", "1"]),
            (
                "accelerate launch, 2 processes",
                [*accelerate, "--main_process_port", str(free_port()), "-m", "palaestra", *train],
            ),
        ]
        with ray_cluster(not args.no_ray) as address:
            if address is not None:
                for workers in (1, 2):
                    launchers.append(
                        (
                            f"Ray Train, {workers} worker(s)",
                            [*cli, *train, "--ray", address, "--ray-workers", str(workers)],
                        )
                    )
            best: dict[str, dict] = {}
            for repeat in range(args.repeats):  # alternating, so load drifts hit every row
                for i, (name, command) in enumerate(launchers):
                    out = tmp / f"run{i}-{repeat}"
                    row = timed([*command, "--out", str(out)], out)
                    print(f"  {name} run {repeat + 1}: {row['wall']:.1f} s", flush=True)
                    if name not in best or row["wall"] < best[name]["wall"]:
                        best[name] = row
        rows = [(name, best[name]) for name, _ in launchers]

    base = rows[0][1]
    table = []
    for name, row in rows:
        gap = max(abs(a - b) for a, b in zip(row["losses"], base["losses"], strict=True))
        table.append(
            (
                name,
                row["processes"],
                f"{row['wall']:.1f}",
                f"{row['train']:.1f}",
                f"{row['tokens_per_s']:.0f}",
                f"{row['wall'] / base['wall']:.2f}",
                f"{row['losses'][-1]:.4f}",
                f"{gap:.1e}",
            )
        )
    print(
        f"\ntiny model, {args.steps} steps of {args.batch_size} examples "
        f"(expert Maze, {args.tasks} tasks, history 0)\n"
    )
    headers = [
        "launcher", "processes", "wall s", "train s", "tokens/s", "vs 1 process",
        "final loss", "max |dloss|",
    ]  # fmt: skip
    print(format_table(headers, table))


if __name__ == "__main__":
    main()
