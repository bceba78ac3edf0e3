"""The wire types: every request and response body of the HTTP API.

These pydantic models are the specification: FastAPI turns them into the served
OpenAPI schema (``GET /openapi.json``), and the clients build and read bodies
with the same field names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from palaestra.envs.tools import tool_call_action

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
    "SocketReply",
    "SocketRequest",
    "StepRequest",
    "StepResult",
    "TaskList",
    "ToolCallBody",
]

TaskIdField = int | str

# Seeds are 63-bit: what numpy, the JVM of ScienceWorld and every env's RNG take
# without overflow. A larger one is a 422 naming the field, never an env's 500.
SEED_LIMIT = 2**63


class _Strict(BaseModel):
    # Unknown fields are errors: a typo like {"actoin": ...} must not pass silently.
    # So are wrong JSON types: {"seed": true} or {"task_id": true} must not play seed or
    # task 1, nor {"seed": "5"} seed 5 (strict: no coercion between JSON types).
    model_config = ConfigDict(extra="forbid", strict=True)


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
    capacity: int | None = Field(
        default=None,
        description=(
            "The most sessions of this env the server holds at once (e.g. ScienceWorld's "
            "game slots); null = no limit but the server's. A session beyond it is answered "
            "429 with Retry-After: clients keep at most this many open."
        ),
    )
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description=(
            "Tool envs only: the tools, as OpenAI function definitions "
            "({type: 'function', function: {name, description, parameters}}). An action "
            "is then a call of one of them."
        ),
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
        default=None,
        ge=0,
        lt=SEED_LIMIT,
        description="Seed of the env's randomness beyond the task (0 <= seed < 2**63).",
    )


class SessionCreated(BaseModel):
    """Answer of ``POST /v1/sessions``."""

    session_id: str
    observation: str
    info: dict[str, Any]


class ToolCallBody(_Strict):
    """A tool call sent as an object (envs that declare ``tools``)."""

    name: str = Field(description="The tool, one of the env's ``tools``.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="Its arguments, a JSON object."
    )

    def action(self) -> str:
        """The call as the env's action string (its canonical JSON)."""
        return tool_call_action(self.name, self.arguments)


ActionField = str | ToolCallBody


class StepRequest(_Strict):
    """Body of ``POST /v1/sessions/{id}/step``."""

    action: ActionField = Field(
        description=(
            "The action text; length capped by the server. For an env with tools, also a "
            "tool call object {name, arguments}, the same as its canonical JSON text."
        )
    )


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
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT, description="0 <= seed < 2**63.")


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


SocketOp = Literal[
    "create", "attach", "step", "reset", "fork", "expert", "random_action", "status", "close"
]


class SocketRequest(_Strict):
    """One request on the WebSocket ``/v1/ws`` (a JSON text frame).

    The socket serves one session: its first request is ``create`` (a new session,
    owned by the socket and closed when the socket closes) or ``attach`` (an
    existing one, left open when the socket closes). The other ops are the HTTP
    routes of that session, with the same fields: ``step`` {action}, ``reset``
    {task_id?, seed?}, ``fork``, ``expert``, ``random_action`` {seed}, ``status``,
    ``close``. Requests are answered one at a time, in order.
    """

    id: int | None = Field(
        default=None, description="Echoed in the reply; lets a client drop late replies."
    )
    op: SocketOp
    env: str | None = Field(default=None, description="create: the env id.")
    session_id: str | None = Field(default=None, description="attach: the session.")
    task_id: TaskIdField | None = Field(default=None, description="create/reset: the task.")
    seed: int | None = Field(
        default=None,
        ge=0,
        lt=SEED_LIMIT,
        description="create/reset: env seed; random_action: the draw (0 <= seed < 2**63).",
    )
    action: ActionField | None = Field(
        default=None, description="step: the action text (or a tool call object)."
    )


class SocketReply(BaseModel):
    """The answer to one :class:`SocketRequest`.

    ``ok`` true: ``result`` is the body the HTTP route answers with (``create``
    answers ``SessionCreated``, ``attach`` and ``status`` ``SessionStatus``,
    ``close`` null). ``ok`` false: ``status``, ``error`` and ``detail`` are those
    of the HTTP error (:class:`Problem`); the socket stays open.
    """

    id: int | None
    ok: bool
    result: Any = None
    status: int | None = None
    error: str | None = None
    detail: str | None = None
    retry_after: int | None = Field(
        default=None, description="On a 429: seconds to wait before retrying (HTTP's Retry-After)."
    )
