"""A full env is backpressure, not failure: 429 + Retry-After, capacity in the spec, clients wait.

``toy/Pair-v0`` holds at most two instances per process (``capacity = 2``), as
ScienceWorld holds at most its pool's game slots.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import httpx
import pytest
import toy_envs

import palaestra
from palaestra.agents.baselines import ExpertPolicy
from palaestra.agents.env_pool import RemoteEnvs
from palaestra.agents.rollout import EpisodeSpec, RolloutEngine
from palaestra.errors import CapacityError
from palaestra.servers import AsyncEnvClient, RetryPolicy
from palaestra.servers.protocol import BusyWaits, retry_after_of

PAIR = "toy/Pair-v0"


class Pair(toy_envs.Counter):
    """The counter, at most two at once; counts its open instances (and the most seen)."""

    capacity = 2
    open = 0
    most = 0
    _count = threading.Lock()

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._counted = True
        with Pair._count:
            Pair.open += 1
            Pair.most = max(Pair.most, Pair.open)

    def act(self, action: str):
        time.sleep(0.01)  # episodes long enough to overlap
        return super().act(action)

    def close(self) -> None:
        with Pair._count:
            if self._counted:
                self._counted = False
                Pair.open -= 1
        super().close()


palaestra.register(PAIR, Pair)


@pytest.fixture
def pair_url(serve):
    Pair.open = Pair.most = 0
    with serve([PAIR, "toy/Counter-v0"]) as url:
        yield url


def capacity_refusals(url: str) -> float:
    """How many 429s for capacity the server has answered (from /metrics)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("palaestra_errors_total") and 'error="capacity"' in line:
            return float(line.split()[-1])
    return 0.0


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_spec_advertises_each_envs_capacity(pair_url):
    specs = {s["id"]: s for s in httpx.get(f"{pair_url}/v1/envs").json()}
    assert specs[PAIR]["capacity"] == 2
    assert specs["toy/Counter-v0"]["capacity"] is None
    schema = httpx.get(f"{pair_url}/openapi.json").json()["components"]["schemas"]["EnvSpec"]
    assert "429" in schema["properties"]["capacity"]["description"]


def test_a_full_env_answers_429_with_retry_after_at_once(pair_url):
    created = [httpx.post(f"{pair_url}/v1/sessions", json={"env": PAIR}) for _ in range(2)]
    assert [r.status_code for r in created] == [201, 201]
    started = time.monotonic()
    full = httpx.post(f"{pair_url}/v1/sessions", json={"env": PAIR})
    assert full.status_code == 429
    assert full.json()["error"] == "capacity"
    assert "all 2 sessions" in full.json()["detail"]
    assert full.headers["Retry-After"] == "1"
    # Refused by count, not after blocking a pool thread until a wait ran out.
    assert time.monotonic() - started < 10
    assert Pair.most == 2
    # Other envs of the server are not limited by it.
    assert httpx.post(f"{pair_url}/v1/sessions", json={"env": "toy/Counter-v0"}).status_code == 201
    # A closed session frees its slot.
    httpx.delete(f"{pair_url}/v1/sessions/{created[0].json()['session_id']}")
    assert httpx.post(f"{pair_url}/v1/sessions", json={"env": PAIR}).status_code == 201
    # A fork needs a slot too.
    fork = httpx.post(f"{pair_url}/v1/sessions/{created[1].json()['session_id']}/fork")
    assert fork.status_code == 429 and fork.headers["Retry-After"] == "1"


def test_the_socket_reply_of_a_429_carries_the_same_hint(pair_url):
    async def main() -> list[dict]:
        url = "ws" + pair_url.removeprefix("http") + "/v1/ws"
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(url) for _ in range(3)]
            replies = []
            for ws in sockets:
                await ws.send_json({"id": 1, "op": "create", "env": PAIR})
                replies.append(await ws.receive_json())
            for ws in sockets:
                await ws.close()
        return replies

    replies = asyncio.run(main())
    assert [r["ok"] for r in replies] == [True, True, False]
    assert replies[2]["status"] == 429 and replies[2]["retry_after"] == 1


def test_remote_env_waits_for_a_slot_instead_of_failing(pair_url):
    first, second, third = (palaestra.make(PAIR, base_url=pair_url) for _ in range(3))
    first.reset(options={"task_id": 0})
    second.reset(options={"task_id": 1})
    outcome: dict = {}

    def reset_third() -> None:
        try:
            outcome["reset"] = third.reset(options={"task_id": 2})
        except Exception as error:  # reported below
            outcome["error"] = error

    thread = threading.Thread(target=reset_third)
    thread.start()
    wait_for(lambda: capacity_refusals(pair_url) >= 1, "the third session to be refused")
    assert thread.is_alive()  # waiting, not failed
    first.close()
    thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["reset"][1]["task_id"] == 2
    for env in (second, third):
        env.close()
    assert Pair.most == 2


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_async_client_waits_for_a_slot_on_either_transport(pair_url, transport):
    async def main() -> None:
        async with AsyncEnvClient(pair_url, transport=transport) as client:
            held = [await client.create(PAIR, task_id=i) for i in range(2)]
            third = asyncio.create_task(client.create(PAIR, task_id=2))
            while capacity_refusals(pair_url) < 1:
                assert not third.done(), third
                await asyncio.sleep(0.02)
            await held[0].close()
            session = await asyncio.wait_for(third, 30)
            assert session.info["task_id"] == 2
            for s in (held[1], session):
                await s.close()

    asyncio.run(main())
    assert Pair.most == 2


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_the_wait_is_bounded(pair_url, transport):
    async def main() -> None:
        retry = RetryPolicy(busy_wait=0)
        async with AsyncEnvClient(pair_url, transport=transport, retry=retry) as client:
            held = [await client.create(PAIR) for _ in range(2)]
            with pytest.raises(CapacityError, match="all 2 sessions"):
                await client.create(PAIR)
            for s in held:
                await s.close()

    asyncio.run(main())


def test_busy_waits_follow_the_hint_within_the_budget():
    waits = BusyWaits(budget=5.0)
    first = waits.next(2.0)
    assert first is not None and 2.0 <= first <= 3.0
    second = waits.next(None)  # no hint: about a second
    assert second is not None and 1.0 <= second <= 1.5
    assert waits.next(3.0) is None  # at least 3 s asked, at most 2 s left
    assert BusyWaits(budget=0.5).next(1.0) is None
    assert retry_after_of("3") == 3.0
    assert retry_after_of(2) == 2.0
    assert retry_after_of("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after_of(None) is None


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_the_rollout_engine_keeps_at_most_capacity_open_and_loses_nothing(pair_url, transport):
    specs = [EpisodeSpec(PAIR, task_id=i % 10, split="train", seed=i) for i in range(24)]

    async def main():
        pool = RemoteEnvs([pair_url], transport=transport)
        try:
            engine = RolloutEngine(ExpertPolicy(), pool, concurrency=24)
            return await engine.run(specs), engine.stats
        finally:
            await pool.aclose()

    trajectories, stats = asyncio.run(main())
    assert stats.errors == 0, stats.error_messages
    assert len(trajectories) == 24 and all(t.success for t in trajectories)
    assert Pair.most == 2
    # The engine waited for its own slots: the server never had to refuse one.
    assert capacity_refusals(pair_url) == 0
