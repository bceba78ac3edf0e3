"""Trajectory data: JSONL on disk, Hugging Face ``datasets`` and Parquet views, filters.

JSONL (one :class:`~palaestra.agents.Trajectory` per line, as ``palaestra eval``
writes it) is the canonical file. :func:`to_dataset` gives a
``datasets.Dataset`` (messages as a list of ``{role, content, loss, tool_calls,
tool_call_id}``), which :func:`write_parquet` saves and :func:`read_parquet` reads
back, so ``JSONL -> Dataset -> Parquet -> JSONL`` returns the same trajectories.

Tool calls: every message row has the same struct (Arrow needs one type per
column), so text messages carry ``tool_calls`` and ``tool_call_id`` as nulls,
dropped again on the way back; a call's ``arguments`` stay a JSON text (as in
OpenAI's shape), since the argument objects of different tools share no struct
type. The columns are typed explicitly (:data:`MESSAGE_FEATURES`), so a file of
text episodes and a file of tool episodes have the same schema and concatenate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.agents.trajectory import Trajectory, TrajectoryWriter, read_trajectories
from palaestra.files import atomic_path

if TYPE_CHECKING:
    import datasets

__all__ = [
    "best_per_task",
    "dataset_card",
    "filter_trajectories",
    "from_dataset",
    "load_trajectories",
    "merge",
    "read_parquet",
    "record_of_row",
    "save_trajectories",
    "to_dataset",
    "transcript",
    "write_parquet",
]

# task ids may be ints or strings across envs, tool definitions are free-form JSON schemas:
# the Dataset columns hold them as JSON text.
_JSON_COLUMNS = ("task_id", "timings", "tools")
# Message fields that only tool messages have: None in the Dataset, absent from the message.
_TOOL_FIELDS = ("tool_calls", "tool_call_id")


def _message_features() -> Any:
    import datasets

    call = {
        "id": datasets.Value("string"),
        "type": datasets.Value("string"),
        "function": {"name": datasets.Value("string"), "arguments": datasets.Value("string")},
    }
    return [
        {
            "role": datasets.Value("string"),
            "content": datasets.Value("string"),
            "loss": datasets.Value("bool"),
            "tool_calls": [call],
            "tool_call_id": datasets.Value("string"),
        }
    ]


def load_trajectories(paths: str | Path | Sequence[str | Path]) -> list[Trajectory]:
    """Trajectories from JSONL files (or Parquet files written by :func:`write_parquet`).

    Raises:
        FileNotFoundError: A path does not exist.
        ValueError: A line is not a trajectory.
    """
    out: list[Trajectory] = []
    for path in [paths] if isinstance(paths, str | Path) else paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no trajectory file at {path}")
        out += read_parquet(path) if path.suffix == ".parquet" else read_trajectories(path)
    return out


def save_trajectories(trajectories: Iterable[Trajectory], path: str | Path) -> Path:
    """Write ``trajectories`` to a JSONL file atomically (a temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, TrajectoryWriter(tmp) as writer:
        for t in trajectories:
            writer.write(t)
    return path


def to_dataset(trajectories: Sequence[Trajectory]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one row per trajectory."""
    import datasets

    rows = []
    for t in trajectories:
        row = t.to_json()
        for column in _JSON_COLUMNS:
            row[column] = json.dumps(row.get(column))  # every row has every column
        row["messages"] = [
            {
                "role": m["role"],
                "content": m["content"],
                "loss": bool(m.get("loss", False)),
                "tool_calls": [_call_row(c) for c in m["tool_calls"]]
                if m.get("tool_calls")
                else None,
                "tool_call_id": m.get("tool_call_id"),
            }
            for m in row["messages"]
        ]
        rows.append(row)
    if not rows:
        return datasets.Dataset.from_list(rows)
    import pyarrow

    # Inferred types depend on the rows (a column of only nulls, no tool call at all):
    # fix the messages' type so every dataset of trajectories has the same schema.
    table = pyarrow.Table.from_pylist(rows)
    messages = datasets.Features({"messages": _message_features()}).arrow_schema.field("messages")
    schema = pyarrow.schema([messages if f.name == "messages" else f for f in table.schema])
    return datasets.Dataset(table.cast(schema))


def _call_row(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call as the Dataset stores it: ``arguments`` a JSON text (see the module doc)."""
    function = call["function"]
    arguments = function.get("arguments")
    if not isinstance(arguments, str):  # written by hand as an object: keep it, as text
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": call.get("id"),
        "type": call.get("type", "function"),
        "function": {"name": function["name"], "arguments": arguments},
    }


def _message_of_row(message: dict[str, Any]) -> dict[str, Any]:
    """A Dataset message back as a trajectory's: the null tool fields dropped."""
    out = {k: v for k, v in message.items() if k not in _TOOL_FIELDS}
    for key in _TOOL_FIELDS:
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def record_of_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of :func:`to_dataset` (or of its Parquet file) as a trajectory's JSON record.

    Decodes the columns stored as JSON text and drops the null tool fields that
    every message carries in the Dataset's one schema. Readers of Parquet files
    that do not go through ``datasets`` (e.g. ``palaestra view``) use this too.
    """
    row = dict(row)
    for column in _JSON_COLUMNS:
        if isinstance(row.get(column), str):  # files from before "tools" lack it
            row[column] = json.loads(row[column])
    if "messages" in row:
        row["messages"] = [_message_of_row(m) for m in row["messages"]]
    if row.get("tools") is None:
        row.pop("tools", None)
    return row


def from_dataset(dataset: datasets.Dataset) -> list[Trajectory]:
    """Inverse of :func:`to_dataset` (also reads datasets made before tool calls)."""
    return [Trajectory.from_json(record_of_row(row)) for row in dataset]


def write_parquet(trajectories: Sequence[Trajectory], path: str | Path) -> Path:
    """Save ``trajectories`` as Parquet (through :func:`to_dataset`), atomically."""
    path = Path(path)
    import datasets

    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per write is noise in a command's output
    try:
        with atomic_path(path) as tmp:
            to_dataset(trajectories).to_parquet(str(tmp))
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return path


def read_parquet(path: str | Path) -> list[Trajectory]:
    """Trajectories from a Parquet file of :func:`write_parquet`.

    Raises:
        ValueError: The file is not Parquet (``pyarrow.ArrowInvalid``), or a row is
            not a trajectory.
    """
    import datasets
    import pyarrow.parquet

    # Read the table directly: no copy into the datasets cache (and no progress bars), and
    # a file of no trajectories (which has no columns) reads back as empty.
    table = pyarrow.parquet.read_table(str(path))
    if table.num_rows == 0:
        return []
    try:
        return from_dataset(datasets.Dataset(table))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a trajectory file: {error!r}") from None


def filter_trajectories(
    trajectories: Iterable[Trajectory],
    *,
    envs: Sequence[str] | None = None,
    split: str | None = None,
    success: bool | None = None,
    min_score: float | dict[str, float] | None = None,
) -> list[Trajectory]:
    """The trajectories that pass every given filter.

    Args:
        trajectories: The input.
        envs: Keep only these env ids.
        split: Keep only this split.
        success: Keep only successes (True) or failures (False).
        min_score: Keep scores at or above this; a dict gives a threshold per env
            id (envs missing from it keep everything).
    """
    out = []
    for t in trajectories:
        if envs is not None and t.env_id not in envs:
            continue
        if split is not None and t.split != split:
            continue
        if success is not None and t.success != success:
            continue
        if min_score is not None:
            bar = min_score.get(t.env_id) if isinstance(min_score, dict) else min_score
            if bar is not None and t.score < bar:
                continue
        out.append(t)
    return out


def _rank(t: Trajectory) -> tuple[float, int, int]:
    return (-t.score, t.turns, t.invalid_actions)


def best_per_task(trajectories: Iterable[Trajectory]) -> list[Trajectory]:
    """One trajectory per (env, task): the highest score, then the fewest turns.

    Ties keep the first seen, so the result is deterministic for a given order.
    """
    best: dict[tuple[str, str], Trajectory] = {}
    for t in trajectories:
        key = (t.env_id, json.dumps(t.task_id))
        if key not in best or _rank(t) < _rank(best[key]):
            best[key] = t
    return list(best.values())


def merge(*groups: Iterable[Trajectory]) -> list[Trajectory]:
    """Concatenate groups, dropping exact duplicates (same env, task and actions)."""
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for group in groups:
        for t in group:
            key = (t.env_id, json.dumps(t.task_id), tuple(t.actions))
            if key not in seen:
                seen.add(key)
                out.append(t)
    return out


def dataset_card(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """Per (env, split): trajectories, distinct tasks, success rate, mean score and turns.

    Also the trained assistant turns and the tool calls made (assistant messages with
    ``tool_calls``: episodes of the tools format); :func:`transcript` shows an episode.
    """
    groups: dict[tuple[str, str], list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        groups[(t.env_id, str(t.split))].append(t)
    rows = []
    for (env_id, split), ts in sorted(groups.items()):
        rows.append(
            {
                "env": env_id,
                "split": split,
                "trajectories": len(ts),
                "tasks": len({json.dumps(t.task_id) for t in ts}),
                "success": sum(t.success for t in ts) / len(ts),
                "mean score": sum(t.score for t in ts) / len(ts),
                "mean turns": sum(t.turns for t in ts) / len(ts),
                "assistant turns": sum(
                    1 for t in ts for m in t.messages if m["role"] == "assistant" and m.get("loss")
                ),
                "tool calls": sum(len(m.get("tool_calls") or ()) for t in ts for m in t.messages),
            }
        )
    return rows


def transcript(trajectory: Trajectory, *, width: int = 300) -> str:
    """An episode as readable text: a heading, then one block per message.

    Each message is headed by its role (``assistant*`` when trained on); a tool call
    shows as ``-> name({arguments})`` with its id, a tool result as
    ``[tool call_3] <result>``. Long contents are cut at ``width`` characters.
    """
    t = trajectory
    outcome = "success" if t.success else "failure"
    lines = [
        f"== {t.env_id} {t.split} task {t.task_id} sample {t.sample}: {outcome}, "
        f"score {t.score:.2f}, {t.turns} turns, ended {t.end or '?'}"
    ]
    if t.tools:
        names = ", ".join(str(d.get("function", {}).get("name")) for d in t.tools)
        lines.append(f"   tools given: {names}")
    for m in t.messages:
        role = m["role"] + ("*" if m.get("loss") else "")
        if m["role"] == "tool":
            role = f"tool {m.get('tool_call_id', '?')}"
        content = _cut(str(m.get("content") or ""), width)
        body = [content] if content else []
        for call in m.get("tool_calls") or ():
            function = call.get("function", {})
            arguments = _cut(str(function.get("arguments", "")), width)
            body.append(f"-> {function.get('name')}({arguments})  [{call.get('id')}]")
        lines.append(f"[{role}] " + ("\n    ".join(body) if body else "(empty)"))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    text = text.strip().replace("\n", "\n    ")
    return text if len(text) <= width else text[: width - 3] + "..."
