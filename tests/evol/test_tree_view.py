"""``palaestra tree show``: the best path, a pair and its splice point, on a hand-built tree."""

from __future__ import annotations

from hand_trees import hand_tree
from rich.console import Console

from palaestra.cli import main
from palaestra.evol.mcts import save_trees
from palaestra.evol.tree_view import best_path, render_tree, tree_marks, tree_summary


def text_of(renderable: object) -> str:
    console = Console(width=120, no_color=True, record=True)
    console.print(renderable)
    return console.export_text()


def test_best_path_is_the_solved_leaf():
    tree = hand_tree()
    assert best_path(tree).nodes == (0, 1, 3)


def test_marks_pair_the_solved_leaf_with_a_failed_one_and_splice_after_the_split():
    tree = hand_tree()
    marks = tree_marks(tree)
    assert marks.best == {0, 1, 3}
    assert marks.pair is not None and marks.pair.good.nodes == (0, 1, 3)
    # Pairs in a stable order: bad leaves by id, so pair 0 is the truncated leaf 4.
    assert marks.pair.bad.nodes == (0, 2, 4)
    assert marks.splice == 2  # the bad path's first own step
    other = tree_marks(tree, pair=1)
    assert other.pair.bad.nodes == (0, 1, 5, 6) and other.splice == 5
    # A first error given after the split moves the splice point there.
    assert tree_marks(tree, pair=1, first_error=3).splice == 6


def test_render_shows_every_leaf_the_marks_and_folds_single_child_runs():
    tree = hand_tree()
    out = text_of(render_tree(tree))
    assert "#3 move right" in out and "[good]" in out and "[bad]" in out
    assert "[splice]" in out and "terminated score=1.00" in out
    # Node 5 (one child, unmarked) and its leaf 6 are one line; node 2 is the splice, kept.
    assert len(out.splitlines()) == len(tree.nodes) - 1
    assert "#5 move left  N=1 Q=0.00  ... 1 more step to #6  depth score=0.00" in out
    full = text_of(render_tree(tree, full=True))
    assert len(full.splitlines()) == len(tree.nodes) and "more step" not in full
    summary = "\n".join(tree_summary(tree))
    assert "7 nodes, 3 leaves (1 solved)" in summary and "best path: 2 steps" in summary


def test_tree_show_command(tmp_path, capsys):
    path = save_trees([hand_tree(), hand_tree()], tmp_path / "trees.jsonl")
    assert main(["tree", "show", str(path), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert out.count("palaestra/Maze-v0 task 7") == 1
    assert "[splice]" in out
    assert main(["tree", "show", str(path), "--all", "--full"]) == 0
    assert capsys.readouterr().out.count("palaestra/Maze-v0 task 7") == 2
    assert main(["tree", "show", str(path), "--index", "5"]) == 2
    assert "holds 2 trees" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"nodes": 3}\n')
    assert main(["tree", "show", str(tmp_path / "bad.jsonl")]) != 0
