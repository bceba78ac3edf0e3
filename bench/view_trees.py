"""The Trees page on a big tree: API timings and the page's render time in Chromium.

Builds one real search tree of at least ``--nodes`` nodes: palaestra's MCTS over a
7x7 Maze task (paths cut at 100 steps) with a scripted player that reads the map
in each observation and replies the first move of a shortest path, or with
probability ``--noise`` a random move (a real ``Policy``: any model would do; this
one is fast, and its tree holds both solved and failed leaves). Simulations are
doubled until the tree is big enough. The tree is saved with ``save_trees`` beside
``--small`` smaller trees in a ``trees.jsonl``, and served by a real ``palaestra
view`` app.

Rows: the list of trees (the file's line index and the summary rows), opening the
big tree (its nodes as columns: first call parses it, later ones hit the cache),
another pair of it (no nodes sent), one node in full; then Chromium (Debian's, via
playwright) opening the tree page (fetch, build and draw) and switching pairs.
Times are medians of ``--repeat`` calls after the first (shown apart).

    python bench/view_trees.py [--nodes 10000] [--noise 0.3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.formats import get_format
from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig
from palaestra.envs.maze import ACTIONS
from palaestra.evol.mcts import MCTS, MCTSConfig, Tree, save_trees
from palaestra.evol.reflection import path_pairs
from palaestra.servers import serve_in_thread
from palaestra.tables import format_table
from palaestra.view import create_view_app

MAZE = "palaestra/Maze-v0"
REACT = get_format("react")
STEPS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def shortest_move(observation: str) -> str | None:
    """The first move of a shortest path from ``A`` to ``G`` on the map an observation draws."""
    grid = [line for line in observation.splitlines() if line and set(line) <= set("#.AG")]
    cells = {(r, c): ch for r, line in enumerate(grid) for c, ch in enumerate(line)}
    start = next((p for p, ch in cells.items() if ch == "A"), None)
    came: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
    queue = deque([start] if start else [])
    while queue:
        here = queue.popleft()
        if cells[here] == "G":
            step = came[here]
            while step is not None and step[0] != start:
                step = came[step[0]]
            return step[1] if step else None
        for name, (dr, dc) in STEPS.items():
            there = (here[0] + dr, here[1] + dc)
            if cells.get(there, "#") != "#" and there not in came:
                came[there] = (here, name)
                queue.append(there)
    return None


class NoisyMazePolicy(Policy):
    """Shortest-path moves read off the map, or with probability ``noise`` a random move."""

    name = "noisy-maze"

    def __init__(self, noise: float) -> None:
        self.noise = noise

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
        rng = random.Random(seed)
        out = []
        for conversation in conversations:
            best = shortest_move(conversation[-1]["content"])
            moves = [
                f"move {best}" if best and rng.random() >= self.noise else rng.choice(ACTIONS)
                for _ in range(n)
            ]
            out.append([Completion(REACT.render(move, "go")) for move in moves])
        return out


def search(task: int, simulations: int, noise: float, max_depth: int = 64) -> Tree:
    async def run() -> Tree:
        envs = LocalEnvs()
        try:
            engine = MCTS(
                NoisyMazePolicy(noise),
                envs,
                MCTSConfig(k=4, simulations=simulations, max_depth=max_depth),
                RolloutConfig(history=2, seed=1),
            )
            [tree] = await engine.search([EpisodeSpec(MAZE, task, "train", seed=task)])
            return tree
        finally:
            await envs.aclose()

    return asyncio.run(run())


def big_tree(nodes: int, noise: float) -> tuple[Tree, float]:
    """A tree of at least ``nodes`` nodes (a 7x7 maze), and the seconds its search took."""
    simulations = 16
    while True:
        started = time.perf_counter()
        tree = search(1, simulations, noise, max_depth=100)
        if len(tree.nodes) >= nodes:
            return tree, time.perf_counter() - started
        simulations *= 2


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Milliseconds of the first call and the median of ``repeat`` more."""
    started = time.perf_counter()
    call()
    first = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--small", type=int, default=20, help="small trees beside the big one")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    args = parser.parse_args()

    tree, search_s = big_tree(args.nodes, args.noise)
    pairs = path_pairs(tree, cap=None)
    leaves = tree.leaves()
    print(
        f"tree: {len(tree.nodes)} nodes, {len(leaves)} leaves "
        f"({sum(n.success for n in leaves)} solved), {len(pairs)} pairs, "
        f"simulations={tree.config.simulations}; searched in {search_s:.1f} s"
    )
    small = [search(3 * i, 4, args.noise) for i in range(1, args.small + 1)]
    folder = Path(tempfile.mkdtemp(prefix="view-trees-")) / "run" / "iter-1"
    path = save_trees([tree, *small], folder / "trees.jsonl")
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB, {1 + len(small)} trees")

    rows: list[list[object]] = []
    file = "run/iter-1/trees.jsonl"
    with serve_in_thread(create_view_app([folder.parent.parent / "run"])) as url:
        client = httpx.Client(base_url=url, timeout=60)

        def get(route: str, **params: object) -> httpx.Response:
            reply = client.get(route, params=params)
            reply.raise_for_status()
            return reply

        size = {}

        def measure(name: str, route: str, **params: object) -> None:
            first, median = timed(lambda: size.__setitem__(name, get(route, **params)), args.repeat)
            kib = len(size[name].content) / 1024
            rows.append([name, f"{first:.0f}", f"{median:.0f}", f"{kib:.0f}"])

        measure("list (50 rows)", "/api/trees", file=file)
        measure("open the big tree", "/api/tree", file=file, index=0)
        pair = min(1, max(0, len(pairs) - 1))
        measure("one pair (no nodes)", "/api/tree", file=file, index=0, pair=pair, nodes=False)
        measure("one node in full", "/api/tree/node", file=file, index=0, node=len(tree.nodes) - 1)
        print(format_table(["API call", "first ms", "median ms", "KiB"], rows))

        if args.chromium is None:
            print("no chromium on PATH: the page's render time is not measured")
            return
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page_rows = []
            opens = []
            for i in range(args.repeat):
                # A new query string: a full page load, so no node columns are cached.
                started = time.perf_counter()
                page.goto(f"{url}/?load={i}#/tree?file={file}&index=0")
                page.wait_for_selector("body[data-ready='tree'] #tree")
                opens.append((time.perf_counter() - started) * 1000)
            drawn = page.locator(".tn-row").count()
            page_rows.append(
                ["open the tree page (load, fetch, draw)", f"{statistics.median(opens):.0f}"]
            )
            switches = []
            for i in range(args.repeat):
                target = (i % max(1, min(len(pairs), 5))) + 1 if len(pairs) > 1 else 0
                started = time.perf_counter()
                page.evaluate(f"location.hash = '#/tree?file={file}&index=0&pair={target}'")
                page.wait_for_function(
                    f"location.hash.endsWith('pair={target}') && document.body.dataset.ready"
                    " === 'tree' && document.querySelector('#pair-select') !== null"
                    f" && document.querySelector('#pair-select').value === '{target}'"
                )
                switches.append((time.perf_counter() - started) * 1000)
            page_rows.append(["another pair (nodes cached)", f"{statistics.median(switches):.0f}"])
            started = time.perf_counter()
            page.locator(".tn-toggle:not([disabled])").nth(1).click()
            page_rows.append(["toggle a row", f"{(time.perf_counter() - started) * 1000:.0f}"])
            browser.close()
        print(format_table(["Chromium (median ms)", "ms"], page_rows))
        print(f"rows drawn when the tree opens (best path and pair open): {drawn}")


if __name__ == "__main__":
    main()
