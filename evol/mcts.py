"""Monte Carlo tree search over forked envs: the search half of Agent-R.

One tree per task. Each iteration of a tree:

1. **Select**: from the root, go to the child with the highest UCT score
   ``Q + c * sqrt(ln N_parent / N)`` (``Q`` = mean backed-up score), children
   never visited first, skipping *exhausted* subtrees (a finished node, or an
   expanded node whose children are all exhausted), down to a node not yet
   expanded.
2. **Expand**: ask the policy for ``k`` replies to that node's prompt in one
   ``generate(n=k)`` call, keep one per distinct parsed action (an action some
   child already has is dropped), and make a child for each: the node's env is
   forked (:meth:`~palaestra.agents.env_pool.EpisodeEnv.fork`) once per child
   but the last, which takes the node's env itself, and each child steps its own.
3. **Simulate**: from every new child, play on with the policy (one reply per
   turn) until the episode ends or the depth limit; the nodes played are added to
   the tree, so every leaf is a finished episode (or one cut at the depth limit).
4. **Back up**: each leaf's score (the env's final ``score``; 0 when cut at the
   depth limit or by the context) is added to the value of every node on its path,
   and each of them gains one visit. A node's visits are therefore the number of
   leaves below it, and the root's is the number of leaves of the tree.

Envs: a node not yet expanded and not finished keeps an open env (a fork made as
the simulation passed it), so it can be expanded later without replaying from
reset; expanding hands that env to a child, and a finished leaf closes its own.
At most ``simulations x max_depth`` envs are open per tree; all are closed when
its search ends, whatever happens. Where an env's ``capacity`` of open episodes
is reached, a fork is refused (``CapacityError``): an expansion then makes only
the children it could fork for, a simulation plays on with the node's own env, and
such a node, if expanded later, is replayed from reset into a newly opened episode
(which waits for a free slot: with many trees of a capacity-bound env, keep
``concurrency`` low enough that the trees do not hold every slot between them).

Batching: many trees are searched at once (``concurrency``, one coroutine per
tree, plus one per running simulation), and every reply they wait for goes
through the rollout engine's batcher, so replies are generated in shared
``generate`` calls (one per ``n`` asked: expansions ask ``k``, simulations 1).

Prompts are built as in the rollout engine (:func:`~palaestra.agents.rollout.prompt_window`
with the :class:`~palaestra.agents.rollout.RolloutConfig`'s ``history`` and
``system_prompt``, oldest turns dropped to fit the model's context), so a tree's
paths are episodes the model could have played, and train as such.

Policies: any model :class:`~palaestra.agents.policy.Policy` (``TransformersPolicy``,
``OpenAIPolicy`` against ``palaestra serve-policy`` or vLLM, ``VLLMPolicy``).
Env policies (the expert and random baselines) sample no replies, so they cannot
search and are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import palaestra
from palaestra.agents.env_pool import EnvPool, EpisodeEnv
from palaestra.agents.formats import Format, ParsedReply, get_format
from palaestra.agents.policy import Completion, Message, Policy
from palaestra.agents.rollout import (
    EpisodeSpec,
    RolloutConfig,
    RolloutStats,
    _Batcher,
    derive_seed,
    prompt_window,
)
from palaestra.envs import TaskId
from palaestra.errors import CapacityError
from palaestra.files import atomic_path

__all__ = [
    "MCTS",
    "MCTSConfig",
    "Node",
    "SearchStats",
    "Tree",
    "load_trees",
    "save_trees",
    "select",
    "uct_score",
]


@dataclass(frozen=True)
class MCTSConfig:
    """How each tree is searched (how episodes are played is the ``RolloutConfig``'s).

    Attributes:
        k: Replies sampled per expansion (children made: the distinct actions among them).
        temperature: Sampling temperature of expansions and simulations (the
            ``RolloutConfig``'s temperature is not used by the search).
        c: UCT exploration constant.
        simulations: Iterations (select, expand, simulate, back up) per tree; fewer
            when the whole tree is exhausted first.
        max_depth: Steps from the root after which a path is cut (a leaf with
            ``end="depth"`` and score 0); the env's ``max_steps`` and the rollout's
            ``max_turns`` cut too. The default leaves room for a 5x5 maze's
            longest possible shortest path (48 moves) and some detours.
        concurrency: Trees searched at once.
    """

    k: int = 4
    temperature: float = 1.0
    c: float = 0.25
    simulations: int = 8
    max_depth: int = 64
    concurrency: int = 16

    def __post_init__(self) -> None:
        for name in ("k", "simulations", "max_depth", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"MCTSConfig.{name} must be >= 1, not {getattr(self, name)}")
        if self.c < 0 or self.temperature < 0:
            raise ValueError("MCTSConfig.c and MCTSConfig.temperature must be >= 0")


@dataclass
class Node:
    """One state of a tree: the turn that led to it and its search statistics.

    The conversation up to a node is the tree's system prompt, the root's
    observation, then each node's ``reply`` (assistant) and ``observation`` (user)
    down the path (:meth:`Tree.messages`).

    Attributes:
        id: Index in :attr:`Tree.nodes` (the root is 0).
        parent: The parent's id (``None`` for the root).
        depth: Steps from the root.
        reply: The policy's reply that led here (``None`` for the root).
        action: The action parsed from it and sent to the env (``""`` when unparsable).
        observation: The user message that followed: the env's observation, after
            the format error when the reply was unparsable (as the rollout words it).
        reward: The env's reward for the step.
        end: ``""`` while the episode goes on; ``"terminated"``/``"truncated"`` when the
            env ended it, ``"depth"`` when cut at the depth limit, ``"context"`` when
            the prompt no longer fits the model.
        success: The env's ``success`` on the final step.
        score: The env's final ``score`` (0 unless ``end`` is ``"terminated"`` or
            ``"truncated"``): what is backed up from this leaf.
        visits: Leaves below (or at) this node whose score was backed up through it.
        value: The sum of those scores.
        children: Ids of the children, in order of creation.
        expanded: Whether ``k`` replies were sampled here.
        kind: How it was made: ``"root"``, ``"expansion"``, ``"simulation"`` or
            ``"alternative"`` (an env action that :meth:`MCTS.repair` tried where the
            model's replies brought none new).
        invalid: The env rejected the action (a format error included).
    """

    id: int
    parent: int | None
    depth: int
    reply: str | None = None
    action: str | None = None
    observation: str = ""
    reward: float = 0.0
    end: str = ""
    success: bool = False
    score: float = 0.0
    visits: int = 0
    value: float = 0.0
    children: list[int] = field(default_factory=list)
    expanded: bool = False
    kind: str = "root"
    invalid: bool = False

    @property
    def done(self) -> bool:
        """The env ended the episode here."""
        return self.end in ("terminated", "truncated")

    @property
    def finished(self) -> bool:
        """No step follows this node (``end`` is set)."""
        return bool(self.end)

    @property
    def q(self) -> float:
        """Mean backed-up score (0 before any visit)."""
        return self.value / self.visits if self.visits else 0.0


def uct_score(child: Node, parent_visits: int, c: float) -> float:
    """``Q + c * sqrt(ln N_parent / N)``; infinite for a child never visited."""
    if child.visits == 0:
        return math.inf
    return child.q + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select(tree: Tree, c: float) -> Node:
    """The node to expand next: down the UCT choices to one neither expanded nor exhausted.

    At each expanded node, the child with the highest :func:`uct_score` among those
    not exhausted (the first on a tie, in order of creation).

    Raises:
        ValueError: The whole tree is exhausted.
    """
    node = tree.root
    if tree.exhausted(node):
        raise ValueError("the tree is exhausted: nothing is left to expand")
    while node.expanded:
        parent = node
        open_children = [
            tree.nodes[i] for i in parent.children if not tree.exhausted(tree.nodes[i])
        ]
        node = max(open_children, key=lambda n: uct_score(n, parent.visits, c))
    return node


@dataclass
class Tree:
    """The search tree of one task.

    Attributes:
        env_id: The env.
        task_id: The task.
        split: The split it comes from.
        sample: Index among several trees of one task.
        seed: The env's reset seed.
        model: The policy's name.
        config: The search settings, ``max_depth`` as applied (the env's
            ``max_steps`` and the rollout's ``max_turns`` may lower it).
        rollout: How turns were played (format, history, max_tokens, system prompt, seed).
        system: The system prompt (env instruction and format rules), recorded
            whether or not ``rollout.system_prompt`` sent it.
        instruction: The env's instruction (the task-independent part of the system prompt).
        nodes: All nodes; ``nodes[0]`` is the root, parents come before children.
        timings: Seconds: ``total``.
        env_version: The env id and palaestra version.
    """

    env_id: str
    task_id: TaskId
    split: str | None
    sample: int
    seed: int
    model: str
    config: MCTSConfig
    rollout: RolloutConfig
    system: str
    instruction: str = ""
    nodes: list[Node] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    env_version: str = ""

    @property
    def root(self) -> Node:
        """The first state."""
        return self.nodes[0]

    def path(self, node_id: int) -> list[Node]:
        """The nodes from the root down to ``node_id``, both included."""
        out = []
        node: Node | None = self.nodes[node_id]
        while node is not None:
            out.append(node)
            node = None if node.parent is None else self.nodes[node.parent]
        return out[::-1]

    def leaves(self) -> list[Node]:
        """Nodes without children, in id order."""
        return [n for n in self.nodes if not n.children]

    def messages(self, node_id: int) -> list[Message]:
        """The conversation up to ``node_id``, as the rollout engine records it.

        The system prompt and the root observation, then each reply (``loss``
        True) and the observation after it (``loss`` False); the observation after
        a step that ended the episode is left out, as in a rollout's trajectory.
        """
        path = self.path(node_id)
        out: list[Message] = [
            {"role": "system", "content": self.system, "loss": False},
            {"role": "user", "content": path[0].observation, "loss": False},
        ]
        for node in path[1:]:
            out.append({"role": "assistant", "content": node.reply, "loss": True})
            if not node.done:
                out.append({"role": "user", "content": node.observation, "loss": False})
        return out

    def exhausted(self, node: Node) -> bool:
        """Nothing left to search below ``node``: finished, or all its children exhausted."""
        if node.finished:
            return True
        return node.expanded and all(self.exhausted(self.nodes[c]) for c in node.children)

    def check(self) -> list[str]:
        """What is wrong with the tree's shape (empty when well formed).

        Checks parents and depths, that leaves are finished, and that every node's
        visits and value are the sums of its children's (a leaf: one visit, its score).
        """
        problems = []
        limit = self.config.max_depth
        for node in self.nodes:
            for c in node.children:
                child = self.nodes[c]
                if child.parent != node.id or child.depth != node.depth + 1:
                    problems.append(f"node {c}: parent/depth do not match node {node.id}")
            if node.depth > limit:
                problems.append(f"node {node.id}: depth {node.depth} over the limit {limit}")
            if not node.children:
                if not node.finished:
                    problems.append(f"leaf {node.id} is not finished")
                if node.visits != 1 or not math.isclose(node.value, node.score):
                    problems.append(f"leaf {node.id}: {node.visits} visits, value {node.value}")
            else:
                kids = [self.nodes[c] for c in node.children]
                if node.visits != sum(k.visits for k in kids) or not math.isclose(
                    node.value, sum(k.value for k in kids)
                ):
                    problems.append(f"node {node.id}: visits/value are not its children's sums")
                if len({k.action for k in kids}) != len(kids):
                    problems.append(f"node {node.id}: two children share an action")
        return problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (see :func:`save_trees`)."""
        data = asdict(self)
        data["rollout"] = self.rollout.sampling()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tree:
        """Inverse of :meth:`to_json` (unknown keys are ignored).

        Raises:
            TypeError: ``data`` is not a tree.
        """
        if not isinstance(data, dict) or "nodes" not in data:
            raise TypeError("expected a JSON object with nodes")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["config"] = MCTSConfig(**_known(MCTSConfig, data["config"]))
        values["rollout"] = RolloutConfig(**_known(RolloutConfig, data["rollout"]))
        values["nodes"] = [Node(**_known(Node, n)) for n in data["nodes"]]
        return cls(**values)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def save_trees(trees: Iterable[Tree], path: str | Path) -> Path:
    """Write trees to a JSONL file, one tree per line, atomically.

    Each line is :meth:`Tree.to_json`: ``{"env_id", "task_id", "split", "sample",
    "seed", "model", "config": {MCTSConfig fields}, "rollout": {format, temperature,
    max_tokens, max_turns, history, system_prompt, seed}, "system", "instruction", "nodes": [{"id",
    "parent", "depth", "reply", "action", "observation", "reward", "end",
    "success", "score", "visits", "value", "children", "expanded", "kind",
    "invalid"}, ...], "timings", "env_version"}``.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for tree in trees:
            f.write(json.dumps(tree.to_json(), ensure_ascii=False) + "\n")
    return path


def load_trees(path: str | Path) -> list[Tree]:
    """Read a file written by :func:`save_trees`.

    Raises:
        ValueError: A line is not a tree (the line number says which).
    """
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Tree.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(f"{path}:{number}: not a tree: {error}") from None
    return out


@dataclass
class SearchStats:
    """What a search did.

    Attributes:
        wall_s: Wall time of :meth:`MCTS.search` calls.
        trees: Trees finished.
        nodes: Nodes made (roots included).
        expansions: Nodes expanded.
        simulations: Leaves reached (= backups).
        forks: Env forks made.
        replays: Nodes replayed from reset (their env was given up at a full capacity).
        policy_calls: ``generate`` calls.
        rows: Prompts answered (each asking 1 or ``k`` replies).
        policy_s: Time the policy was busy.
        errors: Trees lost to an error.
        error_messages: One line per lost tree.
    """

    wall_s: float = 0.0
    trees: int = 0
    nodes: int = 0
    expansions: int = 0
    simulations: int = 0
    forks: int = 0
    replays: int = 0
    policy_calls: int = 0
    rows: int = 0
    policy_s: float = 0.0
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)


class MCTS:
    """Searches trees of ``policy`` in ``envs`` (see the module doc).

    Args:
        policy: A model policy (env policies are refused: they sample no replies).
        envs: Where the envs run (``LocalEnvs`` or ``RemoteEnvs``); they must fork.
        config: Search settings.
        rollout: How turns are played: ``format``, ``history``, ``system_prompt``,
            ``max_tokens``, ``max_turns`` and ``seed`` (sampling seeds derive from it).

    Example::

        policy = TransformersPolicy("tiny")
        search = MCTS(policy, LocalEnvs(), MCTSConfig(k=4), RolloutConfig(history=2))
        trees = await search.search([EpisodeSpec("palaestra/Maze-v0", 0, "train")])
        save_trees(trees, "trees.jsonl")
    """

    def __init__(
        self,
        policy: Policy,
        envs: EnvPool,
        config: MCTSConfig | None = None,
        rollout: RolloutConfig | None = None,
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"MCTS needs a model policy that samples replies, not {type(policy).__name__}"
            )
        self.policy, self.envs = policy, envs
        self.config = config or MCTSConfig()
        self.rollout = rollout or RolloutConfig()
        self.format: Format = get_format(self.rollout.format)
        self.stats = SearchStats()

    async def search(
        self,
        specs: Sequence[EpisodeSpec],
        *,
        on_tree: Callable[[Tree], None] | None = None,
        on_error: Callable[[EpisodeSpec, str], None] | None = None,
    ) -> list[Tree]:
        """Search one tree per spec; returns the finished trees in the order of ``specs``.

        Args:
            specs: The tasks (env, task, split, sample, reset seed).
            on_tree: Called with each tree as soon as it is finished.
            on_error: Called for a tree lost to an error (env, server or policy
                failure); the others go on. Its envs are closed all the same.
        """
        gate = asyncio.Semaphore(self.config.concurrency)
        results: dict[int, Tree] = {}

        async def one(index: int, spec: EpisodeSpec) -> None:
            async with gate:
                try:
                    tree = await self._tree(spec, index, batcher)
                except Exception as error:
                    message = f"{type(error).__name__}: {error}"
                    self.stats.errors += 1
                    self.stats.error_messages.append(f"{spec.key}: {message}")
                    if on_error is not None:
                        on_error(spec, message)
                    return
                results[index] = tree
                self.stats.trees += 1
                if on_tree is not None:
                    on_tree(tree)

        async with self._batching() as batcher:
            await asyncio.gather(*(one(i, spec) for i, spec in enumerate(specs)))
        return [results[i] for i in sorted(results)]

    async def repair(
        self,
        targets: Sequence[tuple[Tree, int]],
        *,
        on_error: Callable[[Tree, int, str], None] | None = None,
    ) -> list[list[Node]]:
        """Search on from chosen nodes of finished trees; returns the leaves each gained.

        Each target node (for Agent-R: the state a bad path's first error led to) is
        expanded once (``k`` replies; actions it already has a child for are
        dropped; where fewer than ``k`` new actions come, the env's other
        ``available_actions`` fill the places left, as children of kind
        ``"alternative"``: a model sure of its mistake samples it again and again)
        and every new child is played out by the policy, as in one search iteration; the
        new nodes join the tree and their leaves are backed up to its root. A
        finished tree keeps no env open, so the node is replayed from reset first.
        A finished target (a leaf) gains nothing. Targets of one tree are searched
        one after another, in order; different trees at once.

        Args:
            targets: ``(tree, node id)`` pairs; a node named more than once is searched
                once, and its leaves are returned for each mention.
            on_error: Called with the tree, node id and message of a target lost to
                an error (env, server or policy); the others go on.
        """
        by_tree: dict[int, list[int]] = {}
        trees: dict[int, Tree] = {}
        for tree, node_id in targets:
            nodes = by_tree.setdefault(id(tree), [])
            if node_id not in nodes:
                nodes.append(node_id)
            trees[id(tree)] = tree
        gained: dict[tuple[int, int], list[Node]] = {}
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one_tree(key: int, batcher: _Batcher) -> None:
            tree = trees[key]
            async with gate:
                for node_id in by_tree[key]:
                    try:
                        leaves = await self._search_on(tree, tree.nodes[node_id], batcher)
                    except Exception as error:
                        message = f"{type(error).__name__}: {error}"
                        self.stats.errors += 1
                        self.stats.error_messages.append(f"{tree.task_id} #{node_id}: {message}")
                        if on_error is not None:
                            on_error(tree, node_id, message)
                        leaves = []
                    gained[(key, node_id)] = leaves

        async with self._batching() as batcher:
            await asyncio.gather(*(one_tree(key, batcher) for key in by_tree))
        return [gained.get((id(tree), node_id), []) for tree, node_id in targets]

    @contextlib.asynccontextmanager
    async def _batching(self) -> AsyncIterator[_Batcher]:
        """A batcher for one search call; its policy use and wall time go into ``stats``."""
        sampling = replace(self.rollout, temperature=self.config.temperature)
        rollout_stats = RolloutStats()
        batcher = _Batcher(self.policy, sampling, self.format.stop, rollout_stats)
        started = time.perf_counter()
        try:
            yield batcher
        finally:
            await batcher.aclose()
            self.stats.wall_s += time.perf_counter() - started
            self.stats.policy_calls += rollout_stats.calls
            self.stats.rows += rollout_stats.rows
            self.stats.policy_s += rollout_stats.policy_s

    async def _search_on(self, tree: Tree, node: Node, batcher: _Batcher) -> list[Node]:
        """One iteration at ``node``: expand it, play out its new children, back them up."""
        if node.finished:
            return []
        envs: dict[int, EpisodeEnv] = {}
        batcher.active += 1
        try:
            children = await self._expand(tree, node, envs, batcher, fill=True)
            if not children:
                return []
            leaves = await self._simulate_all(tree, children, envs, batcher)
            for leaf in leaves:
                self._backup(tree, leaf)
            return leaves
        finally:
            batcher.finished()
            opened = list(envs.values())
            envs.clear()
            await asyncio.gather(*(e.close() for e in opened), return_exceptions=True)

    # -- one tree ----------------------------------------------------------------------------

    async def _tree(self, spec: EpisodeSpec, index: int, batcher: _Batcher) -> Tree:
        started = time.perf_counter()
        info = await self.envs.spec(spec.env_id)
        limit = min(self.config.max_depth, info.max_steps, self.rollout.max_turns or info.max_steps)
        tree = Tree(
            env_id=spec.env_id,
            task_id=spec.task_id,
            split=spec.split,
            sample=spec.sample,
            seed=spec.seed,
            model=self.policy.name,
            config=replace(self.config, max_depth=limit),
            rollout=self.rollout,
            system=self.format.system_prompt(info.instruction),
            instruction=info.instruction,
            env_version=f"{spec.env_id} (palaestra {palaestra.__version__})",
        )
        envs: dict[int, EpisodeEnv] = {}  # the open env of each node that may be expanded
        env = await self.envs.open(spec.env_id, spec.task_id, spec.seed, index)
        envs[0] = env
        tree.nodes.append(
            Node(0, None, 0, observation=self.format.observation_message(env.observation))
        )
        self.stats.nodes += 1
        batcher.active += 1
        try:
            for _ in range(self.config.simulations):
                if tree.exhausted(tree.root):
                    break
                node = select(tree, self.config.c)
                children = await self._expand(tree, node, envs, batcher)
                if not children:
                    continue  # every sample repeated an existing child's action
                leaves = await self._simulate_all(tree, children, envs, batcher)
                for leaf in leaves:
                    self._backup(tree, leaf)
        finally:
            batcher.finished()
            opened = list(envs.values())
            envs.clear()
            await asyncio.gather(*(e.close() for e in opened), return_exceptions=True)
        tree.timings = {"total": time.perf_counter() - started}
        return tree

    async def _expand(
        self,
        tree: Tree,
        node: Node,
        envs: dict[int, EpisodeEnv],
        batcher: _Batcher,
        fill: bool = False,
    ) -> list[Node]:
        """Sample ``k`` replies at ``node``; a child per new distinct action.

        With ``fill``, where fewer than ``k`` replies bring a new action, the env's
        other ``available_actions`` (in a seeded order) fill the places left, as
        children of kind ``"alternative"``.
        """
        prompt = self._prompt(tree, node)
        if prompt is None:
            await self._finish(node, "context", envs)
            return []
        replies = await batcher.submit_n(prompt, self.config.k)
        self.stats.expansions += 1
        node.expanded = True
        seen = {tree.nodes[c].action for c in node.children}
        fresh: list[tuple[Completion, ParsedReply]] = []
        for reply in replies:
            parsed = self.format.parse(reply)
            action = parsed.action or ""
            if action not in seen:
                seen.add(action)
                fresh.append((reply, parsed))
        env = envs.pop(node.id, None) or await self._replay(tree, node)
        sampled = len(fresh)
        if fill and sampled < self.config.k:
            others = [a for a in env.info.get("available_actions") or [] if a not in seen]
            random.Random(
                derive_seed(self.rollout.seed or 0, "alternatives", str(tree.task_id), node.id)
            ).shuffle(others)
            for action in others[: self.config.k - sampled]:
                text = self.format.render(action)
                fresh.append((Completion(text), self.format.parse(text)))
        if not fresh:
            await env.close()
            return []
        try:
            forks = await self._forks(env, len(fresh) - 1, partial=True)
        except BaseException:
            await env.close()
            raise
        fresh = fresh[: len(forks) + 1]  # fewer children where the env's capacity is reached
        # Children are made in reply order, so ids do not depend on which step returns first.
        stepped = await asyncio.gather(
            *(
                self._step(e, reply, parsed)
                for e, (reply, parsed) in zip([*forks, env], fresh, strict=True)
            ),
            return_exceptions=True,
        )
        errors = [s for s in stepped if isinstance(s, BaseException)]
        if errors:
            await asyncio.gather(*(e.close() for e in [*forks, env]), return_exceptions=True)
            raise errors[0]
        kinds = ["expansion"] * sampled + ["alternative"] * (len(fresh) - sampled)
        return [
            await self._add(tree, node, e, reply, parsed, step, kind, envs)
            for e, (reply, parsed), step, kind in zip(
                [*forks, env], fresh, stepped, kinds[: len(fresh)], strict=True
            )
        ]

    async def _simulate_all(
        self, tree: Tree, children: list[Node], envs: dict[int, EpisodeEnv], batcher: _Batcher
    ) -> list[Node]:
        """Simulate from every child at once; the batcher counts each as a waiting line."""
        batcher.active += len(children) - 1  # the tree's own line waits for them

        async def line(child: Node) -> Node:
            try:
                return await self._simulate(tree, child, envs, batcher)
            finally:
                batcher.finished()

        try:
            # Every line runs to its end before an error is raised, so none still
            # uses an env that the tree then closes.
            leaves = await asyncio.gather(*(line(c) for c in children), return_exceptions=True)
        finally:
            batcher.active += 1
        for leaf in leaves:
            if isinstance(leaf, BaseException):
                raise leaf
        return [leaf for leaf in leaves if isinstance(leaf, Node)]

    async def _simulate(
        self, tree: Tree, node: Node, envs: dict[int, EpisodeEnv], batcher: _Batcher
    ) -> Node:
        """Play on from ``node`` to a finished leaf; ``node`` keeps its env, the play forks it."""
        while not node.finished:
            prompt = self._prompt(tree, node)
            if prompt is None:
                await self._finish(node, "context", envs)
                break
            [reply] = await batcher.submit_n(prompt, 1)
            parsed = self.format.parse(reply)
            try:
                [env] = await self._forks(envs[node.id], 1)
            except CapacityError:
                # The env's capacity is held by this search's open nodes: play on with
                # the node's own env; the node is replayed from reset if expanded later.
                env = envs.pop(node.id)
            try:
                step = await self._step(env, reply, parsed)
            except BaseException:
                await env.close()
                raise
            node = await self._add(tree, node, env, reply, parsed, step, "simulation", envs)
        self.stats.simulations += 1
        return node

    async def _replay(self, tree: Tree, node: Node) -> EpisodeEnv:
        """A new episode stepped to ``node`` (for a node whose env was given up)."""
        env = await self.envs.open(tree.env_id, tree.task_id, tree.seed, tree.sample)
        self.stats.replays += 1
        try:
            for n in tree.path(node.id)[1:]:
                await env.step(n.action or "")
        except BaseException:
            await env.close()
            raise
        return env

    async def _forks(self, env: EpisodeEnv, count: int, partial: bool = False) -> list[EpisodeEnv]:
        """``count`` forks of ``env``; with ``partial``, as many as the env's capacity allows."""
        forks: list[EpisodeEnv] = []
        try:
            for _ in range(count):
                forks.append(await env.fork())
                self.stats.forks += 1
        except CapacityError:
            if not partial:
                await asyncio.gather(*(f.close() for f in forks), return_exceptions=True)
                raise
        except BaseException:
            await asyncio.gather(*(f.close() for f in forks), return_exceptions=True)
            raise
        return forks

    @staticmethod
    async def _step(env: EpisodeEnv, reply: Completion, parsed: ParsedReply) -> Any:
        return await env.step(parsed.action if parsed.action is not None else "")

    async def _add(
        self,
        tree: Tree,
        parent: Node,
        env: EpisodeEnv,
        reply: Completion,
        parsed: ParsedReply,
        step: Any,
        kind: str,
        envs: dict[int, EpisodeEnv],
    ) -> Node:
        """Record a stepped child; keep its env if it may be expanded, else close it."""
        node = Node(
            id=len(tree.nodes),
            parent=parent.id,
            depth=parent.depth + 1,
            reply=str(reply),
            action=parsed.action if parsed.action is not None else "",
            observation=self.format.observation_message(step.observation, parsed.error),
            reward=float(step.reward),
            kind=kind,
            invalid=bool(step.info.get("invalid_action")) or parsed.action is None,
        )
        if step.terminated or step.truncated:
            node.end = "terminated" if step.terminated else "truncated"
            node.success = bool(step.info.get("success", False))
            node.score = float(step.info.get("score", 0.0))
        elif node.depth >= tree.config.max_depth:
            node.end = "depth"
        tree.nodes.append(node)
        parent.children.append(node.id)
        self.stats.nodes += 1
        if node.finished:
            await env.close()  # a leaf's env is of no further use
        else:
            envs[node.id] = env
        return node

    async def _finish(self, node: Node, end: str, envs: dict[int, EpisodeEnv]) -> None:
        node.end = end
        env = envs.pop(node.id, None)
        if env is not None:
            await env.close()

    @staticmethod
    def _backup(tree: Tree, leaf: Node) -> None:
        for node in tree.path(leaf.id):
            node.visits += 1
            node.value += leaf.score

    def _prompt(self, tree: Tree, node: Node) -> list[Message] | None:
        """The prompt at ``node``: the newest turns that fit (as the rollout engine builds it)."""
        messages = tree.messages(node.id)
        turns_before = (len(messages) - 2) // 2
        keep = turns_before if self.rollout.history is None else self.rollout.history
        keep = min(keep, turns_before)
        limit = self.policy.context_length
        while keep >= 0:
            prompt = prompt_window(messages, keep, system_prompt=self.rollout.system_prompt)
            if limit is None or self.policy.count_tokens(prompt) + self.rollout.max_tokens <= limit:
                return prompt
            keep -= 1
        return None
