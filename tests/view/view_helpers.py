"""Helpers of the browser tests: find Chromium, open a route, take a screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

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
