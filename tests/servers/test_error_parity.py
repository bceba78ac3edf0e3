"""The same failure raises the same class in-process, through RemoteEnv, and through
AsyncEnvClient over HTTP and over the WebSocket (palaestra.errors' one table)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import toy_envs  # noqa: F401  (registers toy/Counter-v0)

import palaestra
from palaestra.envs import Outcome, TextEnv, register
from palaestra.errors import (
    WIRE_ERRORS,
    EnvFailedError,
    EpisodeOverError,
    NotSupportedError,
    PalaestraError,
    SessionBrokenError,
    SessionNotFoundError,
    UnknownEnvError,
    UnknownSplitError,
    UnknownTaskError,
)
from palaestra.servers import AsyncEnvClient, Settings, create_app, serve_in_thread


class Bare(TextEnv):
    """One `go` wins; no expert, no action list, no snapshot."""

    instruction = "Say `go`."
    max_steps = 3
    splits = {"train": range(0, 4), "test": range(4, 6)}

    def start(self, task_id: int) -> str:
        return f"task {task_id}"

    def act(self, action: str) -> Outcome:
        won = action == "go"
        return Outcome("done" if won else "no", reward=float(won), done=won, success=won)


register("toy/Bare-v0", Bare)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(["toy/Counter-v0", "toy/Bare-v0"], Settings())
    with serve_in_thread(app) as base:
        yield base


class InProcess:
    """The env itself."""

    def __init__(self, env_id: str, url: str) -> None:
        self.env = palaestra.make(env_id).unwrapped

    def reset(self, task_id: Any = None) -> None:
        self.env.reset(seed=0, options=None if task_id is None else {"task_id": task_id})

    def step(self, action: str) -> None:
        self.env.step(action)

    def expert(self) -> None:
        self.env.expert_action()

    def random_action(self) -> None:
        self.env.random_action(np.random.default_rng(0))

    def tasks(self, split: str) -> None:
        self.env.tasks(split)

    def close(self) -> None:
        self.env.close()


class Remote(InProcess):
    """RemoteEnv, over HTTP with httpx."""

    def __init__(self, env_id: str, url: str) -> None:
        self.env = palaestra.make(env_id, base_url=url)

    def random_action(self) -> None:
        self.env.random_action(0)

    def forget_session(self) -> None:
        self.env.session_id = "no-such-session"


class Async(InProcess):
    """AsyncEnvClient over one transport, driven from a private event loop."""

    transport = "http"

    def __init__(self, env_id: str, url: str) -> None:
        self.env_id = env_id
        self.runner = asyncio.Runner()
        self.client = AsyncEnvClient(url, transport=self.transport)
        self.session: Any = None

    def run(self, call: Callable[[], Any]) -> Any:
        async def go() -> Any:
            return await call()

        return self.runner.run(go())

    def reset(self, task_id: Any = None) -> None:
        if self.session is None:
            self.session = self.run(lambda: self.client.create(self.env_id, task_id, 0))
        else:
            self.run(lambda: self.session.reset(task_id, 0))

    def step(self, action: str) -> None:
        self.run(lambda: self.session.step(action))

    def expert(self) -> None:
        self.run(self.session.expert_action)

    def random_action(self) -> None:
        self.run(lambda: self.session.random_action(0))

    def tasks(self, split: str) -> None:
        self.run(lambda: self.client.tasks(self.env_id, split))

    def forget_session(self) -> None:
        self.run(lambda: self.client.attach("no-such-session"))

    def close(self) -> None:
        self.run(self.client.aclose)
        self.runner.close()


class AsyncSocket(Async):
    transport = "websocket"

    def forget_session(self) -> None:
        self.session.id = "no-such-session"
        self.run(lambda: self.client.attach("no-such-session"))


TRANSPORTS = {"in-process": InProcess, "RemoteEnv": Remote, "http": Async, "websocket": AsyncSocket}


def _step_after_the_end(env: InProcess) -> None:
    env.reset(0)
    for _ in range(3):
        env.step("inc")
    env.step("inc")


# name -> (env, what to do, the class raised on every transport)
CASES: dict[str, tuple[str, Callable[[Any], Any], type[Exception]]] = {
    "step after the episode ended": ("toy/Counter-v0", _step_after_the_end, EpisodeOverError),
    "unknown task": ("toy/Counter-v0", lambda env: env.reset(999), UnknownTaskError),
    "unknown task of a wrong type": (
        "toy/Counter-v0",
        lambda env: env.reset("not-a-task"),
        UnknownTaskError,
    ),
    "no expert": ("toy/Bare-v0", lambda env: (env.reset(0), env.expert()), NotSupportedError),
    "no random action": (
        "toy/Counter-v0",
        lambda env: (env.reset(0), env.random_action()),
        NotSupportedError,
    ),
    "unknown split": ("toy/Counter-v0", lambda env: env.tasks("nope"), KeyError),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES)
def test_the_same_failure_raises_the_same_class(url: str, case: str, transport: str) -> None:
    env_id, do, expected = CASES[case]
    env = TRANSPORTS[transport](env_id, url)
    try:
        with pytest.raises(expected) as caught:
            do(env)
        # The exact class, not only a base: in-process and remote are interchangeable.
        reference = InProcess(env_id, url)
        try:
            with pytest.raises(expected) as local:
                do(reference)
        finally:
            reference.close()
        if transport != "in-process" and isinstance(local.value, PalaestraError):
            assert type(caught.value) is type(local.value), (caught.value, local.value)
    finally:
        env.close()


def test_unknown_split_is_a_key_error_everywhere(url: str) -> None:
    # In-process a KeyError (the env's mapping); remotely UnknownSplitError, also a KeyError.
    remote = Remote("toy/Counter-v0", url)
    try:
        with pytest.raises(UnknownSplitError, match="splits"):
            remote.tasks("nope")
    finally:
        remote.close()


@pytest.mark.parametrize("transport", ["RemoteEnv", "http", "websocket"])
def test_an_env_exception_is_env_failed_then_broken_on_every_transport(
    url: str, transport: str
) -> None:
    # In-process the env's own exception propagates (RuntimeError here); every remote
    # client raises EnvFailedError naming it, and the session is then broken.
    local = InProcess("toy/Counter-v0", url)
    local.reset(0)
    with pytest.raises(RuntimeError, match="exploded"):
        local.step("boom")
    env = TRANSPORTS[transport]("toy/Counter-v0", url)
    try:
        env.reset(0)
        with pytest.raises(EnvFailedError, match="RuntimeError: the counter exploded"):
            env.step("boom")
        with pytest.raises(SessionBrokenError, match="broken"):
            env.step("inc")
        env.reset(1)  # a reset repairs it
        env.step("inc")
    finally:
        env.close()


@pytest.mark.parametrize("transport", ["RemoteEnv", "http", "websocket"])
def test_an_unknown_session_is_session_not_found_on_every_transport(
    url: str, transport: str
) -> None:
    env = TRANSPORTS[transport]("toy/Counter-v0", url)
    try:
        env.reset(0)
        with pytest.raises(SessionNotFoundError):
            env.forget_session()
            env.step("inc")
    finally:
        env.close()


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_an_unknown_env_is_unknown_env_on_every_transport(url: str, transport: str) -> None:
    with pytest.raises(KeyError, match="unknown env"):  # in-process: the registry's KeyError
        palaestra.make("toy/Nope-v0")
    with pytest.raises(UnknownEnvError, match="not served"):  # remotely: also a KeyError
        palaestra.RemoteEnv("toy/Nope-v0", url)
    env = TRANSPORTS[transport]("toy/Nope-v0", url)
    try:
        with pytest.raises(UnknownEnvError, match="not served"):
            env.reset()
    finally:
        env.close()


def test_every_wire_code_names_one_class_with_its_status() -> None:
    for code, cls in WIRE_ERRORS.items():
        assert cls.code == code and 400 <= cls.status < 600, cls
        assert issubclass(cls, PalaestraError)
    assert len(set(WIRE_ERRORS.values())) == len(WIRE_ERRORS)
