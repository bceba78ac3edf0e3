"""Attacker findings against the env server (issue 12, "Low" list), each pinned.

Each test failed before its fix (see the commit that added it).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import toy_envs  # noqa: F401  (registers toy/Counter-v0)

from palaestra.envs import Outcome, TextEnv, register
from palaestra.errors import NotSupportedError
from palaestra.servers import Settings, create_app, serve_in_thread

TOO_BIG = 2**63


def ws_url(url: str) -> str:
    return "ws" + url.removeprefix("http") + "/v1/ws"


async def socket_replies(url: str, frames: list[str], **connect: object) -> list[dict]:
    """Send each frame on one socket and read its reply."""
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(ws_url(url), **connect) as ws:
            replies = []
            for frame in frames:
                await ws.send_str(frame)
                replies.append(json.loads(await ws.receive_str(timeout=30)))
            return replies


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(create_app(["toy/Counter-v0", "toy/Picky-v0"], Settings())) as base:
        yield base


# -- a seed >= 2**63 ------------------------------------------------------------------


def test_a_seed_of_2_63_or_more_is_a_422_naming_the_field_on_every_route(url: str) -> None:
    created = httpx.post(f"{url}/v1/sessions", json={"env": "toy/Counter-v0", "seed": TOO_BIG})
    assert created.status_code == 422 and "seed" in created.json()["detail"], created.text
    ok = httpx.post(f"{url}/v1/sessions", json={"env": "toy/Counter-v0", "seed": TOO_BIG - 1})
    assert ok.status_code == 201, ok.text
    sid = ok.json()["session_id"]
    for seed in (TOO_BIG, 2**64, 10**30):
        reset = httpx.post(f"{url}/v1/sessions/{sid}/reset", json={"seed": seed})
        assert reset.status_code == 422 and "seed" in reset.json()["detail"], reset.text
        drawn = httpx.get(f"{url}/v1/sessions/{sid}/random_action", params={"seed": seed})
        assert drawn.status_code == 422 and "seed" in drawn.json()["detail"], drawn.text
    replies = asyncio.run(
        socket_replies(
            url,
            [
                json.dumps({"id": 1, "op": "create", "env": "toy/Counter-v0", "seed": TOO_BIG}),
                json.dumps({"id": 2, "op": "create", "env": "toy/Counter-v0", "seed": 1}),
                json.dumps({"id": 3, "op": "reset", "seed": 2**64}),
                json.dumps({"id": 4, "op": "status"}),
            ],
        )
    )
    for reply in (replies[0], replies[2]):
        assert (reply["ok"], reply["status"], reply["error"]) == (False, 422, "invalid_request")
        assert "seed" in reply["detail"], reply
    assert replies[1]["ok"] and replies[3]["ok"], replies


# -- the Bearer scheme is case-insensitive (RFC 7235) ----------------------------------


def test_the_bearer_scheme_is_matched_case_insensitively() -> None:
    with serve_in_thread(create_app(["toy/Counter-v0"], Settings(token="s3cret"))) as url:
        for header in ("Bearer s3cret", "bearer s3cret", "BEARER s3cret", "Bearer   s3cret"):
            answer = httpx.get(f"{url}/v1/envs", headers={"Authorization": header})
            assert answer.status_code == 200, (header, answer.text)
        for header in ("Bearer s3cre", "Basic s3cret", "s3cret", "Bearers3cret", "bearer S3CRET"):
            answer = httpx.get(f"{url}/v1/envs", headers={"Authorization": header})
            assert answer.status_code == 403, (header, answer.text)
        frame = json.dumps({"id": 1, "op": "create", "env": "toy/Counter-v0"})
        headers = {"Authorization": "bearer s3cret"}
        (reply,) = asyncio.run(socket_replies(url, [frame], headers=headers))
        assert reply["ok"], reply


# -- deeply nested JSON on a socket with a session -----------------------------------


def test_deeply_nested_json_on_a_socket_is_an_error_reply_and_keeps_the_session(
    url: str,
) -> None:
    deep = 5_000  # past orjson (1,024) and json (the recursion limit); under 64 KiB
    frames = [
        json.dumps({"id": 1, "op": "create", "env": "toy/Counter-v0", "task_id": 0}),
        "[" * deep + "]" * deep,
        '{"id": 3, "op": "step", "action": ' + "[" * deep + "]" * deep + "}",
        '{"a":' * deep + "1" + "}" * deep,
        json.dumps({"id": 5, "op": "step", "action": "inc"}),
    ]
    replies = asyncio.run(socket_replies(url, frames, max_msg_size=0))
    for reply in replies[1:4]:
        assert (reply["ok"], reply["status"], reply["error"]) == (False, 422, "invalid_request")
    assert replies[4]["ok"] and replies[4]["result"]["info"]["step"] == 1, replies[4]


# -- a step raising a palaestra error on the socket's fast path ------------------------


class Picky(TextEnv):
    """`undo` is a capability the env lacks: its step raises NotSupportedError."""

    instruction = "Say `go`."
    max_steps = 3
    splits = {"train": range(0, 4), "test": range(4, 6)}

    def start(self, task_id: int) -> str:
        return f"task {task_id}"

    def act(self, action: str) -> Outcome:
        if action == "undo":
            raise NotSupportedError("Picky cannot undo")
        won = action == "go"
        return Outcome("done" if won else "no", reward=float(won), done=won, success=won)


register("toy/Picky-v0", Picky)


def test_a_palaestra_error_from_a_step_is_its_409_not_500_and_keeps_the_socket(url: str) -> None:
    """NotSupportedError out of a step was a 500 ``internal`` over HTTP and escaped the
    socket's fast path (the socket closed); now 409 ``not_supported`` on both."""
    created = httpx.post(f"{url}/v1/sessions", json={"env": "toy/Picky-v0", "task_id": 0})
    sid = created.json()["session_id"]
    answer = httpx.post(f"{url}/v1/sessions/{sid}/step", json={"action": "undo"})
    assert answer.status_code == 409 and answer.json()["error"] == "not_supported", answer.text
    assert httpx.post(f"{url}/v1/sessions/{sid}/step", json={"action": "go"}).status_code == 200
    frames = [
        json.dumps({"id": 1, "op": "create", "env": "toy/Picky-v0", "task_id": 0}),
        json.dumps({"id": 2, "op": "step", "action": "undo"}),  # the parse-only fast path
        json.dumps({"id": 3, "op": "step", "action": "go"}),
    ]
    _, undo, go = asyncio.run(socket_replies(url, frames))
    assert (undo["ok"], undo["status"], undo["error"]) == (False, 409, "not_supported"), undo
    assert go["ok"] and go["result"]["terminated"], go


# -- Origin on /v1/ws ----------------------------------------------------------------


async def _upgrade(url: str, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket upgrade (101 when it succeeds)."""
    async with aiohttp.ClientSession() as client:
        try:
            async with client.ws_connect(ws_url(url), headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as error:
            return error.status


def test_a_web_page_of_a_foreign_origin_cannot_open_the_socket(url: str) -> None:
    here = url.removeprefix("http://")
    port = here.rsplit(":", 1)[1]
    cases = {
        # what a browser sends from a page of https://evil.example
        "https://evil.example": 403,
        "null": 403,  # a sandboxed iframe or a file:// page
        f"http://localhost:{int(port) + 1}": 403,  # another local app's page
        f"http://127.0.0.1:{port}": 101,  # this server's own origin
    }
    for origin, status in cases.items():
        assert asyncio.run(_upgrade(url, {"Origin": origin})) == status, origin
    assert asyncio.run(_upgrade(url, {})) == 101  # programs send no Origin
    # DNS rebinding: the attacker's name resolved to 127.0.0.1, in Host and Origin alike.
    rebound = {"Origin": f"http://evil.example:{port}", "Host": f"evil.example:{port}"}
    assert asyncio.run(_upgrade(url, rebound)) == 403


def test_allowed_origins_let_a_named_page_in() -> None:
    settings = Settings(allowed_origins=("https://lab.example",))
    with serve_in_thread(create_app(["toy/Counter-v0"], settings)) as url:
        assert asyncio.run(_upgrade(url, {"Origin": "https://lab.example"})) == 101
        assert asyncio.run(_upgrade(url, {"Origin": "https://evil.example"})) == 403
    with serve_in_thread(create_app(["toy/Counter-v0"], Settings(allowed_origins=("*",)))) as url:
        assert asyncio.run(_upgrade(url, {"Origin": "https://evil.example"})) == 101


# -- --token-file --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_reads_its_token_from_a_file_and_keeps_it_out_of_ps(tmp_path: Path) -> None:
    token = "file-token-4b1d"
    path = tmp_path / "token"
    path.write_text(token + "\n")
    port = _free_port()
    command = [sys.executable, "-m", "palaestra.cli", "serve", "palaestra/Maze-v0"]
    command += ["--port", str(port), "--token-file", str(path), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "PALAESTRA_TOKEN"}
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "the server exited"
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        assert httpx.get(url + "/v1/envs").status_code == 401
        answer = httpx.get(url + "/v1/envs", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert token not in cmdline  # what `ps` shows
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_token_file_errors_and_help(tmp_path: Path) -> None:
    from cli_runner import run_cli

    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (empty, tmp_path / "missing"):
        result = run_cli("serve", "palaestra/Maze-v0", "--port", "1", "--token-file", str(path))
        assert result.returncode == 2 and "token file" in result.stderr, result
    shown = " ".join(run_cli("serve", "--help").stdout.split())
    for words in ("--token-file", "PALAESTRA_TOKEN", "--allow-origin", "Origin"):
        assert words in shown, words
    assert "--token-file" in run_cli("serve-policy", "--help").stdout


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        ("", "127.0.0.1:8000", (), True),  # no Origin: a program, not a page
        ("http://127.0.0.1:8000", "127.0.0.1:8000", (), True),
        ("http://localhost:8000", "localhost:8000", (), True),
        ("http://[::1]:8000", "[::1]:8000", (), True),
        ("HTTP://LOCALHOST:8000", "localhost:8000", (), True),
        ("http://localhost:8001", "localhost:8000", (), False),  # another local app
        ("http://10.0.0.5:8000", "10.0.0.5:8000", (), False),  # same host, not loopback
        ("http://evil.example:8000", "evil.example:8000", (), False),  # DNS rebinding
        ("null", "127.0.0.1:8000", (), False),
        ("ws://127.0.0.1:8000", "127.0.0.1:8000", (), False),
        ("http://[bad", "127.0.0.1:8000", (), False),
        ("https://lab.example", "127.0.0.1:8000", ("https://lab.example/",), True),
        ("https://Lab.Example", "127.0.0.1:8000", ("https://lab.example",), True),
        ("https://lab.example.evil", "127.0.0.1:8000", ("https://lab.example",), False),
        ("https://evil.example", "127.0.0.1:8000", ("*",), True),
    ],
)
def test_origin_rule(origin: str, host: str, allowed: tuple[str, ...], expected: bool) -> None:
    from palaestra.servers.auth import origin_allowed

    assert origin_allowed(origin, host, allowed) is expected
