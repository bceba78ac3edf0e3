"""The wire types: every request and response body of the HTTP API.

These pydantic models are the specification: FastAPI turns them into the served
OpenAPI schema (``GET /openapi.json``), and the clients build and read bodies
with the same field names.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CreateSession",
    "EnvSpec",
    "ExpertAction",
    "Forked",
    "Health",
    "Problem",
    "RandomAction",
    "ResetRequest",
    "ResetResult",
    "SessionCreated",
    "SessionStatus",
    "StepRequest",
    "StepResult",
    "TaskList",
]

TaskIdField = int | str


class _Strict(BaseModel):
    # Unknown fields are errors: a typo like {"actoin": ...} must not pass silently.
    model_config = ConfigDict(extra="forbid")


class EnvSpec(BaseModel):
    """One env a server offers."""

    id: str = Field(description="Registered env id, e.g. 'palaestra/Maze-v0'.")
    instruction: str = Field(description="Task-independent system prompt of the env.")
    splits: dict[str, int] = Field(description="Number of task ids in each split.")
    max_steps: int = Field(description="Steps after which an episode is truncated.")
    capabilities: list[str] = Field(
        description=(
            "Optional capabilities: 'snapshot', 'expert', 'available_actions', 'random_action'."
        )
    )


class TaskList(BaseModel):
    """The task ids of one split of one env."""

    env: str
    split: str
    task_ids: list[TaskIdField]


class CreateSession(_Strict):
    """Body of ``POST /v1/sessions``: open a session and reset it."""

    env: str = Field(description="Env id, one of GET /v1/envs.")
    task_id: TaskIdField | None = Field(
        default=None, description="Task to play; omitted = a training task drawn from the seed."
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of the env's randomness beyond the task."
    )


class SessionCreated(BaseModel):
    """Answer of ``POST /v1/sessions``."""

    session_id: str
    observation: str
    info: dict[str, Any]


class StepRequest(_Strict):
    """Body of ``POST /v1/sessions/{id}/step``."""

    action: str = Field(description="The action text; length capped by the server.")


class StepResult(BaseModel):
    """Gymnasium's five-tuple, as an object.

    ``info`` holds ``task_id``, ``step`` and ``invalid_action`` (whether the env
    rejected the action as not an action of its world); ``success`` and ``score``
    once the episode ended.
    """

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class ResetRequest(_Strict):
    """Body of ``POST /v1/sessions/{id}/reset``."""

    task_id: TaskIdField | None = None
    seed: int | None = Field(default=None, ge=0)


class ResetResult(BaseModel):
    """Answer of a reset: the first observation and info."""

    observation: str
    info: dict[str, Any]


class Forked(BaseModel):
    """Answer of ``POST /v1/sessions/{id}/fork``: the new, independent session."""

    session_id: str
    method: str = Field(description="'snapshot' (restore) or 'replay' (reset and re-step).")


class ExpertAction(BaseModel):
    """Answer of ``GET /v1/sessions/{id}/expert``."""

    action: str


class RandomAction(BaseModel):
    """Answer of ``GET /v1/sessions/{id}/random_action?seed=N``."""

    action: str = Field(
        description="A uniformly random valid action now; the same seed and state give the same."
    )


class SessionStatus(BaseModel):
    """Answer of ``GET /v1/sessions/{id}``."""

    session_id: str
    env: str
    task_id: TaskIdField | None
    steps: int
    done: bool
    broken: str | None = Field(description="Why the session is broken, or null.")
    idle_seconds: float


class Health(BaseModel):
    """Answer of ``GET /health``."""

    status: str
    sessions: int
    envs: list[str]


class Problem(BaseModel):
    """The body of every error answer."""

    status: int = Field(description="The HTTP status, repeated.")
    error: str = Field(description="A stable machine-readable code, e.g. 'session_not_found'.")
    detail: str = Field(description="What went wrong, for a person.")
