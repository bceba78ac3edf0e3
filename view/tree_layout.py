"""What the Trees page shows of a search tree, read lazily and built with Agent-R's own code.

A trees file (``iter-i/trees.jsonl`` or ``repaired.jsonl`` of an Agent-R run, any
file :func:`~palaestra.evol.mcts.save_trees` wrote, or one tree ``.json``) is
indexed once by line offsets (cached while its size and time stay the same);
only the trees a request names are parsed, and the last few parsed stay cached,
so moving from pair to pair in a tree of 10,000 nodes parses it once.

Everything drawn comes from palaestra's functions, not re-derived here: the best
path is :func:`~palaestra.evol.tree_view.best_path`, pairs and their order are
:func:`~palaestra.evol.reflection.path_pairs` as
:func:`~palaestra.evol.tree_view.tree_marks` orders them, the splice is
:func:`~palaestra.evol.reflection.splice_step`, folded chains are
:func:`~palaestra.evol.tree_view.fold_end`'s, and the revision is
:func:`~palaestra.evol.reflection.revision_trajectory`'s.

First errors: Agent-R's revise stage does not record them (``run.json`` keeps only
their count and the judges' agreement), so none is shown as found. Where the run's
``data.jsonl`` beside the trees holds the spliced trajectory trained on for a pair,
its splice step (its context turns) is shown as what the judge's first error gave.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from palaestra.evol.mcts import Tree
from palaestra.evol.reflection import PathPair, path_pairs, revision_trajectory, splice_step
from palaestra.evol.tree_view import TreeMarks, best_path, fold_end, tree_marks
from palaestra.view.catalog import Catalog, FileEntry

__all__ = [
    "FIRST_ERROR_NOTE",
    "Settings",
    "line_offsets",
    "node_detail",
    "read_tree",
    "revise_settings",
    "trained_revisions",
    "tree_count",
    "tree_reply",
    "tree_row",
]

FIRST_ERROR_NOTE = (
    "Agent-R does not record the first error its judge found for a pair (run.json keeps "
    "only counts and the judges' agreement), so none is shown. The splice shown is "
    "splice_step(pair, None): the bad path's first own step. Where the run's data.jsonl "
    "holds the revision trained on for this pair, its splice step is the judge's."
)


class _Lru(OrderedDict[Any, Any]):
    """A small thread-safe LRU map (FastAPI runs sync routes in a thread pool)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_or_make(self, key: Any, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()  # outside the lock: a slow parse does not hold other files up
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


# One offsets index per file (a few ints per tree); a handful of parsed trees.
_OFFSETS = _Lru(64)
_TREES = _Lru(6)
_PAIRS = _Lru(12)
_ROWS = _Lru(4096)  # summary rows: small, and the list page asks for 50 at a time
_TRAINED = _Lru(16)


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def line_offsets(path: Path) -> list[tuple[int, int]]:
    """``(start, length)`` of each non-blank line of ``path`` (cached per size and time).

    A ``.json`` file is one record: the whole file.
    """
    key = _stamp(path)

    def scan() -> list[tuple[int, int]]:
        if path.suffix == ".json":
            return [(0, key[1])]
        out: list[tuple[int, int]] = []
        position = 0
        with path.open("rb") as file:
            for line in file:
                if line.strip():
                    out.append((position, len(line)))
                position += len(line)
        return out

    return _OFFSETS.get_or_make(key, scan)


def _read_line(path: Path, span: tuple[int, int]) -> bytes:
    with path.open("rb") as file:
        file.seek(span[0])
        return file.read(span[1])


def tree_count(path: Path) -> int:
    """How many trees the file holds."""
    return len(line_offsets(path))


def read_tree(path: Path, index: int) -> Tree:
    """The ``index``-th tree of a trees file (parsed once while the file is unchanged).

    Raises:
        KeyError: The file holds fewer trees.
        ValueError: That line is not a tree.
    """
    offsets = line_offsets(path)
    if not 0 <= index < len(offsets):
        raise KeyError(f"{path.name} holds {len(offsets)} trees: no tree {index}")

    def parse() -> Tree:
        try:
            return Tree.from_json(json.loads(_read_line(path, offsets[index])))
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{path.name}: tree {index} is not a tree: {error}") from None

    return _TREES.get_or_make((*_stamp(path), index), parse)


# -- the run's settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How Agent-R paired this file's trees.

    Attributes:
        alpha: Least good-path score.
        beta: Least score gap (exclusive).
        seed: The revise stage's seed (it draws the reflection of a revision).
        source: Where they come from: ``"run.json revise-N"`` or ``"defaults"``.
        revise_from: The run's ``revise_from`` (``None`` outside a run).
    """

    alpha: float = 0.5
    beta: float = 0.2
    seed: int = 0
    source: str = "defaults"
    revise_from: str | None = None


def revise_settings(catalog: Catalog, entry: FileEntry) -> Settings:
    """The revise stage's alpha, beta and seed for a trees file in an ``iter-N`` of a run.

    Outside an Agent-R run (or before its revise stage ran), the defaults of
    :func:`~palaestra.evol.reflection.path_pairs` and seed 0.
    """
    match = re.fullmatch(r"iter-(\d+)", entry.path.parent.name)
    if entry.run is None or match is None:
        return Settings()
    try:
        manifest = json.loads((catalog.run(entry.run).path / "run.json").read_text())
    except (KeyError, OSError, ValueError):
        return Settings()
    stage = f"revise-{match.group(1)}"
    record = (manifest.get("stages") or {}).get(stage)
    config = manifest.get("config") or {}
    if not isinstance(record, dict) or "alpha" not in record:
        return Settings()
    return Settings(
        alpha=float(record["alpha"]),
        beta=float(config.get("beta", 0.2)),
        seed=int(record.get("seed", 0)),
        source=f"run.json {stage}",
        revise_from=config.get("revise_from"),
    )


# -- pairs ----------------------------------------------------------------------------------


def _pairs(path: Path, index: int, tree: Tree, alpha: float, beta: float) -> list[PathPair]:
    """Every pair of the tree, in :func:`tree_marks`'s order (pair ``i`` is its ``pair=i``)."""

    def make() -> list[PathPair]:
        pairs = path_pairs(tree, alpha=alpha, beta=beta, cap=None)
        pairs.sort(key=lambda p: (p.good.nodes[-1], p.bad.nodes[-1]))
        return pairs

    return _PAIRS.get_or_make((*_stamp(path), index, alpha, beta), make)


def tree_row(path: Path, index: int, alpha: float, beta: float) -> dict[str, Any]:
    """The summary row of one tree: task, size, leaves' outcomes and pairs available."""
    return _ROWS.get_or_make(
        (*_stamp(path), index, alpha, beta), lambda: _tree_row(path, index, alpha, beta)
    )


def _tree_row(path: Path, index: int, alpha: float, beta: float) -> dict[str, Any]:
    tree = read_tree(path, index)
    leaves = tree.leaves()
    best = best_path(tree)
    return {
        "index": index,
        "env_id": tree.env_id,
        "task_id": tree.task_id,
        "split": tree.split,
        "sample": tree.sample,
        "seed": tree.seed,
        "model": tree.model,
        "nodes": len(tree.nodes),
        "leaves": len(leaves),
        "depth": max(n.depth for n in tree.nodes),
        "best_score": best.score if best else None,
        "best_steps": best.steps if best else None,
        "successes": sum(leaf.success for leaf in leaves),
        "pairs": len(_pairs(path, index, tree, alpha, beta)),
    }


# -- the trajectories trained on --------------------------------------------------------------


def _trained_index(data: Path) -> dict[tuple[str, str, int], list[tuple[int, int]]]:
    """Offsets of the spliced trajectories of ``data``, by (env, task, sample)."""

    def scan() -> dict[tuple[str, str, int], list[tuple[int, int]]]:
        out: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
        position = 0
        with data.open("rb") as file:
            for line in file:
                # Only revisions are spliced; the cheap test skips parsing the rest.
                if b'"spliced": true' in line:
                    record = json.loads(line)
                    if record.get("spliced"):
                        key = (record["env_id"], str(record["task_id"]), record.get("sample", 0))
                        out.setdefault(key, []).append((position, len(line)))
                position += len(line)
        return out

    return _TRAINED.get_or_make(_stamp(data), scan)


def trained_revisions(trees_path: Path, tree: Tree) -> tuple[Path | None, list[dict[str, Any]]]:
    """The spliced trajectories of ``tree``'s task in the ``data.jsonl`` beside the trees file.

    Returns:
        The data file (``None``: there is none) and its revisions of this tree's
        task and sample, as saved.
    """
    data = trees_path.parent / "data.jsonl"
    if not data.is_file():
        return None, []
    spans = _trained_index(data).get((tree.env_id, str(tree.task_id), tree.sample), [])
    return data, [json.loads(_read_line(data, span)) for span in spans]


def _context_steps(trajectory: dict[str, Any]) -> int:
    """Replies not trained on: the bad prefix a revision is spliced after."""
    return sum(1 for m in trajectory["messages"] if m["role"] == "assistant" and not m["loss"])


def _matches(pair: PathPair, trajectory: dict[str, Any]) -> bool:
    """The trajectory is this pair's bad prefix followed by its good path's own steps."""
    e, d = _context_steps(trajectory), pair.divergence
    actions = trajectory["actions"]
    return (
        d <= e <= pair.bad.steps
        and actions[:e] == pair.bad.actions[:e]
        and actions[e:] == pair.good.actions[d:]
    )


# -- the tree's reply --------------------------------------------------------------------------


def _cut(text: str | None, chars: int) -> tuple[str | None, bool]:
    if text is None or len(text) <= chars:
        return text, False
    return text[:chars], True


def _columns(tree: Tree, chars: int) -> dict[str, list[Any]]:
    """The nodes as columns (one list per field, indexed by node id): compact to send."""
    names = "parent depth action visits value q end success score kind invalid expanded"
    columns: dict[str, list[Any]] = {name: [] for name in names.split()}
    if chars > 0:
        columns |= {"reply": [], "observation": [], "truncated": []}
    for node in tree.nodes:
        columns["parent"].append(node.parent)
        columns["depth"].append(node.depth)
        columns["action"].append(node.action)
        columns["visits"].append(node.visits)
        columns["value"].append(round(node.value, 6))
        columns["q"].append(round(node.q, 4))
        columns["end"].append(node.end)
        columns["success"].append(int(node.success))
        columns["score"].append(round(node.score, 6))
        columns["kind"].append(node.kind)
        columns["invalid"].append(int(node.invalid))
        columns["expanded"].append(int(node.expanded))
        if chars > 0:
            reply, cut_reply = _cut(node.reply, chars)
            observation, cut_observation = _cut(node.observation, chars)
            columns["reply"].append(reply)
            columns["observation"].append(observation)
            columns["truncated"].append(int(cut_reply or cut_observation))
    return columns


def _folds(tree: Tree, marks: TreeMarks) -> dict[str, int]:
    """``{first node: last node}`` of each folded chain, as ``palaestra tree show`` folds them."""
    folds: dict[str, int] = {}
    stack = list(tree.root.children)
    while stack:
        node = tree.nodes[stack.pop()]
        end = fold_end(tree, node, marks)
        if end is not node:
            folds[str(node.id)] = end.id
        stack.extend(end.children)
    return folds


def _path(tree: Tree, nodes: tuple[int, ...]) -> dict[str, Any]:
    leaf = tree.nodes[nodes[-1]]
    return {
        "nodes": list(nodes),
        "actions": [tree.nodes[i].action for i in nodes[1:]],
        "score": leaf.score,
        "success": leaf.success,
        "end": leaf.end,
        "steps": len(nodes) - 1,
    }


def _trajectory_json(trajectory: Any) -> dict[str, Any]:
    data = trajectory if isinstance(trajectory, dict) else trajectory.to_json()
    keys = ("messages", "actions", "success", "score", "turns", "end", "spliced")
    return {k: data.get(k) for k in keys}


def tree_reply(
    path: Path,
    index: int,
    *,
    settings: Settings,
    pair: int = 0,
    pair_offset: int = 0,
    pair_limit: int = 100,
    nodes: bool = True,
    chars: int = 80,
) -> dict[str, Any]:
    """Everything the tree page draws of one tree (see the module doc).

    Args:
        path: The trees file.
        index: The tree's index in it.
        settings: alpha and beta of the pairs, seed of the revision's reflection.
        pair: The chosen pair (its index in the pairs' stable order).
        pair_offset: First pair listed.
        pair_limit: Pairs listed at most.
        nodes: Send the nodes' columns (the page asks for them once per tree).
        chars: Reply and observation characters sent per node (0: none; the rest
            by :func:`node_detail`).

    Raises:
        KeyError: No such tree or pair.
    """
    tree = read_tree(path, index)
    alpha, beta = settings.alpha, settings.beta
    pairs = _pairs(path, index, tree, alpha, beta)
    if pairs and not 0 <= pair < len(pairs):
        raise KeyError(f"tree {index} has {len(pairs)} pairs: no pair {pair}")
    marks = tree_marks(tree, pair=pair, alpha=alpha, beta=beta)
    best = best_path(tree)
    data_file, trained = trained_revisions(path, tree)
    trained_by_pair: dict[int, dict[str, Any]] = {}
    if trained:
        for i, candidate in enumerate(pairs):
            for t in trained:
                if _matches(candidate, t):
                    trained_by_pair[i] = t
                    break
    reply: dict[str, Any] = {
        "index": index,
        "env_id": tree.env_id,
        "task_id": tree.task_id,
        "split": tree.split,
        "sample": tree.sample,
        "seed": tree.seed,
        "model": tree.model,
        "config": {k: getattr(tree.config, k) for k in ("k", "c", "simulations", "max_depth")},
        "count": len(tree.nodes),
        "settings": asdict(settings),
        "best": _path(tree, best.nodes) if best else None,
        "folds": _folds(tree, marks),
        "pairs": {
            "count": len(pairs),
            "offset": pair_offset,
            "items": [
                {
                    "index": i,
                    "good": p.good.nodes[-1],
                    "bad": p.bad.nodes[-1],
                    "good_score": p.good.score,
                    "bad_score": p.bad.score,
                    "divergence": p.divergence,
                    "trained": i in trained_by_pair,
                }
                for i, p in enumerate(pairs[pair_offset : pair_offset + pair_limit], pair_offset)
            ],
            "trained": sorted(trained_by_pair),
        },
        "first_error": None,
        "first_error_note": FIRST_ERROR_NOTE,
        "trained_file": data_file.name if data_file else None,
        "trained_count": len(trained),
        "pair": None,
    }
    if nodes:
        reply["nodes"] = _columns(tree, chars)
    if marks.pair is not None:
        chosen = marks.pair
        step = splice_step(chosen, None)
        detail: dict[str, Any] = {
            "index": pair,
            "good": _path(tree, chosen.good.nodes),
            "bad": _path(tree, chosen.bad.nodes),
            "divergence": chosen.divergence,
            "splice_step": step,
            "splice_node": marks.splice,
            "revision": None,
            "revision_error": None,
            "trained": None,
        }
        try:
            revision = revision_trajectory(chosen, None, seed=settings.seed)
            detail["revision"] = _trajectory_json(revision)
        except ValueError as error:
            detail["revision_error"] = str(error)
        if pair in trained_by_pair:
            t = trained_by_pair[pair]
            e = _context_steps(t)
            detail["trained"] = {
                **_trajectory_json(t),
                "file": data_file.name if data_file else None,
                "splice_step": e,
                "splice_node": chosen.bad.nodes[e],
            }
        reply["pair"] = detail
    return reply


def node_detail(path: Path, index: int, node_id: int) -> dict[str, Any]:
    """One node in full: its reply, observation and statistics, and the path to it.

    Raises:
        KeyError: No such tree or node.
    """
    tree = read_tree(path, index)
    if not 0 <= node_id < len(tree.nodes):
        raise KeyError(f"tree {index} has {len(tree.nodes)} nodes: no node {node_id}")
    node = tree.nodes[node_id]
    return {
        "id": node.id,
        "parent": node.parent,
        "depth": node.depth,
        "action": node.action,
        "reply": node.reply,
        "observation": node.observation,
        "reward": node.reward,
        "visits": node.visits,
        "value": node.value,
        "q": node.q,
        "end": node.end,
        "success": node.success,
        "score": node.score,
        "kind": node.kind,
        "invalid": node.invalid,
        "expanded": node.expanded,
        "children": node.children,
        "path": [n.id for n in tree.path(node_id)],
    }
