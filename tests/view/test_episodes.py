"""The Episodes page: the file index, the episodes API, and the page in a real browser."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from view_helpers import off_loop, open_route, screenshot

from palaestra.agents.evaluate import episode_loops, loop_rate
from palaestra.agents.trajectory import read_trajectories
from palaestra.cli import main as cli_main
from palaestra.view.line_index import FileIndex

View = Callable[..., AbstractContextManager[str]]


def cli(argv: list[str]) -> int:
    """``palaestra ARGV``, off playwright's loop (see view_helpers.off_loop)."""
    return off_loop(cli_main, argv)


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real eval where some episodes succeed: the expert with 30% detours, 60 turns."""
    out = tmp_path_factory.mktemp("runs") / "eval-mixed"
    argv = ["eval", "--policy", "expert:0.3", "--envs", "palaestra/Maze-v0", "--limit", "12"]
    assert cli([*argv, "--max-turns", "60", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def mixed_file(mixed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mixed_run``'s episodes, then the untrained tiny model's on Maze and Wordle (its
    replies do not parse: format errors and invalid actions): two envs, two end reasons."""
    pytest.importorskip("torch")
    tiny = tmp_path_factory.mktemp("runs") / "eval-tiny"
    argv = ["eval", "--policy", "tiny", "--envs", "palaestra/Maze-v0", "palaestra/Wordle-v0"]
    assert cli([*argv, "--limit", "3", "--max-turns", "4", "--out", str(tiny), "--quiet"]) == 0
    path = tmp_path_factory.mktemp("files") / "mixed.jsonl"
    path.write_bytes(
        (mixed_run / "trajectories.jsonl").read_bytes() + (tiny / "trajectories.jsonl").read_bytes()
    )
    return path


@pytest.fixture(autouse=True)
def index_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test caches indexes in its own folder (never the user's cache)."""
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "view-index"


def lines_of(eval_run: Path) -> list[bytes]:
    return (eval_run / "trajectories.jsonl").read_bytes().splitlines(keepends=True)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def file_id(url: str) -> str:
    items = httpx.get(f"{url}/api/runs").json()["items"]
    (item,) = [i for i in items if i["kind"] == "trajectories"]
    return item["id"]


def get_all(url: str, file: str, **filters: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/api/episodes", params={"file": file, "limit": 500, **filters})
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_complete(url: str, file: str) -> dict[str, Any]:
    for _ in range(200):
        data = get_all(url, file)
        if data["complete"]:
            return data
        time.sleep(0.05)
    raise AssertionError("the index never completed")


# -- the index ----------------------------------------------------------------------------


def test_the_index_counts_loops_as_loop_rate_does(eval_run: Path, tmp_path: Path) -> None:
    path = eval_run / "trajectories.jsonl"
    index = FileIndex(path, tmp_path / "idx")
    index.refresh()
    index.wait(timeout=30)
    trajectories = read_trajectories(path)
    assert len(index) == len(trajectories) == 12
    loops = [index.summary(i)["loops"] for i in range(len(index))]
    assert loops == [episode_loops(t.messages, t.actions)[0] for t in trajectories]
    steps = sum(episode_loops(t.messages, t.actions)[1] for t in trajectories)
    assert sum(loops) / steps == pytest.approx(loop_rate(trajectories))
    assert any(loops)  # the noisy expert does loop: the test compares something


def test_a_grown_file_is_extended_and_a_torn_line_waits(eval_run: Path, tmp_path: Path) -> None:
    lines = lines_of(eval_run)
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(lines[:3]) + lines[3][:100])  # a write under way
    index = FileIndex(path, tmp_path / "idx")
    index.refresh()
    index.wait(timeout=30)
    assert len(index) == 3 and index.builds == 1
    with path.open("ab") as file:
        file.write(lines[3][100:] + lines[4])
    index.refresh()
    index.wait(timeout=30)
    assert len(index) == 5 and index.builds == 1  # extended from where it stopped
    assert [index.record(i)["task_id"] for i in range(5)] == [
        json.loads(line)["task_id"] for line in lines[:5]
    ]
    # Rewritten under the same name (another file, an atomic replace): built again.
    path.write_bytes(b"".join(lines[5:7]))
    index.refresh()
    index.wait(timeout=30)
    assert len(index) == 2 and index.builds == 2
    assert index.record(0)["task_id"] == json.loads(lines[5])["task_id"]


def test_a_reopened_file_uses_the_cached_index(eval_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    shutil.copy(eval_run / "trajectories.jsonl", path)
    first = FileIndex(path, tmp_path / "idx")
    first.refresh()
    first.wait(timeout=30)
    assert first.builds == 1 and not first.loaded_from_cache
    again = FileIndex(path, tmp_path / "idx")
    again.refresh()
    again.wait(timeout=30)
    assert again.loaded_from_cache and again.builds == 0 and len(again) == 12
    assert [again.summary(i) for i in range(12)] == [first.summary(i) for i in range(12)]
    with path.open("ab") as file:
        file.write(lines_of(eval_run)[0])
    grown = FileIndex(path, tmp_path / "idx")
    grown.refresh()
    grown.wait(timeout=30)
    assert grown.loaded_from_cache and grown.builds == 0 and len(grown) == 13


# -- the API ------------------------------------------------------------------------------

FILTER_CASES: list[tuple[dict[str, str], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"success": "false"}, lambda r: not r["success"]),
    ({"success": "true", "max_turns": "20"}, lambda r: r["success"] and r["turns"] <= 20),
    ({"min_turns": "10", "max_score": "0.5"}, lambda r: r["turns"] >= 10 and r["score"] <= 0.5),
    ({"min_score": "1"}, lambda r: r["score"] >= 1),
    ({"end": "max_turns"}, lambda r: r["end"] == "max_turns"),
    ({"invalid": "true"}, lambda r: r["invalid_actions"] > 0),
    ({"invalid": "false", "format_errors": "false"}, lambda r: r["invalid_actions"] == 0),
    (
        {"loops": "true"},
        lambda r: episode_loops(r["messages"], r["actions"])[0] > 0,
    ),
    ({"loops": "false"}, lambda r: episode_loops(r["messages"], r["actions"])[0] == 0),
    ({"env": "palaestra/Wordle-v0", "split": "test"}, lambda r: r["env_id"].endswith("Wordle-v0")),
    ({"env": "palaestra/Nope-v0"}, lambda r: False),
]


def test_filters_match_a_recount_of_the_file(mixed_file: Path, view: View) -> None:
    everything = records(mixed_file)
    with view([mixed_file]) as url:
        file = "mixed.jsonl"
        wait_complete(url, file)
        for filters, keep in FILTER_CASES:
            data = get_all(url, file, **filters)
            expected = [i for i, r in enumerate(everything) if keep(r)]
            assert [r["index"] for r in data["rows"]] == expected, filters
            assert data["matched"] == len(expected) and data["total"] == 18, filters
        # Each filter splits the file (some pass, some do not): none is tested on nothing.
        for name in ("success", "invalid", "format_errors", "loops"):
            assert 0 < get_all(url, file, **{name: "true"})["matched"] < 18, name
        data = get_all(url, file, success="false")
        assert data["facets"]["env"] == ["palaestra/Maze-v0", "palaestra/Wordle-v0"]
        assert set(data["facets"]["end"]) == {r["end"] for r in everything}
        assert len(data["facets"]["end"]) > 1
        row = data["rows"][0]
        source = everything[row["index"]]
        for key in ("task_id", "split", "success", "turns", "end", "invalid_actions"):
            assert row[key] == source[key], key
        assert row["messages"] == len(source["messages"])


def test_paging(eval_run: Path, tmp_path: Path, view: View) -> None:
    lines = lines_of(eval_run)
    (tmp_path / "many.jsonl").write_bytes(b"".join(lines * 11))  # 132 episodes
    with view([tmp_path / "many.jsonl"]) as url:
        wait_complete(url, "many.jsonl")
        seen: list[int] = []
        for offset in (0, 50, 100):
            params = {"file": "many.jsonl", "offset": offset}
            data = httpx.get(f"{url}/api/episodes", params=params).json()
            assert data["limit"] == 50 and data["offset"] == offset
            seen += [r["index"] for r in data["rows"]]
        assert seen == list(range(132))
        failed = [i for i, line in enumerate(lines * 11) if not json.loads(line)["success"]]
        params = {"file": "many.jsonl", "success": "false", "offset": 10, "limit": 7}
        data = httpx.get(f"{url}/api/episodes", params=params).json()
        assert [r["index"] for r in data["rows"]] == failed[10:17]


def test_a_growing_file_counts_up_and_its_index_is_cached(
    eval_run: Path, tmp_path: Path, view: View, index_cache: Path
) -> None:
    lines = lines_of(eval_run)
    run = tmp_path / "live"
    run.mkdir()
    path = run / "trajectories.jsonl"
    path.write_bytes(b"".join(lines[:4]) + lines[4][:50])
    with view([path]) as url:
        assert wait_complete(url, "trajectories.jsonl")["total"] == 4
        with path.open("ab") as file:
            file.write(lines[4][50:] + lines[5])
        assert wait_complete(url, "trajectories.jsonl")["total"] == 6
        last = httpx.get(f"{url}/api/episode", params={"file": "trajectories.jsonl", "index": 5})
        assert last.json()["record"] == json.loads(lines[5])
    assert len(list(index_cache.glob("*.npz"))) == 1
    with view([path]) as url:  # reopened: the cached index answers
        assert get_all(url, "trajectories.jsonl")["complete"] is True


def test_one_episode_with_its_turns_and_neighbours(mixed_run: Path, view: View) -> None:
    everything = records(mixed_run / "trajectories.jsonl")
    failed = [i for i, r in enumerate(everything) if not r["success"]]
    with view([mixed_run]) as url:
        file = file_id(url)
        params = {"file": file, "index": failed[1], "success": "false"}
        data = httpx.get(f"{url}/api/episode", params=params).json()
        record = everything[failed[1]]
        assert data["record"] == record
        assert (data["prev"], data["next"]) == (failed[0], failed[2] if len(failed) > 2 else None)
        turns = data["turns"]
        assert [t["action"] for t in turns] == record["actions"]
        assert [t["reward"] for t in turns] == record["rewards"]
        replies = [m for m in record["messages"] if m["role"] == "assistant"]
        assert [t["reply"] for t in turns] == [m["content"] for m in replies]
        assert [t["loss"] for t in turns] == [m["loss"] for m in replies]
        # each turn's observation is the next user message (none after the last step)
        observations = [m["content"] for m in record["messages"][2:] if m["role"] == "user"]
        assert [t["observation"] for t in turns] == [*observations, None][: len(turns)]


def test_parquet_files_read_as_the_jsonl(eval_run: Path, tmp_path: Path, view: View) -> None:
    pytest.importorskip("datasets")
    from palaestra.evol.data import write_parquet

    source = eval_run / "trajectories.jsonl"
    write_parquet(read_trajectories(source), tmp_path / "t.parquet")
    shutil.copy(source, tmp_path / "t.jsonl")
    with view([tmp_path / "t.parquet", tmp_path / "t.jsonl"]) as url:
        parquet, jsonl = wait_complete(url, "t.parquet"), wait_complete(url, "t.jsonl")
        assert parquet["rows"] == jsonl["rows"] and parquet["total"] == 12
        assert (
            get_all(url, "t.parquet", success="false")["rows"]
            == (get_all(url, "t.jsonl", success="false")["rows"])
        )
        for i in (0, 11):
            a = httpx.get(f"{url}/api/episode", params={"file": "t.parquet", "index": i}).json()
            b = httpx.get(f"{url}/api/episode", params={"file": "t.jsonl", "index": i}).json()
            assert a["record"] == b["record"] and a["turns"] == b["turns"]


def test_errors_name_the_bad_file_or_parameter(eval_run: Path, view: View) -> None:
    with view([eval_run]) as url:
        file = file_id(url)
        cases = [
            ("episodes", {}, 400, "file: required"),
            ("episodes", {"file": "nope.jsonl"}, 404, "'nope.jsonl'"),
            ("episodes", {"file": file, "success": "maybe"}, 400, "success: expected true"),
            ("episodes", {"file": file, "min_score": "high"}, 400, "min_score: expected a number"),
            ("episodes", {"file": file, "offset": "-3"}, 400, "offset: expected a number >= 0"),
            ("episode", {"file": file}, 400, "index: required"),
            ("episode", {"file": file, "index": "99"}, 404, "no episode 99"),
            ("episode", {"file": "nope.jsonl", "index": "0"}, 404, "'nope.jsonl'"),
        ]
        for route, params, status, message in cases:
            reply = httpx.get(f"{url}/api/{route}", params=params)
            assert reply.status_code == status, (route, params, reply.text)
            assert message in reply.json()["error"], (route, params, reply.text)


# -- the page in a browser ----------------------------------------------------------------


def test_filter_to_failures_and_read_one_as_a_chat(mixed_run: Path, view: View, page: Any) -> None:
    everything = records(mixed_run / "trajectories.jsonl")
    failed = [i for i, r in enumerate(everything) if not r["success"]]
    assert 1 < len(failed) < len(everything)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with view([mixed_run]) as url:
        file = file_id(url)
        open_route(page, url, "episodes")
        page.click(f"#file-picker a:text('{file}')")
        page.wait_for_selector("#episodes-count[data-complete='true']")
        assert page.locator("#matched").inner_text() == "12"
        page.select_option("#filter-success", "false")
        shown = f"document.querySelector('#matched')?.textContent === '{len(failed)}'"
        page.wait_for_function(shown)
        assert "success=false" in page.url  # the filtered view is a link
        rows = page.locator("#episodes tbody tr")
        assert [int(rows.nth(i).get_attribute("data-index")) for i in range(rows.count())] == failed
        screenshot(page, "episodes")

        rows.nth(1).click()
        page.wait_for_selector("body[data-ready='episode'] #chat")
        record = everything[failed[1]]
        messages = page.locator("#chat .msg")
        assert messages.count() == len(record["messages"])
        for i, message in enumerate(record["messages"]):
            node = messages.nth(i)
            assert node.get_attribute("data-role") == message["role"], i
            assert node.get_attribute("data-loss") == str(message["loss"]).lower(), i
            assert ("loss" in node.get_attribute("class").split()) == message["loss"], i
            badge = node.locator(".who .badge").inner_text()
            assert badge == ("loss" if message["loss"] else "no loss"), i
            assert node.locator("pre.content").inner_text() == message["content"].strip("\n"), i
        actions = page.locator("#chat .turn-line code.action")
        assert [actions.nth(i).inner_text() for i in range(actions.count())] == record["actions"]
        facts = page.locator("#episode-facts")
        assert facts.locator("dd[data-fact='task']").inner_text() == str(record["task_id"])
        assert facts.locator("dd[data-fact='success']").inner_text() == "no"
        assert facts.locator("dd[data-fact='end']").inner_text() == record["end"]
        screenshot(page, "episode")
        # prev/next walk the filtered list
        page.click("#episode-next")
        page.wait_for_function(f"location.hash.includes('index={failed[2]}')")
        page.wait_for_selector(f"#chat .msg >> nth={len(everything[failed[2]]['messages']) - 1}")
    assert errors == []


def test_the_list_updates_while_a_file_is_written(
    eval_run: Path, tmp_path: Path, view: View, page: Any
) -> None:
    lines = lines_of(eval_run)
    run = tmp_path / "live"
    run.mkdir()
    path = run / "trajectories.jsonl"
    path.write_bytes(b"".join(lines[:4]))
    with view([run]) as url:
        open_route(page, url, "episodes?file=live/trajectories.jsonl")
        page.wait_for_selector("#episodes-count[data-complete='true']")
        assert page.locator("#matched").inner_text() == "4"
        page.evaluate("window.__marker = 'same page'")
        with path.open("ab") as file:
            file.write(b"".join(lines[4:9]))
        page.wait_for_function(
            "document.querySelector('#matched')?.textContent === '9'", timeout=15_000
        )
        assert page.evaluate("window.__marker") == "same page"  # no reload
        assert page.locator("#episodes tbody tr").count() == 9


def test_a_parquet_file_without_pyarrow_says_what_to_install(
    eval_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")  # never read: the import fails first
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if not installed
    index = FileIndex(path, None)
    index.refresh()
    with pytest.raises(ValueError, match="needs pyarrow: pip install pyarrow"):
        index.wait(timeout=30)


def test_a_trees_file_is_not_episodes(tmp_path: Path, view: View) -> None:
    tree = {"env_id": "palaestra/Maze-v0", "task_id": 1, "nodes": [{"id": 0}]}
    (tmp_path / "trees.jsonl").write_text(json.dumps(tree) + "\n")
    with view([tmp_path / "trees.jsonl"]) as url:
        reply = httpx.get(f"{url}/api/episodes", params={"file": "trees.jsonl"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "file 'trees.jsonl' holds trees, not trajectories"


def test_the_pager_walks_the_list_fifty_at_a_time(
    eval_run: Path, tmp_path: Path, view: View, page: Any
) -> None:
    lines = lines_of(eval_run)
    (tmp_path / "many.jsonl").write_bytes(b"".join(lines * 11))  # 132 episodes
    with view([tmp_path / "many.jsonl"]) as url:
        open_route(page, url, "episodes?file=many.jsonl")
        page.wait_for_selector("#episodes-count[data-complete='true']")
        rows = page.locator("#episodes tbody tr")
        assert rows.count() == 50 and rows.first.get_attribute("data-index") == "0"
        assert page.locator("#page-prev").is_disabled()
        for first, count in ((50, 50), (100, 32)):
            page.click("#page-next")
            page.wait_for_selector(f"#episodes tbody tr[data-index='{first}']")
            assert f"offset={first}" in page.url
            assert rows.count() == count
        assert page.locator("#page-next").is_disabled()
        rows.nth(3).click()  # opens episode 103; its back link returns to this page
        page.wait_for_selector("body[data-ready='episode'] #chat")
        page.click("#episode-nav a:text('back to the list')")
        page.wait_for_selector("#episodes tbody tr[data-index='100']")


def test_a_tools_episode_shows_its_calls_and_results(tmp_path: Path, view: View, page: Any) -> None:
    out = tmp_path / "todo-tools"
    argv = ["eval", "--policy", "expert", "--envs", "palaestra/Todo-v0", "--format", "tools"]
    assert cli([*argv, "--limit", "2", "--out", str(out), "--quiet"]) == 0
    record = records(out / "trajectories.jsonl")[0]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with view([out]) as url:
        open_route(page, url, f"episode?file={file_id(url)}&index=0")
        page.wait_for_selector("body[data-ready='episode'] #chat")
        messages = page.locator("#chat .msg")
        assert messages.count() == len(record["messages"])
        for i, message in enumerate(record["messages"]):
            node = messages.nth(i)
            assert node.get_attribute("data-role") == message["role"], i
            if message["role"] == "tool":
                label = f"tool result {message['tool_call_id']}"
                assert node.locator(".who b").inner_text() == label
            calls = node.locator("pre.tool-calls")
            if message.get("tool_calls"):
                (call,) = message["tool_calls"]
                function = call["function"]
                shown = f"-> {function['name']}({function['arguments']})  [{call['id']}]"
                assert calls.inner_text() == shown, i
            else:
                assert calls.count() == 0, i
        actions = page.locator("#chat .turn-line code.action")
        assert [actions.nth(i).inner_text() for i in range(actions.count())] == record["actions"]
        screenshot(page, "episode-tools")
    assert errors == []
