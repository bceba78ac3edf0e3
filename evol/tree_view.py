"""``palaestra tree show``: a search tree in the terminal.

Each node is one line: its id, the action that led to it, visits, mean value
``Q`` and, for a leaf, how the episode ended and its score. Runs of nodes with a
single child (a simulation playing on) are folded into one line (``--full``
shows every node). The best path (to the best-scoring leaf, fewest steps on a
tie) is drawn in bold green; one good/bad pair of the tree (as Agent-R pairs
them, see :func:`palaestra.evol.reflection.path_pairs`) is marked: the good
leaf ``[good]``, the bad leaf ``[bad]`` and the step after which a revision is
spliced in ``[splice]`` (the bad path's first own step, or a first error given).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from rich.tree import Tree as RichTree

from palaestra.evol.mcts import Node, Tree
from palaestra.evol.reflection import LeafPath, PathPair, leaf_paths, path_pairs, splice_step

__all__ = ["TreeMarks", "best_path", "fold_end", "render_tree", "tree_marks", "tree_summary"]


@dataclass(frozen=True)
class TreeMarks:
    """What :func:`render_tree` highlights.

    Attributes:
        best: Node ids of the best path.
        pair: The marked pair (``None``: the tree has none).
        splice: The node after which the revision is spliced in (on the bad path).
    """

    best: frozenset[int]
    pair: PathPair | None
    splice: int | None


def best_path(tree: Tree) -> LeafPath | None:
    """The path to the best-scoring leaf (fewest steps on a tie, then the first made)."""
    paths = leaf_paths(tree)
    if not paths:
        return None
    return max(paths, key=lambda p: (p.score, -p.steps, -p.nodes[-1]))


def tree_marks(
    tree: Tree,
    *,
    pair: int = 0,
    alpha: float = 0.5,
    beta: float = 0.2,
    first_error: int | None = None,
    seed: int = 0,
) -> TreeMarks:
    """The best path and the ``pair``-th good/bad pair of ``tree`` with its splice node."""
    best = best_path(tree)
    pairs = path_pairs(tree, alpha=alpha, beta=beta, cap=None, seed=seed)
    # A stable order, so that --pair N names the same pair on every call.
    pairs.sort(key=lambda p: (p.good.nodes[-1], p.bad.nodes[-1]))
    chosen = pairs[pair] if 0 <= pair < len(pairs) else None
    splice = None
    if chosen is not None:
        splice = chosen.bad.nodes[splice_step(chosen, first_error)]
    return TreeMarks(frozenset(best.nodes if best else ()), chosen, splice)


def _label(tree: Tree, node: Node, marks: TreeMarks, end: Node | None = None) -> Text:
    """One line: ``node``'s step, and where a folded run of single children ``end``s."""
    last = end or node
    text = Text()
    if node.parent is None:
        text.append(f"#{node.id} root", style="bold")
    else:
        action = node.action if node.action else "(unparsable reply)"
        text.append(f"#{node.id} ", style="dim")
        text.append(action, style="red" if node.invalid else "")
    text.append(f"  N={node.visits} Q={node.q:.2f}", style="dim")
    if end is not None:
        more = end.depth - node.depth
        text.append(f"  ... {more} more step{'s' * (more != 1)} to #{end.id}", style="dim")
    if last.finished:
        style = "green" if last.success else "red"
        text.append(f"  {last.end} score={last.score:.2f}", style=style)
    if node.id in marks.best:
        text.stylize("bold green")
    if marks.pair is not None:
        if last.id == marks.pair.good.nodes[-1]:
            text.append("  [good]", style="bold green")
        if last.id == marks.pair.bad.nodes[-1]:
            text.append("  [bad]", style="bold red")
    if node.id == marks.splice:
        text.append("  [splice]", style="bold yellow")
    return text


def _marked(node_id: int, marks: TreeMarks) -> bool:
    if node_id == marks.splice:
        return True
    pair = marks.pair
    return pair is not None and node_id in (pair.good.nodes[-1], pair.bad.nodes[-1])


def fold_end(tree: Tree, node: Node, marks: TreeMarks) -> Node:
    """The last node of the run of single children from ``node`` that is shown as one line.

    The run stops before a marked node (the pair's leaves, the splice) and where
    the best path enters or leaves it, so that marks stay on lines of their own.
    """
    end = node
    while (
        len(end.children) == 1
        and not _marked(end.children[0], marks)
        and (end.id in marks.best) == (end.children[0] in marks.best)
    ):
        end = tree.nodes[end.children[0]]
    return end


def render_tree(
    tree: Tree,
    marks: TreeMarks | None = None,
    *,
    full: bool = False,
    max_nodes: int | None = 400,
) -> RichTree:
    """``tree`` as a :class:`rich.tree.Tree` (see the module doc).

    Args:
        tree: The search tree.
        marks: What to highlight (default :func:`tree_marks`).
        full: One line per node (else single-child runs are folded).
        max_nodes: Lines shown at most (``None``: all); the rest is counted.
    """
    marks = marks or tree_marks(tree)
    root = RichTree(_label(tree, tree.root, marks))
    shown = 1
    left_out = 0
    stack: list[tuple[RichTree, int]] = [(root, c) for c in reversed(tree.root.children)]
    while stack:
        parent, node_id = stack.pop()
        node = tree.nodes[node_id]
        end = node if full else fold_end(tree, node, marks)
        if max_nodes is not None and shown >= max_nodes:
            left_out += 1
            continue
        branch = parent.add(_label(tree, node, marks, end if end is not node else None))
        shown += 1
        stack.extend((branch, c) for c in reversed(end.children))
    if left_out:
        root.add(Text(f"... {left_out} more branches (raise --max-nodes)", style="dim"))
    return root


def tree_summary(tree: Tree, marks: TreeMarks | None = None) -> list[str]:
    """Header lines: the task, the tree's size, its leaves' scores and the marked pair."""
    marks = marks or tree_marks(tree)
    leaves = tree.leaves()
    solved = sum(leaf.success for leaf in leaves)
    depth = max((n.depth for n in tree.nodes), default=0)
    lines = [
        f"{tree.env_id} task {tree.task_id} ({tree.split or '-'}, seed {tree.seed}), "
        f"model {tree.model}",
        f"{len(tree.nodes)} nodes, {len(leaves)} leaves ({solved} solved), depth {depth}, "
        f"k={tree.config.k} c={tree.config.c} simulations={tree.config.simulations}",
    ]
    best = best_path(tree)
    if best is not None:
        lines.append(f"best path: {best.steps} steps, score {best.score:.2f}")
    if marks.pair is not None:
        pair = marks.pair
        lines.append(
            f"pair: good leaf #{pair.good.nodes[-1]} ({pair.good.score:.2f}), bad leaf "
            f"#{pair.bad.nodes[-1]} ({pair.bad.score:.2f}); they part after step "
            f"{pair.divergence}; revision spliced after node #{marks.splice}"
        )
    else:
        lines.append("pair: none (no two leaves differ enough in score)")
    return lines
