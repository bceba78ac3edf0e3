"""Shared fixtures: a real server on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
import toy_envs  # noqa: F401  (registers toy/Counter-v0)

from palaestra.servers import Settings, create_app, serve_in_thread


@pytest.fixture
def serve() -> Callable[..., AbstractContextManager[str]]:
    """``with serve(["env/Id-v0"], max_sessions=2) as url:`` runs a real uvicorn server."""

    @contextmanager
    def run(env_ids: list[str], **settings: object) -> Iterator[str]:
        app = create_app(env_ids, Settings(**settings))
        with serve_in_thread(app) as url:
            yield url

    return run


@pytest.fixture
def maze_url(serve: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    with serve(["palaestra/Maze-v0", "toy/Counter-v0"]) as url:
        yield url
