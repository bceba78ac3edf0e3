"""One progress line per stage of a run (AgentEvol, the demo), and nothing else on the terminal.

A stage line reads ``[bc] steps ━━━━━━━━ 600/900 loss 0.412`` while it
runs and stays on screen when the stage ends. What the libraries underneath would
print (transformers' loading bars and log dicts, datasets' bars, warnings) goes to
the run's log file instead (:func:`quiet_libraries`), and each training keeps its
loss log in its own folder (``train_log.jsonl``, see :mod:`palaestra.evol.sft`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["StageLine", "StageLines", "quiet_libraries"]


class StageLine:
    """The line of one running stage; does nothing when progress is off.

    Args:
        bar: A ``rich.progress.Progress`` (``None``: no output).
        name: The stage name, shown in brackets.
    """

    def __init__(self, bar: Any, name: str) -> None:
        self._bar = bar
        self._task = (
            bar.add_task(f"[{name}]", total=None, what="", status="") if bar is not None else None
        )

    def update(
        self, what: str, done: int, total: int | None = None, status: str | None = None
    ) -> None:
        """Show ``done`` of ``total`` units of ``what`` (e.g. ``"episodes (greedy)"``)."""
        if self._bar is None:
            return
        fields: dict[str, Any] = {"what": what}
        if status is not None:
            fields["status"] = status
        self._bar.update(self._task, completed=done, total=total, **fields)

    def episodes(self, what: str) -> Callable[[int, int], None]:
        """A ``run_eval(on_progress=...)`` hook showing its episodes on this line."""
        return lambda done, total: self.update(what, done, total)

    def trainer_callback(self) -> Any:
        """A ``transformers.TrainerCallback`` showing training steps and loss on this line."""
        from transformers import TrainerCallback

        line = self

        class _Steps(TrainerCallback):
            loss = ""

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                line.update("steps", state.global_step, state.max_steps, self.loss)

            def on_log(
                self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
            ) -> None:
                if logs and "loss" in logs:
                    self.loss = f"loss {float(logs['loss']):.3f}"

        return _Steps()

    def finish(self, status: str) -> None:
        """The line's last words (e.g. ``"done in 52s"``), shown when the block ends."""
        if self._bar is not None:
            task = self._bar.tasks[-1]
            self._bar.update(self._task, total=task.total or 1, completed=task.total or 1)
            self._bar.update(self._task, status=status)


class StageLines:
    """Makes a :class:`StageLine` per stage (rich on the terminal) or silent ones.

    Args:
        enabled: Show lines; when False every line is a no-op.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextmanager
    def stage(self, name: str) -> Iterator[StageLine]:
        """A line for stage ``name``, live while the block runs."""
        if not self.enabled:
            yield StageLine(None, name)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
        )

        bar = Progress(
            TextColumn("{task.description} {task.fields[what]}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}", markup=False),
        )
        with bar:
            yield StageLine(bar, name)


@contextmanager
def quiet_libraries(log_file: Path | None) -> Iterator[None]:
    """Send library chatter (bars, log records, warnings) to ``log_file`` while the block runs.

    Restores the libraries' settings afterwards, so a caller's own use is unaffected.
    ``None`` drops the chatter: the other processes of a distributed training, whose
    main process keeps the log.
    """
    import datasets
    import transformers

    handler: logging.Handler
    if log_file is None:
        handler = logging.NullHandler()
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    hf_logger = transformers.utils.logging.get_logger()
    loggers = [logging.getLogger(), hf_logger, logging.getLogger("datasets")]
    propagate = [logger.propagate for logger in loggers]
    bars = (
        transformers.utils.logging.is_progress_bar_enabled(),
        datasets.is_progress_bar_enabled(),
    )
    hf_handlers = list(hf_logger.handlers)
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    for logger in loggers:
        logger.addHandler(handler)
    for logger in loggers[1:]:
        logger.propagate = False
    for stream in hf_handlers:  # transformers' own stderr handler
        hf_logger.removeHandler(stream)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        for stream in hf_handlers:
            hf_logger.addHandler(stream)
        for logger, flag in zip(loggers, propagate, strict=True):
            logger.removeHandler(handler)
            logger.propagate = flag
        handler.close()
        if bars[0]:
            transformers.utils.logging.enable_progress_bar()
        if bars[1]:
            datasets.enable_progress_bars()
