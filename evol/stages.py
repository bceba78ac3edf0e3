"""The stage runner of an evolution run: a manifest, atomic stages, resume, one seed.

An evolution method (AgentEvol, Agent-R) is a config dataclass, a task plan and a
list of named stages. Each stage is a function that does its work in files under
the run folder and returns a JSON record (counts, the model folder it wrote...).
:class:`Stages` keeps ``run.json``:

- ``config``: the run's settings (all of them, for the record); resuming compares
  :func:`palaestra.settings.identity` of the config (fields marked ``NOT_IDENTITY``,
  such as concurrency or threads, may change) and refuses other settings;
- ``provenance``: the palaestra version and whatever the method adds;
- ``tasks``: the task plan, made once when the run starts (a resumed run keeps it);
- ``seeds``: the run seed and every seed derived from it by :meth:`Stages.seed`;
- ``stages``: the record of each finished stage, written when the stage ends.

A stage whose record is in the manifest is skipped (its record is returned as it
was); an interrupted stage runs again and is expected to resume its own files
(evaluations keep finished episodes, training resumes its checkpoint). Each stage
shows one progress line (:mod:`palaestra.evol.progress`); library chatter goes to
``run.log``. A ``ValueError`` raised in a stage is re-raised naming the stage.
``stop_after`` ends the run cleanly after the named stage (for tests of resuming).

Example, the shape of a method::

    @dataclass
    class AgentRConfig:
        envs: tuple[str, ...] = ("palaestra/Maze-v0",)
        model: str = "tiny"
        iterations: int = 3
        rollout: RolloutConfig = field(default_factory=RolloutConfig)
        sft: SFTConfig = field(default_factory=SFTConfig)
        seed: int = 0
        concurrency: int = field(default=32, metadata=NOT_IDENTITY)

    def run_agent_r(config, out, *, resume=False, progress=True, stop_after=None):
        plan = lambda: {env: {"train": [...], "test": [...]} for env in config.envs}
        with Stages(out, config, plan, resume=resume, progress=progress,
                    stop_after=stop_after) as stages:
            model = config.model
            for i in range(1, config.iterations + 1):

                def search(line: StageLine) -> dict:
                    rollout = replace(config.rollout, temperature=1.0,
                                      seed=stages.seed("search", i))
                    ...  # write out/iter-i/trees.jsonl, show progress on line
                    return {"trees": 100, "pairs": 37}

                stages.run(f"search-{i}", search)
                record = stages.run(f"train-{i}", lambda line: train(line, i))
                model = str(stages.out / record["model"])
        return stages.records   # every finished stage's record, in order
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import palaestra
from palaestra.agents.rollout import derive_seed
from palaestra.evol.progress import StageLine, StageLines, quiet_libraries
from palaestra.files import write_json
from palaestra.settings import identity, identity_differences

__all__ = ["StageWork", "Stages", "stage_seed"]

StageWork = Callable[[StageLine], dict[str, Any]]
"""A stage: does its work (showing progress on the line) and returns its JSON record."""


def stage_seed(run_seed: int, *parts: int | str) -> int:
    """A seed for one random choice of a run, derived from the run seed and names.

    Below 2**31, so every consumer takes it (numpy's legacy seeding, JVM envs,
    ``transformers.set_seed``). ``stage_seed(s, "sft", "bc")`` differs between run
    seeds and between names, and is the same in every process.
    """
    return derive_seed(run_seed, *parts) % 2**31


class _Stopped(Exception):
    """``stop_after`` reached."""


class Stages:
    """The manifest and runner of one evolution run in ``out``; use it as a context manager.

    Args:
        out: The run folder.
        config: The method's settings dataclass; needs a ``seed`` field (the run seed).
        plan: Makes the task plan (called once, when the run starts; a resumed run
            reads it back from ``run.json``).
        resume: Continue the run in ``out``.
        progress: One progress line per stage (else ``log`` says when each ends).
        log: Where skipped and finished stages are reported.
        stop_after: Stop once this stage is done.
        provenance: More provenance for ``run.json`` (e.g. env package versions).

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
        ValueError: ``resume`` with settings whose identity differs.
    """

    def __init__(
        self,
        out: str | Path,
        config: Any,
        plan: Callable[[], Any],
        *,
        resume: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
        stop_after: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out)
        self.path = self.out / "run.json"
        self.config = config
        self.log = log
        self.stop_after = stop_after
        self.lines = StageLines(progress)
        self.records: dict[str, dict[str, Any]] = {}
        self._exit = ExitStack()
        if self.path.exists():
            if not resume:
                raise FileExistsError(
                    f"{self.out} already holds a run; pass --resume to continue it "
                    "or choose another --out"
                )
            saved = json.loads(self.path.read_text())
            differ = identity_differences(saved.get("config", {}), identity(config))
            if differ:
                names = ", ".join(sorted({name.split(".")[0] for name, _, _ in differ}))
                raise ValueError(f"cannot resume {self.out}: its settings differ in {names}")
            self.data: dict[str, Any] = saved
            self.data.setdefault("seeds", {"run": config.seed})
        else:
            self.data = {
                "config": json.loads(json.dumps(asdict(config))),
                "provenance": {"palaestra": palaestra.__version__, **(provenance or {})},
                "tasks": plan(),
                "seeds": {"run": config.seed},
                "stages": {},
            }
            self._save()

    @property
    def tasks(self) -> Any:
        """The task plan of the run."""
        return self.data["tasks"]

    def seed(self, *parts: int | str) -> int:
        """The seed of one random choice (:func:`stage_seed` of the run seed), recorded."""
        value = stage_seed(self.config.seed, *parts)
        name = ":".join(str(p) for p in parts)
        if self.data["seeds"].get(name) != value:
            self.data["seeds"][name] = value
            self._save()
        return value

    def done(self, name: str) -> dict[str, Any] | None:
        """The record of stage ``name`` if it finished."""
        return self.data["stages"].get(name)

    def run(self, name: str, work: StageWork) -> dict[str, Any]:
        """Run stage ``name`` unless it finished before; its record either way.

        The record gets ``seconds`` (the stage's wall time) and is saved in
        ``run.json`` when the stage ends.

        Raises:
            ValueError: The stage's own, prefixed with ``stage 'NAME':``.
        """
        record = self.done(name)
        if record is not None:
            self.log(f"[{name}] done before ({record['seconds']:.0f}s); skipped")
        else:
            started = time.perf_counter()
            with self.lines.stage(name) as line:
                try:
                    record = work(line)
                except ValueError as error:  # e.g. no training example: say which stage
                    if str(error).startswith("stage "):
                        raise
                    raise ValueError(f"stage {name!r}: {error}") from error
                record["seconds"] = round(time.perf_counter() - started, 1)
                line.finish(f"done in {record['seconds']:.0f}s")
            self.data["stages"][name] = record
            self._save()
            if not self.lines.enabled:
                self.log(f"[{name}] done in {record['seconds']:.0f}s")
        self.records[name] = record
        if self.stop_after == name:
            raise _Stopped(name)
        return record

    def __enter__(self) -> Stages:
        self._exit.enter_context(quiet_libraries(self.out / "run.log"))
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> bool:
        self._exit.close()
        return kind is not None and issubclass(kind, _Stopped)

    def _save(self) -> None:
        write_json(self.path, self.data)
