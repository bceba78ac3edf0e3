"""Hostile input against a real server: bad bodies, huge bodies, odd text, floods, bad frames.

Each test runs its own uvicorn on a loopback port (in a thread of this process) and
checks that the server answers every abuse with a JSON problem (or a WebSocket error
reply), never a 5xx, never a leaked session, and stays healthy afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
import toy_envs
from fastapi import FastAPI
from starlette.routing import Route, WebSocketRoute

import palaestra
from palaestra.envs import Outcome
from palaestra.servers import Settings, create_app, serve_in_thread


class Echo(toy_envs.Counter):
    """Observes every action said so far, verbatim; ``raise X`` raises ``ValueError(X)``."""

    max_steps = 1000

    def start(self, task_id: int) -> str:
        self.said: list[str] = []
        return f"task {task_id}"

    def act(self, action: str) -> Outcome:
        if action.startswith("raise "):
            raise ValueError(action.removeprefix("raise "))
        self.said.append(action)
        return Outcome(" | ".join(self.said))


class LongCounter(toy_envs.Counter):
    """The counter (which records overlapping steps) with room for many steps."""

    max_steps = 1000


palaestra.register("toy/Echo-v0", Echo)
palaestra.register("toy/LongCounter-v0", LongCounter)

ENVS = ["palaestra/Maze-v0", "toy/Counter-v0", "toy/Echo-v0", "toy/LongCounter-v0"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Server:
    """A served app: its URL, the app, and what the server logged at ERROR."""

    url: str
    app: FastAPI
    http: httpx.Client
    errors: list[logging.LogRecord] = field(default_factory=list)

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/v1/ws"

    def sessions(self) -> int:
        return self.http.get("/health").json()["sessions"]

    def drained(self, within: float = 30.0) -> int:
        """The open sessions once none are left, or ``within`` seconds passed."""
        deadline = time.monotonic() + within
        while (left := self.sessions()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return left

    def create(self, env: str = "toy/Counter-v0", **fields: object) -> str:
        created = self.http.post("/v1/sessions", json={"env": env, **fields})
        assert created.status_code == 201, created.text
        return created.json()["session_id"]

    def post_raw(self, path: str, content: bytes) -> httpx.Response:
        return self.http.post(path, content=content, headers={"content-type": "application/json"})

    def logged(self) -> list[str]:
        """What the server logged at ERROR, but the env errors it logs by design."""
        return [
            r.getMessage() + (f" {r.exc_info[1]!r}" if r.exc_info else "")
            for r in self.errors
            if not r.getMessage().startswith("env error in session")
        ]


@contextmanager
def served(envs: list[str] = ENVS, **settings: object) -> Iterator[Server]:
    app = create_app(envs, Settings(**settings))
    with serve_in_thread(app) as url:
        # uvicorn configures its loggers when it starts: listen after that.
        handler = _Records()
        loggers = [logging.getLogger(name) for name in ("uvicorn.error", "palaestra.server")]
        for logger in loggers:
            logger.addHandler(handler)
        try:
            with httpx.Client(base_url=url) as http:
                yield Server(url, app, http, handler.records)
        finally:
            for logger in loggers:
                logger.removeHandler(handler)


def problem(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {"status": status, "error": error, "detail": body["detail"]}, body
    assert isinstance(body["detail"], str)
    return body["detail"]


# -- bodies ------------------------------------------------------------------------------

NOT_JSON = [
    b"{not json",
    b'{"action": "inc"',  # cut short
    b"\xff\xfe\x00{",  # not UTF-8
    b'{"action": "\xc3"}',  # a broken UTF-8 sequence inside a string
    b"[" * 5000 + b"]" * 5000,  # nested past the parser's recursion limit
    b'{"seed": ' + b"9" * 5000 + b"}",  # an int past Python's 4300-digit limit
    b'{"seed": NaN}',
    b"\x00",
]
WRONG_SHAPES = [b"[]", b'"inc"', b"42", b"true", b"[{}]"]
WRONG_FIELDS = {
    "/v1/sessions": [
        {},
        {"env": 1},
        {"env": None},
        {"env": ["toy/Counter-v0"]},
        {"env": "toy/Counter-v0", "seed": True},
        {"env": "toy/Counter-v0", "seed": "5"},
        {"env": "toy/Counter-v0", "seed": 5.0},
        {"env": "toy/Counter-v0", "seed": -1},
        {"env": "toy/Counter-v0", "task_id": True},
        {"env": "toy/Counter-v0", "task_id": 1.5},
        {"env": "toy/Counter-v0", "task_id": [1]},
        {"env": "toy/Counter-v0", "task_id": {"id": 1}},
        {"env": "toy/Counter-v0", "extra": 1},
    ],
    "/v1/sessions/{session_id}/step": [
        {},
        {"action": None},
        {"action": True},
        {"action": 3},
        {"action": ["inc"]},
        {"action": {"text": "inc"}},
        {"action": "inc", "extra": 1},
    ],
    "/v1/sessions/{session_id}/reset": [
        {"seed": True},
        {"seed": "1"},
        {"seed": -5},
        {"seed": 1.0},
        {"task_id": False},
        {"task_id": 2.5},
        {"task_id": [2]},
        {"taskid": 2},
    ],
}


def test_malformed_json_and_wrong_types_on_every_post_route():
    with served() as server:
        routes = [
            r for r in server.app.routes if isinstance(r, Route) and "POST" in (r.methods or ())
        ]
        with_body = {r.path for r in routes if getattr(r, "body_field", None) is not None}
        assert with_body == set(WRONG_FIELDS)  # a new route with a body needs its cases here
        for route in sorted(with_body):
            sid = server.create()
            path = route.replace("{session_id}", sid)
            bodies = [
                *NOT_JSON,
                *WRONG_SHAPES,
                *(json.dumps(b).encode() for b in WRONG_FIELDS[route]),
            ]
            for body in bodies:
                detail = problem(server.post_raw(path, body), 422, "invalid_request")
                assert "Traceback" not in detail
            assert server.http.get(f"/v1/sessions/{sid}").json()["steps"] == 0
        assert server.http.get("/health").status_code == 200
        assert server.sessions() == len(with_body)  # none made by a bad body
        assert not server.logged()


def test_405_names_the_allowed_methods():
    with served() as server:
        response = server.http.put("/v1/envs")
        problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET"
        response = server.http.get("/v1/sessions/x/step")
        problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_413_with_content_length_is_answered_before_the_body_is_sent():
    with served(max_body_bytes=64 * 1024) as server:
        host, port = server.url.removeprefix("http://").split(":")
        head = (
            "POST /v1/sessions HTTP/1.1\r\n"
            f"Host: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n\r\n"
        )
        # The body never comes: an answer at all proves it came before the body (a
        # server waiting for it would hit the socket timeout and fail the test).
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            raw.sendall(head.encode() + b'{"env": "' + b"x" * 1000)  # and nothing more
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 413"), answer
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["status"] == 413 and body["error"] == "body_too_large"
        assert server.sessions() == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc")
def test_413_chunked_body_is_read_only_up_to_the_cap():
    chunk = b"x" * 65536
    total = 50 * 1024 * 1024

    def body() -> Iterator[bytes]:
        yield b'{"action": "'
        for _ in range(total // len(chunk)):
            yield chunk

    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib())
            time.sleep(0.002)

    with served(max_body_bytes=64 * 1024) as server:
        sid = server.create()
        with httpx.Client(timeout=30) as client:
            client.get(f"{server.url}/health")  # warm the connection pool
            before = _rss_kib()
            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                started = time.monotonic()
                response = client.post(f"{server.url}/v1/sessions/{sid}/step", content=body())
                elapsed = time.monotonic() - started
            finally:
                done.set()
                sampler.join()
            assert "content-length" not in response.request.headers
            assert response.request.headers["transfer-encoding"] == "chunked"
            problem(response, 413, "body_too_large")
            assert elapsed < 10
            assert peak[0] - before < 8 * 1024, f"RSS grew by {(peak[0] - before) // 1024} MiB"
            # the session and the server are untouched
            step = client.post(f"{server.url}/v1/sessions/{sid}/step", json={"action": "inc"})
            assert step.json()["info"]["step"] == 1


# -- unicode -----------------------------------------------------------------------------

ODD_ACTIONS = [
    "\x00",
    "move\x00 up",
    "\x1b[31mmove up\x1b[0m",
    "\u202emove up\u202c",  # right-to-left override
    "\u200fmove\u200e up",  # RTL / LTR marks
    "move up 😀",
    "🏳️‍🌈",
    "e\u0301",  # combining accent
    "\ufeffmove up",  # BOM
    "move\r\nup",
    "\t",
    "\x7f\x85",
    "\U0010ffff",
    "\\u0000",
    '"}',
    "",
    "move up",
]


async def _socket_steps(ws_url: str, env: str, actions: list[str]) -> list[dict]:
    async with aiohttp.ClientSession() as client, client.ws_connect(ws_url) as ws:
        await ws.send_str(
            json.dumps({"id": 0, "op": "create", "env": env, "task_id": 3, "seed": 1})
        )
        created = await ws.receive_json(timeout=5)
        assert created["ok"], created
        replies = []
        for n, action in enumerate(actions, 1):
            await ws.send_str(json.dumps({"id": n, "op": "step", "action": action}))
            replies.append(await ws.receive_json(timeout=5))
        return [created, *replies]


@pytest.mark.parametrize("env_id", ["palaestra/Maze-v0", "toy/Echo-v0"])
def test_unicode_and_control_characters_in_actions_match_in_process(env_id):
    local = palaestra.make(env_id)
    first = local.reset(seed=1, options={"task_id": 3})
    expected = []
    for action in ODD_ACTIONS:
        observation, reward, terminated, truncated, info = local.step(action)
        expected.append(
            {"observation": observation, "reward": reward, "terminated": terminated}
            | {"truncated": truncated, "info": info}
        )
        assert not (terminated or truncated)
    with served() as server:
        remote = palaestra.make(env_id, base_url=server.url)
        assert remote.reset(seed=1, options={"task_id": 3}) == first
        for action, step in zip(ODD_ACTIONS, expected, strict=True):
            assert remote.step(action) == tuple(step.values()), repr(action)
        remote.close()
        replies = asyncio.run(_socket_steps(server.ws, env_id, ODD_ACTIONS))
        assert (replies[0]["result"]["observation"], replies[0]["result"]["info"]) == first
        for action, reply, step in zip(ODD_ACTIONS, replies[1:], expected, strict=True):
            assert reply["ok"] and reply["result"] == step, repr(action)
        assert server.drained() == 0
        assert not server.logged()


def test_lone_surrogates_are_never_a_5xx():
    # JSON text cannot hold a lone surrogate, but its escape "\ud800" decodes to one.
    local = palaestra.make("toy/Echo-v0")
    local.reset(seed=0, options={"task_id": 1})
    with served() as server:
        sid = server.create("toy/Echo-v0", task_id=1, seed=0)
        step_url = f"/v1/sessions/{sid}/step"
        for escaped, action in [
            (b'"\\ud800"', "\ud800"),
            (b'"a\\udfffb"', "a\udfffb"),
            (b'"\\ud83d\\ude00"', "😀"),  # a proper pair
        ]:
            response = server.post_raw(step_url, b'{"action": ' + escaped + b"}")
            assert response.status_code == 200, response.text
            # the env's answer, lone surrogates and all, is read back exactly
            assert response.json()["observation"] == local.step(action)[0]
        # an env error whose message holds one is still a JSON problem naming the env error
        raised = server.post_raw(step_url, b'{"action": "raise \\udc80"}')
        assert "ValueError: \udc80;" in problem(raised, 500, "env_error")
        # unknown ids and envs that hold one are answered too
        problem(server.http.get("/v1/sessions/%ED%A0%80"), 404, "session_not_found")
        created = server.post_raw("/v1/sessions", b'{"env": "\\ud800"}')
        problem(created, 422, "unknown_env")
        reset = server.post_raw(f"/v1/sessions/{sid}/reset", b'{"task_id": "\\ud800"}')
        problem(reset, 422, "unknown_task")

        async def over_the_socket() -> list[dict]:
            sid = server.create("toy/Echo-v0")
            server.post_raw(f"/v1/sessions/{sid}/step", b'{"action": "\\udbff"}')
            async with aiohttp.ClientSession() as client, client.ws_connect(server.ws) as ws:
                replies = []
                for frame in [
                    {"id": 1, "op": "attach", "session_id": sid},
                    {"id": 2, "op": "step", "action": "\ud800"},  # json.dumps escapes it
                    {"id": 3, "op": "step", "action": "x"},  # the observation holds "\udbff"
                    {"id": 4, "op": "status"},
                ]:
                    await ws.send_str(json.dumps(frame))
                    replies.append(json.loads(await ws.receive_str(timeout=5)))
                return replies

        attached, surrogate, echoed, status = asyncio.run(over_the_socket())
        assert attached["ok"], attached
        # the socket's JSON parser refuses the escape (HTTP's accepts it): not a 5xx
        assert surrogate["ok"] or surrogate["status"] == 422, surrogate
        said = ["\udbff", "\ud800"] if surrogate["ok"] else ["\udbff"]
        assert echoed["ok"] and echoed["result"]["observation"] == " | ".join([*said, "x"])
        assert status["ok"] and status["result"]["steps"] == len(said) + 1
        assert not server.logged()


# -- sessions ----------------------------------------------------------------------------


def test_thousands_of_unknown_session_ids():
    calls = [
        ("GET", "/v1/sessions/{}", None),
        ("POST", "/v1/sessions/{}/step", {"action": "inc"}),
        ("POST", "/v1/sessions/{}/reset", {}),
        ("POST", "/v1/sessions/{}/fork", None),
        ("GET", "/v1/sessions/{}/expert", None),
        ("GET", "/v1/sessions/{}/random_action?seed=0", None),
        ("DELETE", "/v1/sessions/{}", None),
    ]
    with served() as server:
        real = server.create()

        async def flood() -> list[tuple[int, dict]]:
            connector = aiohttp.TCPConnector(limit=4)  # 4 keep-alive connections
            async with aiohttp.ClientSession(server.url, connector=connector) as client:

                async def one(n: int) -> tuple[int, dict]:
                    method, path, body = calls[n % len(calls)]
                    sid = f"{n:x}{real[6:]}"  # shaped like a real id
                    async with client.request(method, path.format(sid), json=body) as response:
                        return response.status, await response.json()

                return await asyncio.gather(*(one(n) for n in range(3000)))

        for status, body in asyncio.run(flood()):
            assert status == 404 and body["error"] == "session_not_found", body
            assert body["status"] == 404 and body["detail"].startswith("no session")
        for sid in ["%2e%2e", "..%2F", "%2F", "x%00", "%F0%9F%98%80", "%ED%A0%80", "%FF", "?"]:
            for method, path, body in calls:
                response = server.http.request(method, path.format(sid), json=body)
                assert response.status_code < 500, (method, path, sid)
                if response.status_code >= 400:  # (a 307 takes "x/../" to "x/..")
                    problem(response, response.status_code, response.json()["error"])
        assert server.sessions() == 1  # no session made, the real one untouched
        assert server.http.get(f"/v1/sessions/{real}").json()["steps"] == 0
        metrics = server.http.get("/metrics").text
        assert 'palaestra_sessions_created_total{env="toy/Counter-v0"} 1.0' in metrics
        assert not server.logged()


def test_step_on_a_closed_session_is_404_over_http_and_socket():
    with served() as server:
        sid = server.create()
        assert server.http.delete(f"/v1/sessions/{sid}").status_code == 204
        step = server.http.post(f"/v1/sessions/{sid}/step", json={"action": "inc"})
        problem(step, 404, "session_not_found")
        problem(server.http.delete(f"/v1/sessions/{sid}"), 404, "session_not_found")

        async def over_the_socket() -> list[dict]:
            sid = server.create()
            async with aiohttp.ClientSession() as client, client.ws_connect(server.ws) as ws:
                await ws.send_json({"id": 1, "op": "attach", "session_id": sid})
                replies = [await ws.receive_json(timeout=5)]
                async with httpx.AsyncClient() as http:
                    await http.delete(f"{server.url}/v1/sessions/{sid}")
                for n, op in enumerate(["step", "status", "reset", "close"], 2):
                    await ws.send_json(
                        {"id": n, "op": op, "action": "inc" if op == "step" else None}
                    )
                    replies.append(await ws.receive_json(timeout=5))
                return replies

        attached, step, status, reset, close = asyncio.run(over_the_socket())
        assert attached["ok"]
        for reply in (step, status, reset):
            assert not reply["ok"] and reply["status"] == 404, reply
            assert reply["error"] == "session_not_found"
        assert close["ok"]  # closing a closed session is a no-op
        assert server.sessions() == 0
        assert not server.logged()


def test_concurrent_http_and_socket_steps_on_one_session_are_serialised():
    toy_envs.Counter.overlap_seen = False
    with served() as server:
        sid = server.create("toy/LongCounter-v0")

        async def hammer() -> list[int]:
            async with aiohttp.ClientSession() as client, httpx.AsyncClient() as http:
                sockets = [await client.ws_connect(server.ws) for _ in range(3)]
                for ws in sockets:
                    await ws.send_json({"id": 0, "op": "attach", "session_id": sid})
                    assert (await ws.receive_json(timeout=5))["ok"]

                async def by_socket(ws: aiohttp.ClientWebSocketResponse) -> list[int]:
                    steps = []
                    for n in range(1, 4):
                        await ws.send_json({"id": n, "op": "step", "action": "sleep 0.02"})
                        steps.append((await ws.receive_json(timeout=5))["result"]["info"]["step"])
                    return steps

                async def by_http() -> list[int]:
                    steps = []
                    for _ in range(3):
                        url = f"{server.url}/v1/sessions/{sid}/step"
                        step = await http.post(url, json={"action": "sleep 0.02"})
                        steps.append(step.json()["info"]["step"])
                    return steps

                callers = [*(by_socket(ws) for ws in sockets), by_http(), by_http(), by_http()]
                results = await asyncio.gather(*callers)
                for ws in sockets:
                    await ws.close()
                return [step for steps in results for step in steps]

        steps = asyncio.run(hammer())
        assert sorted(steps) == list(range(1, 19))
        assert not toy_envs.Counter.overlap_seen
        assert server.sessions() == 1  # attached sockets leave the session open
        assert not server.logged()


# -- socket frames -----------------------------------------------------------------------


def test_hostile_socket_frames_get_error_replies():
    frames: list[tuple[str | bytes, int | None, int | None, str | None]] = [
        # (frame, the reply's id, its status (None: ok), its error)
        ('{"id": 1, "op": "step", "action": "inc"}', 1, 409, "session_conflict"),  # before create
        ('{"id": 2, "op": "status"}', 2, 409, "session_conflict"),
        ("{not json", None, 422, "invalid_request"),
        ("", None, 422, "invalid_request"),
        ("[1, 2]", None, 422, "invalid_request"),
        ("null", None, 422, "invalid_request"),
        ('{"id": 3}', 3, 422, "invalid_request"),  # no op
        ('{"id": 4, "op": "teleport"}', 4, 422, "invalid_request"),
        ('{"id": 5, "op": "create"}', 5, 422, "invalid_request"),  # no env
        ('{"id": 6, "op": "attach"}', 6, 422, "invalid_request"),  # no session id
        ('{"id": 7, "op": "create", "env": "toy/Nope-v0"}', 7, 422, "unknown_env"),
        (
            '{"id": 8, "op": "create", "env": "toy/Counter-v0", "extra": 1}',
            8,
            422,
            "invalid_request",
        ),
        ('{"id": "9", "op": "status"}', None, 422, "invalid_request"),  # a string id
        ('{"id": true, "op": "status"}', None, 422, "invalid_request"),  # a bool id
        ('{"id": 1.5, "op": "status"}', None, 422, "invalid_request"),
        (
            '{"id": 10, "op": "create", "env": "toy/Counter-v0", "seed": true}',
            10,
            422,
            "invalid_request",
        ),
        ('{"id": 11, "op": "create", "env": "toy/Counter-v0", "task_id": 1}', 11, None, None),
        ('{"id": 12, "op": "create", "env": "toy/Counter-v0"}', 12, 409, "session_conflict"),
        ('{"id": 13, "op": "attach", "session_id": "x"}', 13, 409, "session_conflict"),
        ('{"id": 14, "op": "step"}', 14, 422, "invalid_request"),  # no action
        ('{"id": 15, "op": "step", "action": null}', 15, 422, "invalid_request"),
        ('{"id": 16, "op": "step", "action": 3}', 16, 422, "invalid_request"),
        (
            '{"id": 17, "op": "step", "action": "inc", "seed": 1, "x": 2}',
            17,
            422,
            "invalid_request",
        ),
        ('{"id": 18, "op": "random_action"}', 18, 422, "invalid_request"),  # no seed
        (
            '{"id": 19, "op": "random_action", "seed": 9223372036854775808}',
            19,
            422,
            "invalid_request",
        ),
        ('{"id": 20, "op": "random_action", "seed": 0}', 20, 409, "not_supported"),
        ('{"id": 21, "op": "reset", "seed": -1}', 21, 422, "invalid_request"),
        ('{"id": 22, "op": "step", "action": "' + "x" * 5000 + '"}', 22, 422, "action_too_long"),
        (b'{"id": 23, "op": "status"}', 23, None, None),  # a binary frame is read as UTF-8
        (b"\xff\xfe\x00", None, 422, "invalid_request"),
        (
            '{"id": 99999999999999999999999, "op": "step", "action": "inc"}',
            99999999999999999999999,
            None,
            None,
        ),
        ('{"id": -1, "op": "status"}', -1, None, None),
    ]

    async def run(ws_url: str) -> list[dict]:
        async with aiohttp.ClientSession() as client, client.ws_connect(ws_url) as ws:
            replies = []
            for frame, *_ in frames:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                replies.append(json.loads(await ws.receive_str(timeout=5)))
            return replies

    with served(max_body_bytes=16 * 1024) as server:
        replies = asyncio.run(run(server.ws))
        for (frame, request_id, status, error), reply in zip(frames, replies, strict=True):
            shown = f"{frame[:60]!r} -> {reply}"
            assert reply["id"] == request_id, shown
            if status is None:
                assert reply["ok"] is True, shown
            else:
                assert reply["ok"] is False and reply["status"] == status, shown
                assert reply["error"] == error and isinstance(reply["detail"], str), shown
        assert replies[-2]["result"]["info"]["step"] == 1
        assert server.drained() == 0  # the socket's session closed with it
        assert not server.logged()


def test_socket_message_over_the_cap_closes_the_socket_and_its_session():
    async def run(ws_url: str) -> tuple[dict, aiohttp.WSMessage]:
        async with aiohttp.ClientSession() as client, client.ws_connect(ws_url) as ws:
            await ws.send_json({"id": 1, "op": "create", "env": "toy/Counter-v0"})
            created = await ws.receive_json(timeout=5)
            await ws.send_str(json.dumps({"id": 2, "op": "step", "action": "x" * 20_000}))
            return created, await ws.receive(timeout=5)

    with served(max_body_bytes=16 * 1024) as server:
        created, closed = asyncio.run(run(server.ws))
        assert created["ok"]
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1009  # message too big
        assert server.drained() == 0
        assert not server.logged()


def test_a_client_that_closes_mid_request_leaks_nothing():
    async def run(ws_url: str) -> None:
        async with aiohttp.ClientSession() as client:
            for action in ("sleep 0.2", "inc"):
                ws = await client.ws_connect(ws_url)
                await ws.send_json({"id": 1, "op": "create", "env": "toy/Counter-v0"})
                assert (await ws.receive_json(timeout=5))["ok"]
                await ws.send_json({"id": 2, "op": "step", "action": action})
                await ws.close()  # before the reply
            # and one that vanishes without a close frame
            ws = await client.ws_connect(ws_url)
            await ws.send_json({"id": 1, "op": "create", "env": "toy/Counter-v0"})
            await ws.receive_json(timeout=5)
            await ws.send_json({"id": 2, "op": "step", "action": "sleep 0.2"})
            ws._response.connection.transport.abort()  # (aiohttp has no public way)

    with served() as server:
        asyncio.run(run(server.ws))
        assert server.drained() == 0  # each socket's session closed once its step ended
        deadline = time.monotonic() + 30
        while toy_envs.Counter.active:  # no step still running
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert server.http.get("/health").status_code == 200
        assert not server.logged()


# -- token -------------------------------------------------------------------------------


def test_token_guards_the_socket_and_every_route_but_health():
    async def handshake(ws_url: str, headers: dict[str, str]) -> int | dict:
        async with aiohttp.ClientSession() as client:
            try:
                async with client.ws_connect(ws_url, headers=headers) as ws:
                    await ws.send_json({"id": 1, "op": "create", "env": "toy/Counter-v0"})
                    return await ws.receive_json(timeout=5)
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    with served(token="s3cret") as server:
        right = {"Authorization": "Bearer s3cret"}
        assert asyncio.run(handshake(server.ws, {})) == 403
        assert asyncio.run(handshake(server.ws, {"Authorization": "Bearer s3cre"})) == 403
        assert asyncio.run(handshake(server.ws, {"Authorization": "s3cret"})) == 403
        assert asyncio.run(handshake(server.ws, right))["ok"] is True

        checked = set()
        for route in server.app.routes:
            path = re.sub(r"\{[^}]*\}", "x", route.path)
            if isinstance(route, WebSocketRoute):
                ws_url = server.url.replace("http://", "ws://", 1) + path
                assert asyncio.run(handshake(ws_url, {})) == 403, route.path
                checked.add(("WS", route.path))
                continue
            assert isinstance(route, Route), route
            for method in sorted(route.methods or ()):
                response = server.http.request(method, path)
                if route.path == "/health":
                    assert response.status_code == 200
                    continue
                assert response.status_code == 401, (method, route.path)
                assert response.headers["www-authenticate"] == "Bearer"
                if method != "HEAD":
                    problem(response, 401, "unauthorized")
                checked.add((method, route.path))
        assert ("POST", "/v1/sessions/{session_id}/step") in checked
        # /v1/ws is not a router route (the guard hands it to the socket app): it was
        # checked above, and no other WebSocket path is served.
        assert (
            asyncio.run(handshake(server.url.replace("http://", "ws://") + "/v1/wsx", right)) == 403
        )
        assert server.drained() == 0  # the session of the authorised socket closed with it


def test_the_token_is_compared_in_constant_time(serve, monkeypatch):
    # Timing cannot be asserted reliably; what can be pinned is that every guarded
    # request goes through hmac.compare_digest (a plain == leaks the matching prefix).
    import hmac

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with serve(["toy/Counter-v0"], token="s3cret") as url:
        assert (
            httpx.get(f"{url}/v1/envs", headers={"Authorization": "Bearer nope"}).status_code == 403
        )
        ok = httpx.get(f"{url}/v1/envs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    # The credentials after the (case-insensitive) scheme, against the token.
    assert seen == [(b"nope", b"s3cret"), (b"s3cret", b"s3cret")]


def test_the_socket_app_answers_413_to_a_message_over_the_cap_itself():
    # Under `palaestra serve` uvicorn's ws_max_size closes such a socket first (1009);
    # under an ASGI server without that limit the app still refuses the message.
    from prometheus_client import CollectorRegistry

    from palaestra.servers.metrics import Metrics
    from palaestra.servers.operations import Operations
    from palaestra.servers.sessions import SessionStore, Settings
    from palaestra.servers.websocket_route import SocketApp

    store = SessionStore(["toy/Counter-v0"], Settings(max_body_bytes=100))
    app = SocketApp(Operations(store, Metrics(CollectorRegistry())))
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": json.dumps({"op": "step", "action": "x" * 200})},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "websocket", "path": "/v1/ws"}, receive, send))
    assert sent[0] == {"type": "websocket.accept"}
    reply = json.loads(sent[1]["text"])
    assert (reply["ok"], reply["status"], reply["error"]) == (False, 413, "body_too_large")
