"""The client side of the wire, shared by the sync and async clients.

Both clients build the same requests, retry by the same policy and turn error
answers into the same exceptions; they differ only at the I/O edge (httpx for
``RemoteEnv``, aiohttp for ``AsyncEnvClient``).
"""

from __future__ import annotations

import operator
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from palaestra.envs import TaskId
from palaestra.errors import PalaestraError, error_from_wire

__all__ = [
    "SOCKET_PATH",
    "BusyWaits",
    "Request",
    "RetryPolicy",
    "Step",
    "Timeouts",
    "auth_headers",
    "create_request",
    "error_for",
    "fork_request",
    "random_action_request",
    "read_token_file",
    "reset_request",
    "retry_after_of",
    "step_request",
]

TOKEN_ENV = "PALAESTRA_TOKEN"

# The WebSocket route: one socket per session (servers.websocket_route, servers.session_socket).
SOCKET_PATH = "/v1/ws"


@dataclass(frozen=True)
class Timeouts:
    """Per-phase client timeouts, in seconds.

    Attributes:
        connect: Establishing a connection.
        read: Waiting for the answer (covers the env's step time).
        write: Sending the request.
        pool: Waiting for a free pooled connection.
    """

    connect: float = 5.0
    read: float = 120.0
    write: float = 10.0
    pool: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter.

    Only requests that the server cannot have applied are retried: connection
    failures before the request was sent, 503 answers, and 429 answers (the
    server or the env is full: backpressure, not failure). A step whose answer
    was lost mid-way is never re-sent, since it may have been applied.

    A 429 is retried after the wait the server asks for (``Retry-After``), for
    as long as ``busy_wait`` seconds in all; only then is it raised as
    :class:`~palaestra.errors.CapacityError`.

    Attributes:
        attempts: Tries in all (1 = no retry) after connection failures and 503s.
        backoff: The first delay; each later one doubles, up to ``max_backoff``.
        max_backoff: The longest delay.
        busy_wait: Seconds one request may spend waiting out 429 answers (0 = raise
            the first one).
    """

    attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 2.0
    busy_wait: float = 300.0

    def busy_waits(self) -> BusyWaits:
        """The waits of one request between its 429 answers."""
        return BusyWaits(self.busy_wait)

    def delays(self) -> Iterator[float]:
        """The sleeps between attempts (``attempts - 1`` of them), jittered to ±50%."""
        for attempt in range(self.attempts - 1):
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            yield delay * random.uniform(0.5, 1.5)


class BusyWaits:
    """The waits of one request answered 429: the server's hint, until the budget is spent.

    Args:
        budget: Seconds of waiting allowed in all.
    """

    def __init__(self, budget: float) -> None:
        self.left = budget

    def next(self, retry_after: float | None) -> float | None:
        """The wait before the next try, or None once the budget is spent.

        Args:
            retry_after: The server's hint in seconds (None or nonsense: 1 s).
        """
        hint = retry_after if retry_after is not None and 0 < retry_after <= 3600 else 1.0
        # Stretched by up to half: clients refused together must not all come back
        # in the same instant.
        delay = hint * random.uniform(1.0, 1.5)
        if delay > self.left:
            return None
        self.left -= delay
        return delay


def retry_after_of(value: object) -> float | None:
    """The seconds of a ``Retry-After`` header or a socket reply's ``retry_after`` (else None).

    An HTTP date (the header's other form) is not sent by palaestra servers and
    reads as None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().isdigit():
        return float(value.strip())
    return None


@dataclass(frozen=True)
class Request:
    """One API call, transport-independent."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Step:
    """Gymnasium's step five-tuple as an object (what ``AsyncEnvClient.step`` returns)."""

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        """Read a ``StepResult`` body."""
        return cls(
            observation=data["observation"],
            reward=float(data["reward"]),
            terminated=bool(data["terminated"]),
            truncated=bool(data["truncated"]),
            info=data["info"],
        )

    def as_tuple(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """The gymnasium five-tuple."""
        return self.observation, self.reward, self.terminated, self.truncated, self.info


def _reset_body(task_id: TaskId | None, seed: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if task_id is not None:
        body["task_id"] = task_id
    if seed is not None:
        body["seed"] = int(seed)
    return body


def create_request(env_id: str, task_id: TaskId | None, seed: int | None) -> Request:
    """``POST /v1/sessions``."""
    return Request("POST", "/v1/sessions", {"env": env_id, **_reset_body(task_id, seed)})


def reset_request(session_id: str, task_id: TaskId | None, seed: int | None) -> Request:
    """``POST /v1/sessions/{id}/reset``."""
    return Request("POST", f"/v1/sessions/{session_id}/reset", _reset_body(task_id, seed))


def step_request(session_id: str, action: str) -> Request:
    """``POST /v1/sessions/{id}/step``."""
    if not isinstance(action, str):
        raise TypeError(f"actions are strings, not {type(action).__name__}")
    return Request("POST", f"/v1/sessions/{session_id}/step", {"action": action})


def fork_request(session_id: str) -> Request:
    """``POST /v1/sessions/{id}/fork``."""
    return Request("POST", f"/v1/sessions/{session_id}/fork")


def random_action_request(session_id: str, seed: int) -> Request:
    """``GET /v1/sessions/{id}/random_action?seed=N``.

    Raises:
        TypeError: ``seed`` is not an integer.
        ValueError: ``seed`` is outside ``0 <= seed < 2**63``.
    """
    if isinstance(seed, bool):
        raise TypeError("seed must be an int, not bool")
    seed = operator.index(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return Request("GET", f"/v1/sessions/{session_id}/random_action", params={"seed": str(seed)})


def read_token_file(path: str) -> str:
    """The token stored in the file ``path`` (its first line; whitespace around it dropped).

    A token in a file, unlike one on the command line, does not show in ``ps``.

    Raises:
        ValueError: The file cannot be read, or holds no token.
    """
    try:
        with open(path, encoding="utf-8") as file:
            token = file.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the token file {path}: {error}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


def auth_headers(token: str | None) -> dict[str, str]:
    """The Authorization header for ``token`` (none when ``token`` is None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def error_for(status: int, body: Any) -> PalaestraError:
    """The exception for an error answer (``body``: the parsed JSON, or raw text).

    The class is the one ``palaestra.errors.WIRE_ERRORS`` gives the body's ``error``
    code (the class the server raised), else the one of the status.
    """
    if isinstance(body, dict):
        code = body.get("error")
        detail = str(body.get("detail", body))
        return error_from_wire(code if isinstance(code, str) else None, status, detail)
    return error_from_wire(None, status, str(body)[:500] or "(empty body)")
