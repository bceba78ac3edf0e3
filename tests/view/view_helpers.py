"""Helpers of the browser tests: find Chromium, open a route, take a screenshot."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "view"


def chromium_path() -> str | None:
    """The system Chromium: ``$PALAESTRA_CHROMIUM``, else ``chromium`` on PATH."""
    return os.environ.get("PALAESTRA_CHROMIUM") or shutil.which("chromium")


def open_route(page: Any, base_url: str, route: str) -> None:
    """Go to ``base_url/#/route`` and wait until that page has rendered."""
    page.goto(f"{base_url}/#/{route}")
    name = route.split("?")[0] or "runs"
    page.wait_for_selector(f"body[data-ready='{name}']", timeout=15_000)


def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``docs/view/NAME.png`` (the README shows these)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def off_loop(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args)`` in a thread of its own.

    Once a browser test ran, playwright's event loop runs in the test thread, and an
    ``asyncio.run`` there (an eval, a search) refuses to start.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func, *args, **kwargs).result()
