"""A search tree built by hand, with every field known, for the MCTS and reflection tests."""

from __future__ import annotations

from palaestra.agents.formats import get_format
from palaestra.agents.rollout import RolloutConfig
from palaestra.evol.mcts import MCTSConfig, Node, Tree

REACT = get_format("react")


def reply(action: str, thought: str = "step") -> str:
    return REACT.render(action, thought)


def hand_tree() -> Tree:
    """Three leaves: 3 solves the task (score 1); 4 (truncated) and 6 (cut at depth 3) do not.

    ::

        0 ─┬─ 1 up ─┬─ 3 right   (terminated, success, score 1)
           │        └─ 5 left ── 6 left  (depth 3, score 0)
           └─ 2 down ── 4 left   (truncated by the env, score 0)
    """
    tree = Tree(
        env_id="palaestra/Maze-v0",
        task_id=7,
        split="train",
        sample=0,
        seed=11,
        model="hand",
        config=MCTSConfig(k=2, simulations=3, max_depth=3),
        rollout=RolloutConfig(history=1),
        system="SYSTEM",
        instruction="Walk the maze.",
    )

    def add(parent: int | None, action: str | None, end: str = "", score: float = 0.0) -> None:
        depth = 0 if parent is None else tree.nodes[parent].depth + 1
        node = Node(
            id=len(tree.nodes),
            parent=parent,
            depth=depth,
            reply=None if action is None else reply(action, f"thought {len(tree.nodes)}"),
            action=action,
            observation=f"o{len(tree.nodes)}",
            reward=score,
            end=end,
            success=score == 1.0,
            score=score,
            kind="root" if parent is None else "expansion",
        )
        tree.nodes.append(node)
        if parent is not None:
            tree.nodes[parent].children.append(node.id)
            tree.nodes[parent].expanded = True

    add(None, None)
    add(0, "move up")
    add(0, "move down")
    add(1, "move right", "terminated", 1.0)
    add(2, "move left", "truncated")
    add(1, "move left")
    add(5, "move left", "depth")
    tree.nodes[2].expanded = tree.nodes[5].expanded = False  # reached by simulation only
    for leaf in tree.leaves():
        for node in tree.path(leaf.id):
            node.visits += 1
            node.value += leaf.score
    return tree
