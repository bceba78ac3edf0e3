"""Trajectory data: JSONL / Dataset / Parquet round trips, filters, selection, merging."""

from __future__ import annotations

import pytest

pytest.importorskip("datasets")

from palaestra.agents.trajectory import Trajectory
from palaestra.evol.data import (
    best_per_task,
    dataset_card,
    filter_trajectories,
    from_dataset,
    load_trajectories,
    merge,
    read_parquet,
    save_trajectories,
    to_dataset,
    write_parquet,
)

MAZE = "palaestra/Maze-v0"
WORDLE = "palaestra/Wordle-v0"


def make(
    env_id=MAZE,
    task_id=0,
    *,
    split="train",
    sample=0,
    actions=("move up",),
    score=1.0,
    success=None,
    timings=None,
):
    """A trajectory with a system prompt, then one observation and one reply per action."""
    messages = [
        {"role": "system", "content": "You are in a maze.\nReply with one action.", "loss": False},
        {"role": "user", "content": "Start: (1, 1) — café ✓", "loss": False},
    ]
    for i, action in enumerate(actions):
        messages.append({"role": "assistant", "content": f"Action: {action}", "loss": i != 1})
        messages.append({"role": "user", "content": f"obs {i + 1}", "loss": False})
    return Trajectory(
        env_id=env_id,
        task_id=task_id,
        split=split,
        sample=sample,
        seed=1000 + sample,
        messages=messages,
        actions=list(actions),
        rewards=[0.0] * (len(actions) - 1) + [score],
        success=score >= 1.0 if success is None else success,
        score=score,
        turns=len(actions),
        end="terminated",
        invalid_actions=1 if "bad" in actions else 0,
        format_errors=0,
        context_truncations=0,
        prompt_tokens=10 * len(actions),
        completion_tokens=3 * len(actions),
        timings={"total": 0.125, "policy": 0.1, "env": 0.015625} if timings is None else timings,
        model="expert",
        env_version=f"{env_id} palaestra 0.1.0",
    )


def sample_set():
    return [
        make(MAZE, 7, actions=("move up", "move right", "move down")),
        make(MAZE, "7", actions=("move left",), score=0.25),  # a str id, not the int 7
        make(WORDLE, "crane", split="test", actions=("guess crane", "bad"), score=0.0, timings={}),
        make(WORDLE, 3, split=None, sample=2, actions=("guess slate",), score=0.5),
    ]


def dumps(trajectories):
    return [t.to_json() for t in trajectories]


def test_round_trip_jsonl_dataset_parquet_jsonl(tmp_path):
    original = sample_set()
    first = save_trajectories(original, tmp_path / "a" / "t.jsonl")
    loaded = load_trajectories(first)
    assert dumps(loaded) == dumps(original)

    dataset = to_dataset(loaded)
    assert len(dataset) == len(original)
    assert dataset[0]["messages"][2] == {
        "role": "assistant",
        "content": "Action: move up",
        "loss": True,
        # One struct for every message (Arrow): the tool fields are null on text messages.
        "tool_calls": None,
        "tool_call_id": None,
    }
    assert dumps(from_dataset(dataset)) == dumps(original)

    parquet = write_parquet(from_dataset(dataset), tmp_path / "b" / "t.parquet")
    back = read_parquet(parquet)
    assert dumps(back) == dumps(original)
    # load_trajectories reads Parquet too, and mixes file kinds
    assert dumps(load_trajectories([parquet, first])) == dumps(original) * 2

    second = save_trajectories(back, tmp_path / "c.jsonl")
    assert second.read_bytes() == first.read_bytes()
    # task id types survive every step: int 7 and str "7" stay different
    assert [type(t.task_id) for t in load_trajectories(second)] == [int, str, str, int]
    assert [t.split for t in back] == ["train", "train", "test", None]
    assert back[0].timings == {"total": 0.125, "policy": 0.1, "env": 0.015625}
    assert back[2].timings == {}


def test_load_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trajectories(tmp_path / "nope.jsonl")


def test_save_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "t.jsonl"
    save_trajectories(sample_set(), path)
    save_trajectories(sample_set()[:1], path)  # a second save replaces, never appends
    assert dumps(load_trajectories(path)) == dumps(sample_set()[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]
    # a stale temp file from a crash is not appended to: every save has a fresh one
    (tmp_path / ".t.jsonl.stale.tmp.jsonl").write_text("garbage\n")
    save_trajectories(sample_set()[1:2], path)
    assert dumps(load_trajectories(path)) == dumps(sample_set()[1:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t.jsonl.stale.tmp.jsonl", "t.jsonl"]


def test_filters():
    ts = sample_set()

    def ids(selected):
        return [(t.env_id, t.task_id) for t in selected]

    assert filter_trajectories(ts) == ts
    assert ids(filter_trajectories(ts, envs=[WORDLE])) == [(WORDLE, "crane"), (WORDLE, 3)]
    assert ids(filter_trajectories(ts, success=True)) == [(MAZE, 7)]
    assert ids(filter_trajectories(ts, success=False)) == [
        (MAZE, "7"),
        (WORDLE, "crane"),
        (WORDLE, 3),
    ]
    assert ids(filter_trajectories(ts, min_score=0.5)) == [(MAZE, 7), (WORDLE, 3)]
    assert ids(filter_trajectories(ts, min_score=0.25)) == [(MAZE, 7), (MAZE, "7"), (WORDLE, 3)]
    # per env: Maze needs 1.0, Wordle anything above 0.1; envs missing from the dict keep all
    assert ids(filter_trajectories(ts, min_score={MAZE: 1.0, WORDLE: 0.1})) == [
        (MAZE, 7),
        (WORDLE, 3),
    ]
    assert ids(filter_trajectories(ts, min_score={MAZE: 0.5})) == [
        (MAZE, 7),
        (WORDLE, "crane"),
        (WORDLE, 3),
    ]
    assert ids(filter_trajectories(ts, split="test")) == [(WORDLE, "crane")]
    assert ids(filter_trajectories(ts, split="train", envs=[MAZE], min_score=0.5)) == [(MAZE, 7)]
    assert filter_trajectories(ts, envs=[]) == []


def test_best_per_task_highest_score_then_fewest_turns():
    long_win = make(MAZE, 1, sample=0, actions=("a", "b", "c"))
    short_win = make(MAZE, 1, sample=1, actions=("a", "b"))
    other_short_win = make(MAZE, 1, sample=2, actions=("c", "d"))  # a tie: the first seen stays
    short_loss = make(MAZE, 1, sample=3, actions=("a",), score=0.0)
    str_task = make(MAZE, "1", sample=4, actions=("a", "b", "c", "d"), score=0.5)
    other_env = make(WORDLE, 1, sample=5, actions=("guess",), score=0.0)
    best = best_per_task([long_win, short_loss, short_win, str_task, other_short_win, other_env])
    assert [t.sample for t in best] == [1, 4, 5]
    # score beats length
    assert best_per_task([short_loss, long_win]) == [long_win]


def test_merge_drops_exact_duplicates_only():
    a = make(MAZE, 1, sample=0, actions=("move up", "move left"))
    a_again = make(MAZE, 1, sample=3, actions=("move up", "move left"), score=0.5)  # same actions
    b = make(MAZE, 1, sample=1, actions=("move left", "move up"))  # other order
    c = make(MAZE, "1", sample=0, actions=("move up", "move left"))  # other task id type
    d = make(WORDLE, 1, sample=0, actions=("move up", "move left"))  # other env
    merged = merge([a, b], [a_again, c], [d, b])
    assert merged == [a, b, c, d]
    assert merge([a, a]) == [a]
    assert merge() == []


def test_dataset_card():
    card = dataset_card(sample_set())
    assert card == [
        {
            "env": MAZE,
            "split": "train",
            "trajectories": 2,
            "tasks": 2,  # 7 and "7"
            "success": 0.5,
            "mean score": 0.625,
            "mean turns": 2.0,
            "assistant turns": 3,  # replies 1 and 3 of the first, the only reply of the second
            "tool calls": 0,
        },
        {
            "env": WORDLE,
            "split": "None",
            "trajectories": 1,
            "tasks": 1,
            "success": 0.0,
            "mean score": 0.5,
            "mean turns": 1.0,
            "assistant turns": 1,
            "tool calls": 0,
        },
        {
            "env": WORDLE,
            "split": "test",
            "trajectories": 1,
            "tasks": 1,
            "success": 0.0,
            "mean score": 0.0,
            "mean turns": 2.0,
            "assistant turns": 1,
            "tool calls": 0,
        },
    ]
    assert dataset_card([]) == []


def test_write_parquet_replaces_the_file_whole(tmp_path):
    # A reader of the old file keeps reading the whole old file (no in-place rewrite).
    path = tmp_path / "data.parquet"
    write_parquet([make(task_id=i) for i in range(4)], path)
    old = path.read_bytes()
    with path.open("rb") as reader:
        write_parquet([make(task_id=9)], path)
        assert reader.read() == old
    assert [t.task_id for t in read_parquet(path)] == [9]
    assert [p.name for p in tmp_path.iterdir()] == ["data.parquet"]


def test_an_empty_parquet_file_reads_back_as_no_trajectories(tmp_path):
    path = write_parquet([], tmp_path / "none.parquet")
    assert read_parquet(path) == [] and load_trajectories(path) == []
