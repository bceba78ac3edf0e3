"""Which evals a folder holds, what each is called, and which run a path means.

An eval folder is ``palaestra eval`` output: ``trajectories.jsonl`` beside its
``results.json`` (or ``run.json``). An evolve run (AgentEvol, Agent-R, the demo:
a ``run.json`` with ``stages``) holds many, at ``iter-N/eval/tT`` (the model of
round N at temperature T), ``baselines/NAME/tT``, ``base/expert`` and
``iter-N/explore``; :func:`describe_eval` names each from its stage's rows
("BC, greedy, test", "AgentEvol 1, t=1, test"), so a user can pick the two to compare.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["describe_eval", "eval_folders", "resolve_run"]

SKIPPED_DIRS = frozenset({"model", "__pycache__", ".git"})


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_evolve(folder: Path) -> bool:
    return "stages" in _load_json(folder / "run.json") if (folder / "run.json").is_file() else False


def _is_eval(folder: Path) -> bool:
    return (folder / "trajectories.jsonl").is_file() and (
        (folder / "results.json").is_file() or (folder / "run.json").is_file()
    )


def _temperature_text(temperature: float | None) -> str:
    if temperature is None:
        return ""
    return "greedy" if temperature == 0 else f"t={temperature:g}"


def _stage_policy(stages: dict[str, Any], stage: str, temperature: float | None) -> str | None:
    rows = (stages.get(stage) or {}).get("rows") or []
    for row in rows:
        if temperature is None or float(row.get("temperature", -1)) == temperature:
            return str(row.get("policy") or "") or None
    return None


def describe_eval(folder: Path) -> str:
    """A short name of an eval folder, from its evolve run's stages where it sits in one.

    ``iter-0/eval/t0`` of an AgentEvol run is "BC, greedy, test"; ``iter-1/eval/t1``
    is "AgentEvol 1, t=1, test"; ``baselines/random/t0`` is "random (valid moves),
    greedy, test"; an eval outside an evolve run is named by its policy.
    """
    config = _load_json(folder / "run.json").get("config") or {}
    rollout = config.get("rollout") or {}
    temperature = rollout.get("temperature")
    temperature = float(temperature) if isinstance(temperature, int | float) else None
    policy = str(config.get("policy") or "") or None
    # The evolve run holding it: a few levels up (iter-N/eval/tT, baselines/NAME/tT, base/expert).
    root: Path | None = None
    for parent in list(folder.parents)[:4]:
        if _is_evolve(parent):
            root = parent
            break
    name = policy
    if root is not None:
        stages = _load_json(root / "run.json").get("stages") or {}
        rel = folder.relative_to(root).as_posix()
        if match := re.fullmatch(r"iter-(\d+)/eval/t[^/]+", rel):
            name = _stage_policy(stages, f"eval-{match[1]}", temperature) or name
        elif match := re.fullmatch(r"baselines/([^/]+)/t[^/]+", rel):
            name = _stage_policy(stages, f"baseline-{match[1]}", temperature) or name
        elif match := re.fullmatch(r"iter-(\d+)/explore", rel):
            name = f"exploration {match[1]} by {policy}" if policy else f"exploration {match[1]}"
    samples = config.get("samples")
    parts = [
        name or folder.name,
        _temperature_text(temperature),
        f"{samples} samples" if isinstance(samples, int) and samples > 1 else "",
        str(config.get("split") or ""),
    ]
    return ", ".join(p for p in parts if p)


def eval_folders(root: Path) -> list[tuple[Path, str]]:
    """The eval folders under ``root`` (itself included), each with :func:`describe_eval`."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("checkpoint-")
        )
        here = Path(dirpath)
        if _is_eval(here):
            found.append((here, describe_eval(here)))
    return found


def _listing(root: Path, folders: list[tuple[Path, str]]) -> str:
    return "; ".join(f"{f.relative_to(root).as_posix()} ({name})" for f, name in folders)


def resolve_run(path: str | Path) -> Path:
    """The trajectories file a RUN argument means.

    Args:
        path: A ``palaestra eval`` folder (its ``trajectories.jsonl``) or a
            trajectories ``.jsonl``/``.parquet`` file.

    Raises:
        FileNotFoundError: Nothing is there.
        ValueError: It is not one run: an evolve run or a folder of runs (the
            message lists the eval folders in it, named by stage, to pick from),
            or a file that is not trajectories.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if path.suffix not in (".jsonl", ".parquet"):
            raise ValueError(f"{path} is not a trajectories file (.jsonl or .parquet)")
        return path
    if _is_evolve(path):
        folders = eval_folders(path)
        raise ValueError(
            f"{path} is an evolve run, not one eval; compare two of its eval folders: "
            + (_listing(path, folders) or "none yet")
        )
    if (path / "trajectories.jsonl").is_file():
        return path / "trajectories.jsonl"
    folders = eval_folders(path)
    if folders:
        raise ValueError(
            f"{path} holds several runs; compare two of its eval folders: "
            + _listing(path, folders)
        )
    raise ValueError(f"{path} has no trajectories.jsonl: give a palaestra eval folder or a file")
