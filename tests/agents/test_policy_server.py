"""The OpenAI-compatible policy server, driven by the official ``openai`` client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence

import httpx
import openai
import pytest

from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.policy_server import create_policy_app, run_policy_server
from palaestra.agents.tiny import TinyConfig, tiny_model_path
from palaestra.agents.transformers_policy import TransformersPolicy
from palaestra.servers import serve_in_thread

MODEL_ID = "tiny-test"


def load_tiny_policy(cache_dir) -> TransformersPolicy:
    """The tiny model (float32), its weights redrawn wider so replies depend on the prompt.

    The tiny model's own initialisation (std 0.02) answers every prompt alike; wider
    weights make greedy replies differ per prompt, which makes batching checks meaningful.
    """
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
    return TransformersPolicy(model, AutoTokenizer.from_pretrained(path), name=MODEL_ID)


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> TransformersPolicy:
    return load_tiny_policy(tmp_path_factory.getbasetemp() / "palaestra-models")


@pytest.fixture(scope="module")
def server(policy) -> Iterator[tuple[str, object]]:
    app = create_policy_app(policy)
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
def url(server) -> str:
    return server[0]


def conversation(i: int) -> list[Message]:
    return [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": f"prompt number {i} " + "word " * (i % 5)},
    ]


def client(url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, **kwargs)


def test_models_list(url, policy):
    models = client(url).models.list().data
    assert [m.id for m in models] == [MODEL_ID]
    assert models[0].owned_by == "palaestra"
    assert models[0].model_extra["max_model_len"] == policy.context_length == 256
    assert client(url).models.retrieve(MODEL_ID).id == MODEL_ID
    with pytest.raises(openai.NotFoundError):
        client(url).models.retrieve("other")


def test_greedy_reply_matches_the_policy_and_counts_tokens(url, policy):
    messages = conversation(1)
    answer = client(url).chat.completions.create(
        model=MODEL_ID, messages=messages, n=2, temperature=0, max_tokens=12
    )
    [expected] = policy.generate_sync([messages], n=2, temperature=0, max_tokens=12)
    assert answer.object == "chat.completion" and answer.model == MODEL_ID
    assert answer.id.startswith("chatcmpl-")
    assert [c.index for c in answer.choices] == [0, 1]
    assert [c.message.content for c in answer.choices] == list(expected)
    assert [c.message.role for c in answer.choices] == ["assistant", "assistant"]
    assert [c.finish_reason for c in answer.choices] == [e.finish_reason for e in expected]
    prompt_ids = policy.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert answer.usage.prompt_tokens == len(prompt_ids) == policy.count_tokens(messages)
    assert answer.usage.completion_tokens == sum(e.completion_tokens for e in expected)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    again = client(url).chat.completions.create(
        model=MODEL_ID, messages=messages, temperature=0, max_tokens=12
    )
    assert again.choices[0].message.content == expected[0]


def test_seed_reproduces_sampling(url, policy):
    messages = conversation(2)

    def sample(seed: int) -> list[str]:
        answer = client(url).chat.completions.create(
            model=MODEL_ID, messages=messages, n=2, temperature=1, max_tokens=10, seed=seed
        )
        return [c.message.content for c in answer.choices]

    first = sample(7)
    assert sample(7) == first
    [direct] = policy.generate_sync([messages], n=2, temperature=1, max_tokens=10, seed=7)
    assert first == list(direct)
    assert sample(8) != first


def test_stop_and_max_tokens(url, policy):
    # A prompt whose greedy reply runs to the limit (the random model sometimes ends early).
    replies = policy.generate_sync([conversation(i) for i in range(20)], 1, 0, 16)
    i, full = next(
        (i, r) for i, [r] in enumerate(replies) if r.finish_reason == "length" and len(r) > 6
    )
    messages = conversation(i)
    stop = full[4:6]
    answer = client(url).chat.completions.create(
        model=MODEL_ID, messages=messages, temperature=0, max_tokens=16, stop=stop
    )
    assert answer.choices[0].message.content == full[: full.find(stop)]
    assert answer.choices[0].finish_reason == "stop"
    short = client(url).chat.completions.create(
        model=MODEL_ID, messages=messages, temperature=0, max_completion_tokens=3
    )
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_list_content_parts_and_no_model_field(url, policy):
    parts = [{"type": "text", "text": "prompt number"}, {"type": "text", "text": "4"}]
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": parts}], "temperature": 0, "max_tokens": 5},
    )
    assert answer.status_code == 200, answer.text
    joined = [{"role": "user", "content": "prompt number\n4"}]
    [[expected]] = policy.generate_sync([joined], temperature=0, max_tokens=5)
    assert answer.json()["choices"][0]["message"]["content"] == expected


def test_unsupported_and_invalid_requests(url):
    messages = conversation(0)
    with pytest.raises(openai.BadRequestError, match="streaming is not supported"):
        client(url).chat.completions.create(model=MODEL_ID, messages=messages, stream=True)
    with pytest.raises(openai.NotFoundError, match="does not exist") as caught:
        client(url).chat.completions.create(model="gpt-4o", messages=messages)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client(url).chat.completions.create(model=MODEL_ID, messages=messages, top_p=0.5)
    for body in (
        {"model": MODEL_ID},
        {"model": MODEL_ID, "messages": []},
        {"model": MODEL_ID, "messages": messages, "n": 0},
        {"model": MODEL_ID, "messages": messages, "n": 17},
        {"model": MODEL_ID, "messages": messages, "temperature": 3},
        {"model": MODEL_ID, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        {"model": MODEL_ID, "messages": [{"role": "tool", "content": "x"}]},
    ):
        answer = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    answer = httpx.post(f"{url}/v1/chat/completions", content=b"{not json")
    assert answer.status_code == 400 and "error" in answer.json()
    answer = httpx.post(f"{url}/v1/chat/completions", content=b'{"messages": []}')  # no type
    assert answer.status_code == 400 and "JSON object" in answer.json()["error"]["message"]
    answer = httpx.get(f"{url}/v1/nothing")
    assert answer.status_code == 404 and "error" in answer.json()


def test_context_length_is_enforced(url, policy):
    long = [{"role": "user", "content": "word " * 400}]
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256") as caught:
        client(url).chat.completions.create(model=MODEL_ID, messages=long)
    assert caught.value.code == "context_length_exceeded"
    messages = conversation(0)
    room = 256 - policy.count_tokens(messages)
    with pytest.raises(openai.BadRequestError, match="you requested"):
        client(url).chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=room + 1)
    fits = client(url).chat.completions.create(
        model=MODEL_ID, messages=messages, temperature=0, max_tokens=room
    )
    assert fits.usage.completion_tokens <= room


def test_token_auth(policy):
    app = create_policy_app(policy, token="s3cret")
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            client(url).models.list()
        answer = httpx.get(f"{url}/v1/models")
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
        assert answer.headers["www-authenticate"] == "Bearer"
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in good.models.list().data] == [MODEL_ID]
        # The scheme is case-insensitive (RFC 7235), as on the env server.
        lower = httpx.get(f"{url}/v1/models", headers={"Authorization": "bearer s3cret"})
        assert lower.status_code == 200


def test_concurrent_requests_are_batched_without_changing_greedy_replies(server, policy):
    url, app = server
    batcher = app.state.batcher
    convs = [conversation(i) for i in range(16)]
    alone = [policy.generate_sync([c], temperature=0, max_tokens=12)[0][0] for c in convs]

    async def ask_all() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x") as aclient:
            answers = await asyncio.gather(
                *(
                    aclient.chat.completions.create(
                        model=MODEL_ID, messages=c, temperature=0, max_tokens=12
                    )
                    for c in convs
                )
            )
        return [a.choices[0].message.content for a in answers]

    calls, requests = batcher.calls, batcher.requests
    replies = asyncio.run(ask_all())
    assert batcher.requests - requests == 16
    assert batcher.calls - calls < 16
    # Left-padding in a batch must not change greedy replies (float32 model).
    assert replies == alone


class RecordingPolicy(Policy):
    """Answers ``"<temperature>:<content>"`` and records each ``generate`` call."""

    name = "recorder"
    context_length = 1000

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[int, dict]] = []
        self.fail = fail

    async def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tools: Sequence[Tools | None] | None = None,
    ) -> list[list[Completion]]:
        self.calls.append((len(conversations) * n, {"temperature": temperature, "seed": seed}))
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("out of memory")
        return [
            [Completion(f"{temperature}:{c[-1]['content']}", 3, 2) for _ in range(n)]
            for c in conversations
        ]


def test_batches_group_by_sampling_parameters():
    fake = RecordingPolicy()
    # A window wide enough that seven concurrent requests land in it on a busy machine.
    app = create_policy_app(fake, batch_wait_s=3.0)

    async def ask_all(url: str) -> list[list[str]]:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x") as aclient:

            async def ask(content: str, **sampling) -> list[str]:
                answer = await aclient.chat.completions.create(
                    model="recorder",
                    messages=[{"role": "user", "content": content}],
                    max_tokens=5,
                    **sampling,
                )
                return [c.message.content for c in answer.choices]

            return await asyncio.gather(
                ask("a", temperature=0),
                ask("b", temperature=0, n=3),
                ask("c", temperature=0, seed=1),  # greedy ignores the seed: batched
                ask("d", temperature=0.5),
                ask("e", temperature=0.5, n=2),
                ask("f", temperature=1, seed=5, n=2),  # seeded sampling: alone
                ask("g", temperature=1, seed=5),
            )

    with serve_in_thread(app) as url:
        replies = asyncio.run(ask_all(url))
    assert replies == [
        ["0.0:a"],
        ["0.0:b"] * 3,
        ["0.0:c"],
        ["0.5:d"],
        ["0.5:e"] * 2,
        ["1.0:f"] * 2,
        ["1.0:g"],
    ]
    rows_by_call = sorted((rows, kw["temperature"], kw["seed"]) for rows, kw in fake.calls)
    assert rows_by_call == [(1, 1.0, 5), (2, 1.0, 5), (3, 0.5, None), (5, 0.0, None)]
    assert app.state.batcher.calls == 4 and app.state.batcher.requests == 7


def test_max_batch_size_bounds_a_batch():
    fake = RecordingPolicy()
    app = create_policy_app(fake, max_batch_size=4, batch_wait_s=3.0)

    async def ask_all(url: str) -> None:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x") as aclient:
            await asyncio.gather(
                *(
                    aclient.chat.completions.create(
                        model="recorder", messages=[{"role": "user", "content": "x"}], n=2
                    )
                    for _ in range(5)
                )
            )

    with serve_in_thread(app) as url:
        asyncio.run(ask_all(url))
    assert sorted(rows for rows, _ in fake.calls) == [2, 4, 4]


def test_a_failed_generation_is_a_500():
    app = create_policy_app(RecordingPolicy(fail=True))
    with serve_in_thread(app) as url:
        with pytest.raises(openai.InternalServerError, match="out of memory"):
            client(url).chat.completions.create(
                model="recorder", messages=[{"role": "user", "content": "x"}]
            )
        health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model"] == "recorder"


def test_non_loopback_bind_needs_a_token(monkeypatch):
    monkeypatch.delenv("PALAESTRA_TOKEN", raising=False)
    with pytest.raises(ValueError, match=r"refusing to bind 0\.0\.0\.0 without a token"):
        run_policy_server("tiny", host="0.0.0.0")


def throughput(url: str, concurrency: int, requests: int) -> float:
    """Requests per second with ``concurrency`` clients (greedy, 12 tokens each)."""

    async def run() -> float:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x") as aclient:
            queue = list(range(requests))

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    await aclient.chat.completions.create(
                        model=MODEL_ID, messages=conversation(i), temperature=0, max_tokens=12
                    )

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.perf_counter() - start)

    return asyncio.run(run())


@pytest.mark.slow
def test_throughput_with_batching(server, capsys):
    """Reports requests/s at concurrency 1 and 16 (timings are not asserted: shared CI CPUs)."""
    url, app = server
    single = throughput(url, 1, 16)
    calls, requests = app.state.batcher.calls, app.state.batcher.requests
    many = throughput(url, 16, 64)
    calls, requests = app.state.batcher.calls - calls, app.state.batcher.requests - requests
    with capsys.disabled():
        print(
            f"\npolicy server: {single:.1f} req/s at concurrency 1, {many:.1f} req/s at 16 "
            f"({requests} requests in {calls} generate calls)"
        )
    assert requests == 64 and calls <= 64 // 4


# -- limits (issue 12's attacker findings) ---------------------------------------------


class BlockingPolicy(RecordingPolicy):
    """A recorder whose token counting and generation wait for events (to hold a request)."""

    def __init__(self) -> None:
        super().__init__()
        self.counted = 0
        self.counting = threading.Event()
        self.count_gate = threading.Event()
        self.count_gate.set()
        self.generating = threading.Event()
        self.release = threading.Event()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        self.counted += 1
        self.counting.set()
        assert self.count_gate.wait(60)
        return 5

    async def generate(self, conversations, **kwargs) -> list[list[Completion]]:
        self.generating.set()
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return await super().generate(conversations, **kwargs)


def test_bodies_over_the_cap_are_refused_unread(policy):
    app = create_policy_app(policy, max_body_bytes=10_000)
    with serve_in_thread(app) as url:
        big = b'{"messages": [{"role": "user", "content": "' + b"a" * 20_000 + b'"}]}'
        answer = httpx.post(f"{url}/v1/chat/completions", content=big)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "body_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: read only up to the cap
            yield big[:8000]
            yield big[8000:]

        answer = httpx.post(f"{url}/v1/chat/completions", content=chunked())
        assert answer.status_code == 413
        small = [{"role": "user", "content": "hi"}]
        fits = client(url).chat.completions.create(model=MODEL_ID, messages=small, max_tokens=2)
        assert fits.choices[0].message.content is not None


def test_an_overlong_prompt_is_refused_before_tokenizing():
    fake = BlockingPolicy()
    fake.release.set()
    app = create_policy_app(fake)
    with serve_in_thread(app) as url:
        long = [{"role": "user", "content": "w" * (fake.context_length * 32 + 1)}]
        with pytest.raises(openai.BadRequestError, match="maximum context length") as caught:
            client(url).chat.completions.create(model="recorder", messages=long)
        assert caught.value.code == "context_length_exceeded"
        assert fake.counted == 0


def test_tokenizing_runs_off_the_event_loop():
    fake = BlockingPolicy()
    fake.count_gate.clear()
    fake.release.set()
    app = create_policy_app(fake)
    with serve_in_thread(app) as url:
        asking = threading.Thread(
            target=lambda: client(url).chat.completions.create(
                model="recorder", messages=[{"role": "user", "content": "x"}]
            )
        )
        asking.start()
        try:
            assert fake.counting.wait(30)
            # The count is stuck in its thread: the loop still answers.
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        finally:
            fake.count_gate.set()
            asking.join(30)


def test_stop_lists_are_bounded(url):
    messages = conversation(0)
    for stop in (["s"] * 17, ["s" * 257], "s" * 257):
        answer = httpx.post(f"{url}/v1/chat/completions", json={"messages": messages, "stop": stop})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"].startswith("stop")
    fits = client(url).chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=2, stop=["s" * 256] * 16
    )
    assert len(fits.choices) == 1


def test_a_full_queue_is_answered_429_with_retry_after():
    fake = BlockingPolicy()
    app = create_policy_app(fake, max_batch_size=1, batch_wait_s=0, max_queue=2)
    body = {"model": "recorder", "messages": [{"role": "user", "content": "x"}]}

    async def flood(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as aclient:
            first = asyncio.create_task(aclient.post(f"{url}/v1/chat/completions", json=body))
            await asyncio.to_thread(fake.generating.wait, 30)  # the first is generating
            queued = [
                asyncio.create_task(
                    aclient.post(f"{url}/v1/chat/completions", json={**body, "n": 2})
                ),
            ]
            while app.state.batcher.max_queue - sum(j.n for j in app.state.batcher._pending):
                await asyncio.sleep(0.01)  # wait for it to be queued
            refused = await aclient.post(f"{url}/v1/chat/completions", json=body)
            fake.release.set()
            return [refused, await first, *(await asyncio.gather(*queued))]

    with serve_in_thread(app) as url:
        refused, *answered = asyncio.run(flood(url))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "queue_full"
    assert [a.status_code for a in answered] == [200, 200]


class Forwarding(Policy):
    """The real policy, recording the replies of each ``generate`` call."""

    def __init__(self, inner: TransformersPolicy) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_length = inner.context_length
        self.replies: list[list[list[Completion]]] = []

    async def generate(self, conversations, *, should_stop=None, **kwargs):
        replies = await self.inner.generate(conversations, should_stop=should_stop, **kwargs)
        self.replies.append(replies)
        return replies

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.inner.count_tokens(messages)


def test_a_client_that_leaves_stops_its_generation(policy):
    forwarding = Forwarding(policy)
    app = create_policy_app(forwarding)
    batcher = app.state.batcher
    body = {
        "model": MODEL_ID,
        "messages": conversation(3),
        "n": 16,
        "temperature": 1,
        "max_tokens": 200,
        "seed": 3,  # sampled and seeded: runs alone, and rarely ends before max_tokens
    }

    async def abandon(url: str) -> None:
        async with httpx.AsyncClient(timeout=60) as aclient:
            task = asyncio.create_task(aclient.post(f"{url}/v1/chat/completions", json=body))
            while batcher.calls == 0:  # its generation started
                await asyncio.sleep(0.005)
            task.cancel()  # the client leaves: its connection closes
            with contextlib.suppress(asyncio.CancelledError):
                await task

    with serve_in_thread(app) as url:
        asyncio.run(abandon(url))
        deadline = time.monotonic() + 60
        while batcher.stopped == 0:
            assert time.monotonic() < deadline, "the abandoned generation ran on"
            time.sleep(0.01)
        health = httpx.get(f"{url}/health").json()
        assert health["abandoned"] == 1 and health["requests"] == 0
        # Ended after a few decoding steps, not after 16 x 200 tokens.
        [abandoned] = forwarding.replies
        generated = sum(r.completion_tokens for r in abandoned[0])
        assert generated < 16 * 200 / 2, generated
        short = client(url).chat.completions.create(
            model=MODEL_ID, messages=conversation(4), max_tokens=4, temperature=0
        )
        assert short.usage.completion_tokens <= 4
