"""What ``palaestra view`` was given: the runs and files found under its paths.

A path may be a run folder (``palaestra eval`` output, an AgentEvol or Agent-R
run), a folder holding many of them, or one file (trajectories ``.jsonl`` or
``.parquet``, search trees ``.jsonl``/``.json``). The catalog walks the folders
again on each call (cheap: names and sizes only, model weights skipped), so a
run still being written shows up and grows in the page.

Ids are stable, URL-safe strings: the path relative to the given path, under a
label naming that path (its folder or file name; ``name~2`` for a repeat).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Catalog", "FileEntry", "RunEntry", "file_kind"]

# Folders never walked into: model weights and trainer checkpoints.
SKIPPED_DIRS = frozenset({"model", "__pycache__", ".git"})
SKIPPED_PREFIXES = ("checkpoint-",)


@dataclass(frozen=True)
class RunEntry:
    """A run folder.

    Attributes:
        id: The run's id in the API.
        kind: ``"eval"`` (a ``palaestra eval`` folder: ``results.json`` beside
            ``trajectories.jsonl``) or ``"evolve"`` (a ``run.json`` with ``stages``:
            AgentEvol, Agent-R or the demo).
        path: The folder.
        parent: The id of the run it sits in (an evolve run's eval stages), or None.
    """

    id: str
    kind: str
    path: Path
    parent: str | None


@dataclass(frozen=True)
class FileEntry:
    """A data file.

    Attributes:
        id: The file's id in the API.
        kind: ``"trajectories"`` or ``"trees"``.
        path: The file.
        run: The id of the run folder it sits in (nearest above it), or None.
        size: Bytes, when the catalog last looked.
        mtime_ns: Modification time, when the catalog last looked.
    """

    id: str
    kind: str
    path: Path
    run: str | None
    size: int
    mtime_ns: int


def file_kind(path: Path) -> str | None:
    """``"trajectories"``, ``"trees"`` or None, from a file's name and first record."""
    if path.suffix == ".parquet":
        return "trajectories"
    if path.suffix not in (".jsonl", ".json"):
        return None
    try:
        with path.open("rb") as file:
            head = file.read(1 << 16)
    except OSError:
        return None
    if path.suffix == ".json":
        # A tree file is one object with "nodes" and "env_id"; other .json files (results,
        # run: an Agent-R run.json counts its search's "nodes") are not data.
        tree = b'"nodes"' in head and b'"env_id"' in head and head.lstrip().startswith(b"{")
        return "trees" if tree else None
    line = head.split(b"\n", 1)[0]
    if not line.strip():
        return "trajectories" if path.name.endswith("trajectories.jsonl") else None
    # Decide on the keys near the start (a long first line is cut at 64 KiB; keys are early).
    if b'"nodes"' in line and b'"env_id"' in line:
        return "trees"
    if b'"messages"' in line and b'"env_id"' in line:
        return "trajectories"
    return None


def _labels(paths: list[Path]) -> list[str]:
    labels: list[str] = []
    for path in paths:
        base = path.name or "root"
        label, n = base, 1
        while label in labels:
            n += 1
            label = f"{base}~{n}"
        labels.append(label)
    return labels


def _is_eval_dir(path: Path) -> bool:
    # run.json without results.json: an eval still running (its table comes at the end).
    table = (path / "results.json").is_file() or (path / "run.json").is_file()
    return table and (path / "trajectories.jsonl").is_file()


def _is_evolve_dir(path: Path) -> bool:
    run = path / "run.json"
    if not run.is_file():
        return False
    try:
        with run.open("rb") as file:
            return "stages" in json.load(file)
    except (OSError, ValueError):
        return False


class Catalog:
    """The runs and data files under the paths ``palaestra view`` serves.

    Args:
        paths: Run folders, folders of runs, or data files.

    Raises:
        FileNotFoundError: A path does not exist.
    """

    def __init__(self, paths: list[str | Path]) -> None:
        self.roots = [Path(p).resolve() for p in paths]
        for root in self.roots:
            if not root.exists():
                raise FileNotFoundError(f"palaestra view: no such file or folder: {root}")
        self.labels = _labels(self.roots)

    def scan(self) -> tuple[list[RunEntry], list[FileEntry]]:
        """Every run folder and data file, as they are now, in path order."""
        runs: list[RunEntry] = []
        files: list[FileEntry] = []
        for root, label in zip(self.roots, self.labels, strict=True):
            self._scan_root(root, label, runs, files)
        return runs, files

    def runs(self) -> list[RunEntry]:
        """Every run folder."""
        return self.scan()[0]

    def files(self, kind: str | None = None) -> list[FileEntry]:
        """Every data file (of ``kind``, if given)."""
        return [f for f in self.scan()[1] if kind is None or f.kind == kind]

    def run(self, run_id: str) -> RunEntry:
        """The run with this id.

        Raises:
            KeyError: No run has it.
        """
        for entry in self.runs():
            if entry.id == run_id:
                return entry
        raise KeyError(f"no run {run_id!r} under the viewed paths")

    def file(self, file_id: str) -> FileEntry:
        """The data file with this id.

        Raises:
            KeyError: No file has it.
        """
        for entry in self.files():
            if entry.id == file_id:
                return entry
        raise KeyError(f"no data file {file_id!r} under the viewed paths")

    def _id(self, root: Path, label: str, path: Path) -> str:
        rel = path.relative_to(root).as_posix()
        return label if rel == "." else f"{label}/{rel}"

    def _scan_root(
        self, root: Path, label: str, runs: list[RunEntry], files: list[FileEntry]
    ) -> None:
        if root.is_file():
            kind = file_kind(root)
            if kind is not None:
                stat = root.stat()
                files.append(FileEntry(label, kind, root, None, stat.st_size, stat.st_mtime_ns))
            return
        run_stack: list[tuple[Path, str]] = []  # enclosing run folders, innermost last
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith(SKIPPED_PREFIXES)
            )
            while run_stack and run_stack[-1][0] not in (here, *here.parents):
                run_stack.pop()
            kind = "evolve" if _is_evolve_dir(here) else "eval" if _is_eval_dir(here) else None
            if kind is not None:
                run_id = self._id(root, label, here)
                parent = run_stack[-1][1] if run_stack else None
                runs.append(RunEntry(run_id, kind, here, parent))
                run_stack.append((here, run_id))
            for name in sorted(filenames):
                path = here / name
                file_kind_ = file_kind(path)
                if file_kind_ is None:
                    continue
                stat = path.stat()
                run = run_stack[-1][1] if run_stack else None
                files.append(
                    FileEntry(
                        self._id(root, label, path),
                        file_kind_,
                        path,
                        run,
                        stat.st_size,
                        stat.st_mtime_ns,
                    )
                )
