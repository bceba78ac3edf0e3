"""One MCTS search on Maze, and what Agent-R would make of it: a table of sizes and times.

Searches one tree per 5x5 train maze with a model policy (in this process, envs
in-process), then pairs the leaf paths (good score >= alpha, gap > beta) and
judges each bad path's first error with the actor (the same model) and with the
maze's BFS expert. Rows: trees, nodes, leaves, expansions, forks, ``generate``
calls and prompts, search seconds and nodes per second; pairs, revision
trajectories, and how often the two judges choose the same splice step.

    python bench/mcts_search.py [--policy tiny] [--tasks 8] [--k 4] [--simulations 4]
        [--max-depth 10] [--history 2] [--max-tokens 24] [--no-system-prompt]

An untrained model (``tiny``) replies nothing parsable, so its trees are chains
and find no pairs; give a trained model's folder to see pairs and agreement.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.policy import Policy
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig
from palaestra.evol.mcts import MCTS, MCTSConfig
from palaestra.evol.reflection import (
    actor_judge,
    expert_judge,
    first_bad,
    judge_agreement,
    path_pairs,
    revision_trajectory,
)
from palaestra.tables import format_table

MAZE = "palaestra/Maze-v0"


async def run(args: argparse.Namespace, policy: Policy) -> list[list[str]]:
    envs = LocalEnvs()
    config = MCTSConfig(k=args.k, simulations=args.simulations, max_depth=args.max_depth)
    rollout = RolloutConfig(
        history=args.history, max_tokens=args.max_tokens, system_prompt=args.system_prompt
    )
    search = MCTS(policy, envs, config, rollout)
    specs = [EpisodeSpec(MAZE, 3 * i, "train", seed=i) for i in range(args.tasks)]  # 5x5
    started = time.perf_counter()
    trees = await search.search(specs)
    wall = time.perf_counter() - started
    s = search.stats
    pairs = [p for t in trees for p in path_pairs(t, alpha=args.alpha, beta=args.beta, cap=4)]
    judged = time.perf_counter()
    actor = [first_bad(v) for v in await actor_judge(policy, [p.bad for p in pairs])]
    expert = await expert_judge(envs, [p.bad for p in pairs])
    judge_s = time.perf_counter() - judged
    revisions = [revision_trajectory(p, a) for p, a in zip(pairs, actor, strict=True)]
    agreement = judge_agreement(pairs, actor, expert)
    await envs.aclose()
    return [
        ["trees", str(len(trees))],
        ["nodes", str(s.nodes)],
        ["leaves", str(sum(len(t.leaves()) for t in trees))],
        ["solved leaves", str(sum(n.success for t in trees for n in t.leaves()))],
        ["expansions", str(s.expansions)],
        ["forks", str(s.forks)],
        ["generate calls / prompts", f"{s.policy_calls} / {s.rows}"],
        ["search seconds (in generate)", f"{wall:.1f} ({s.policy_s:.1f})"],
        ["nodes / second", f"{s.nodes / wall:.1f}"],
        [f"pairs (alpha {args.alpha}, beta {args.beta})", str(len(pairs))],
        ["revision trajectories", str(len(revisions))],
        ["judge seconds", f"{judge_s:.1f}"],
        ["actor = expert splice step", f"{agreement.same} / {agreement.pairs}"],
        ["actor / expert found an error", f"{agreement.actor_found} / {agreement.expert_found}"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="tiny")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--simulations", type=int, default=4)
    parser.add_argument("--max-depth", type=int, default=10)
    parser.add_argument("--history", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--system-prompt", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=0.2)
    args = parser.parse_args()
    policy = make_policy(args.policy)
    if not isinstance(policy, Policy):
        parser.error(f"{args.policy} is not a model policy; MCTS samples replies")
    rows = asyncio.run(run(args, policy))
    print(format_table(["", args.policy], rows))


if __name__ == "__main__":
    main()
