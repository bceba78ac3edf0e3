"""Envs that declare ``fast_calls`` are stepped on the event loop, others on the pool."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import palaestra
from palaestra.envs import Outcome, TextEnv
from palaestra.servers import sessions


class Spinner(TextEnv):
    """Records the thread of every step; `spin S` burns S seconds of CPU."""

    instruction = "Say anything."
    max_steps = 50
    splits = {"train": range(3), "test": range(3, 4)}
    threads: list[str] = []

    def start(self, task_id: int) -> str:
        return f"task {task_id}"

    def act(self, action: str) -> Outcome:
        Spinner.threads.append(threading.current_thread().name)
        if action.startswith("spin"):
            deadline = time.thread_time() + float(action.split()[1])
            while time.thread_time() < deadline:
                pass
        return Outcome(f"did {action}")


class FastSpinner(Spinner):
    """The same, declaring fast_calls."""

    fast_calls = True


palaestra.register("toy/Spinner-v0", Spinner)
palaestra.register("toy/FastSpinner-v0", FastSpinner)


@pytest.fixture(autouse=True)
def _clear_threads():
    Spinner.threads.clear()


def test_fast_envs_step_on_the_event_loop_and_others_on_the_pool(serve):
    with serve(["toy/Spinner-v0", "toy/FastSpinner-v0"]) as url:
        for env_id in ("toy/Spinner-v0", "toy/FastSpinner-v0"):
            env = palaestra.make(env_id, base_url=url)
            env.reset()
            assert env.step("hello")[0] == "did hello"
            env.close()
    slow, fast = Spinner.threads
    assert slow.startswith("palaestra-env")  # the store's thread pool
    assert fast == "palaestra-server"  # the server's own (event loop) thread


def test_a_fast_env_that_hogs_the_loop_goes_back_to_the_pool(serve, caplog, monkeypatch):
    # A limit of 500 ms rather than 50: a busy machine can deschedule a microsecond
    # step ("tock") for tens of ms, which would count as a slow call.
    monkeypatch.setattr(sessions, "INLINE_LIMIT_SECONDS", 0.5)
    with serve(["toy/FastSpinner-v0"]) as url, caplog.at_level(logging.WARNING):
        env = palaestra.make("toy/FastSpinner-v0", base_url=url)
        env.reset()
        env.step("tick")
        env.step("spin 0.6")  # 600 ms of CPU: over the limit...
        env.step("tock")  # ...but one slow call (a GC pause?) is forgiven
        for _ in range(3):
            env.step("spin 0.55")  # three in a row are not
        env.step("tock")
        env.close()
    threads = Spinner.threads
    assert set(threads[:6]) == {"palaestra-server"}
    assert threads[6].startswith("palaestra-env")
    assert "declares fast_calls but 3 calls in a row took over 500 ms" in caplog.text
