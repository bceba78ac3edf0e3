"""Every exception a palaestra user can catch, in one place.

The hierarchy mirrors the HTTP statuses of the server, so that an error raised
by an in-process env and the same error seen through ``RemoteEnv`` are the
same class::

    PalaestraError
    ├── EnvError                 an env's own code failed            (500)
    │   └── EnvBusyError             no room for another env instance now (429)
    ├── EnvUnavailableError      the env needs data/software that is missing
    ├── UnknownTaskError         task id not in any split             (422)
    ├── EpisodeOverError         step after termination/truncation    (409)
    ├── NotSupportedError        capability not declared by the env   (409)
    ├── ContractError            the checker found a contract breach
    └── ServerError              something the server answered
        ├── BadRequestError          400/413/422
        ├── UnauthorizedError        401/403
        ├── SessionNotFoundError     404
        ├── SessionConflictError     409 (episode over, or session broken)
        ├── CapacityError            429
        ├── EnvFailedError           500 (the session is now broken)
        ├── ServerUnavailableError   503 / connection refused after retries
        └── StepTimeoutError         504

This module imports nothing from the rest of palaestra, so every layer can use it.
"""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "CapacityError",
    "ContractError",
    "EnvBusyError",
    "EnvError",
    "EnvFailedError",
    "EnvUnavailableError",
    "EpisodeOverError",
    "NotSupportedError",
    "PalaestraError",
    "ServerError",
    "ServerUnavailableError",
    "SessionConflictError",
    "SessionNotFoundError",
    "StepTimeoutError",
    "UnauthorizedError",
    "UnknownTaskError",
]


class PalaestraError(Exception):
    """Base class of every palaestra exception."""


class EnvError(PalaestraError):
    """An environment's own code raised; the episode cannot continue."""


class EnvBusyError(EnvError):
    """The env has no capacity for another instance right now (e.g. its JVM pool is full).

    Nothing is broken: retry later, or close other sessions of the env.
    """


class EnvUnavailableError(PalaestraError, RuntimeError):
    """The env cannot run here: data or software it needs is missing (the message says what)."""


class UnknownTaskError(PalaestraError, ValueError):
    """A task id that is in none of the env's splits."""


class EpisodeOverError(PalaestraError, RuntimeError):
    """``step`` was called after the episode terminated or was truncated."""


class NotSupportedError(PalaestraError, NotImplementedError):
    """The env does not declare the capability asked for (snapshot, expert)."""


class ContractError(PalaestraError, AssertionError):
    """``palaestra check`` found a breach of the TextEnv contract."""


class ServerError(PalaestraError):
    """An error answered by a palaestra server.

    Attributes:
        status: The HTTP status code (0 when no response was received).
        detail: The server's explanation, from the JSON problem body.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"[{status}] {detail}")
        self.status = status
        self.detail = detail


class BadRequestError(ServerError, ValueError):
    """The request was malformed, too large, or named an unknown env/task (400/413/422)."""


class UnauthorizedError(ServerError):
    """Missing or wrong bearer token (401/403)."""


class SessionNotFoundError(ServerError, KeyError):
    """No such session: never created, closed, or reaped after idling (404)."""

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message; keep it readable.
        return ServerError.__str__(self)


class SessionConflictError(ServerError):
    """The session cannot do that now: episode over or session broken (409)."""


class CapacityError(ServerError):
    """The server holds its maximum number of sessions (429)."""


class EnvFailedError(ServerError):
    """The env raised inside the server; that session is now broken (500)."""


class ServerUnavailableError(ServerError, ConnectionError):
    """The server could not be reached, or answered 503, after all retries."""


class StepTimeoutError(ServerError, TimeoutError):
    """The env call exceeded the server's per-call timeout (504); the session is broken."""
