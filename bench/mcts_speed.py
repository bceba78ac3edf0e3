"""Tree-search speed of the env layer: node expansions per second, fork vs replay.

An expansion opens k children of a node at depth d: the node's episode is copied
k times (``EpisodeEnv.fork``) and each copy steps a different valid action (the
node's ``available_actions``, else ``random_action`` draws), then the children
close. No model plays: the policy's cost is not the env's. Copies are made by
``fork`` (snapshot/restore where the env has it, in-process or by the server's
fork route) and by replay (``fork="replay"``: reset to the task, then step the
node's d actions again; over the network, a new session and d step requests from
the client). Rows: env, where (in-process, a server on 127.0.0.1 over HTTP or
its WebSocket route), depth. Target: fork >= 5x replay at depth >= 20.

    python bench/mcts_speed.py [--envs palaestra/Maze-v0 palaestra/BabyAI-v0]
        [--depths 2 20 40] [--k 4] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

import palaestra
from palaestra.agents.env_pool import EnvPool, EpisodeEnv, LocalEnvs, RemoteEnvs
from palaestra.envs import TaskId
from palaestra.servers.local import start_server_process
from palaestra.tables import format_table

WHERE = ("in-process", "http", "websocket")


def node_path(env_id: str, depth: int, seed: int = 0) -> tuple[TaskId, list[str]]:
    """A train task and ``depth`` valid actions from its start that do not end the episode.

    Found in-process: at each depth, random valid actions are tried on a snapshot
    until one leaves the episode running (a random walk can reach the goal).
    """
    rng = np.random.default_rng(seed)
    env = palaestra.make(env_id).unwrapped
    for task_id in env.tasks("train"):
        env.reset(seed=seed, options={"task_id": task_id})
        actions: list[str] = []
        while len(actions) < depth:
            before = env.snapshot()
            candidates = list(env.available_actions() or [])
            rng.shuffle(candidates)
            for action in candidates:
                _, _, terminated, truncated, _ = env.step(action)
                if not (terminated or truncated):
                    actions.append(action)
                    break
                env.restore(before)
            else:
                break  # every move ends it here: try the next task
        if len(actions) == depth:
            env.close()
            return task_id, actions
    raise RuntimeError(f"no {env_id} train task has a {depth}-step path that stays open")


async def child_actions(node: EpisodeEnv, k: int) -> list[str]:
    """``k`` different valid actions where the node lists that many (else repeats)."""
    listed = node.info.get("available_actions")
    if listed:
        return [listed[i % len(listed)] for i in range(k)]
    return [await node.random_action(i) for i in range(k)]


async def expansions_per_second(
    pool: EnvPool, env_id: str, task_id: TaskId, path: list[str], k: int, seconds: float
) -> float:
    """Expand the node at the end of ``path`` repeatedly for about ``seconds``."""
    node = await pool.open(env_id, task_id, seed=0, index=0)
    for action in path:
        await node.step(action)
    actions = await child_actions(node, k)

    async def expand() -> None:
        children = [await node.fork() for _ in range(k)]
        for child, action in zip(children, actions, strict=True):
            await child.step(action)
        for child in children:
            await child.close()

    await expand()  # warm: pooled envs, connections
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done < 3:
        await expand()
        done += 1
    await node.close()
    return done / elapsed


def make_pool(where: str, mode: str, url: str) -> EnvPool:
    if where == "in-process":
        return LocalEnvs(fork=mode)  # type: ignore[arg-type]
    return RemoteEnvs([url], transport=where, fork=mode)  # type: ignore[arg-type]


async def measure(
    where: str, mode: str, url: str, env_id: str, task_id: TaskId, path: list[str], args
) -> tuple[float, str]:
    pool = make_pool(where, mode, url)
    try:
        how = await pool.fork_mode(env_id)
        rate = await expansions_per_second(pool, env_id, task_id, path, args.k, args.seconds)
    finally:
        await pool.aclose()
    return rate, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["palaestra/Maze-v0", "palaestra/BabyAI-v0"])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 20, 40])
    parser.add_argument("--k", type=int, default=4, help="children per expansion")
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--where", nargs="+", choices=WHERE, default=list(WHERE))
    args = parser.parse_args()

    process, url = start_server_process(args.envs)
    rows = []
    try:
        for env_id in args.envs:
            for depth in args.depths:
                task_id, path = node_path(env_id, depth)
                for where in args.where:
                    node = (env_id, task_id, path, args)
                    fork, how = asyncio.run(measure(where, "auto", url, *node))
                    replay, _ = asyncio.run(measure(where, "replay", url, *node))
                    rows.append(
                        (
                            env_id.split("/")[-1],
                            where,
                            depth,
                            how,
                            f"{fork:.0f}",
                            f"{replay:.0f}",
                            f"{fork / replay:.1f}x",
                        )
                    )
                    print(rows[-1], flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    headers = ["env", "where", "depth", "fork by", "fork exp/s", "replay exp/s", "fork/replay"]
    print()
    print(
        f"node expansions per second (k={args.k} children each: copy the node, step one "
        "action, close); one expansion at a time; server on 127.0.0.1 in its own process"
    )
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
