"""A lazy index of a trajectory file: where each episode is, and what it came to.

A trajectory file may be a gigabyte of JSON lines; the Episodes page asks for 50
rows at a time, filtered. :class:`FileIndex` scans the file once, in chunks, on a
background thread, and keeps per complete line its byte offset (a numpy array)
and a compact summary row (:data:`SUMMARY`: env, split, task, success, score,
turns, end, invalid actions, format errors, loops, ...). The messages are parsed
one line at a time and dropped, so memory is bounded by the summaries, not the file.

The finished index is cached under ``cache_root()/"view-index"`` (one file per
real path; the size, mtime and inode it was built for are inside). Reopened
unchanged, it is loaded, not rebuilt; a file that only grew since (an eval still
writing) is extended from the last indexed offset; a line without its newline
(a write under way, or torn by a crash) is left out until it is complete.

Parquet files (``palaestra data filter --out x.parquet``, :func:`palaestra.evol.data.
write_parquet`) are read through pyarrow one row group at a time; pyarrow is
imported only when such a file is opened.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from palaestra.agents.evaluate import episode_loops
from palaestra.evol.data import record_of_row
from palaestra.files import atomic_path, cache_root

__all__ = ["CHUNK_BYTES", "SUMMARY", "FileIndex", "IndexRegistry", "index_cache_dir"]

CHUNK_BYTES = 8 << 20
"""Bytes read per step of a scan (a line longer than this is read whole, once)."""

# The summary columns: name -> numpy dtype; "U" columns are stored as codes into a
# vocabulary (a handful of envs, splits, end reasons and models per file).
SUMMARY: dict[str, str] = {
    "env_id": "U",
    "split": "U",
    "success": "bool",
    "score": "float32",
    "turns": "int32",
    "end": "U",
    "invalid_actions": "int32",
    "format_errors": "int32",
    "context_truncations": "int32",
    "spliced": "bool",
    "loops": "int32",
    "messages": "int32",
    "sample": "int32",
    "model": "U",
}
"""The per-episode summary columns (``task_id`` is kept beside them as JSON text)."""

_CACHE_VERSION = 1


def index_cache_dir() -> Path:
    """Where finished indexes are cached: ``cache_root()/"view-index"``."""
    return cache_root() / "view-index"


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    messages = record.get("messages") or []
    actions = record.get("actions") or []
    loops, _ = episode_loops(messages, actions)
    return {
        "env_id": str(record.get("env_id", "")),
        "split": "" if record.get("split") is None else str(record["split"]),
        "success": bool(record.get("success", False)),
        "score": float(record.get("score", 0.0) or 0.0),
        "turns": int(record.get("turns", 0) or 0),
        "end": str(record.get("end", "")),
        "invalid_actions": int(record.get("invalid_actions", 0) or 0),
        "format_errors": int(record.get("format_errors", 0) or 0),
        "context_truncations": int(record.get("context_truncations", 0) or 0),
        "spliced": bool(record.get("spliced", False)),
        "loops": loops,
        "messages": len(messages),
        "sample": int(record.get("sample", 0) or 0),
        "model": str(record.get("model", "")),
        "task_id": orjson.dumps(record.get("task_id")).decode(),
    }


@dataclass
class _Block:
    """Summaries of a run of consecutive lines, as a scan produced them."""

    offsets: list[int]
    rows: list[dict[str, Any]]


class _Columns:
    """The summary table, grown a block at a time (numpy columns + vocabularies)."""

    def __init__(self) -> None:
        self.offsets = np.zeros(0, dtype=np.int64)
        self.columns: dict[str, np.ndarray] = {
            name: np.zeros(0, dtype="int16" if kind == "U" else kind)
            for name, kind in SUMMARY.items()
        }
        self.vocab: dict[str, list[str]] = {n: [] for n, k in SUMMARY.items() if k == "U"}
        self.task_ids: list[str] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, block: _Block) -> None:
        if not block.offsets:
            return
        new: dict[str, np.ndarray] = {}
        for name, kind in SUMMARY.items():
            values = [row[name] for row in block.rows]
            if kind == "U":
                vocab = self.vocab[name]
                codes = []
                for value in values:
                    if value not in vocab:
                        vocab.append(value)
                    codes.append(vocab.index(value))
                new[name] = np.asarray(codes, dtype="int16")
            else:
                new[name] = np.asarray(values, dtype=kind)
        # Readers take a snapshot of (offsets, columns); assign the columns first, so
        # a reader never sees an offset without its summary.
        self.columns = {n: np.concatenate([self.columns[n], new[n]]) for n in SUMMARY}
        self.task_ids.extend(row["task_id"] for row in block.rows)
        self.offsets = np.concatenate([self.offsets, np.asarray(block.offsets, dtype=np.int64)])

    def row(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {"index": i}
        for name, kind in SUMMARY.items():
            value = self.columns[name][i]
            out[name] = self.vocab[name][value] if kind == "U" else value.item()
        out["score"] = round(out["score"], 6)
        out["task_id"] = json.loads(self.task_ids[i])
        out["split"] = out["split"] or None
        return out

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        arrays = {f"col_{n}": a for n, a in self.columns.items()}
        meta = {**meta, "vocab": self.vocab, "version": _CACHE_VERSION}
        with atomic_path(path) as tmp, tmp.open("wb") as file:
            np.savez(
                file,
                offsets=self.offsets,
                task_ids=np.asarray(self.task_ids, dtype=object).astype("U"),
                meta=np.asarray(json.dumps(meta)),
                **arrays,
            )

    @classmethod
    def load(cls, path: Path) -> tuple[_Columns, dict[str, Any]] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("version") != _CACHE_VERSION:
                    return None
                columns = cls()
                columns.offsets = data["offsets"]
                columns.task_ids = [str(t) for t in data["task_ids"]]
                columns.columns = {n: data[f"col_{n}"] for n in SUMMARY}
                columns.vocab = meta.pop("vocab")
        except (OSError, ValueError, KeyError):
            return None  # a cache from another version, or half a file: build again
        return columns, meta


def _scan_lines(path: Path, start: int) -> Iterator[tuple[_Block, int]]:
    """Blocks of complete lines from byte ``start``; each with the offset after it."""
    with path.open("rb") as file:
        file.seek(start)
        position = start
        pending = b""
        while True:
            chunk = file.read(CHUNK_BYTES)
            if not chunk:
                return  # what is pending has no newline yet: left for a later scan
            data = pending + chunk
            end = data.rfind(b"\n")
            if end < 0:
                pending = data
                continue
            block = _Block([], [])
            line_start = 0
            while line_start <= end:
                line_end = data.index(b"\n", line_start)
                line = data[line_start:line_end]
                if line.strip():
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        record = None
                    if isinstance(record, dict):
                        block.offsets.append(position + line_start)
                        block.rows.append(_summary(record))
                line_start = line_end + 1
            pending = data[end + 1 :]
            position += end + 1
            yield block, position


class FileIndex:
    """The index of one trajectory file (``.jsonl`` or ``.parquet``).

    Call :meth:`refresh` before reading: it starts (or resumes) the background
    scan when the file is new or grew. Reads see what is indexed so far.

    Args:
        path: The file.
        cache_dir: Where finished indexes are cached (None: no cache).
    """

    def __init__(self, path: Path, cache_dir: Path | None = None) -> None:
        self.path = Path(path).resolve()
        self.parquet = self.path.suffix == ".parquet"
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._columns = _Columns()
        self._indexed_bytes = 0  # offset after the last complete line indexed
        self._stat: tuple[int, int, int] | None = None  # (size, mtime_ns, inode) indexed
        self._tail = ""  # _read_tail() when last indexed
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._error: BaseException | None = None
        self.builds = 0  # scans started from byte 0 (tests check a grown file is extended)
        self.loaded_from_cache = False
        self._load_cache()

    # -- the cache ---------------------------------------------------------------------

    @property
    def cache_path(self) -> Path | None:
        """This file's cache entry (named by a digest of its real path)."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha1(str(self.path).encode()).hexdigest()[:20]
        return self.cache_dir / f"{digest}.npz"

    def _load_cache(self) -> None:
        path = self.cache_path
        if path is None or not path.is_file():
            return
        loaded = _Columns.load(path)
        if loaded is None:
            return
        columns, meta = loaded
        if meta.get("path") != str(self.path):
            return
        self._columns = columns
        self._indexed_bytes = int(meta["indexed_bytes"])
        size, mtime_ns, inode = meta["stat"]
        self._stat = (size, mtime_ns, inode)
        self._tail = meta.get("tail", "")
        self.loaded_from_cache = True

    def _save_cache(self) -> None:
        path = self.cache_path
        if path is None or self._stat is None:
            return
        meta = {
            "path": str(self.path),
            "indexed_bytes": self._indexed_bytes,
            "stat": list(self._stat),
            "tail": self._read_tail(),
        }
        try:
            self._columns.save(path, meta)
        except OSError:
            pass  # an unwritable cache costs a rebuild next time, nothing else

    def _read_tail(self) -> str:
        """The 64 bytes before the indexed end, in hex: a grown file must still hold them."""
        if self.parquet or self._indexed_bytes == 0:
            return ""
        with self.path.open("rb") as file:
            file.seek(max(0, self._indexed_bytes - 64))
            return file.read(min(64, self._indexed_bytes)).hex()

    # -- building ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Start indexing what is new in the file (nothing if unchanged or already under way).

        Raises:
            KeyError: The file is gone.
        """
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise KeyError(f"no data file at {self.path}") from None
        now = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._stat == now:
                self._done.set()
                return
            start = self._indexed_bytes
            grown = (
                not self.parquet
                and self._stat is not None
                and now[2] == self._stat[2]
                and now[0] >= self._indexed_bytes
                and self._read_tail() == self._tail
            )
            if not grown:
                self._columns = _Columns()
                self._indexed_bytes = start = 0
                self.builds += 1
            self._done.clear()
            self._error = None
            self._thread = threading.Thread(
                target=self._build, args=(start, now), name=f"index {self.path.name}", daemon=True
            )
            self._thread.start()

    def _build(self, start: int, stat: tuple[int, int, int]) -> None:
        try:
            if self.parquet:
                for block in _scan_parquet(self.path):
                    self._columns.append(block)
            else:
                for block, position in _scan_lines(self.path, start):
                    self._columns.append(block)
                    self._indexed_bytes = position
            self._stat = stat
            self._tail = self._read_tail()
            self._save_cache()
        except Exception as error:  # reported to the reader (wait raises it), not lost
            self._error = error
        finally:
            self._done.set()

    def wait(self, rows: int | None = None, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` seconds for the scan to finish (or to reach ``rows`` rows).

        Raises:
            ValueError: The scan failed (a file that is not trajectories).
        """
        deadline = time.monotonic() + timeout
        while not self._done.is_set() and (rows is None or len(self._columns) < rows):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._done.wait(min(left, 0.02))
        if self._error is not None:
            raise ValueError(f"{self.path.name}: cannot index: {self._error}") from None

    @property
    def complete(self) -> bool:
        """Whether every complete line of the file (as last seen) is indexed."""
        return self._done.is_set()

    def __len__(self) -> int:
        return len(self._columns)

    @property
    def indexed_bytes(self) -> int:
        """Bytes of the file indexed so far (a Parquet file counts whole once done)."""
        if self.parquet:
            return self._stat[0] if self._stat is not None and self.complete else 0
        return self._indexed_bytes

    # -- reading -----------------------------------------------------------------------

    def table(self) -> tuple[_Columns, int]:
        """The summary table and how many rows of it are indexed (a consistent snapshot)."""
        columns = self._columns
        return columns, len(columns.offsets)

    def summary(self, i: int) -> dict[str, Any]:
        """Episode ``i``'s summary row."""
        return self._columns.row(i)

    def record(self, i: int) -> dict[str, Any]:
        """Episode ``i``'s whole record (one line read, or one row group).

        Raises:
            KeyError: No episode ``i`` (yet).
        """
        columns, n = self.table()
        if not 0 <= i < n:
            raise KeyError(f"no episode {i} in {self.path.name} ({n} indexed)")
        if self.parquet:
            return _parquet_record(self.path, i)
        with self.path.open("rb") as file:
            file.seek(int(columns.offsets[i]))
            return orjson.loads(file.readline())


# -- Parquet ------------------------------------------------------------------------------


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise ValueError(
            "reading .parquet trajectory files needs pyarrow: pip install pyarrow "
            "(or palaestra[train])"
        ) from None
    return pyarrow.parquet


def _parquet_rows(table: Any) -> list[dict[str, Any]]:
    # write_parquet's JSON-text columns decoded, the Dataset's null tool fields dropped.
    return [record_of_row(row) for row in table.to_pylist()]


def _scan_parquet(path: Path) -> Iterator[_Block]:
    parquet = _pyarrow_parquet()
    file = parquet.ParquetFile(str(path))
    row = 0
    for group in range(file.num_row_groups):
        rows = _parquet_rows(file.read_row_group(group))
        yield _Block(list(range(row, row + len(rows))), [_summary(r) for r in rows])
        row += len(rows)


def _parquet_record(path: Path, i: int) -> dict[str, Any]:
    parquet = _pyarrow_parquet()
    file = parquet.ParquetFile(str(path))
    start = 0
    for group in range(file.num_row_groups):
        count = file.metadata.row_group(group).num_rows
        if i < start + count:
            table = file.read_row_group(group).slice(i - start, 1)
            return _parquet_rows(table)[0]
        start += count
    raise KeyError(f"no episode {i} in {path.name}")


class IndexRegistry:
    """One :class:`FileIndex` per file, shared by every request of an app.

    Args:
        cache_dir: Where finished indexes are cached (:func:`index_cache_dir`; None: no cache).
    """

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self._indexes: dict[Path, FileIndex] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> FileIndex:
        """The index of ``path``, refreshed (its scan started if the file is new or grew)."""
        key = Path(path).resolve()
        with self._lock:
            index = self._indexes.get(key)
            if index is None:
                index = self._indexes[key] = FileIndex(key, self.cache_dir)
        index.refresh()
        return index
