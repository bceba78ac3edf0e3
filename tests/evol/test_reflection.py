"""Path pairs, first-error judges and revision trajectories: hand-built trees and a real maze."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hand_trees import REACT, hand_tree, reply

from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.trajectory import Trajectory
from palaestra.evol.examples import turn_examples
from palaestra.evol.mcts import Node, Tree
from palaestra.evol.reflection import (
    REFLECTIONS,
    VERDICTS,
    LeafPath,
    PathPair,
    actor_judge,
    agent_r_data,
    expert_first_error,
    first_bad,
    good_paths,
    judge_agreement,
    leaf_paths,
    parse_verdict,
    path_pairs,
    path_trajectory,
    repair_trajectory,
    repaired_pair,
    revision_trajectory,
    splice_step,
)


def pair(tree: Tree, good: int, bad: int) -> PathPair:
    paths = {p.nodes[-1]: p for p in leaf_paths(tree)}
    return PathPair(paths[good], paths[bad])


def test_leaf_paths_and_pairs_by_alpha_and_beta():
    tree = hand_tree()
    paths = leaf_paths(tree)
    assert [p.nodes for p in paths] == [(0, 1, 3), (0, 2, 4), (0, 1, 5, 6)]
    assert [p.score for p in paths] == [1.0, 0.0, 0.0]
    assert paths[2].actions == ["move up", "move left", "move left"]
    pairs = path_pairs(tree, alpha=0.5, beta=0.2, cap=None)
    assert {(p.good.nodes[-1], p.bad.nodes[-1]) for p in pairs} == {(3, 4), (3, 6)}
    assert {p.bad.nodes[-1]: p.divergence for p in pairs} == {4: 0, 6: 1}
    assert path_pairs(tree, alpha=1.01, cap=None) == []  # no path is good enough
    assert path_pairs(tree, beta=1.0, cap=None) == []  # a gap of 1.0 is not over 1.0
    assert [p.nodes for p in good_paths(tree, alpha=1.0, cap=None)] == [(0, 1, 3)]
    assert good_paths(tree, alpha=1.01) == []


def test_the_cap_per_tree_draws_with_the_seed():
    tree = hand_tree()
    draws = {
        seed: [(p.good.nodes, p.bad.nodes) for p in path_pairs(tree, cap=1, seed=seed)]
        for seed in range(8)
    }
    assert all(len(d) == 1 for d in draws.values())
    assert draws[3] == [(p.good.nodes, p.bad.nodes) for p in path_pairs(tree, cap=1, seed=3)]
    assert len({tuple(d) for d in draws.values()}) == 2  # both pairs get drawn by some seed


def test_revision_trajectory_messages_and_loss_flags():
    tree = hand_tree()
    t = revision_trajectory(pair(tree, 3, 6), 3, reflection="I was wrong.")
    assert [(m["role"], m["content"], m["loss"]) for m in t.messages] == [
        ("system", "SYSTEM", False),
        ("user", "o0", False),
        ("assistant", reply("move up", "thought 1"), False),
        ("user", "o1", False),
        ("assistant", reply("move left", "thought 5"), False),
        ("user", "o5", False),
        ("assistant", reply("move left", "thought 6"), False),
        ("user", "o6", False),  # the error's observation, though it ended the path
        ("assistant", "Thought: I was wrong.\nAction: move right", True),
    ]
    assert t.actions == ["move up", "move left", "move left", "move right"]
    assert t.rewards == [0.0, 0.0, 0.0, 1.0]
    assert (t.spliced, t.success, t.score, t.turns, t.end) == (True, True, 1.0, 4, "terminated")
    parsed = REACT.parse(t.messages[-1]["content"])
    assert (parsed.action, parsed.thought) == ("move right", "I was wrong.")


def test_revision_at_the_divergence_when_no_error_is_found_after_it():
    tree = hand_tree()
    p = pair(tree, 3, 4)
    assert splice_step(p, None) == 1 and splice_step(p, 2) == 2
    t = revision_trajectory(p, None, seed=5)
    reflection = REACT.parse(t.messages[4]["content"]).thought
    assert reflection in REFLECTIONS
    assert [(m["role"], m["content"], m["loss"]) for m in t.messages] == [
        ("system", "SYSTEM", False),
        ("user", "o0", False),
        ("assistant", reply("move down", "thought 2"), False),
        ("user", "o2", False),
        ("assistant", reply("move up", reflection), True),  # the good path's own step 1
        ("user", "o1", False),
        ("assistant", reply("move right", "thought 3"), True),
    ]
    assert t.actions == ["move down", "move up", "move right"]
    # An error judged on the shared prefix is one the good path made too: no splice there.
    p6 = pair(tree, 3, 6)
    assert splice_step(p6, 1) == 2 and splice_step(p6, None) == 2 and splice_step(p6, 9) == 2


def grow(tree: Tree, parent: int, action: str, end: str = "", score: float = 0.0) -> int:
    """Add a node below ``parent`` as ``MCTS.repair`` would (no backup: not needed here)."""
    node = Node(
        id=len(tree.nodes),
        parent=parent,
        depth=tree.nodes[parent].depth + 1,
        reply=reply(action, f"thought {len(tree.nodes)}"),
        action=action,
        observation=f"o{len(tree.nodes)}",
        reward=score,
        end=end,
        success=score == 1.0,
        score=score,
        kind="expansion",
    )
    tree.nodes.append(node)
    tree.nodes[parent].children.append(node.id)
    return node.id


def test_a_repaired_revision_goes_on_from_the_state_the_error_left():
    tree = hand_tree()
    bad = pair(tree, 3, 4)  # bad path 0 -> 2 (down: the error) -> 4 (left)
    assert repaired_pair(bad, 1, alpha=0.5, beta=0.2) is None  # nothing found below node 2 yet
    # Searching on from node 2 found: 7 (right, fails), 8 (up) -> 9 (right, solves).
    grow(tree, 2, "move right", "truncated", 0.0)
    grow(tree, grow(tree, 2, "move up"), "move right", "terminated", 1.0)
    fixed = repaired_pair(bad, 1, alpha=0.5, beta=0.2)
    assert fixed is not None and fixed.good.nodes == (0, 2, 8, 9) and fixed.bad is bad.bad
    assert fixed.divergence == 1  # the shared steps end with the error
    t = repair_trajectory(fixed, reflection="I went down by mistake.")
    assert [(m["role"], m["content"], m["loss"]) for m in t.messages] == [
        ("system", "SYSTEM", False),
        ("user", "o0", False),
        ("assistant", reply("move down", "thought 2"), False),  # the error
        ("user", "o2", False),  # what it led to
        ("assistant", reply("move up", "I went down by mistake."), True),
        ("user", "o8", False),
        ("assistant", reply("move right", "thought 9"), True),
    ]
    # Every action is one the env played on this path: it replays as one episode.
    assert t.actions == ["move down", "move up", "move right"] == fixed.good.actions
    assert (t.spliced, t.success, t.score, t.rewards) == (True, True, 1.0, [0.0, 0.0, 1.0])
    # The best leaf wins: a shorter solve below the error is preferred.
    grow(tree, 2, "move left", "terminated", 1.0)
    assert repaired_pair(bad, 1, alpha=0.5, beta=0.2).good.nodes == (0, 2, 10)
    # A good enough score is required, and an error that ended the path has no below.
    assert repaired_pair(bad, 1, alpha=1.01, beta=0.2) is None
    assert repaired_pair(bad, 2, alpha=0.5, beta=0.2) is None
    with pytest.raises(ValueError, match="part at the root"):
        repair_trajectory(bad)


def test_reflections_are_seeded_and_varied():
    tree = hand_tree()
    p = pair(tree, 3, 6)
    assert len(set(REFLECTIONS)) >= 10
    draws = [
        REACT.parse(revision_trajectory(p, 2, seed=s).messages[-1]["content"]) for s in range(12)
    ]
    assert len({d.thought for d in draws}) > 3
    again = revision_trajectory(p, 2, seed=4).messages
    assert again == revision_trajectory(p, 2, seed=4).messages


def test_revision_examples_under_a_history_window_train_the_reflection_then_the_action():
    tree = hand_tree()
    t = revision_trajectory(pair(tree, 3, 4), None, reflection="I went the wrong way.")
    examples = turn_examples(t, history=1)
    assert len(examples) == 2  # the revision turn and the good step after it; no bad step
    first = examples[0]
    assert [m["content"] for m in first] == [
        "SYSTEM", "o0", reply("move down", "thought 2"), "o2",
        "Thought: I went the wrong way.\nAction: move up",
    ]  # fmt: skip
    assert [m["loss"] for m in first] == [False, False, False, False, True]
    second = examples[1]
    assert [m["content"] for m in second][1:] == [
        "(earlier turns omitted)\no2", "Thought: I went the wrong way.\nAction: move up", "o1",
        reply("move right", "thought 3"),
    ]  # fmt: skip


def test_spliced_is_saved_and_read_back_and_old_files_default_to_false():
    tree = hand_tree()
    t = revision_trajectory(pair(tree, 3, 6), 2)
    assert Trajectory.from_json(t.to_json()).spliced is True
    old = t.to_json()
    del old["spliced"]
    assert Trajectory.from_json(old).spliced is False
    plain = path_trajectory(leaf_paths(tree)[0])
    assert plain.spliced is False
    assert [m["loss"] for m in plain.messages] == [False, False, True, False, True]
    assert (plain.actions, plain.score, plain.turns) == (["move up", "move right"], 1.0, 2)


def test_verdicts_are_the_first_word_else_uncertain():
    assert [parse_verdict(r) for r in ["Good.", " bad step", "**Uncertain**", "", "The step"]] == [
        "good", "bad", "uncertain", "uncertain", "uncertain",
    ]  # fmt: skip
    assert first_bad(["good", "uncertain", "bad", "bad"]) == 3
    assert first_bad(["good"]) is None


def test_agreement_compares_splice_steps():
    tree = hand_tree()
    pairs = [pair(tree, 3, 6), pair(tree, 3, 4)]
    agreement = judge_agreement(pairs, [3, None], [2, 1])
    assert (agreement.pairs, agreement.same, agreement.rate) == (2, 1, 0.5)
    assert (agreement.actor_found, agreement.expert_found, agreement.mean_distance) == (1, 2, 0.5)


MAZE_0_EXPERT = ["move right", "move right", "move up", "move up", "move left"]  # task 0, seed 0


@pytest.mark.parametrize(
    ("actions", "error"),
    [
        (MAZE_0_EXPERT, None),  # on the shortest path throughout
        (["move right", "move right", "move right"], 3),  # (9, 3) -> a wall
        (["move right", "move right", "move up", "move up", "move down"], 5),  # back again
        (["move left"], 1),  # a wall at once
        (["move right", "move left", "move right"], 2),  # off the path, then back on it
    ],
)
def test_expert_judge_finds_the_first_move_off_a_shortest_path(actions, error):
    tree = hand_tree()
    tree.task_id, tree.seed = 0, 0

    async def judge() -> int | None:
        envs = LocalEnvs()
        try:
            return await expert_first_error(envs, tree, actions)
        finally:
            await envs.aclose()

    assert asyncio.run(judge()) == error


def test_leaf_path_properties():
    tree = hand_tree()
    path = LeafPath(tree, (0, 1, 5, 6))
    assert (path.steps, path.score, path.leaf.id) == (3, 0.0, 6)


class LeftIsBad(Policy):
    """A judge that calls every ``move left`` step Bad and the rest Good, chattily."""

    name = "left-is-bad"

    def __init__(self) -> None:
        self.prompts: list[list[Message]] = []

    async def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tools: Sequence[Tools | None] | None = None,
    ) -> list[list[Completion]]:
        self.prompts += [list(c) for c in conversations]
        return [
            [
                Completion(
                    "Bad, it goes left." if "action: move left" in c[-1]["content"] else "Good"
                )
            ]
            for c in conversations
        ]


def test_actor_judge_asks_once_per_step_in_one_call():
    tree = hand_tree()
    bad = [pair(tree, 3, 6).bad, pair(tree, 3, 4).bad]
    judge = LeftIsBad()
    verdicts = asyncio.run(actor_judge(judge, bad))
    assert verdicts == [["good", "bad", "bad"], ["good", "bad"]]
    assert [first_bad(v) for v in verdicts] == [2, 2]
    assert len(judge.prompts) == 5
    prompt = judge.prompts[1][-1]["content"]  # path 6, step 2
    assert "Task:\no0" in prompt and "Actions before step 2: move up" in prompt
    assert "Before step 2:\no1" in prompt and "Result:\no5" in prompt
    assert "Walk the maze." in judge.prompts[1][0]["content"]
    judge = LeftIsBad()
    verdicts = asyncio.run(actor_judge(judge, bad, after=[1, 0]))  # path 6 shares step 1
    assert verdicts == [["uncertain", "bad", "bad"], ["good", "bad"]] and len(judge.prompts) == 4


def test_actor_judge_with_the_tiny_model():
    pytest.importorskip("torch")
    from palaestra.agents.transformers_policy import TransformersPolicy

    tree = hand_tree()
    verdicts = asyncio.run(actor_judge(TransformersPolicy("tiny"), [pair(tree, 3, 6).bad]))
    assert len(verdicts[0]) == 3 and set(verdicts[0]) <= set(VERDICTS)


def test_agent_r_data_with_the_actor_judge():
    tree = hand_tree()
    data = asyncio.run(agent_r_data([tree], LeftIsBad(), alpha=0.5, beta=0.2))
    assert [(p.good.nodes[-1], p.bad.nodes[-1]) for p in data.pairs] == [(3, 4), (3, 6)]
    assert data.errors == [2, 2] and data.splices == [2, 2]
    assert data.mean_steps_before_error == 1.0
    assert len(data.revisions) == 2 and all(t.spliced for t in data.revisions)
    assert [t.actions for t in data.good] == [["move up", "move right"]]
    assert data.skipped == 0


def test_the_revision_turn_parses_in_the_json_format_too():
    from palaestra.agents.formats import get_format
    from palaestra.agents.rollout import RolloutConfig

    tree = hand_tree()
    tree.rollout = RolloutConfig(format="json")
    t = revision_trajectory(pair(tree, 3, 4), None, reflection="I went the wrong way.")
    revision = next(m for m in t.messages if m["loss"])["content"]
    parsed = get_format("json").parse(revision)
    assert (parsed.action, parsed.thought) == ("move up", "I went the wrong way.")
