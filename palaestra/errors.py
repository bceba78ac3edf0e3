"""Every exception a palaestra user can catch, in one place, with its wire meaning.

Each class carries the HTTP ``status`` a server answers it with and the stable
``code`` of the problem body's ``error`` field. The server answers an error by
its class (``status``, ``code``, ``detail``), and the clients raise the class
that :data:`WIRE_ERRORS` maps the code to, so the same failure raises the same
class in-process and over HTTP or the WebSocket::

    PalaestraError                          status  code
    ├── EnvError                            500     env_error        an env's own code failed
    ├── EnvUnavailableError                 500     env_unavailable  data/software missing here
    ├── ContractError                       500     contract_breach  ``palaestra check`` found one
    ├── RequestTimeoutError                 0       request_timeout  a client gave up waiting
    ├── PolicyRequestError                  502     policy_error     a policy server failed
    │   ├── PolicyConnectionError           502     policy_unreachable
    │   └── PolicyTimeoutError              504     policy_timeout
    └── ServerError                         500     internal         an unexpected server failure
        ├── BadRequestError                 422     invalid_request  bad body or parameter
        │   ├── UnknownEnvError             422     unknown_env      env not served (a KeyError)
        │   ├── UnknownSplitError           422     unknown_split    no such split (a KeyError)
        │   ├── UnknownTaskError            422     unknown_task     task id in no split
        │   ├── ActionTooLongError          422     action_too_long  over the server's cap
        │   └── BodyTooLargeError           413     body_too_large   over the server's cap
        ├── UnauthorizedError               401     unauthorized     missing/wrong token (403 too)
        ├── SessionNotFoundError            404     session_not_found
        ├── SessionConflictError            409     session_conflict the session cannot do that now
        │   ├── EpisodeOverError            409     episode_over     step after the episode ended
        │   ├── NotSupportedError           409     not_supported    capability not declared
        │   └── SessionBrokenError          409     session_broken   an env call failed; reset it
        ├── CapacityError                   429     capacity         server holds its maximum
        │   └── EnvBusyError                429     env_busy         no room for another env
        ├── EnvFailedError                  500     env_error        the env raised in the server
        ├── ServerUnavailableError          503     unavailable      unreachable after retries
        │   └── ReplicaLostError            0       replica_lost     an episode's server died
        └── StepTimeoutError                504     step_timeout     env call over the timeout

Errors below 500 are the caller's: the session they concern is unchanged. An env
that raises anything else in a server is answered ``EnvFailedError`` and its
session is broken. The classes above ``ServerError`` are raised where they happen
(in-process, or in a client) and never answered as themselves. Classes keep
builtin bases (``ValueError``, ``KeyError``, ``TimeoutError``, ``ConnectionError``,
...) so plain ``except`` clauses work, and ``EnvBusyError`` and ``EnvFailedError``
are ``EnvError``s too. Status 0 marks an error no server answers (the client
raised it).

This module imports nothing from the rest of palaestra, so every layer can use it.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "WIRE_ERRORS",
    "ActionTooLongError",
    "BadRequestError",
    "BodyTooLargeError",
    "CapacityError",
    "ContractError",
    "EnvBusyError",
    "EnvError",
    "EnvFailedError",
    "EnvUnavailableError",
    "EpisodeOverError",
    "NotSupportedError",
    "PalaestraError",
    "PolicyConnectionError",
    "PolicyRequestError",
    "PolicyTimeoutError",
    "ReplicaLostError",
    "RequestTimeoutError",
    "ServerError",
    "ServerUnavailableError",
    "SessionBrokenError",
    "SessionConflictError",
    "SessionNotFoundError",
    "StepTimeoutError",
    "UnauthorizedError",
    "UnknownEnvError",
    "UnknownSplitError",
    "UnknownTaskError",
    "error_from_wire",
]


class PalaestraError(Exception):
    """Base class of every palaestra exception.

    Args:
        detail: What went wrong, for a person.
        status: The HTTP status, when it differs from the class's (e.g. a 403
            ``UnauthorizedError``, or 0 for an answer never received).

    Attributes:
        status: The HTTP status a server answers this error with.
        code: The stable machine-readable code on the wire (``error`` of the body).
        detail: What went wrong, for a person.
    """

    status: int = 500
    code: ClassVar[str] = "internal"

    def __init__(self, detail: str = "", *, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message quoted.
        return self.detail

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles (worker processes) keep the keyword-only status.
        return (_rebuild, (type(self), self.detail, self.status))


def _rebuild(cls: type[PalaestraError], detail: str, status: int) -> PalaestraError:
    return error_from_wire(cls, status, detail)


# -- in-process errors ---------------------------------------------------------------


class EnvError(PalaestraError):
    """An environment's own code raised; the episode cannot continue.

    A server answers it (like any exception of env code) as :class:`EnvFailedError`.
    """

    code = "env_error"


class EnvUnavailableError(PalaestraError, RuntimeError):
    """The env cannot run here: data or software it needs is missing (the message says what)."""

    code = "env_unavailable"


class ContractError(PalaestraError, AssertionError):
    """``palaestra check`` found a breach of the TextEnv contract."""

    code = "contract_breach"


class RequestTimeoutError(PalaestraError, TimeoutError):
    """A client gave up waiting for an answer (its read timeout); the call may have run."""

    status = 0
    code = "request_timeout"


class PolicyRequestError(PalaestraError, RuntimeError):
    """An OpenAI-compatible server refused a request, or failed it after all retries.

    Args:
        status: The HTTP status (0 when no answer came: connection failure, timeout).
        message: The server's explanation (its ``error.message``), or what went wrong.
        url: The endpoint called.

    Attributes:
        message: As given.
        url: As given.
    """

    status = 502
    code = "policy_error"

    def __init__(self, status: int, message: str, url: str = "") -> None:
        where = f" from {url}" if url else ""
        super().__init__(
            f"[{status}]{where}: {message}" if status else f"{url}: {message}", status=status
        )
        self.message = message
        self.url = url

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.message, self.url))


class PolicyConnectionError(PolicyRequestError, ConnectionError):
    """The policy server could not be reached (refused, reset, DNS) after all retries."""

    code = "policy_unreachable"


class PolicyTimeoutError(PolicyRequestError, TimeoutError):
    """No answer from the policy server within the policy's ``timeout`` (retries included)."""

    status = 504
    code = "policy_timeout"


# -- errors with a wire meaning ------------------------------------------------------


class ServerError(PalaestraError):
    """An error a palaestra server answers; ``code`` ``internal`` is a server bug."""


class BadRequestError(ServerError, ValueError):
    """The request was malformed or too large, or named something not served (400/413/422)."""

    status = 422
    code = "invalid_request"


class UnknownEnvError(BadRequestError, KeyError):
    """An env id the server does not serve (the message lists those it does).

    A ``KeyError``, as the registry's own answer to an unknown id in-process.
    """

    code = "unknown_env"


class UnknownSplitError(BadRequestError, KeyError):
    """A split the env does not have."""

    code = "unknown_split"


class UnknownTaskError(BadRequestError):
    """A task id that is in none of the env's splits."""

    code = "unknown_task"


class ActionTooLongError(BadRequestError):
    """An action longer than the server's cap."""

    code = "action_too_long"


class BodyTooLargeError(BadRequestError):
    """A request body or socket message larger than the server's cap."""

    status = 413
    code = "body_too_large"


class UnauthorizedError(ServerError):
    """Missing (401) or wrong (403) bearer token."""

    status = 401
    code = "unauthorized"


class SessionNotFoundError(ServerError, KeyError):
    """No such session: never created, closed, or reaped after idling (404)."""

    status = 404
    code = "session_not_found"


class SessionConflictError(ServerError):
    """The session cannot do that now (409); the subclasses say why."""

    status = 409
    code = "session_conflict"


class EpisodeOverError(SessionConflictError, RuntimeError):
    """``step`` (or an expert/random action) was asked after the episode ended, or before reset."""

    code = "episode_over"


class NotSupportedError(SessionConflictError, NotImplementedError):
    """The env does not declare the capability asked for (snapshot, expert, random action)."""

    code = "not_supported"


class SessionBrokenError(SessionConflictError):
    """An env call of the session failed or timed out; reset or delete it."""

    code = "session_broken"


class CapacityError(ServerError):
    """The server holds its maximum number of sessions, or of one env's (429); retry later.

    Backpressure, not failure: the server answers it with a ``Retry-After`` header
    (a socket reply with ``retry_after``), and the clients wait that long and retry.

    Attributes:
        retry_after: Seconds the server asks a client to wait before trying again.
    """

    status = 429
    code = "capacity"
    # Sessions come and go within an episode's length, so a client coming back after
    # this finds a slot soon.
    retry_after: ClassVar[int] = 1


class EnvBusyError(CapacityError, EnvError):
    """The env has no capacity for another instance right now (e.g. its JVM pool is full).

    Nothing is broken: retry later, or close other sessions of the env.
    """

    code = "env_busy"


class EnvFailedError(ServerError, EnvError):
    """The env raised inside the server; that session is now broken (500).

    The wire form of any exception of env code, :class:`EnvError`'s included (its code).
    """


class ServerUnavailableError(ServerError, ConnectionError):
    """The server could not be reached, or answered 503, after all retries (status 0: no answer)."""

    status = 503
    code = "unavailable"


class ReplicaLostError(ServerUnavailableError):
    """The server an episode ran on died or dropped its connection (status 0: no answer).

    Raised by the rollout engine's remote env pool
    (:class:`~palaestra.agents.RemoteEnvs`) for a call of an open episode that
    failed as :class:`ServerUnavailableError` (connection refused or reset, the
    socket closed). The episode's state went with the server: the engine plays it
    again from the start on another server (``RolloutStats.restarted``), which
    gives the same trajectory for a seeded policy. Never answered by a server.
    """

    status = 0
    code = "replica_lost"


class StepTimeoutError(ServerError, TimeoutError):
    """The env call exceeded the server's per-call timeout (504); the session is broken."""

    status = 504
    code = "step_timeout"


# -- the table -----------------------------------------------------------------------

#: Wire code -> the class a client raises for it (and a server answers it as).
WIRE_ERRORS: dict[str, type[PalaestraError]] = {
    cls.code: cls
    for cls in (
        ServerError,
        BadRequestError,
        UnknownEnvError,
        UnknownSplitError,
        UnknownTaskError,
        ActionTooLongError,
        BodyTooLargeError,
        UnauthorizedError,
        SessionNotFoundError,
        SessionConflictError,
        EpisodeOverError,
        NotSupportedError,
        SessionBrokenError,
        CapacityError,
        EnvBusyError,
        EnvFailedError,
        ServerUnavailableError,
        StepTimeoutError,
    )
}

# For answers without a known code (a proxy's page, an older server): by status.
_BY_STATUS: dict[int, type[PalaestraError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: UnauthorizedError,
    404: SessionNotFoundError,
    409: SessionConflictError,
    413: BodyTooLargeError,
    422: BadRequestError,
    429: CapacityError,
    503: ServerUnavailableError,
    504: StepTimeoutError,
}


def error_from_wire(
    code: str | type[PalaestraError] | None, status: int, detail: str
) -> PalaestraError:
    """The exception for an error answer: the class of ``code``, else of ``status``.

    An unknown ``code`` (another server's, a proxy's) is kept in the detail.

    Args:
        code: The answer's ``error`` code (or a class, to rebuild one).
        status: The answer's HTTP status (0: none received).
        detail: The answer's ``detail``.
    """
    if isinstance(code, type):
        cls = code
    elif code in WIRE_ERRORS:
        cls = WIRE_ERRORS[code]
    else:
        cls = _BY_STATUS.get(status, ServerError)
        if code:
            detail = f"{code}: {detail}"  # not one of ours: keep it for the reader
    if issubclass(cls, PolicyRequestError):
        return cls(status, detail)
    return cls(detail, status=status)
