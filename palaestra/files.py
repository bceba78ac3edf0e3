"""Atomic file writes: every result, manifest and data file palaestra writes goes through here.

A file is written to a temporary file in the same folder, flushed to disk, then
moved over the target with ``os.replace``, so a reader (or a crash) sees the old
file or the new one, never half of one, and a command whose output is one of its
inputs (``palaestra data filter a.parquet --out a.parquet``) cannot destroy it.

This module imports nothing from the rest of palaestra, so every layer can use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["ROOT_CACHE_ENV", "atomic_path", "cache_root", "write_json", "write_text"]

ROOT_CACHE_ENV = "PALAESTRA_CACHE"
"""The environment variable naming palaestra's cache root (models, env data, indexes)."""

# mkstemp creates files readable by their owner only; a result file gets the usual mode.
_UMASK = os.umask(0)
os.umask(_UMASK)


def cache_root() -> Path:
    """Palaestra's cache folder (not created): models, generated games, databases, indexes.

    ``$PALAESTRA_CACHE`` if set, else ``$XDG_CACHE_HOME/palaestra``, else
    ``~/.cache/palaestra``; each user of it keeps to a subfolder of its own.
    """
    if os.environ.get(ROOT_CACHE_ENV):
        return Path(os.environ[ROOT_CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "palaestra"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; on a clean exit it replaces ``path``.

    Whatever the block writes to the yielded path (with any library: Parquet,
    matplotlib, a JSONL writer) becomes ``path`` in one ``os.replace``; if the block
    raises, ``path`` is untouched and the temporary file is removed. The temporary
    name keeps ``path``'s suffix, for writers that pick a format from it.

    Args:
        path: The file to write; its folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name per writer: two processes writing the same file never share a temp file.
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.fchmod(handle, 0o666 & ~_UMASK)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as written:
            os.fsync(written.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> Path:
    """Write ``data`` as JSON (and a final newline) to ``path`` atomically; returns ``path``."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
