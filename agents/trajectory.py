"""``Trajectory``: one recorded episode, and the JSONL file trajectories stream to.

A trajectory holds the whole conversation (each message with a ``loss`` flag
saying whether a trainer should learn from it), the actions sent to the env,
per-step rewards and what the episode came to. ``TrajectoryWriter`` appends one
JSON line per finished episode and flushes it to disk at once, so a crash loses
only episodes still running.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from palaestra.envs import TaskId

__all__ = ["Trajectory", "TrajectoryWriter", "episode_key", "read_trajectories"]


def episode_key(env_id: str, split: str | None, task_id: TaskId, sample: int) -> str:
    """The identity of an episode within a run: env, split, task and sample index."""
    return f"{env_id}|{split}|{type(task_id).__name__}:{task_id}|{sample}"


@dataclass
class Trajectory:
    """One episode of a policy in an env.

    Attributes:
        env_id: The env.
        task_id: The task played.
        split: The split the task belongs to.
        sample: Which of the run's samples of this task (0 for the first).
        seed: The env's reset seed (the policy's sampling is seeded from it too).
        messages: The conversation: ``{"role", "content", "loss"}`` dicts; ``loss``
            is True on the policy's own replies. Under the tools format, OpenAI's
            shapes: an assistant message that called a tool also holds
            ``tool_calls`` (``[{"id", "type": "function", "function": {"name",
            "arguments": JSON text}}]``) and its result is a ``{"role": "tool",
            "tool_call_id", "content"}`` message.
        actions: The actions sent to the env, one per turn.
        rewards: The env's reward per step.
        success: Whether the task was accomplished.
        score: The env's 0..1 score.
        turns: Policy replies (= env steps).
        end: Why the episode ended: ``"terminated"`` (won or lost), ``"truncated"``
            (the env's step limit), ``"max_turns"`` (the run's cap) or ``"context"``
            (even the latest observation no longer fits the model's context).
        invalid_actions: Steps the env rejected as not an action of its world
            (format errors included, since they reach the env as invalid actions).
        format_errors: Replies the format's parser could not read.
        context_truncations: Turns whose prompt dropped the oldest observations to fit.
        prompt_tokens: Prompt tokens over all turns.
        completion_tokens: Generated tokens over all turns.
        timings: Seconds: ``total``, ``policy`` (waiting for replies) and ``env``.
        model: The policy's name.
        env_version: The env id (its ``-vN`` is the env version) and palaestra version.
        spliced: Made by joining parts of several episodes (an Agent-R revision
            trajectory), so its actions do not replay in the env; False for every
            played episode and in files from before this field.
        tools: The tool definitions the policy was given (tools format), so training
            renders the prompts the model saw; ``None`` otherwise and in files from
            before this field.
        tokens: Per reply, its exact tokens (``{"prompt_ids", "completion_ids",
            "logprobs"}``, see :class:`~palaestra.agents.policy.TurnTokens`) when the
            policy recorded them (online RL); ``None`` otherwise. Like ``tools``, left
            out of the JSON when ``None``.
    """

    env_id: str
    task_id: TaskId
    split: str | None
    sample: int
    seed: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool = False
    score: float = 0.0
    turns: int = 0
    end: str = ""
    invalid_actions: int = 0
    format_errors: int = 0
    context_truncations: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    env_version: str = ""
    spliced: bool = False
    tools: list[dict[str, Any]] | None = None
    tokens: list[dict[str, list[Any]]] | None = None

    @property
    def key(self) -> str:
        """See :func:`episode_key`."""
        return episode_key(self.env_id, self.split, self.task_id, self.sample)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``tools`` and ``tokens`` only when set).

        Without tools the dict, and so a JSONL line, is what it was before trajectories
        had ``tools``: digests of training data (which decide whether a run resumes)
        do not change for text episodes.
        """
        data = asdict(self)
        for optional in ("tools", "tokens"):
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_json` (unknown keys are ignored, for forward compatibility).

        Raises:
            TypeError: ``data`` is not a dict, or lacks a required field.
        """
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_trajectories(path: str | Path, *, repair: bool = False) -> list[Trajectory]:
    """Load a JSONL file of trajectories.

    Args:
        path: The file.
        repair: Drop a torn last line (a crash mid-write) from the file itself;
            without it such a line raises ``ValueError``.

    Raises:
        ValueError: A line is not a trajectory (the line number says which).
    """
    path = Path(path)
    if not path.exists():
        return []
    out: list[Trajectory] = []
    good_bytes = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no newline at the end (a torn write)")
                out.append(Trajectory.from_json(json.loads(raw)))
            except (ValueError, TypeError) as error:  # bad JSON, or not a trajectory
                rest = f.read()
                if repair and not rest.strip():
                    with path.open("r+b") as w:
                        w.truncate(good_bytes)
                    return out
                raise ValueError(f"{path}:{number}: not a trajectory: {error}") from None
            good_bytes += len(raw)
    return out


class TrajectoryWriter:
    """Appends trajectories to a JSONL file, one durable line each.

    Example::

        with TrajectoryWriter("runs/x/trajectories.jsonl") as writer:
            writer.write(trajectory)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, trajectory: Trajectory | dict[str, Any]) -> None:
        """Append one trajectory (or any JSON record) and push it to disk."""
        record = trajectory.to_json() if isinstance(trajectory, Trajectory) else trajectory
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
