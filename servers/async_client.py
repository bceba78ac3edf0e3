"""``AsyncEnvClient``: many concurrent sessions on a palaestra server, from asyncio.

Transport choice: aiohttp, not ``httpx.AsyncClient``. httpx's async pool
collapses under contention (httpx issue 3215; ~50 requests/s at 64 concurrent
requests was seen on this project's 2-core machine). ``bench/client_throughput.py``
measures both against one Maze server (server on one core, load on the other):
aiohttp ~2,500 steps/s at 64 sessions, httpx.AsyncClient a few hundred. With
``transport="websocket"`` each session steps over its own socket on ``/v1/ws``:
~8,000-9,000 steps/s at 64 sessions (``bench/server_throughput.py``). The
request building, retry policy and error mapping are shared with the sync
``RemoteEnv`` (``palaestra.servers.protocol``).

Example::

    async with AsyncEnvClient("http://127.0.0.1:8000") as client:
        session = await client.create("palaestra/Maze-v0", task_id=3, seed=0)
        step = await session.step("move up")
        await session.close()
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal

import aiohttp

from palaestra.envs import TaskId
from palaestra.errors import RequestTimeoutError, ServerUnavailableError
from palaestra.servers import json_codec
from palaestra.servers.protocol import (
    SOCKET_PATH,
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
from palaestra.servers.session_socket import SessionSocket

__all__ = ["AsyncEnvClient", "AsyncSession"]


class AsyncSession:
    """A handle on one server session (made by :meth:`AsyncEnvClient.create`).

    Over the WebSocket transport the handle holds the session's socket and every
    call goes over it; otherwise each call is one HTTP request.

    Attributes:
        id: The server's session id.
        env_id: The env it runs.
        observation: The latest observation.
        info: The latest info.
    """

    def __init__(
        self,
        client: AsyncEnvClient,
        session_id: str,
        env_id: str,
        observation: str,
        info: dict,
        socket: SessionSocket | None = None,
    ) -> None:
        self.client = client
        self.id = session_id
        self.env_id = env_id
        self.observation = observation
        self.info = info
        self._socket = socket
        self._closed = False

    @property
    def transport(self) -> str:
        """``"websocket"`` or ``"http"``."""
        return "websocket" if self._socket is not None else "http"

    async def step(self, action: str) -> Step:
        """Apply ``action``."""
        if self._socket is not None:
            step_request(self.id, action)  # the same argument checks as over HTTP
            result = Step.from_json(await self._socket.call("step", action=action))
        else:
            result = await self.client.step(self.id, action)
        self.observation, self.info = result.observation, result.info
        return result

    async def reset(
        self, task_id: TaskId | None = None, seed: int | None = None
    ) -> tuple[str, dict]:
        """Start a new episode in this session."""
        if self._socket is not None:
            data = await self._socket.call("reset", task_id=task_id, seed=seed)
            self.observation, self.info = data["observation"], data["info"]
        else:
            self.observation, self.info = await self.client.reset(self.id, task_id, seed)
        return self.observation, self.info

    async def fork(self) -> AsyncSession:
        """A new session in the same state (on its own socket over the WebSocket transport)."""
        if self._socket is not None:
            twin_id = (await self._socket.call("fork"))["session_id"]
            twin = await self.client.attach(twin_id)
            twin.observation, twin.info = self.observation, dict(self.info)
            return twin
        twin_id = await self.client.fork(self.id)
        return AsyncSession(self.client, twin_id, self.env_id, self.observation, dict(self.info))

    async def expert_action(self) -> str:
        """The env expert's next action."""
        if self._socket is not None:
            return (await self._socket.call("expert"))["action"]
        return await self.client.expert_action(self.id)

    async def random_action(self, seed: int) -> str:
        """A uniformly random valid action now, drawn by the server from ``seed``."""
        if self._socket is not None:
            random_action_request(self.id, seed)  # the same argument checks as over HTTP
            return (await self._socket.call("random_action", seed=seed))["action"]
        return await self.client.random_action(self.id, seed)

    async def close(self) -> None:
        """Delete the session on the server (its socket goes back to the client for reuse).

        Closing again does nothing.
        """
        if self._closed:
            return
        if self._socket is not None:
            socket = self._socket
            try:
                await socket.call("close")
            except BaseException:
                await socket.aclose()
                raise
            # The socket serves no session now: another create or attach may use it.
            # This handle lets go of it, so no later call of ours reaches that session.
            self._socket, self._closed = None, True
            await self.client._reuse(socket)
            return
        await self.client.close_session(self.id)
        self._closed = True


class AsyncEnvClient:
    """An asyncio client for a palaestra server: pooled connections, timeouts, retries.

    Args:
        base_url: The server, e.g. ``"http://127.0.0.1:8000"``.
        token: Bearer token; defaults to the ``PALAESTRA_TOKEN`` env variable.
        timeouts: Per-phase timeouts.
        retry: Retry policy for connection failures and 503 answers (once the server
            could not be reached after every retry, later calls try it once each,
            with no backoff, until one gets through), and for 429 answers, waited
            out as the server's ``Retry-After`` asks, up to ``retry.busy_wait``
            seconds, on either transport.
        max_connections: Size of the HTTP connection pool (sockets are not pooled:
            one each per open WebSocket session).
        max_idle_sockets: Sockets of closed sessions kept open for the next
            :meth:`create` or :meth:`attach` (a fork's twin, over the WebSocket
            transport, is attached on a socket of its own: reusing one saves a
            connection and its upgrade handshake per twin).
        transport: ``"http"`` (each call one request on pooled connections) or
            ``"websocket"``: :meth:`create` opens one socket per session on
            ``/v1/ws`` and the session's calls go over it (several times faster;
            one open connection, two file descriptors on a local server, per session).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = 256,
        transport: Literal["http", "websocket"] = "http",
        max_idle_sockets: int = 16,
    ) -> None:
        if transport not in ("http", "websocket"):
            raise ValueError(f"transport is 'http' or 'websocket', not {transport!r}")
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._headers = auth_headers(token)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None
        self._idle_sockets: list[SessionSocket] = []
        self._max_idle_sockets = max_idle_sockets
        # Set when a connection failed after every retry; cleared by the next one made.
        self._unreachable = False

    def _retry_delays(self) -> Iterator[float]:
        """The waits between connection attempts: none while the server is known down.

        Once the server could not be reached after every retry, later calls try once
        without waiting until one gets through, so a dead server fails each of them
        at once instead of after the whole backoff (an eval's remaining episodes are
        reported lost in moments, not in one backoff per episode).
        """
        return iter(()) if self._unreachable else self.retry.delays()

    def _http(self) -> aiohttp.ClientSession:
        # Made lazily, inside the running loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            t = self._timeouts
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                # Below uvicorn's keep-alive (60 s in `palaestra serve`): never reuse a
                # connection the server has already dropped.
                keepalive_timeout=30.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                json_serialize=json_codec.dumps_text,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=t.pool + t.connect, sock_connect=t.connect, sock_read=t.read
                ),
            )
        return self._session

    def _ws_http(self) -> aiohttp.ClientSession:
        # Sockets get their own connector without a limit: each holds its connection
        # for the session's life, so a pool limit would make socket N+1 wait forever.
        if self._ws_session is None or self._ws_session.closed:
            t = self._timeouts
            self._ws_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers=self._headers,
                # sock_read bounds the upgrade's answer; aiohttp drops it once upgraded.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=t.connect, sock_connect=t.connect, sock_read=t.read
                ),
            )
        return self._ws_session

    async def _call(self, request: Request) -> Any:
        delays = self._retry_delays()
        busy = self.retry.busy_waits()
        http = self._http()
        while True:
            try:
                async with http.request(
                    request.method,
                    self.base_url + request.path,
                    json=request.body,
                    params=request.params,
                ) as response:
                    self._unreachable = False
                    if response.status == 503:
                        delay = next(delays, None)
                        if delay is not None:
                            await asyncio.sleep(delay)
                            continue
                    if response.status == 429:
                        delay = busy.next(retry_after_of(response.headers.get("Retry-After")))
                        if delay is not None:
                            await asyncio.sleep(delay)
                            continue
                    if response.status >= 400:
                        try:
                            body: Any = await response.json(
                                content_type=None, loads=json_codec.loads
                            )
                        except (ValueError, aiohttp.ContentTypeError):
                            body = await response.text()
                        raise error_for(response.status, body)
                    if response.status == 204:
                        return None
                    return await response.json(content_type=None, loads=json_codec.loads)
            except aiohttp.ClientConnectorError as error:
                # Connection not established: the request was never sent, safe to retry.
                delay = next(delays, None)
                if delay is None:
                    self._unreachable = True
                    raise ServerUnavailableError(
                        f"cannot reach {self.base_url}: {error}", status=0
                    ) from None
                await asyncio.sleep(delay)
            except (TimeoutError, aiohttp.ServerTimeoutError) as error:
                raise RequestTimeoutError(
                    f"{request.method} {self.base_url}{request.path} timed out "
                    f"({type(error).__name__})"
                ) from None
            except aiohttp.ClientError as error:
                # Connection lost mid-request: not retried, the server may have applied it.
                raise ServerUnavailableError(
                    f"{request.method} {self.base_url}{request.path} failed: "
                    f"{type(error).__name__}: {error}",
                    status=0,
                ) from None

    # -- the API ----------------------------------------------------------------------

    async def envs(self) -> list[dict[str, Any]]:
        """The server's env specs (``GET /v1/envs``)."""
        return await self._call(Request("GET", "/v1/envs"))

    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        """The task ids of one split of one env."""
        data = await self._call(Request("GET", "/v1/tasks", params={"env": env_id, "split": split}))
        return data["task_ids"]

    async def create(
        self, env_id: str, task_id: TaskId | None = None, seed: int | None = None
    ) -> AsyncSession:
        """Open a session on ``env_id``, reset to ``task_id`` (a train task when None)."""
        if self.transport == "websocket":
            socket = await self._connect()
            try:
                data = await socket.call("create", env=env_id, task_id=task_id, seed=seed)
            except BaseException:
                await socket.aclose()
                raise
            return AsyncSession(
                self, data["session_id"], env_id, data["observation"], data["info"], socket
            )
        data = await self._call(create_request(env_id, task_id, seed))
        return AsyncSession(self, data["session_id"], env_id, data["observation"], data["info"])

    async def attach(self, session_id: str) -> AsyncSession:
        """A handle on an existing session (its own socket over the WebSocket transport).

        The session is not closed when the handle's socket closes; ``close()`` does.
        """
        if self.transport == "websocket":
            socket = await self._connect()
            try:
                status = await socket.call("attach", session_id=session_id)
            except BaseException:
                await socket.aclose()
                raise
            return AsyncSession(self, session_id, status["env"], "", {}, socket)
        status = await self.status(session_id)
        return AsyncSession(self, session_id, status["env"], "", {})

    async def _reuse(self, socket: SessionSocket) -> None:
        """Keep a socket whose session closed for the next session, or close it."""
        if socket.closed or len(self._idle_sockets) >= self._max_idle_sockets:
            await socket.aclose()
        else:
            self._idle_sockets.append(socket)

    async def _connect(self) -> SessionSocket:
        """An idle socket, else a new one on ``/v1/ws`` (failures retried like requests)."""
        while self._idle_sockets:
            socket = self._idle_sockets.pop()
            if not socket.closed:
                return socket
        delays = self._retry_delays()
        url = "ws" + self.base_url.removeprefix("http") + SOCKET_PATH
        while True:
            try:
                ws = await self._ws_http().ws_connect(
                    url,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self._timeouts.write),
                    autoping=True,
                    max_msg_size=0,
                )
                self._unreachable = False
                return SessionSocket(ws, self._timeouts.read, url, self.retry)
            except aiohttp.WSServerHandshakeError as error:
                raise error_for(error.status, f"websocket refused: {error.message}") from None
            except aiohttp.ClientConnectorError as error:
                delay = next(delays, None)
                if delay is None:
                    self._unreachable = True
                    raise ServerUnavailableError(f"cannot reach {url}: {error}", status=0) from None
                await asyncio.sleep(delay)
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise RequestTimeoutError(f"opening {url} timed out") from None
            except aiohttp.ClientError as error:
                raise ServerUnavailableError(
                    f"opening {url} failed: {type(error).__name__}: {error}", status=0
                ) from None

    async def step(self, session_id: str, action: str) -> Step:
        """One step of a session."""
        return Step.from_json(await self._call(step_request(session_id, action)))

    async def reset(
        self, session_id: str, task_id: TaskId | None = None, seed: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start a new episode in a session."""
        data = await self._call(reset_request(session_id, task_id, seed))
        return data["observation"], data["info"]

    async def fork(self, session_id: str) -> str:
        """Clone a session; returns the new session's id."""
        return (await self._call(fork_request(session_id)))["session_id"]

    async def expert_action(self, session_id: str) -> str:
        """The env expert's next action in a session."""
        return (await self._call(Request("GET", f"/v1/sessions/{session_id}/expert")))["action"]

    async def random_action(self, session_id: str, seed: int) -> str:
        """A uniformly random valid action in a session, drawn by the server from ``seed``.

        The same as ``env.random_action(numpy.random.default_rng(seed))`` in-process
        in the same state.
        """
        return (await self._call(random_action_request(session_id, seed)))["action"]

    async def status(self, session_id: str) -> dict[str, Any]:
        """The server's view of a session."""
        return await self._call(Request("GET", f"/v1/sessions/{session_id}"))

    async def close_session(self, session_id: str) -> None:
        """Delete a session."""
        await self._call(Request("DELETE", f"/v1/sessions/{session_id}"))

    async def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return await self._call(Request("GET", "/health"))

    async def aclose(self) -> None:
        """Close the connections.

        HTTP sessions on the server stay until reaped or deleted; the server closes
        those its sockets created.
        """
        idle, self._idle_sockets = self._idle_sockets, []
        for socket in idle:
            await socket.aclose()
        for http in (self._session, self._ws_session):
            if http is not None and not http.closed:
                await http.close()
        self._session = self._ws_session = None

    async def __aenter__(self) -> AsyncEnvClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
