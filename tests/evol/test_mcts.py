"""MCTS: UCT and tree JSON on hand-built trees; real searches on Maze, in-process and over HTTP."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import gymnasium
import httpx
import pytest
from hand_trees import REACT, hand_tree

import palaestra
from palaestra.agents.env_pool import EnvPool, EnvSpecInfo, EpisodeEnv, LocalEnvs, RemoteEnvs
from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig
from palaestra.envs import TaskId, register
from palaestra.envs.maze import ACTIONS, MazeEnv
from palaestra.evol.mcts import (
    MCTS,
    MCTSConfig,
    Node,
    Tree,
    load_trees,
    save_trees,
    select,
    uct_score,
)
from palaestra.evol.reflection import (
    AgentRData,
    agent_r_data,
    leaf_paths,
    path_pairs,
    revision_trajectory,
)
from palaestra.servers.protocol import Step

MAZE = "palaestra/Maze-v0"


# -- hand-built trees ---------------------------------------------------------------------


def test_uct_score():
    node = Node(1, 0, 1, visits=4, value=3.0)
    assert uct_score(node, 16, 0.25) == pytest.approx(0.75 + 0.25 * math.sqrt(math.log(16) / 4))
    assert uct_score(Node(2, 0, 1), 16, 0.25) == math.inf
    assert uct_score(node, 16, 0.0) == 0.75


def test_select_prefers_unvisited_then_uct_and_skips_exhausted_subtrees():
    tree = hand_tree()
    # Root: Q(1) + c sqrt(ln 3 / 2) = 0.5 + 0.185 beats Q(2) + c sqrt(ln 3) = 0.262;
    # below 1, leaf 3 is finished, so 5 is the node to expand.
    assert select(tree, 0.25).id == 5
    assert select(tree, 10.0).id == 2  # exploration outweighs 1's score
    tree.nodes[5].end = "depth"  # now 1 is expanded and all its children are finished
    assert tree.exhausted(tree.nodes[1]) and not tree.exhausted(tree.root)
    assert select(tree, 0.25).id == 2
    tree.nodes.append(Node(7, 0, 1, action="move left"))
    tree.root.children.append(7)
    assert select(tree, 0.25).id == 7  # never visited: first
    for n in (2, 7):
        tree.nodes[n].end = "depth"
    assert tree.exhausted(tree.root)
    with pytest.raises(ValueError, match="exhausted"):
        select(tree, 0.25)


def test_tree_check_finds_broken_visits():
    tree = hand_tree()
    assert tree.check() == []
    tree.nodes[1].visits += 1
    assert tree.check() == ["node 0: visits/value are not its children's sums",
                            "node 1: visits/value are not its children's sums"]  # fmt: skip


def test_trees_round_trip_through_jsonl(tmp_path):
    tree = hand_tree()
    path = save_trees([tree, tree], tmp_path / "trees.jsonl")
    back = load_trees(path)
    assert back == [tree, tree]
    assert back[0].messages(6) == tree.messages(6)
    assert len(path.read_text().splitlines()) == 2
    (tmp_path / "bad.jsonl").write_text('{"nodes": []}\n[1]\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_trees(tmp_path / "bad.jsonl")


def test_messages_follow_the_rollout_engine():
    tree = hand_tree()
    assert [(m["role"], m["content"][:8], m["loss"]) for m in tree.messages(3)] == [
        ("system", "SYSTEM", False), ("user", "o0", False),
        ("assistant", "Thought:", True), ("user", "o1", False),
        ("assistant", "Thought:", True),  # the final observation is not recorded
    ]  # fmt: skip
    assert tree.messages(6)[-1] == {"role": "user", "content": "o6", "loss": False}


def test_config_is_checked():
    with pytest.raises(ValueError, match="k must be"):
        MCTSConfig(k=0)
    with pytest.raises(TypeError, match="model policy"):
        MCTS(object(), LocalEnvs())  # type: ignore[arg-type]


# -- real searches ------------------------------------------------------------------------


class Counted(EpisodeEnv):
    """An episode that reports to its pool when it opens and closes (forks included)."""

    def __init__(self, pool: CountingEnvs, inner: EpisodeEnv) -> None:
        self._pool, self._inner, self._open = pool, inner, True
        self.env_id, self.task_id, self.seed = inner.env_id, inner.task_id, inner.seed
        pool.open_now += 1
        pool.opened += 1

    @property
    def observation(self) -> str:  # type: ignore[override]
        return self._inner.observation

    @property
    def info(self) -> dict:  # type: ignore[override]
        return self._inner.info

    @property
    def actions(self) -> list[str]:  # type: ignore[override]
        return self._inner.actions

    async def step(self, action: str) -> Step:
        return await self._inner.step(action)

    async def expert_action(self) -> str:
        return await self._inner.expert_action()

    async def random_action(self, seed: int) -> str:
        return await self._inner.random_action(seed)

    async def fork(self) -> EpisodeEnv:
        self._pool.forks += 1
        return Counted(self._pool, await self._inner.fork())

    async def close(self) -> None:
        if self._open:
            self._open = False
            self._pool.open_now -= 1
        await self._inner.close()


class CountingEnvs(EnvPool):
    """Any pool, counting the episodes open at any moment."""

    def __init__(self, inner: EnvPool) -> None:
        self.inner = inner
        self.open_now = self.opened = self.forks = 0

    async def spec(self, env_id: str) -> EnvSpecInfo:
        return await self.inner.spec(env_id)

    async def tasks(self, env_id: str, split: str) -> list[TaskId]:
        return await self.inner.tasks(env_id, split)

    async def open(self, env_id: str, task_id: TaskId, seed: int, index: int) -> EpisodeEnv:
        return Counted(self, await self.inner.open(env_id, task_id, seed, index))

    async def aclose(self) -> None:
        await self.inner.aclose()


class MovesPolicy(Policy):
    """A model-free policy that answers each prompt with seeded random maze moves in ReAct.

    It stands in for a trained model where a test needs trees that branch (an
    untrained tiny model's replies never parse, so its trees are chains).
    """

    name = "moves"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (prompts, n) of each call

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
        self.calls.append((len(conversations), n))
        rng = random.Random(seed)
        return [
            [Completion(REACT.render(rng.choice(ACTIONS), "go")) for _ in range(n)]
            for _ in conversations
        ]


SPECS = [EpisodeSpec(MAZE, task, "train", seed=task) for task in (0, 3, 6)]  # 5x5 mazes


def assert_well_formed(trees: list[Tree], config: MCTSConfig) -> None:
    for tree in trees:
        assert tree.check() == []
        leaves = tree.leaves()
        assert tree.root.visits == len(leaves) >= 1
        for leaf in leaves:
            assert leaf.done or leaf.depth == config.max_depth or leaf.end == "context"
            assert len(tree.messages(leaf.id)) >= 3
        assert all(n.depth <= config.max_depth for n in tree.nodes)
        assert sum(n.expanded for n in tree.nodes) <= config.simulations


def search(
    policy: Policy,
    envs: EnvPool,
    config: MCTSConfig,
    close_policy: bool = False,
    specs: Sequence[EpisodeSpec] = SPECS,
    **rollout: object,
) -> tuple:
    async def run() -> tuple:
        counting = CountingEnvs(envs)
        engine = MCTS(policy, counting, config, RolloutConfig(**rollout))
        try:
            trees = await engine.search(specs)
        finally:
            await counting.aclose()
            if close_policy:
                await policy.aclose()
        return trees, engine.stats, counting

    return asyncio.run(run())


def test_search_with_branching_replies_in_process():
    config = MCTSConfig(k=4, simulations=6, max_depth=12, c=0.25)
    policy = MovesPolicy()
    trees, stats, counting = search(policy, LocalEnvs(), config, history=2)
    assert len(trees) == 3 and stats.errors == 0
    assert_well_formed(trees, config)
    assert counting.open_now == 0 and counting.forks == stats.forks > 0
    assert any(len(n.children) > 1 for t in trees for n in t.nodes)  # it branched
    assert stats.policy_calls == len(policy.calls) < stats.rows  # trees shared calls
    assert {n for _, n in policy.calls} == {1, 4}  # expansions ask k replies in one call
    assert stats.expansions == sum(n.expanded for t in trees for n in t.nodes)
    # Every leaf's actions replay in a fresh env to the leaf's observation.
    tree = trees[0]
    for path in leaf_paths(tree)[:3]:
        env = palaestra.make(MAZE)
        env.reset(seed=tree.seed, options={"task_id": tree.task_id})
        for action in path.actions:
            observation = env.step(action)[0]
        assert REACT.observation_message(observation) == path.leaf.observation


class FailingMoves(MovesPolicy):
    """Random moves, then failures from the fifth call on (a policy server gone away)."""

    async def generate(
        self, conversations: Sequence[Sequence[Message]], **kwargs: Any
    ) -> list[list[Completion]]:
        if len(self.calls) == 4:
            raise ConnectionError("policy server gone")
        return await super().generate(conversations, **kwargs)


def test_a_failing_policy_loses_the_trees_but_leaves_no_env_open():
    config = MCTSConfig(k=4, simulations=6, max_depth=12)
    lost: list[str] = []

    async def run() -> tuple:
        counting = CountingEnvs(LocalEnvs())
        engine = MCTS(FailingMoves(), counting, config, RolloutConfig(history=1))
        trees = await engine.search(SPECS, on_error=lambda spec, message: lost.append(message))
        await counting.aclose()
        return trees, engine.stats, counting

    trees, stats, counting = asyncio.run(run())
    assert trees == [] and stats.errors == 3 and len(lost) == 3
    assert all("policy server gone" in m for m in lost)
    assert counting.opened > 3 and counting.open_now == 0


class TightMaze(MazeEnv):
    """The maze, at most three open at once in a process (a full capacity, soon)."""

    capacity = 3


TIGHT = "test/TightMaze-v0"
if TIGHT not in gymnasium.registry:
    register(TIGHT, TightMaze)


def test_a_full_capacity_gives_fewer_children_and_replays_instead_of_failing():
    config = MCTSConfig(k=4, simulations=6, max_depth=10, concurrency=1)
    specs = [EpisodeSpec(TIGHT, 0, "train")]
    trees, stats, counting = search(MovesPolicy(), LocalEnvs(), config, history=1, specs=specs)
    assert len(trees) == 1 and stats.errors == 0, stats.error_messages
    assert_well_formed(trees, config)
    assert counting.open_now == 0
    assert max(len(n.children) for n in trees[0].nodes) == 3  # k = 4, capacity 3
    assert stats.replays > 0


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    from palaestra.agents.transformers_policy import TransformersPolicy

    return TransformersPolicy("tiny")


def test_search_with_the_tiny_model_in_process(tiny):
    config = MCTSConfig(k=3, simulations=3, max_depth=3)
    started = time.perf_counter()
    trees, stats, counting = search(
        tiny, LocalEnvs(), config, history=1, max_tokens=8, system_prompt=False, specs=SPECS[:2]
    )
    assert len(trees) == 2 and stats.errors == 0, stats.error_messages
    assert_well_formed(trees, config)
    assert counting.open_now == 0
    assert all(t.model == tiny.name and t.rollout.history == 1 for t in trees)
    print(f"tiny search: {len(trees)} trees, {stats.nodes} nodes, "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip


def test_search_with_the_tiny_model_over_http(tiny, serve, tmp_path):
    config = MCTSConfig(k=2, simulations=2, max_depth=3)
    with serve([MAZE]) as url:
        trees, stats, counting = search(
            tiny, RemoteEnvs([url], transport="http"), config, history=1, max_tokens=8,
            system_prompt=False, specs=SPECS[:2],
        )  # fmt: skip
        assert httpx.get(f"{url}/health").json()["sessions"] == 0
    assert len(trees) == 2 and stats.errors == 0, stats.error_messages
    assert_well_formed(trees, config)
    assert counting.open_now == 0
    assert load_trees(save_trees(trees, tmp_path / "t.jsonl")) == trees


def test_search_with_openai_policy_against_serve_policy(tiny):
    from palaestra.agents.openai_policy import OpenAIPolicy
    from palaestra.agents.policy_server import create_policy_app
    from palaestra.servers import serve_in_thread

    config = MCTSConfig(k=2, simulations=2, max_depth=3)
    with serve_in_thread(create_policy_app(tiny)) as url:
        policy = OpenAIPolicy(url)
        trees, stats, counting = search(
            policy, LocalEnvs(), config, close_policy=True, history=1, max_tokens=8,
            system_prompt=False, specs=SPECS[:2],
        )  # fmt: skip
    assert len(trees) == 2 and stats.errors == 0, stats.error_messages
    assert_well_formed(trees, config)
    assert counting.open_now == 0 and trees[0].model == policy.name


def test_pairs_and_revisions_from_a_real_search():
    config = MCTSConfig(k=4, simulations=8, max_depth=40)
    trees, _, _ = search(MovesPolicy(), LocalEnvs(), config, history=2)
    pairs = [p for t in trees for p in path_pairs(t, alpha=1.0, cap=None)]
    assert pairs  # random moves solve some 5x5 mazes within 40 steps
    for pair in pairs:
        t = revision_trajectory(pair, None)
        assert t.spliced and t.success
        assert REACT.parse(next(m for m in t.messages if m["loss"])["content"]).ok

    async def by_expert() -> AgentRData:
        envs = LocalEnvs()
        try:
            return await agent_r_data(trees, envs, alpha=1.0, max_pairs=2)
        finally:
            await envs.aclose()

    data = asyncio.run(by_expert())
    assert 0 < len(data.pairs) <= 2 * len(trees) and len(data.revisions) == len(data.pairs)
    # A bad path did not reach the goal in 40 steps, longer than any shortest path
    # of a 5x5 maze: the expert finds an error on each (maybe on the shared prefix).
    assert all(e is not None for e in data.errors)
    pairs_splices = zip(data.pairs, data.splices, strict=True)
    assert all(p.divergence < s <= p.bad.steps for p, s in pairs_splices)


def test_repair_searches_on_from_chosen_nodes_of_finished_trees():
    config = MCTSConfig(k=4, simulations=2, max_depth=10, c=0.25)
    policy = MovesPolicy()
    trees, _, _ = search(policy, LocalEnvs(), config, history=1)

    async def run(targets: list[tuple[Tree, int]]) -> tuple:
        counting = CountingEnvs(LocalEnvs())
        engine = MCTS(policy, counting, config, RolloutConfig(history=1))
        try:
            gained = await engine.repair(targets)
        finally:
            await counting.aclose()
        return gained, engine.stats, counting

    # In each tree: a node half way down its first leaf's path, and that leaf itself.
    targets: list[tuple[Tree, int]] = []
    for tree in trees:
        path = leaf_paths(tree)[0]
        targets += [(tree, path.nodes[2]), (tree, path.nodes[-1])]
    before = {id(t): len(t.nodes) for t in trees}
    children_before = {(id(t), n): len(t.nodes[n].children) for t, n in targets}
    targets.append(targets[0])  # a node named twice is searched once
    gained, stats, counting = asyncio.run(run(targets))
    assert stats.errors == 0 and counting.open_now == 0
    assert gained[-1] == gained[0] and stats.expansions <= len(trees)
    assert sum(len(leaves) for leaves in gained[:-1]) > 0
    for (tree, node_id), leaves in zip(targets, gained, strict=True):
        if tree.nodes[node_id].finished:
            assert leaves == []  # a leaf has nothing below it to search
            continue
        assert len(tree.nodes[node_id].children) > children_before[(id(tree), node_id)]
        for leaf in leaves:
            assert leaf.finished and node_id in [n.id for n in tree.path(leaf.id)]
    for tree in trees:
        assert tree.check() == []  # visits and values backed up to the root
        assert len(tree.nodes) > before[id(tree)]
        # The new leaves replay in a fresh env to their recorded observation.

        for path in leaf_paths(tree):
            env = palaestra.make(MAZE)
            env.reset(seed=tree.seed, options={"task_id": tree.task_id})
            for action in path.actions:
                observation = env.step(action)[0]
            assert REACT.observation_message(observation) == path.leaf.observation


class SameMove(MovesPolicy):
    """A model sure of itself: every reply is the same move."""

    async def generate(
        self, conversations: Sequence[Sequence[Message]], *, n: int = 1, **kwargs: Any
    ) -> list[list[Completion]]:
        self.calls.append((len(conversations), n))
        return [[Completion(REACT.render("move up", "sure"))] * n for _ in conversations]


def test_repair_fills_with_the_envs_other_actions_where_the_model_repeats_itself():
    config = MCTSConfig(k=3, simulations=1, max_depth=6)
    policy = SameMove()
    [tree], _, _ = search(policy, LocalEnvs(), config, specs=SPECS[:1], history=1)
    node = tree.nodes[2]  # a chain: every node has the one child "move up"
    assert node.children and tree.nodes[node.children[0]].action == "move up"

    async def run() -> list[list[Node]]:
        engine = MCTS(policy, LocalEnvs(), config, RolloutConfig(history=1, seed=3))
        return await engine.repair([(tree, node.id)])

    env = palaestra.make(MAZE)
    env.reset(seed=tree.seed, options={"task_id": tree.task_id})
    for action in [n.action for n in tree.path(node.id)][1:]:
        *_, info = env.step(action)
    others = set(info["available_actions"]) - {"move up"}
    assert others  # the maze has another way out of this square

    [leaves] = asyncio.run(run())
    added = [tree.nodes[i] for i in node.children[1:]]
    # k=3 places, none filled by the model: every other valid move is tried
    assert {n.action for n in added} == others and {n.kind for n in added} == {"alternative"}
    assert len(leaves) == len(added) and tree.check() == []
