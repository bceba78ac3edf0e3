"""``RemoteEnv``: a gymnasium env whose episodes run on a palaestra server.

``palaestra.make("palaestra/Maze-v0", base_url="http://127.0.0.1:8000")`` and
``gymnasium.make("palaestra/Maze-v0", base_url=...)`` both give one. It behaves
like the in-process env: same observations, rewards, flags and info for the same
task, seed and actions, and the same exceptions (from ``palaestra.errors``).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium
import httpx
from gymnasium import spaces

from palaestra.envs import CHARSET, TaskId
from palaestra.envs.core import MAX_TEXT_LENGTH
from palaestra.errors import (
    EpisodeOverError,
    RequestTimeoutError,
    ServerUnavailableError,
    SessionNotFoundError,
    UnknownEnvError,
)
from palaestra.servers.protocol import (
    TOKEN_ENV,
    Request,
    RetryPolicy,
    Step,
    Timeouts,
    auth_headers,
    create_request,
    error_for,
    fork_request,
    random_action_request,
    reset_request,
    retry_after_of,
    step_request,
)

__all__ = ["RemoteEnv"]


class RemoteEnv(gymnasium.Env[str, str]):
    """A text env served by a palaestra server, driven over HTTP (synchronous).

    One ``RemoteEnv`` is one server session, opened by the first ``reset`` and
    deleted by ``close``.

    Args:
        env_id: The env id, as the server lists it in ``GET /v1/envs``.
        base_url: The server, e.g. ``"http://127.0.0.1:8000"``.
        token: Bearer token; defaults to the ``PALAESTRA_TOKEN`` env variable.
        timeouts: Per-phase timeouts.
        retry: Retry policy for connection failures, 503 answers, and 429 answers
            (waited out as the server's ``Retry-After`` asks, up to ``retry.busy_wait``).
        client: An ``httpx.Client`` to share (its base URL is ignored; not closed by us).

    Forks (:meth:`fork`) share their parent's client and connection pool; a client
    made here is closed when the last env sharing it closes.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        env_id: str,
        base_url: str,
        *,
        token: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        client: httpx.Client | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.env_id = env_id
        self.base_url = base_url.rstrip("/")
        self.render_mode = render_mode
        self.retry = retry or RetryPolicy()
        t = self._timeouts = timeouts or Timeouts()
        token = self._token = token if token is not None else os.environ.get(TOKEN_ENV)
        # How many open envs share a client made here (this one and its forks): the
        # last one to close closes it. None: the caller's client, never closed by us.
        self._client_users: list[int] | None = None if client is not None else [1]
        self._uses_client = True
        # httpx's sync client holds up under load here (~470 req/s measured); its
        # keep-alive expiry stays under uvicorn's keep-alive (60 s in `palaestra serve`)
        # so a pooled connection is never reused after the server dropped it.
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            limits=httpx.Limits(max_connections=8, keepalive_expiry=30.0),
        )
        self._headers = auth_headers(token)
        self.session_id: str | None = None
        self._last_observation = ""
        self._over = False
        self._tasks: dict[str, list[TaskId]] = {}

        spec = next((s for s in self._call(Request("GET", "/v1/envs")) if s["id"] == env_id), None)
        if spec is None:
            self.close()
            raise UnknownEnvError(f"env {env_id!r} is not served at {self.base_url}")
        self.instruction: str = spec["instruction"]
        self.max_steps: int = spec["max_steps"]
        self.split_sizes: dict[str, int] = spec["splits"]
        self._capabilities = frozenset(spec["capabilities"])
        self.observation_space = spaces.Text(max_length=MAX_TEXT_LENGTH, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_TEXT_LENGTH, charset=CHARSET)

    # -- transport --------------------------------------------------------------------

    def _call(self, request: Request) -> Any:
        delays = self.retry.delays()
        busy = self.retry.busy_waits()
        while True:
            try:
                response = self._client.request(
                    request.method,
                    self.base_url + request.path,
                    json=request.body,
                    params=request.params,
                    headers=self._headers,
                )
            except httpx.ConnectError as error:
                delay = next(delays, None)
                if delay is None:
                    raise ServerUnavailableError(
                        f"cannot reach {self.base_url}: {error}", status=0
                    ) from None
                time.sleep(delay)
                continue
            except httpx.TimeoutException as error:
                raise RequestTimeoutError(
                    f"{request.method} {self.base_url}{request.path} timed out "
                    f"({type(error).__name__})"
                ) from None
            except httpx.TransportError as error:
                # Connection lost mid-request (the server died or restarted): not
                # retried, since the server may have applied it.
                raise ServerUnavailableError(
                    f"{request.method} {self.base_url}{request.path} failed: "
                    f"{type(error).__name__}: {error}",
                    status=0,
                ) from None
            if response.status_code == 503:
                delay = next(delays, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
            if response.status_code == 429:
                delay = busy.next(retry_after_of(response.headers.get("Retry-After")))
                if delay is not None:
                    time.sleep(delay)
                    continue
            if response.status_code >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                raise error_for(response.status_code, body)
            return response.json() if response.content else None

    # -- gymnasium API ----------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on the server (opening the session on first use).

        Raises:
            UnknownTaskError: The task id is in none of the env's splits.
        """
        super().reset(seed=seed)
        if not self._uses_client and self._client_users is not None and not self._client.is_closed:
            # Reopened after close while forks still hold the shared client.
            self._client_users[0] += 1
            self._uses_client = True
        task_id = (options or {}).get("task_id")
        data = None
        if self.session_id is not None:
            try:
                data = self._call(reset_request(self.session_id, task_id, seed))
            except SessionNotFoundError:
                # Reaped while idle, or the server restarted: a reset starts a new
                # episode anyway, so a new session loses nothing.
                self.session_id = None
        if data is None:
            data = self._call(create_request(self.env_id, task_id, seed))
            self.session_id = data["session_id"]
        self._over = False
        self._last_observation = data["observation"]
        return data["observation"], data["info"]

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` on the server; gymnasium's five-tuple.

        Raises:
            EpisodeOverError: The episode already ended (or ``reset`` was never called).
        """
        if self.session_id is None:
            raise EpisodeOverError("call reset() before step()")
        if self._over:
            raise EpisodeOverError("the episode is over; call reset() to start another")
        result = Step.from_json(self._call(step_request(self.session_id, action)))
        self._over = result.terminated or result.truncated
        self._last_observation = result.observation
        return result.as_tuple()

    def render(self) -> str | None:
        """In ``ansi`` mode, the latest observation."""
        return self._last_observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Delete the server session and release the connection pool (idempotent)."""
        if self.session_id is not None:
            session_id, self.session_id = self.session_id, None
            try:
                self._call(Request("DELETE", f"/v1/sessions/{session_id}"))
            except Exception:  # closing must not fail because the server is gone
                pass
        users = self._client_users
        if users is not None and self._uses_client:
            self._uses_client = False
            users[0] -= 1
            if users[0] == 0 and not self._client.is_closed:
                self._client.close()

    # -- palaestra extras ---------------------------------------------------------------

    def capabilities(self) -> frozenset[str]:
        """The capabilities the server declares for this env."""
        return self._capabilities

    def tasks(self, split: str) -> Sequence[TaskId]:
        """The task ids of ``split``, fetched from the server once."""
        if split not in self._tasks:
            params = {"env": self.env_id, "split": split}
            data = self._call(Request("GET", "/v1/tasks", params=params))
            self._tasks[split] = data["task_ids"]
        return self._tasks[split]

    def expert_action(self) -> str:
        """The env expert's next action, computed by the server."""
        if self.session_id is None:
            raise EpisodeOverError("call reset() before expert_action()")
        return self._call(Request("GET", f"/v1/sessions/{self.session_id}/expert"))["action"]

    def random_action(self, seed: int) -> str:
        """A uniformly random valid action now, drawn by the server from ``seed``.

        The same as ``env.random_action(numpy.random.default_rng(seed))`` in-process
        in the same state.

        Args:
            seed: The seed of the draw, ``0 <= seed < 2**63``.
        """
        if self.session_id is None:
            raise EpisodeOverError("call reset() before random_action()")
        return self._call(random_action_request(self.session_id, seed))["action"]

    def fork(self) -> RemoteEnv:
        """A new ``RemoteEnv`` on a server-side copy of this session's state.

        The twin shares this env's client (its connection pool) and spec: one
        request, no new client. Either may close first.
        """
        if self.session_id is None:
            raise EpisodeOverError("call reset() before fork()")
        data = self._call(fork_request(self.session_id))
        # A fresh RemoteEnv would build a new httpx client (~30 ms, mostly its SSL
        # context, even for plain http) and fetch the env list again.
        twin = copy.copy(self)
        twin._np_random = copy.deepcopy(self._np_random)
        twin._tasks = dict(self._tasks)
        if twin._client_users is not None:
            twin._client_users[0] += 1
        twin._uses_client = True
        twin.session_id = data["session_id"]
        twin._over = self._over
        twin._last_observation = self._last_observation
        return twin

    def status(self) -> dict[str, Any]:
        """The server's view of the session: env, task, steps, done, broken."""
        if self.session_id is None:
            raise EpisodeOverError("no session yet; call reset() first")
        return self._call(Request("GET", f"/v1/sessions/{self.session_id}"))
