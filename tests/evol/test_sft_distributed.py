"""train_sft in several processes: accelerate launch (gloo) and Ray Train on a 2-node cluster.

Each distributed run trains the tiny model on the same expert Maze trajectories as a
one-process run, with the same whole-step batch; the loss is compared step by step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cli_runner import run_cli

from palaestra.agents.evaluate import EvalConfig, run_eval

pytest.importorskip("torch")

MAZE = "palaestra/Maze-v0"
ROOT = Path(__file__).resolve().parents[2]
# 12 steps of 8 examples, the loss logged at every step.
TRAIN = ["--steps", "12", "--batch-size", "8", "--history", "0", "--logging-steps", "1"]
RUN_FILES = ["identity.json", "model", "run.log", "sft.json", "train_log.jsonl"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("expert")
    result = run_eval(EvalConfig("expert", (MAZE,), split="train", limit=24), out, progress=False)
    from palaestra.evol.data import save_trajectories

    path = out / "data.jsonl"
    save_trajectories(sorted(result.trajectories, key=lambda t: t.key), path)
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory, data_file) -> Path:
    """The reference: the same training in one process."""
    out = tmp_path_factory.mktemp("runs") / "single"
    done = run_cli(
        "train", "sft", "--data", str(data_file), "--out", str(out), *TRAIN, "--quiet", timeout=900
    )
    assert done.returncode == 0, done.stderr
    return out


def losses(run: Path) -> list[tuple[int, float]]:
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [(e["step"], e["loss"]) for e in map(json.loads, lines) if "loss" in e]


def assert_same_curve(run: Path, reference: Path) -> None:
    mine, theirs = losses(run), losses(reference)
    assert [s for s, _ in mine] == [s for s, _ in theirs] == list(range(1, 13))
    # The same examples in each step, the loss averaged over all their tokens: equal
    # up to the order of float additions.
    for (step, a), (_, b) in zip(mine, theirs, strict=True):
        assert a == pytest.approx(b, rel=1e-3), f"step {step}: {a} vs {b}"
    assert mine[-1][1] < 0.8 * mine[0][1]  # it learns
    summary, ref = (json.loads((r / "sft.json").read_text()) for r in (run, reference))
    assert summary["losses"][-1][1] == pytest.approx(ref["losses"][-1][1], rel=1e-3)
    # every process's tokens are counted (before the fix: the main one's only)
    assert summary["train_tokens"] == ref["train_tokens"]
    assert summary["examples"] == ref["examples"] and summary["steps"] == ref["steps"] == 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batches_split_evenly_over_processes() -> None:
    from palaestra.evol.sft import per_process_batch

    assert per_process_batch(16, 1) == 16 and per_process_batch(16, 2) == 8
    with pytest.raises(ValueError, match="batch_size 9 does not split over 2 processes"):
        per_process_batch(9, 2)


def test_the_rank_comes_from_the_launcher_env(monkeypatch) -> None:
    from palaestra.evol.sft import distributed_world, is_main_process

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed_world() == (0, 1) and is_main_process()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed_world() == (1, 2) and not is_main_process()


def test_ray_worker_flags_need_ray(tmp_path) -> None:
    done = run_cli("train", "sft", "--data", "x", "--out", str(tmp_path), "--ray-workers", "2")
    assert done.returncode == 2 and "need --ray" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two trainings on a shared 2-core machine
def test_accelerate_launch_with_two_processes_trains_as_one_process(
    tmp_path, data_file, single
) -> None:
    out = tmp_path / "two"
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file",
        str(ROOT / "examples" / "accelerate" / "cpu-2-processes.yaml"),
        "--main_process_port",
        str(free_port()),  # not torchrun's default 29500, which another run may hold
        "-m",
        "palaestra",
        "train",
        "sft",
        "--data",
        str(data_file),
        "--out",
        str(out),
        *TRAIN,
    ]
    env = {k: v for k, v in os.environ.items() if k != "PALAESTRA_TOKEN"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Before the fix the second process deleted the model folder the first was writing.
    assert_same_curve(out, single)
    assert json.loads((out / "sft.json").read_text())["processes"] == 2
    # One process printed, drew the progress bar and wrote the folder.
    assert done.stdout.count("trained 12 steps") == 1, done.stdout
    assert "in 2 processes" in done.stdout
    assert done.stderr.count("| 0/12 [") == 1  # one bar started
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    assert sorted(p.name for p in (out / "model").iterdir()) == sorted(
        p.name for p in (single / "model").iterdir()
    )


# -- Ray Train ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each: two workers can only train on two nodes."""
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "object_store_memory": 150 * 2**20,
        },
    )
    nodes.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address)
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ray_train_with_two_workers_trains_as_one_process(
    tmp_path, data_file, single, cluster, monkeypatch
) -> None:
    import shutil

    from palaestra.agents.models import resolve_model
    from palaestra.evol.data import load_trajectories
    from palaestra.evol.sft import SFTConfig
    from palaestra.evol.sft_ray import train_sft_ray

    # Relative paths, as a user types them: workers start in Ray's own folder.
    shutil.copytree(resolve_model("tiny").path, tmp_path / "base")
    out = tmp_path / "ray"
    done = run_cli(
        "train",
        "sft",
        "--model",
        "base",
        "--data",
        str(data_file),
        "--out",
        "ray",
        *TRAIN,
        "--ray",
        cluster.address,
        "--ray-workers",
        "2",
        timeout=900,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert_same_curve(out, single)
    assert "in 2 processes" in done.stdout
    # The run folder of a run without Ray, and Ray's records in OUT/ray.
    assert sorted(p.name for p in out.iterdir()) == sorted([*RUN_FILES, "ray"])

    # Asked again, the finished run is found on the driver: no worker starts.
    monkeypatch.chdir(tmp_path)
    data = load_trajectories(data_file)
    config = SFTConfig(max_steps=12, batch_size=8, history=0, logging_steps=1)
    again = train_sft_ray("base", data, out, config, workers=2)
    assert (
        again.reused
        and again.processes == 2
        and again.losses == [tuple(x) for x in json.loads((out / "sft.json").read_text())["losses"]]
    )
    with pytest.raises(FileExistsError, match="learning_rate"):
        train_sft_ray("base", data, out, replace(config, learning_rate=1e-3), workers=2)
    with pytest.raises(ValueError, match="does not split over 2 processes"):
        train_sft_ray("tiny", data, tmp_path / "odd", replace(config, batch_size=7), workers=2)
    # What the workers raise reaches the caller as itself, not wrapped by Ray Train.
    untrained = [replace(t, messages=[{**m, "loss": False} for m in t.messages]) for t in data[:2]]
    with pytest.raises(ValueError, match="no training example"):
        train_sft_ray("tiny", untrained, tmp_path / "none", config, workers=2)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_lost_node_is_replaced_and_training_resumes_from_the_checkpoint(
    tmp_path, data_file, single, cluster
) -> None:
    import threading
    import time

    from palaestra.evol.data import load_trajectories
    from palaestra.evol.sft import SFTConfig
    from palaestra.evol.sft_ray import train_sft_ray

    out = tmp_path / "lost"
    config = SFTConfig(max_steps=12, batch_size=8, history=0, logging_steps=1, save_steps=4)
    outcome: dict = {}

    def train() -> None:
        try:
            outcome["result"] = train_sft_ray(
                "tiny", load_trajectories(data_file), out, config, workers=2, max_failures=1
            )
        except BaseException as error:  # reported by the main thread
            outcome["error"] = error

    trainer = threading.Thread(target=train)
    trainer.start()
    # The checkpoint of step 4 is complete once its trainer state is written.
    saved = out / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    deadline = time.monotonic() + 900
    while not saved.exists() and trainer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert saved.exists(), outcome
    # The second node dies with its worker (one CPU each: one worker per node); a new
    # node joins, and Ray Train restarts the group on it.
    lost = next(node for node in cluster.worker_nodes)
    cluster.remove_node(lost)
    cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    trainer.join(timeout=900)
    assert not trainer.is_alive() and "error" not in outcome, outcome
    result = outcome["result"]
    assert result.steps == 12
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in log if "loss" in e]
    assert set(steps) == set(range(1, 13)) and steps[-1] == 12
    # Steps done after the checkpoint and lost with the node are done again from it,
    # never from the start.
    again = [steps[i] for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
    assert again in ([], [5]), steps
    # The resumed run is the uninterrupted one: the same loss at every step.
    reference = dict(losses(single))
    for step, loss in result.losses:
        assert loss == pytest.approx(reference[step], rel=1e-3), f"step {step}"
