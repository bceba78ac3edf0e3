"""The Trees page: real MCTS trees of Maze, the API checked against the Tree objects, the page.

The trees come from palaestra's own search (:class:`~palaestra.evol.mcts.MCTS`) over
the real Maze env, with a scripted policy that reads the map and replies a
shortest-path move or a random one in ReAct (:class:`NoisyMazePolicy`). The revisions
trained on are made as Agent-R's revise stage makes
them (:func:`~palaestra.evol.reflection.agent_r_data` with the expert judge) and
saved beside the trees as ``data.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from view_helpers import off_loop, open_route, screenshot

from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.formats import get_format
from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig
from palaestra.envs.maze import ACTIONS
from palaestra.evol.data import save_trajectories
from palaestra.evol.mcts import MCTS, MCTSConfig, Tree, save_trees
from palaestra.evol.reflection import AgentRData, agent_r_data, path_pairs, revision_trajectory
from palaestra.evol.reflection import splice_step as reflection_splice_step
from palaestra.evol.tree_view import best_path, render_tree, tree_marks
from palaestra.view import Catalog

MAZE = "palaestra/Maze-v0"
REACT = get_format("react")
View = Callable[..., AbstractContextManager[str]]


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
    """A scripted maze player in ReAct that reads the map in the last observation.

    Each reply is the first move of a shortest path (a BFS on the drawn map), or
    with probability ``noise`` a random move: its trees branch and hold both solved
    and failed leaves (an untrained model's replies never parse: its trees are chains).
    """

    name = "noisy-maze"

    def __init__(self, noise: float = 0.5) -> None:
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


def sorted_pairs(tree: Tree) -> list:
    pairs = path_pairs(tree, cap=None)
    pairs.sort(key=lambda p: (p.good.nodes[-1], p.bad.nodes[-1]))
    return pairs


@pytest.fixture(scope="session")
def agent_r_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Tree], AgentRData]:
    """A run-like folder: ``iter-1/trees.jsonl`` of 4 searched 5x5 mazes and the revisions
    Agent-R's revise stage would train on (``iter-1/data.jsonl``, expert judge)."""
    specs = [EpisodeSpec(MAZE, task, "train", seed=task) for task in (3, 6, 9, 15)]

    async def run() -> tuple[list[Tree], AgentRData]:
        envs = LocalEnvs()
        try:
            search = MCTS(
                NoisyMazePolicy(),
                envs,
                MCTSConfig(k=4, simulations=8, max_depth=40),
                RolloutConfig(history=2, seed=1),
            )
            trees = await search.search(specs)
            data = await agent_r_data(trees, envs, max_pairs=2)
        finally:
            await envs.aclose()
        return trees, data

    trees, data = off_loop(asyncio.run, run())
    assert data.pairs, "the noisy player solved none of these mazes: pick other tasks"
    assert data.skipped == 0  # every pair gives a revision: the tests zip them
    folder = tmp_path_factory.mktemp("agent-r") / "run"
    save_trees(trees, folder / "iter-1" / "trees.jsonl")
    save_trajectories(data.revisions + data.good, folder / "iter-1" / "data.jsonl")
    return folder, trees, data


def file_id(folder: Path) -> str:
    return f"{folder.name}/iter-1/trees.jsonl"


def with_pairs(trees: list[Tree]) -> int:
    return next(i for i, t in enumerate(trees) if len(sorted_pairs(t)) >= 2)


# -- API ---------------------------------------------------------------------------------------


def test_the_list_of_trees_files_and_their_summary_rows(agent_r_folder, view: View) -> None:
    folder, trees, _ = agent_r_folder
    with view([folder]) as url:
        files = httpx.get(f"{url}/api/trees").json()["files"]
        assert [f["id"] for f in files] == [file_id(folder)]
        reply = httpx.get(f"{url}/api/trees", params={"file": file_id(folder), "limit": 3}).json()
        assert reply["count"] == len(trees) and len(reply["rows"]) == 3
        assert reply["settings"] == {"alpha": 0.5, "beta": 0.2, "source": "defaults"}
        rest = httpx.get(f"{url}/api/trees", params={"file": file_id(folder), "offset": 3})
        rows = reply["rows"] + rest.json()["rows"]
    for row, tree in zip(rows, trees, strict=True):
        leaves = tree.leaves()
        assert row["task_id"] == tree.task_id and row["nodes"] == len(tree.nodes)
        assert row["leaves"] == len(leaves)
        assert row["successes"] == sum(n.success for n in leaves)
        assert row["best_score"] == best_path(tree).score
        assert row["pairs"] == len(path_pairs(tree, cap=None))


def test_a_tree_its_nodes_best_path_pairs_splice_and_revision(agent_r_folder, view: View) -> None:
    folder, trees, _ = agent_r_folder
    index = with_pairs(trees)
    tree = trees[index]
    pairs = sorted_pairs(tree)
    with view([folder]) as url:
        params = {"file": file_id(folder), "index": index, "pair": 1, "chars": 10}
        reply = httpx.get(f"{url}/api/tree", params=params).json()
    nodes = reply["nodes"]
    assert reply["count"] == len(nodes["parent"]) == len(tree.nodes)
    assert nodes["parent"] == [n.parent for n in tree.nodes]
    assert nodes["action"] == [n.action for n in tree.nodes]
    assert nodes["visits"] == [n.visits for n in tree.nodes]
    assert nodes["score"] == [n.score for n in tree.nodes]
    assert nodes["observation"] == [n.observation[:10] for n in tree.nodes]
    assert nodes["truncated"] == [int(len(n.observation) > 10 or len(n.reply or "") > 10)
                                  for n in tree.nodes]  # fmt: skip
    assert reply["best"]["nodes"] == list(best_path(tree).nodes)
    assert reply["pairs"]["count"] == len(pairs)
    assert [(p["good"], p["bad"]) for p in reply["pairs"]["items"]] == [
        (p.good.nodes[-1], p.bad.nodes[-1]) for p in pairs
    ]
    chosen = pairs[1]
    assert chosen == tree_marks(tree, pair=1).pair
    pair = reply["pair"]
    assert pair["good"]["nodes"] == list(chosen.good.nodes)
    assert pair["bad"]["nodes"] == list(chosen.bad.nodes)
    assert pair["splice_step"] == reflection_splice_step(chosen, None)
    assert pair["splice_node"] == tree_marks(tree, pair=1).splice
    assert pair["revision"]["messages"] == revision_trajectory(chosen, None).messages
    # No first error is recorded by Agent-R: the reply says so rather than making one up.
    assert reply["first_error"] is None and "does not record" in reply["first_error_note"]
    # The folds are the lines of `palaestra tree show`: one per chain.
    text = Console(width=400, no_color=True, record=True)
    text.print(render_tree(tree, tree_marks(tree, pair=1), max_nodes=None))
    lines = text.export_text().splitlines()
    assert len(lines) == len(tree.nodes) - sum(
        _chain_length(tree, int(start), end) for start, end in reply["folds"].items()
    )


def _chain_length(tree: Tree, start: int, end: int) -> int:
    """Nodes a folded chain hides (all but its first)."""
    return tree.nodes[end].depth - tree.nodes[start].depth


def test_the_revision_trained_on_is_found_in_data_jsonl(agent_r_folder, view: View) -> None:
    folder, trees, data = agent_r_folder
    checked = 0
    with view([folder]) as url:
        for pair, splice, revision in zip(data.pairs, data.splices, data.revisions, strict=True):
            tree = pair.good.tree
            index = trees.index(tree)
            position = sorted_pairs(tree).index(pair)
            params = {"file": file_id(folder), "index": index, "pair": position, "nodes": False}
            reply = httpx.get(f"{url}/api/tree", params=params).json()
            assert "nodes" not in reply
            assert position in reply["pairs"]["trained"]
            trained = reply["pair"]["trained"]
            assert trained["file"] == "data.jsonl"
            assert trained["messages"] == revision.messages
            assert trained["splice_step"] == splice  # where the expert judge's error put it
            assert trained["splice_node"] == pair.bad.nodes[splice]
            if splice == reflection_splice_step(pair, None):
                # Same splice, same seed: the revision the page builds is the one trained on.
                assert reply["pair"]["revision"]["messages"] == revision.messages
            checked += 1
    assert checked == len(data.revisions) > 0


def test_a_node_in_full_and_the_errors(agent_r_folder, view: View, eval_run: Path) -> None:
    folder, trees, _ = agent_r_folder
    tree = trees[0]
    node = tree.nodes[-1]
    with view([folder, eval_run]) as url:
        params = {"file": file_id(folder), "index": 0, "node": node.id}
        full = httpx.get(f"{url}/api/tree/node", params=params).json()
        assert full["observation"] == node.observation and full["reply"] == node.reply
        assert full["path"] == [n.id for n in tree.path(node.id)]
        missing = httpx.get(f"{url}/api/tree", params={"file": file_id(folder), "index": 99})
        assert missing.status_code == 404 and "holds 4 trees" in missing.json()["error"]
        params["node"] = len(tree.nodes)
        assert httpx.get(f"{url}/api/tree/node", params=params).status_code == 404
        wrong = httpx.get(f"{url}/api/trees", params={"file": "eval-noisy/trajectories.jsonl"})
        assert wrong.status_code == 400 and "not search trees" in wrong.json()["error"]
        assert httpx.get(f"{url}/api/trees", params={"file": "nope"}).status_code == 404


def test_pairs_and_reflections_follow_the_runs_revise_settings(
    agent_r_folder, view: View, tmp_path: Path
) -> None:
    source, trees, _ = agent_r_folder
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    manifest = {"config": {"beta": 0.2, "revise_from": "split"},
                "stages": {"revise-1": {"alpha": 1.0, "seed": 7}}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(manifest))
    index = with_pairs(trees)
    tree = trees[index]
    with view([folder]) as url:
        rows = httpx.get(f"{url}/api/trees", params={"file": file_id(folder)}).json()
        assert rows["settings"] == {"alpha": 1.0, "beta": 0.2, "source": "run.json revise-1"}
        assert [r["pairs"] for r in rows["rows"]] == [
            len(path_pairs(t, alpha=1.0, cap=None)) for t in trees
        ]
        reply = httpx.get(f"{url}/api/tree", params={"file": file_id(folder), "index": index})
        pair = reply.json()["pair"]
    chosen = tree_marks(tree, alpha=1.0).pair
    assert pair["bad"]["nodes"] == list(chosen.bad.nodes)
    assert pair["revision"]["messages"] == revision_trajectory(chosen, None, seed=7).messages


def test_one_tree_json_and_a_tree_without_pairs(agent_r_folder, view: View, tmp_path: Path):
    _, trees, _ = agent_r_folder
    lonely = next((t for t in trees if not path_pairs(t, cap=None)), None)
    assert lonely is not None, "every tree of the fixture has pairs: add a task all solved"
    (tmp_path / "one.json").write_text(json.dumps(lonely.to_json()))
    with view([tmp_path / "one.json"]) as url:
        rows = httpx.get(f"{url}/api/trees", params={"file": "one.json"}).json()
        assert rows["count"] == 1 and rows["rows"][0]["nodes"] == len(lonely.nodes)
        reply = httpx.get(f"{url}/api/tree", params={"file": "one.json"}).json()
        assert reply["pairs"]["count"] == 0 and reply["pair"] is None
        assert reply["best"]["nodes"] == list(best_path(lonely).nodes)
        bad_pair = httpx.get(f"{url}/api/tree", params={"file": "one.json", "pair": 3})
        assert bad_pair.status_code == 200  # no pairs: the page says so, pair is ignored


def test_a_run_json_that_counts_nodes_is_not_a_trees_file(tmp_path: Path) -> None:
    # Agent-R's run.json records its search's "nodes": the catalog took it for a tree.
    (tmp_path / "run.json").write_text('{"config": {}, "stages": {"search-1": {"nodes": 9}}}')
    assert Catalog([tmp_path]).files() == []


# -- the page ----------------------------------------------------------------------------------


def test_the_trees_page_in_a_browser(agent_r_folder, view: View, page: Any) -> None:
    folder, trees, data = agent_r_folder
    index = with_pairs(trees)
    tree = trees[index]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with view([folder]) as url:
        open_route(page, url, "trees")
        page.click(f"#trees-files a:text('{file_id(folder)}')")
        page.wait_for_selector("#trees-list tbody tr")
        rows = page.locator("#trees-list tbody tr")
        assert rows.count() == len(trees)
        assert rows.nth(index).locator("td").nth(5).inner_text() == str(len(tree.nodes))
        screenshot(page, "trees")

        rows.nth(index).click()
        page.wait_for_selector("body[data-ready='tree'] #tree")
        marks = tree_marks(tree)
        # Expanded, the drawn rows are `palaestra tree show`'s lines, with their ids.
        page.click("#tree-expand-all")
        console = Console(width=400, no_color=True, record=True)
        console.print(render_tree(tree, marks, max_nodes=None))
        lines = console.export_text().splitlines()
        starts = [int(re.search(r"#(\d+)", line).group(1)) for line in lines]
        drawn = page.locator(".tn-row").evaluate_all("rs => rs.map(r => Number(r.dataset.id))")
        assert drawn == starts
        best = page.locator(".tn-row.best").evaluate_all("rs => rs.map(r => Number(r.dataset.id))")
        assert set(best) == set(starts) & set(best_path(tree).nodes) and 0 in best
        first = page.locator(f".tn-row[data-id='{starts[1]}'] .tn-action").inner_text()
        assert first == tree.nodes[starts[1]].action

        # Choose the second pair: its paths side by side, the splice marked on the bad one.
        page.select_option("#pair-select", "1")
        page.wait_for_function("location.hash.includes('pair=1')")
        page.wait_for_selector("body[data-ready='tree'] #pair-paths")
        pair = sorted_pairs(tree)[1]
        step = reflection_splice_step(pair, None)
        splice_row = page.locator("#pair-paths tr.splice")
        assert splice_row.get_attribute("data-step") == str(step)
        bad_node = splice_row.locator("td").nth(2).get_attribute("data-node")
        assert bad_node == str(pair.bad.nodes[step])
        assert page.locator("#pair-paths tbody tr[data-step]").count() == max(
            pair.good.steps, pair.bad.steps
        )
        assert page.locator(".tn-row .mark-splice").count() == 1
        assert "not recorded" in page.locator("#first-error").inner_text()
        chat = page.locator("#revision .msg")
        assert chat.count() == len(revision_trajectory(pair, None).messages)
        assert page.locator("#revision .msg.loss").count() == sum(
            m["loss"] for m in revision_trajectory(pair, None).messages
        )

        # A pair whose revision was trained on: the saved trajectory beside the built one.
        trained = httpx.get(f"{url}/api/tree", params={"file": file_id(folder), "index": index,
                            "nodes": False}).json()["pairs"]["trained"]  # fmt: skip
        assert trained  # agent_r_data drew pairs of every tree with pairs
        page.select_option("#pair-select", str(trained[0]))
        page.wait_for_selector("#trained .msg")
        pair = sorted_pairs(tree)[trained[0]]
        revision = next(r for p, r in zip(data.pairs, data.revisions, strict=True) if p == pair)
        assert page.locator("#trained .msg").count() == len(revision.messages)
        assert page.locator(".tn-row .mark-trained, #pair-paths .mark-trained").count() >= 1

        # Click a node of the good path: its reply and observation, in full.
        good_node = tree.nodes[pair.good.nodes[1]]
        page.click(f".tn-row[data-id='{good_node.id}'] .tn-action")
        page.wait_for_selector(f"#node-detail h3:text('#{good_node.id} ')")
        assert page.locator("#node-observation").inner_text() == good_node.observation.strip()
        assert page.locator("#node-reply").inner_text() == good_node.reply.strip()
        screenshot(page, "tree")
        page.locator("#pair").scroll_into_view_if_needed()
        page.evaluate("document.getElementById('pair').scrollIntoView()")
        screenshot(page, "tree-pair")

        # Open a folded chain into single rows, and click its last node.
        fold = page.locator(".tn-fold").first
        start, end = int(fold.get_attribute("data-start")), int(fold.get_attribute("data-end"))
        fold.click()
        chain = [start]
        while chain[-1] != end:
            chain.append(tree.nodes[chain[-1]].children[0])
        for node_id in chain:
            assert page.locator(f".tn-row[data-id='{node_id}']").count() == 1
        page.click(f".tn-row[data-id='{end}'] .tn-action")
        page.wait_for_selector(f"#node-detail h3:text('#{end} ')")
        assert page.locator("#node-observation").inner_text() == tree.nodes[end].observation.strip()
    assert errors == []


def test_the_trees_page_says_what_to_do_without_trees(eval_run: Path, view: View, page: Any):
    with view([eval_run]) as url:
        open_route(page, url, "trees")
        assert "palaestra evolve agent-r" in page.locator("#trees-empty").inner_text()
