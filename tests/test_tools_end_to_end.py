"""Tool calling end to end as a user runs it: expert data, SFT, serve-policy, eval; AgentEvol.

1. ``palaestra eval --policy expert --format tools`` records Tally's expert calls;
   ``palaestra train sft`` fits the tiny model to them; ``palaestra serve-policy``
   serves it (a real subprocess); ``palaestra eval --policy openai:URL --format tools``
   plays Tally through a recording proxy in front of it. The requests must carry the
   env's tools and the conversation's calls and results in OpenAI's shapes, and the
   tool calls the server answers must be the actions the env received.
2. ``palaestra evolve agentevol --envs palaestra/Todo-v0 --format tools`` on a tiny
   budget runs every stage, and ``palaestra data info --show`` prints its data's
   tool messages.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_runner import run_cli
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from toy_envs import Tally

from palaestra.agents.trajectory import read_trajectories
from palaestra.cli import main
from palaestra.envs import parse_tool_call, tool_call_action
from palaestra.servers import serve_in_thread

pytestmark = pytest.mark.slow

TALLY = "toy/Tally-v0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tally_model(tmp_path_factory) -> Path:
    """The tiny model behaviour-cloned on Tally's expert tool calls, through the CLI."""
    root = tmp_path_factory.mktemp("tally")
    data = root / "expert"
    assert main(["eval", "--policy", "expert", "--envs", TALLY, "--format", "tools",
                 "--split", "train", "--quiet", "--out", str(data)]) == 0  # fmt: skip
    assert main(["train", "sft", "--data", str(data / "trajectories.jsonl"), "--model", "tiny",
                 "--out", str(root / "sft"), "--steps", "150", "--batch-size", "8",
                 "--lr", "3e-3", "--history", "1", "--threads", "1", "--quiet"]) == 0  # fmt: skip
    return root / "sft" / "model"


@pytest.fixture(scope="module")
def served(tally_model) -> Iterator[str]:
    """``palaestra serve-policy MODEL`` in its own process."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "palaestra.cli", "serve-policy", str(tally_model),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # tiny tensors: threads only contend
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()  # reading stderr of a live process would wait for it forever
                _, stderr = process.communicate(timeout=30)
                raise RuntimeError(f"serve-policy did not come up: {stderr}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def recording_proxy(upstream: str, log: list[tuple[dict[str, Any], dict[str, Any]]]) -> FastAPI:
    """Forwards every call to ``upstream``; keeps each chat completion's (request, answer)."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        async with httpx.AsyncClient(timeout=120) as client:
            answer = await client.request(
                request.method,
                f"{upstream}/{path}",
                content=body,
                headers={"content-type": request.headers.get("content-type", "")},
            )
        if path == "v1/chat/completions":
            log.append((json.loads(body), answer.json()))
        return JSONResponse(answer.json(), status_code=answer.status_code)

    return app


def test_eval_through_serve_policy_carries_tools_both_ways(served, tmp_path):
    log: list[tuple[dict[str, Any], dict[str, Any]]] = []
    out = tmp_path / "eval"
    with serve_in_thread(recording_proxy(served, log)) as proxy:
        code = main(["eval", "--policy", f"openai:{proxy}", "--envs", TALLY, "--format", "tools",
                     "--split", "test", "--history", "1", "--max-tokens", "40", "--quiet",
                     "--out", str(out)])  # fmt: skip
    assert code == 0
    trajectories = read_trajectories(out / "trajectories.jsonl")
    assert len(trajectories) == len(Tally.tasks("test"))
    # Every request carried Tally's tools, and the history in OpenAI's shapes.
    assert log and all(body["tools"] == json.loads(json.dumps(Tally.tools)) for body, _ in log)
    later = [body["messages"] for body, _ in log if len(body["messages"]) > 2]
    assert later, "no episode got past its first turn"
    for messages in later:
        reply, result = messages[-3], messages[-2]
        if reply.get("tool_calls"):  # the previous call and its result, as the API wants them
            assert reply["role"] == "assistant" and "loss" not in reply
            assert isinstance(reply["tool_calls"][0]["function"]["arguments"], str)
            assert result["role"] == "tool"
            assert result["tool_call_id"] == reply["tool_calls"][0]["id"]
    # The model answered with the API's tool_calls, and exactly those calls reached the env.
    answered = [answer["choices"][0]["message"] for _, answer in log]
    calls = [m["tool_calls"][0]["function"] for m in answered if m.get("tool_calls")]
    assert len(calls) >= len(trajectories), "the served model wrote too few tool calls"
    assert all(a["choices"][0]["finish_reason"] == "tool_calls" for _, a in log
               if a["choices"][0]["message"].get("tool_calls"))  # fmt: skip
    sent = Counter(tool_call_action(c["name"], json.loads(c["arguments"])) for c in calls)
    stepped = Counter(a for t in trajectories for a in t.actions if a)
    assert stepped == sent
    for t in trajectories:
        assert t.tools == list(Tally.tools)
        for action in filter(None, t.actions):
            assert parse_tool_call(action).name in {"add", "total", "finish"}
    # Some episodes were solved: the calls did something in the env, not only parsed.
    assert sum(t.score for t in trajectories) > 0


@pytest.fixture(scope="module")
def todo_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("todo") / "run"
    result = run_cli(
        "evolve", "agentevol", "--envs", "palaestra/Todo-v0", "--format", "tools",
        "--out", str(out), "--iterations", "1", "--base-tasks", "4", "--explore-tasks", "2",
        "--samples", "1", "--steps", "4", "--iteration-steps", "2", "--batch-size", "4",
        "--eval-tasks", "2", "--baselines", "random", "--max-tokens", "32", "--max-turns", "12",
        "--history", "1", "--threads", "1", "--quiet",
        timeout=1500,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_agentevol_on_todo_with_tools_runs_every_stage(todo_run):
    manifest = json.loads((todo_run / "run.json").read_text())
    assert manifest["config"]["rollout"]["format"] == "tools"
    rows = json.loads((todo_run / "results.json").read_text())
    policies = {row["policy"] for row in rows}
    assert {"random (valid moves)", "BC", "AgentEvol 1"} <= policies
    assert all(row["env"] == "palaestra/Todo-v0" and row["episodes"] == 2 for row in rows)
    base = read_trajectories(todo_run / "base" / "data.jsonl")
    assert len(base) == 4 and all(t.success and t.tools for t in base)
    for t in base:  # OpenAI shapes: each call answered by its tool message
        for call, result in zip(t.messages[2::2], t.messages[3::2], strict=False):
            assert call["role"] == "assistant" and call["loss"] is True
            (one,) = call["tool_calls"]
            assert result == {
                "role": "tool",
                "tool_call_id": one["id"],
                "content": result["content"],
                "loss": False,
            }
    explored = read_trajectories(todo_run / "iter-1" / "explore" / "trajectories.jsonl")
    assert len(explored) == 2 and all(t.tools == base[0].tools for t in explored)


def test_the_dataset_card_shows_tool_messages(todo_run):
    result = run_cli("data", "info", str(todo_run / "base" / "data.jsonl"), "--show", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tool calls" in out  # the card's column
    assert "-> list_projects({})  [call_0]" in out
    assert "[tool call_0] " in out and "-> finish({})" in out
