"""Fixtures of the viewer's tests: a real viewer server, real runs, a real headless Chromium.

The browser is Debian's ``chromium`` (``make install`` installs it where missing)
driven by playwright with ``executable_path``: playwright's own browser download
cannot be fetched here. Without a chromium the browser tests skip and say so,
except under ``PALAESTRA_REQUIRE_BROWSER=1`` (``.ci/run`` sets it), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from view_helpers import chromium_path, off_loop

from palaestra.cli import main as cli_main
from palaestra.servers import serve_in_thread
from palaestra.view import create_view_app


@pytest.fixture
def view() -> Callable[..., AbstractContextManager[str]]:
    """``with view([path, ...], env_url=..., token=...) as url:`` runs a real viewer server."""

    @contextmanager
    def run(paths: list[str | Path], **kwargs: Any) -> Iterator[str]:
        with serve_in_thread(create_view_app(paths, **kwargs)) as url:
            yield url

    return run


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``palaestra eval`` folder: the noisy expert on 12 test mazes (some fail)."""
    out = tmp_path_factory.mktemp("runs") / "eval-noisy"
    argv = ["eval", "--policy", "expert:0.5", "--envs", "palaestra/Maze-v0", "--limit", "12"]
    argv += ["--max-turns", "60", "--out", str(out), "--quiet"]
    assert off_loop(cli_main, argv) == 0
    return out


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (skips without one, unless ``PALAESTRA_REQUIRE_BROWSER=1``)."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("PALAESTRA_REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium on PATH (make install puts Debian's there)")
        pytest.skip("no chromium on PATH: the browser tests need Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page, 1280x900."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()
