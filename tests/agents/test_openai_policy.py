"""``OpenAIPolicy`` against the policy server and against scripted stub servers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from palaestra.agents.openai_policy import (
    OpenAIPolicy,
    PolicyConnectionError,
    PolicyRequestError,
    PolicyTimeoutError,
    _split_tokens,
)
from palaestra.agents.policy_server import create_policy_app
from palaestra.agents.tiny import TinyConfig, tiny_model_path
from palaestra.agents.transformers_policy import TransformersPolicy
from palaestra.servers import RetryPolicy, serve_in_thread
from palaestra.servers.local import free_port

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


def load_tiny_policy(cache_dir) -> TransformersPolicy:
    """The tiny model with wider random weights (as in test_policy_server)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_path(
        TinyConfig(env_ids=(), episodes_per_env=0, context_length=256), cache_dir=cache_dir
    )
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
    return TransformersPolicy(model, AutoTokenizer.from_pretrained(path), name="tiny-test")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> TransformersPolicy:
    return load_tiny_policy(tmp_path_factory.getbasetemp() / "palaestra-models")


@pytest.fixture(scope="module")
def policy_url(local) -> Iterator[str]:
    with serve_in_thread(create_policy_app(local)) as url:
        yield url


def conversation(i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"prompt number {i}", "loss": False}]


# -- against the policy server ----------------------------------------------------------


def test_generate_matches_the_local_model(policy_url, local):
    policy = OpenAIPolicy(policy_url)
    assert policy.model == "tiny-test"
    assert policy.context_length == local.context_length == 256
    assert policy.name == f"{policy_url}/v1#tiny-test"
    convs = [conversation(i) for i in range(3)]

    async def run() -> tuple[list, list]:
        try:
            greedy = await policy.generate(convs, n=2, temperature=0, max_tokens=8)
            sampled = await policy.generate(convs, n=2, temperature=1, max_tokens=8, seed=11)
            return greedy, sampled
        finally:
            await policy.aclose()

    greedy, sampled = asyncio.run(run())
    expected = local.generate_sync(convs, n=2, temperature=0, max_tokens=8)
    assert greedy == expected
    for got, want in zip(
        [c for row in greedy for c in row], [c for row in expected for c in row], strict=True
    ):
        assert (got.prompt_tokens, got.completion_tokens, got.finish_reason) == (
            want.prompt_tokens,
            want.completion_tokens,
            want.finish_reason,
        )
    # Conversation i is sampled with seed + i: each row is what the model gives alone.
    for i, conv in enumerate(convs):
        assert sampled[i] == local.generate_sync([conv], 2, 1.0, 8, (), 11 + i)[0]
    assert sampled[0] != sampled[1]


def test_base_url_forms_and_describe(policy_url, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    for form in (policy_url, f"{policy_url}/", f"{policy_url}/v1", f"{policy_url}/v1/"):
        policy = OpenAIPolicy(form)
        assert policy.base_url == f"{policy_url}/v1"
    described = policy.describe()
    assert described == {
        "name": f"{policy_url}/v1#tiny-test",
        "backend": "OpenAIPolicy",
        "base_url": f"{policy_url}/v1",
        "model": "tiny-test",
        "context_length": 256,
    }
    assert "sk-very-secret" not in repr(policy) + str(described) + str(vars(policy)["name"])
    explicit = OpenAIPolicy(policy_url, "tiny-test", context_length=64)
    assert explicit.context_length == 64
    with pytest.raises(ValueError, match="http"):
        OpenAIPolicy("localhost:8000")


def test_a_policy_is_reusable_across_event_loops(policy_url):
    policy = OpenAIPolicy(policy_url)
    first = asyncio.run(policy.generate([conversation(0)], temperature=0, max_tokens=4))
    second = asyncio.run(policy.generate([conversation(0)], temperature=0, max_tokens=4))
    assert first == second


# -- against stub servers ---------------------------------------------------------------


def reply(content: str = "ok", n: int = 1) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"{content}{i}"},
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3 * n, "total_tokens": 5 + 3 * n},
    }


@contextmanager
def stub(script: list[tuple[int, Any, dict[str, str]]]) -> Iterator[tuple[str, list]]:
    """A server answering ``script`` in turn (then 200s); yields its URL and the requests seen."""
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "stub", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append({"body": body, "authorization": request.headers.get("authorization")})
        if len(seen) <= len(script):
            status, content, headers = script[len(seen) - 1]
            return JSONResponse(content, status_code=status, headers=headers)
        return JSONResponse(reply(n=body.get("n", 1)))

    with serve_in_thread(app) as url:
        yield url, seen


def ask(policy: OpenAIPolicy, **kwargs: Any) -> list[list[Any]]:
    async def run() -> list[list[Any]]:
        try:
            return await policy.generate([conversation(0)], **kwargs)
        finally:
            await policy.aclose()

    return asyncio.run(run())


def test_request_body_and_api_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-env")
    with stub([]) as (url, seen):
        policy = OpenAIPolicy(url, api_key_env="MY_KEY", extra_body={"top_k": 20})
        assert policy.model == "stub" and policy.context_length is None
        [[a, b]] = ask(policy, n=2, temperature=0.7, max_tokens=9, stop=["\n"], seed=4)
        ask(OpenAIPolicy(url, "stub", api_key="sk-explicit"), max_tokens=9)
    assert (a, b) == ("ok0", "ok1")
    assert (a.prompt_tokens, a.completion_tokens, a.finish_reason) == (5, 3, "stop")
    assert seen[0]["authorization"] == "Bearer sk-env"
    assert seen[0]["body"] == {
        "model": "stub",
        "messages": [{"role": "user", "content": "prompt number 0"}],  # no "loss" key
        "n": 2,
        "temperature": 0.7,
        "max_tokens": 9,
        "stop": ["\n"],
        "seed": 4,
        "top_k": 20,
    }
    assert seen[1]["authorization"] == "Bearer sk-explicit"
    assert "stop" not in seen[1]["body"] and "seed" not in seen[1]["body"]


def test_retries_5xx_then_succeeds():
    unavailable = (503, {"error": {"message": "warming up"}}, {})
    with stub([unavailable, unavailable]) as (url, seen):
        [[answer]] = ask(OpenAIPolicy(url, "stub", retry=FAST, context_length=10))
    assert answer == "ok0" and len(seen) == 3


def test_429_waits_for_retry_after():
    limited = (429, {"error": {"message": "slow down"}}, {"Retry-After": "0.4"})
    with stub([limited]) as (url, seen):
        start = time.monotonic()
        [[answer]] = ask(OpenAIPolicy(url, "stub", retry=FAST, context_length=10))
        elapsed = time.monotonic() - start
    assert answer == "ok0" and len(seen) == 2
    assert elapsed >= 0.4


def test_client_errors_raise_at_once():
    bad = (400, {"error": {"message": "max_tokens is too large", "type": "x"}}, {})
    with stub([bad]) as (url, seen):
        with pytest.raises(PolicyRequestError, match="max_tokens is too large") as caught:
            ask(OpenAIPolicy(url, "stub", retry=FAST, context_length=10))
    assert len(seen) == 1
    assert caught.value.status == 400 and caught.value.message == "max_tokens is too large"
    assert not isinstance(caught.value, ConnectionError | TimeoutError)


def test_persistent_5xx_fails_after_all_attempts():
    with stub([(500, "boom", {})] * 10) as (url, seen):
        with pytest.raises(PolicyRequestError, match="boom") as caught:
            ask(OpenAIPolicy(url, "stub", retry=FAST, context_length=10))
    assert caught.value.status == 500 and len(seen) == FAST.attempts


def test_fewer_choices_than_n_are_topped_up():
    with stub([(200, reply("a", 1), {}), (200, reply("b", 2), {})]) as (url, seen):
        [replies] = ask(OpenAIPolicy(url, "stub", context_length=10), n=3, seed=1)
    assert replies == ["a0", "b0", "b1"]
    assert [s["body"]["n"] for s in seen] == [3, 2]
    assert seen[0]["body"]["seed"] != seen[1]["body"]["seed"]


def test_connection_refused_is_retried_then_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    policy = OpenAIPolicy(url, "m", retry=FAST, context_length=10)
    with pytest.raises(PolicyConnectionError, match="ConnectError") as caught:
        ask(policy)
    assert caught.value.status == 0 and url in str(caught.value)
    with pytest.raises(PolicyConnectionError, match="/v1/models"):
        OpenAIPolicy(url, retry=FAST)  # no model given: discovery must succeed


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel accepts connections; nobody ever answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        # ten attempts: a timeout per attempt would take 10 s, the bound in all 1 s
        retry = RetryPolicy(attempts=10, backoff=0.01, max_backoff=0.05)
        policy = OpenAIPolicy(url, "m", timeout=1.0, retry=retry, context_length=10)
        start = time.monotonic()
        with pytest.raises(PolicyTimeoutError, match=r"no answer within 1 s"):
            ask(policy)
        assert time.monotonic() - start < 6


def test_concurrency_is_bounded():
    in_flight = peak = 0
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> dict[str, Any]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return reply()

    with serve_in_thread(app) as url:
        policy = OpenAIPolicy(url, "stub", max_concurrency=3, context_length=10)

        async def run() -> list[list[Any]]:
            try:
                return await policy.generate([conversation(i) for i in range(10)])
            finally:
                await policy.aclose()

        replies = asyncio.run(run())
    assert len(replies) == 10 and peak == 3


def test_split_tokens():
    assert _split_tokens(10, ["stop", "stop"], 8) == [5, 5]
    assert _split_tokens(11, ["stop", "stop", "stop"], 8) == [4, 4, 3]
    assert _split_tokens(11, ["length", "stop"], 8) == [8, 3]
    assert _split_tokens(16, ["length", "length"], 8) == [8, 8]
    assert _split_tokens(6, ["length", "length"], 8) == [3, 3]  # counted otherwise: share
    assert _split_tokens(0, [], 8) == []


def test_a_lone_surrogate_in_a_reply_does_not_break_the_next_turn():
    # "\ud800" is valid JSON but no character: passed on, it would make the next request
    # (and the saved trajectory) unencodable as UTF-8, failing the episode.
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        seen.append(await request.json())
        content = '"bad \\ud800 reply, good \\ud83d\\ude00 pair"'
        return Response(
            b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": '
            + content.encode()
            + b'}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, '
            b'"completion_tokens": 2}}',
            media_type="application/json",
        )

    with serve_in_thread(app) as url:
        policy = OpenAIPolicy(url, "stub", retry=FAST, context_length=100)
        [[first]] = ask(policy)
        assert first == "bad \ufffd reply, good \U0001f600 pair"
        first.encode("utf-8")  # a saved trajectory can hold it
        follow_up = [*conversation(0), {"role": "assistant", "content": str(first)}]

        async def again() -> list[list[Any]]:
            try:
                return await policy.generate([follow_up], max_tokens=5)
            finally:
                await policy.aclose()

        [[second]] = asyncio.run(again())
    assert second == first and seen[1]["messages"][-1]["content"] == str(first)
