"""Supervised fine-tuning on a Ray cluster: :func:`train_sft` in Ray Train workers.

Ray Train's ``TorchTrainer`` places ``workers`` processes on the cluster, sets up
their torch process group (``gloo`` on CPUs, ``nccl`` on GPUs) and the variables
``transformers.Trainer`` reads through accelerate (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``...). Each worker then runs the unchanged
:func:`~palaestra.evol.sft.train_sft`, exactly as under ``accelerate launch``: the
batch of a step is split over the workers, the data order and loss curve are those
of one process, and the main worker writes the run folder (model, ``sft.json``,
``train_log.jsonl``, ``run.log``), the same folder a run without Ray makes.

The run folder (and a model given as a folder, relative to the caller's working
folder) must be at the same path for every worker: one machine, or a file
system the nodes share (NFS...), which is also what Ray Train asks of its own
``storage_path`` on a multi-node cluster; Ray's records go to ``OUT/ray``. The
trajectories travel through Ray's object store. A worker that dies is replaced
``max_failures`` times: the new group resumes from the newest checkpoint in
``OUT/checkpoints`` (``save_steps``), as a second call without Ray would.

Ray is imported inside the functions only (the ``[ray]`` extra).

Example::

    from palaestra.evol import SFTConfig, load_trajectories
    from palaestra.evol.sft_ray import train_sft_ray

    result = train_sft_ray("tiny", load_trajectories("runs/x/trajectories.jsonl"),
                           "runs/bc", SFTConfig(max_steps=300, history=0), workers=4)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from palaestra.agents.trajectory import Trajectory
from palaestra.evol.sft import (
    SFTConfig,
    SFTResult,
    _recorded_run,
    _run_identity,
    is_main_process,
    per_process_batch,
)

__all__ = ["train_sft_ray"]


def train_sft_ray(
    model: str | Path,
    trajectories: Sequence[Trajectory],
    out: str | Path,
    config: SFTConfig | None = None,
    *,
    workers: int = 1,
    address: str | None = None,
    use_gpu: bool = False,
    cpus_per_worker: float = 1,
    max_failures: int = 0,
) -> SFTResult:
    """Fine-tune ``model`` on ``trajectories`` with ``workers`` Ray Train workers.

    Args:
        model: As for :func:`~palaestra.evol.sft.train_sft`.
        trajectories: The training data.
        out: The run folder, reachable at this path by every worker.
        config: The settings; ``batch_size`` is the whole step, split over the workers.
        workers: Training processes (Ray Train workers).
        address: The Ray cluster (``ray.init``'s address); None: the one this process
            is connected to, else ``RAY_ADDRESS`` or the latest local cluster, else a
            new local one.
        use_gpu: One GPU per worker (``nccl``); otherwise CPUs and ``gloo``.
        cpus_per_worker: CPUs Ray reserves for each worker.
        max_failures: Times a failed worker group is restarted (resuming from the
            newest checkpoint) before the run fails.

    Returns:
        The result, as :func:`~palaestra.evol.sft.train_sft` returns it (``reused``
        when ``out`` already holds this finished run: then no worker starts).

    Raises:
        FileExistsError: ``out`` holds another run (checked before any worker starts).
        ValueError: ``batch_size`` does not split over ``workers``.
        ray.train.TrainingFailedError: A worker failed more than ``max_failures``
            times; when every failure is one Python exception, that exception instead.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = config or SFTConfig()
    out = Path(out).resolve()
    per_process_batch(config.batch_size, workers)
    wanted = _run_identity(model, trajectories, config)
    done = _recorded_run(out, wanted)
    if done is not None:
        return done
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    try:
        resources: dict[str, float] = {"CPU": cpus_per_worker}
        if use_gpu:
            resources["GPU"] = 1
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={
                "model": str(model),
                "data": ray.put(list(trajectories)),
                "out": str(out),
                "config": config,
                "cwd": str(Path.cwd()),
            },
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
            ),
            run_config=RunConfig(
                name="train",
                storage_path=str(out / "ray"),
                failure_config=FailureConfig(max_failures=max_failures),
            ),
        )
        try:
            trainer.fit()
        except Exception as error:
            raise _worker_error(error) from error
    finally:
        if started_here:
            ray.shutdown()
    result = _recorded_run(out, wanted)
    if result is None:  # pragma: no cover - fit() returned without the main worker's summary
        raise RuntimeError(f"the Ray Train run ended without writing {out / 'sft.json'}")
    result.reused = False
    return result


def _train_worker(setup: dict[str, Any]) -> None:
    """One Ray Train worker: ``train_sft`` as under ``accelerate launch``."""
    import ray

    from palaestra.evol.progress import quiet_libraries
    from palaestra.evol.sft import train_sft

    # Ray Train starts workers in its own folder; a model given as a relative path
    # (``--model runs/bc/model``) means the caller's folder, as without Ray.
    os.chdir(setup["cwd"])
    out = Path(setup["out"])
    # The object ref arrives inside the config dict, so Ray does not resolve it for us.
    trajectories = ray.get(setup["data"])
    with quiet_libraries(out / "run.log" if is_main_process() else None):
        train_sft(setup["model"], trajectories, out, setup["config"], progress=False)


def _worker_error(error: Exception) -> Exception:
    """The workers' own exception when all failed alike (``ValueError``...), else ``error``.

    Ray Train wraps what a worker raised; a caller (the CLI) maps the original one
    to its message and exit status.
    """
    failures = list(getattr(error, "worker_failures", {}).values())  # ray.train.WorkerGroupError
    if failures and len({type(f) for f in failures}) == 1 and isinstance(failures[0], Exception):
        return failures[0]
    return error
