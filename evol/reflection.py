"""From search trees to Agent-R training data: path pairs, the first error, revision trajectories.

* :func:`leaf_paths` lists every root-to-leaf path of a tree (each a finished
  episode, or one cut at the depth limit); :func:`path_pairs` pairs a good path
  with a bad one of the same tree (score gap over ``beta``, good score at least
  ``alpha``); :func:`good_paths` keeps the good ones alone. Both cap their count
  per tree and choose with a seed of their own per tree, so the choice does not
  depend on the order trees come in.
* The first error of a bad path, by two judges: :func:`actor_judge` asks the
  model itself (Good / Bad / Uncertain per step); :func:`expert_judge` replays the
  path and asks the env's expert how long the rest of the task takes after each
  step (in a maze: the first step off a shortest path). :func:`judge_agreement`
  says how often they choose the same splice step.
* :func:`revision_trajectory` splices a pair at its first error into a
  :class:`~palaestra.agents.trajectory.Trajectory` (``spliced=True``), as Agent-R
  does: the good path goes on from where the two paths parted, which is not the
  state the bad path's error left (in a maze, the position after a wrong move).
  :func:`repaired_pair` and :func:`repair_trajectory` make the state-consistent
  kind: after :meth:`~palaestra.evol.mcts.MCTS.repair` searched on from the bad
  path's error, the good path is one the model found from that very state.

How the revision turn is written. The bad path's messages up to and including the
first error's observation (``loss`` False) come first; then one assistant turn whose
*thought* is the reflection and whose *action* is the good path's first own action
(``Format.render(action, thought=reflection)``, ``loss`` True; in ReAct: ``Thought:
I realize my approach was flawed. I need to revise it.`` and ``Action: move up`` on
the next line), then the good path's observations and replies from there on (replies
``loss`` True). The reflection is the thought of the first good action rather than a
turn of its own, for two reasons. Every turn a model emits is one env step: an
action-less reflection turn does not parse, so at test time it would cost a step and
be answered with a format error that the training data never showed, where the
merged turn parses and is exactly what the model should emit when it sees its
mistake. And each trained reply is cut into its own example with the rollout's
``history`` (:func:`~palaestra.evol.examples.turn_examples`): the merged turn's
prompt is the bad prefix with the error in view, which is the situation the
reflection must learn to answer. So there is no separate acknowledgement message
from the env side: the user message after the revision turn is the env's answer to
the good action.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from palaestra.agents.env_pool import EnvPool, EpisodeEnv
from palaestra.agents.formats import get_format
from palaestra.agents.policy import Message, Policy
from palaestra.agents.rollout import derive_seed
from palaestra.agents.trajectory import Trajectory
from palaestra.errors import NotSupportedError
from palaestra.evol.mcts import Node, Tree

__all__ = [
    "REFLECTIONS",
    "VERDICTS",
    "AgentRData",
    "Agreement",
    "LeafPath",
    "PathPair",
    "actor_judge",
    "agent_r_data",
    "expert_first_error",
    "expert_judge",
    "first_bad",
    "good_paths",
    "judge_agreement",
    "leaf_paths",
    "parse_verdict",
    "path_pairs",
    "path_trajectory",
    "repair_trajectory",
    "repaired_pair",
    "revision_trajectory",
    "splice_step",
]

REFLECTIONS: tuple[str, ...] = (
    "I realize my approach was flawed. I need to revise it.",
    "I took the wrong action. I should go back to a better plan.",
    "That was a mistake. Let me correct my course.",
    "My previous steps were not leading to the goal. I will change my approach.",
    "I went the wrong way. I need to reconsider my moves.",
    "This is not working. Let me step back and try a different path.",
    "I made an error earlier. I should fix it now.",
    "Looking back, my last moves were wrong. I will revise my plan.",
    "I am not making progress. I need a different strategy.",
    "I realize I chose poorly. Let me think again and act differently.",
    "My earlier decision was a mistake. I will take a better action.",
    "I should not continue like this. Let me revise what I am doing.",
)
"""The reflection thoughts a revision turn draws from (seeded, per pair)."""


@dataclass(frozen=True)
class LeafPath:
    """A root-to-leaf path of a tree.

    Attributes:
        tree: The tree.
        nodes: The node ids from the root (0) to the leaf.
    """

    tree: Tree
    nodes: tuple[int, ...]

    @property
    def leaf(self) -> Node:
        """The last node."""
        return self.tree.nodes[self.nodes[-1]]

    @property
    def score(self) -> float:
        """The leaf's score (0 when cut at the depth limit)."""
        return self.leaf.score

    @property
    def steps(self) -> int:
        """Actions taken."""
        return len(self.nodes) - 1

    @property
    def actions(self) -> list[str]:
        """The actions, in order."""
        return [self.tree.nodes[i].action or "" for i in self.nodes[1:]]


@dataclass(frozen=True)
class PathPair:
    """A good and a bad path of one tree."""

    good: LeafPath
    bad: LeafPath

    @property
    def divergence(self) -> int:
        """Steps the two paths share before they part (the depth of their last common node)."""
        shared = 0
        for a, b in zip(self.good.nodes, self.bad.nodes, strict=False):
            if a != b:
                break
            shared += 1
        return shared - 1


def leaf_paths(tree: Tree) -> list[LeafPath]:
    """Every root-to-leaf path of ``tree``, in leaf id order."""
    return [LeafPath(tree, tuple(n.id for n in tree.path(leaf.id))) for leaf in tree.leaves()]


def _rng(tree: Tree, seed: int, purpose: str) -> random.Random:
    return random.Random(derive_seed(seed, purpose, tree.env_id, str(tree.task_id), tree.sample))


def path_pairs(
    tree: Tree, *, alpha: float = 0.5, beta: float = 0.2, cap: int | None = 4, seed: int = 0
) -> list[PathPair]:
    """Pairs (good, bad) of ``tree``'s leaf paths.

    Args:
        tree: The tree.
        alpha: Least score of the good path.
        beta: The good path's score must exceed the bad one's by more than this.
        cap: Most pairs kept for this tree (``None``: all), chosen at random.
        seed: Seeds that choice (mixed with the tree's env, task and sample).

    Returns:
        The pairs, in the order drawn.
    """
    paths = leaf_paths(tree)
    pairs = [
        PathPair(good, bad)
        for good in paths
        if good.score >= alpha
        for bad in paths
        if good.score - bad.score > beta
    ]
    if cap is not None and len(pairs) > cap:
        pairs = _rng(tree, seed, "pairs").sample(pairs, cap)
    return pairs


def good_paths(
    tree: Tree, *, alpha: float = 0.5, cap: int | None = 1, seed: int = 0
) -> list[LeafPath]:
    """Leaf paths of ``tree`` scoring at least ``alpha``; at most ``cap``, chosen at random."""
    good = [p for p in leaf_paths(tree) if p.score >= alpha]
    if cap is not None and len(good) > cap:
        good = _rng(tree, seed, "good").sample(good, cap)
    return good


_ENDS = {"depth": "max_turns"}  # a node's end -> a trajectory's


def _trajectory(tree: Tree, leaf: Node, messages: list[Message], actions: list[str]) -> Trajectory:
    nodes = tree.path(leaf.id)
    return Trajectory(
        env_id=tree.env_id,
        task_id=tree.task_id,
        split=tree.split,
        sample=tree.sample,
        seed=tree.seed,
        messages=messages,
        actions=actions,
        success=leaf.success,
        score=leaf.score,
        turns=len(actions),
        end=_ENDS.get(leaf.end, leaf.end),
        invalid_actions=sum(n.invalid for n in nodes[1:]),
        model=tree.model,
        env_version=tree.env_version,
    )


def path_trajectory(path: LeafPath) -> Trajectory:
    """A leaf path as the trajectory the rollout engine would have recorded (replies trained)."""
    tree = path.tree
    t = _trajectory(tree, path.leaf, tree.messages(path.leaf.id), path.actions)
    t.rewards = [tree.nodes[i].reward for i in path.nodes[1:]]
    return t


# -- the first error --------------------------------------------------------------------

VERDICTS = ("good", "bad", "uncertain")
"""What a judge may answer of a step."""

_JUDGE_RULES = (
    "You review the steps of an agent doing a task in a text environment. "
    "For the step shown last, answer with one word: Good if it brings the agent "
    "closer to finishing the task, Bad if it is a mistake, Uncertain if you cannot tell."
)


def parse_verdict(reply: str) -> str:
    """The verdict in a judge's reply: its first word if that is one, else ``"uncertain"``."""
    words = re.findall(r"[A-Za-z]+", reply)
    first = words[0].lower() if words else ""
    return first if first in VERDICTS else "uncertain"


def _judge_prompt(tree: Tree, path: LeafPath, step: int) -> list[Message]:
    before = tree.nodes[path.nodes[step - 1]]
    node = tree.nodes[path.nodes[step]]
    earlier = ", ".join(path.actions[: step - 1]) or "none"
    return [
        {"role": "system", "content": f"{_JUDGE_RULES}\n\nThe environment:\n{tree.instruction}"},
        {
            "role": "user",
            "content": (
                f"Task:\n{tree.root.observation}\n\n"
                f"Actions before step {step}: {earlier}\n\n"
                f"Before step {step}:\n{before.observation}\n\n"
                f"Step {step} action: {node.action}\n\n"
                f"Result:\n{node.observation}\n\n"
                f"Was step {step} Good, Bad or Uncertain?"
            ),
        },
    ]


async def actor_judge(
    policy: Policy,
    paths: Sequence[LeafPath],
    *,
    after: Sequence[int] | None = None,
    max_tokens: int = 8,
    seed: int = 0,
) -> list[list[str]]:
    """The model's verdict on every step of each path, in one batched ``generate`` call.

    Each step is one prompt: the env's instruction, the task (the first
    observation), the actions before the step, the observation before it, the
    action and the observation after it; the reply's first word is the verdict
    (:func:`parse_verdict`), greedy. A prompt that does not fit the model's context
    is not asked and counts as uncertain.

    Args:
        policy: The actor (the model being trained).
        paths: The bad paths to judge.
        after: Per path, the steps not to ask about (its first ``after[i]`` steps,
            e.g. those a pair shares, where :func:`splice_step` never splices);
            they count as uncertain. ``None``: ask about every step.
        max_tokens: Longest verdict reply.
        seed: Passed to the policy.

    Returns:
        Per path, one verdict per step (``"good"``, ``"bad"`` or ``"uncertain"``).
    """
    verdicts = [["uncertain"] * p.steps for p in paths]
    asked: list[tuple[int, int]] = []
    prompts: list[list[Message]] = []
    limit = policy.context_length
    for i, path in enumerate(paths):
        for step in range(1 + (after[i] if after is not None else 0), path.steps + 1):
            prompt = _judge_prompt(path.tree, path, step)
            if limit is None or policy.count_tokens(prompt) + max_tokens <= limit:
                asked.append((i, step))
                prompts.append(prompt)
    if prompts:
        replies = await policy.generate(
            prompts, n=1, temperature=0.0, max_tokens=max_tokens, stop=("\n",), seed=seed
        )
        for (i, step), [reply] in zip(asked, replies, strict=True):
            verdicts[i][step - 1] = parse_verdict(reply)
    return verdicts


def first_bad(verdicts: Sequence[str]) -> int | None:
    """The 1-based step of the first ``"bad"`` verdict (``None``: none)."""
    return next((i + 1 for i, v in enumerate(verdicts) if v == "bad"), None)


def splice_step(pair: PathPair, first_error: int | None) -> int:
    """The bad path's step after which a revision is spliced in.

    The first error if it comes after the paths part; otherwise (no error found,
    or one on the shared prefix, which the good path made too) the bad path's
    first own step.
    """
    d = pair.divergence
    if first_error is not None and d < first_error <= pair.bad.steps:
        return first_error
    return d + 1


async def _expert_cost(env: EpisodeEnv, budget: int) -> float:
    """Steps the expert takes to finish from ``env``'s state (on a fork; inf if it fails)."""
    fork = await env.fork()
    try:
        for taken in range(1, budget + 1):
            step = await fork.step(await fork.expert_action())
            if step.terminated or step.truncated:
                return taken if step.info.get("success") else math.inf
        return math.inf
    finally:
        await fork.close()


async def expert_first_error(
    envs: EnvPool, tree: Tree, actions: Sequence[str], *, index: int = 0
) -> int | None:
    """The first step after which finishing the task takes longer, by the env's expert.

    Replays ``actions`` from the tree's task and seed; before the first and after
    each step, the expert plays a fork of the env to the end. A step is an error
    when the steps taken plus the expert's remaining ones grow (in a maze: a move
    off every shortest path, or into a wall), or when it ends the episode unsolved.

    Returns:
        The 1-based step, or ``None`` when every step kept to the expert's best.

    Raises:
        NotSupportedError: The env has no expert.
    """
    info = await envs.spec(tree.env_id)
    if "expert" not in info.capabilities:
        raise NotSupportedError(f"{tree.env_id} has no expert to judge with")
    env = await envs.open(tree.env_id, tree.task_id, tree.seed, index)
    try:
        best = await _expert_cost(env, info.max_steps)
        for step_number, action in enumerate(actions, 1):
            step = await env.step(action)
            if step.terminated or step.truncated:
                return None if step.info.get("success") else step_number
            total = step_number + await _expert_cost(env, info.max_steps - step_number)
            if total > best:
                return step_number
            best = total
        return None
    finally:
        await env.close()


async def expert_judge(envs: EnvPool, paths: Sequence[LeafPath]) -> list[int | None]:
    """:func:`expert_first_error` of each path, concurrently."""
    return list(
        await asyncio.gather(
            *(expert_first_error(envs, p.tree, p.actions, index=i) for i, p in enumerate(paths))
        )
    )


@dataclass(frozen=True)
class Agreement:
    """How often the actor and the expert choose the same splice step.

    Attributes:
        pairs: Pairs compared.
        same: Pairs where both give the same splice step.
        actor_found: Pairs where the actor judged a step after the divergence Bad.
        expert_found: Pairs where the expert found an error after the divergence.
        mean_distance: Mean absolute difference of the two splice steps.
    """

    pairs: int
    same: int
    actor_found: int
    expert_found: int
    mean_distance: float

    @property
    def rate(self) -> float:
        """``same / pairs`` (0 for no pairs)."""
        return self.same / self.pairs if self.pairs else 0.0


def judge_agreement(
    pairs: Sequence[PathPair],
    actor_errors: Sequence[int | None],
    expert_errors: Sequence[int | None],
) -> Agreement:
    """Compare the two judges' first errors as splice steps (:func:`splice_step`)."""
    same = found_a = found_e = 0
    distance = 0
    for pair, a, e in zip(pairs, actor_errors, expert_errors, strict=True):
        sa, se = splice_step(pair, a), splice_step(pair, e)
        same += sa == se
        distance += abs(sa - se)
        found_a += a is not None and a > pair.divergence
        found_e += e is not None and e > pair.divergence
    n = len(pairs)
    return Agreement(n, same, found_a, found_e, distance / n if n else 0.0)


# -- revision trajectories ----------------------------------------------------------------


def revision_trajectory(
    pair: PathPair, first_error: int | None, *, seed: int = 0, reflection: str | None = None
) -> Trajectory:
    """The bad path up to its first error, a revision turn, then the good path (see module doc).

    Args:
        pair: The good and bad paths.
        first_error: The bad path's first error (1-based step, from a judge); the
            splice is at :func:`splice_step`.
        seed: Draws the reflection from :data:`REFLECTIONS` (mixed with the tree and pair).
        reflection: Use this reflection instead of drawing one.

    Returns:
        A trajectory marked ``spliced``, scored as the good path.

    Raises:
        ValueError: The good path's first own reply had no parsable action (there
            is nothing to revise to).
    """
    return _spliced(pair, splice_step(pair, first_error), seed=seed, reflection=reflection)


def repaired_pair(pair: PathPair, splice: int, *, alpha: float, beta: float) -> PathPair | None:
    """The pair's bad path with a good path from the state its first error led to.

    A good path here is a leaf below the bad path's node at step ``splice`` (the
    node :meth:`~palaestra.evol.mcts.MCTS.repair` searched on from) other than the
    bad leaf itself, scoring at least ``alpha`` and more than ``beta`` over the bad
    path: the highest score first, then the fewest steps, then the oldest node.

    Returns:
        ``PathPair(good, bad)`` whose paths share the bad path's first ``splice``
        steps, or ``None`` where no leaf below that node qualifies.
    """
    tree, bad = pair.bad.tree, pair.bad
    start = bad.nodes[splice]
    below = [start]
    leaves: list[Node] = []
    while below:
        node = tree.nodes[below.pop()]
        below.extend(node.children)
        if node.finished and node.id != bad.nodes[-1]:
            leaves.append(node)
    fit = [n for n in leaves if n.score >= alpha and n.score - bad.score > beta]
    if not fit:
        return None
    best = min(fit, key=lambda n: (-n.score, n.depth, n.id))
    return PathPair(LeafPath(tree, tuple(n.id for n in tree.path(best.id))), bad)


def repair_trajectory(
    pair: PathPair, *, seed: int = 0, reflection: str | None = None
) -> Trajectory:
    """A state-consistent revision: the shared steps, the reflection, then the good path.

    For a pair from :func:`repaired_pair`: its paths share the bad path up to and
    including the first error, so the spliced episode is one the env really
    plays (unlike :func:`revision_trajectory`'s, whose good path goes on from where
    the paths parted while the bad path already moved on). The shared steps are
    the context (``loss`` False); the good path's first own reply carries the
    reflection as its thought (``loss`` True), as in :func:`revision_trajectory`.
    The trajectory is still marked ``spliced``: the reflection was written in.

    Raises:
        ValueError: The paths part at the root (there is no error to revise), or
            the good path's first own reply has no action.
    """
    if pair.divergence < 1:
        raise ValueError("the paths part at the root: there is no first error to revise")
    return _spliced(pair, pair.divergence, seed=seed, reflection=reflection)


def _spliced(pair: PathPair, e: int, *, seed: int, reflection: str | None) -> Trajectory:
    """The bad path's first ``e`` steps, then the good path's own steps, reflection first."""
    tree, good, bad = pair.good.tree, pair.good, pair.bad
    d = pair.divergence
    fmt = get_format(tree.rollout.format)
    if reflection is None:
        rng = random.Random(
            derive_seed(
                seed,
                "reflection",
                tree.env_id,
                str(tree.task_id),
                tree.sample,
                good.nodes[-1],
                bad.nodes[-1],
            )
        )
        reflection = rng.choice(REFLECTIONS)
    first_good = tree.nodes[good.nodes[d + 1]]
    if not first_good.action:
        raise ValueError("the good path's first own reply has no action to revise to")
    messages: list[Message] = [
        {"role": "system", "content": tree.system, "loss": False},
        {"role": "user", "content": tree.root.observation, "loss": False},
    ]
    for i in bad.nodes[1 : e + 1]:
        node = tree.nodes[i]
        # The error's observation is kept even when it ended the episode: the
        # revision answers it.
        messages.append({"role": "assistant", "content": node.reply, "loss": False})
        messages.append({"role": "user", "content": node.observation, "loss": False})
    for i in good.nodes[d + 1 :]:
        node = tree.nodes[i]
        content = fmt.render(node.action, reflection) if node is first_good else node.reply
        messages.append({"role": "assistant", "content": content, "loss": True})
        if not node.done:
            messages.append({"role": "user", "content": node.observation, "loss": False})
    actions = bad.actions[:e] + good.actions[d:]
    t = _trajectory(tree, good.leaf, messages, actions)
    t.rewards = [tree.nodes[i].reward for i in (*bad.nodes[1 : e + 1], *good.nodes[d + 1 :])]
    t.invalid_actions = sum(
        tree.nodes[i].invalid for i in (*bad.nodes[1 : e + 1], *good.nodes[d + 1 :])
    )
    t.spliced = True
    return t


# -- all of it --------------------------------------------------------------------------


@dataclass
class AgentRData:
    """One round of Agent-R data from a set of trees (see :func:`agent_r_data`).

    Attributes:
        pairs: The pairs drawn.
        errors: The judge's first error per pair (1-based step; ``None``: none found).
        splices: The splice step per pair (:func:`splice_step`).
        revisions: Revision trajectories, one per pair (less the skipped ones).
        good: Good-path trajectories.
        skipped: Pairs whose good path's first own reply had no action.
    """

    pairs: list[PathPair]
    errors: list[int | None]
    splices: list[int]
    revisions: list[Trajectory]
    good: list[Trajectory]
    skipped: int = 0

    @property
    def mean_steps_before_error(self) -> float:
        """Mean steps of the bad paths before the step spliced at (0 for no pairs)."""
        return sum(s - 1 for s in self.splices) / len(self.splices) if self.splices else 0.0


async def agent_r_data(
    trees: Sequence[Tree],
    judge: Policy | EnvPool,
    *,
    alpha: float = 0.5,
    beta: float = 0.2,
    max_pairs: int | None = 4,
    max_good: int | None = 1,
    seed: int = 0,
) -> AgentRData:
    """Pairs, first errors, revision trajectories and good trajectories from ``trees``.

    Args:
        trees: Search trees.
        judge: A model policy for the actor judge (:func:`actor_judge`), or the env
            pool for the expert judge (:func:`expert_judge`).
        alpha: Least score of a good path.
        beta: Least score gap (exclusive) of a pair.
        max_pairs: Pairs per tree (``None``: all).
        max_good: Good paths per tree (``None``: all).
        seed: Seeds the draws of pairs, good paths and reflections.
    """
    pairs = [
        p for t in trees for p in path_pairs(t, alpha=alpha, beta=beta, cap=max_pairs, seed=seed)
    ]
    bad = [p.bad for p in pairs]
    if isinstance(judge, Policy):
        # Shared steps are never spliced at: only the steps after the split are asked.
        shared = [p.divergence for p in pairs]
        verdicts = await actor_judge(judge, bad, after=shared, seed=seed)
        errors: list[int | None] = [first_bad(v) for v in verdicts]
    else:
        errors = await expert_judge(judge, bad)
    revisions, skipped = [], 0
    for pair, error in zip(pairs, errors, strict=True):
        try:
            revisions.append(revision_trajectory(pair, error, seed=seed))
        except ValueError:
            skipped += 1
    good = [
        path_trajectory(p)
        for t in trees
        for p in good_paths(t, alpha=alpha, cap=max_good, seed=seed)
    ]
    splices = [splice_step(p, e) for p, e in zip(pairs, errors, strict=True)]
    return AgentRData(pairs, errors, splices, revisions, good, skipped)
