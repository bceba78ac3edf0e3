"""Two runs compared on the tasks both played: per env, paired tests and the flipped tasks.

A run is a ``palaestra eval`` folder or a trajectories file (``.jsonl`` or
``.parquet``). Episodes are paired by :func:`palaestra.agents.trajectory.episode_key`
(env, split, task, sample); an episode only one run has is counted and reported,
never silently dropped. Each env (and all of them together) gets success and score
of both runs, the four cells of the paired success table (both, neither, only A,
only B), McNemar's exact p-value on success, and paired bootstrap intervals of the
score and success differences (see :mod:`palaestra.view.paired_stats`); the
flipped tasks are listed with the line of each run's episode in its file.

Files are streamed a line at a time with orjson and only the summary fields are
kept (no messages), so runs of any size compare in memory proportional to their
episode count. ``palaestra compare`` prints :func:`format_comparison`; the
viewer's Compare page shows the same :func:`compare_runs` result.

With several samples of a task, McNemar's test counts each sample's pair as
independent (samples of one task are correlated, so its p-value is then
optimistic), while the bootstrap resamples tasks with all their samples.

An evolve run (AgentEvol, Agent-R, the demo) holds many evals: it is refused
with a list of its eval folders named by stage
(:func:`palaestra.view.evals.resolve_run`), so the user picks two.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from palaestra.agents.trajectory import episode_key
from palaestra.tables import format_table
from palaestra.view.paired_stats import mcnemar_exact, paired_bootstraps

__all__ = [
    "EpisodeSummary",
    "RunRef",
    "compare_runs",
    "format_comparison",
    "read_summaries",
]

ALPHA = 0.05  # the significance level the readings are stated at
SUMMARY_FIELDS = ("env_id", "split", "task_id", "sample", "success", "score", "turns", "end")


@dataclass(frozen=True, slots=True)
class EpisodeSummary:
    """What a comparison keeps of an episode (no messages).

    Attributes:
        env_id: The env.
        split: The split.
        task_id: The task.
        sample: The sample index of the task.
        success: Whether the task was accomplished.
        score: The 0..1 score.
        turns: Policy replies.
        end: Why it ended.
        index: Its 0-based line (row, in Parquet) in the file.
    """

    env_id: str
    split: str | None
    task_id: Any
    sample: int
    success: bool
    score: float
    turns: int
    end: str
    index: int

    @property
    def key(self) -> str:
        """See :func:`palaestra.agents.trajectory.episode_key`."""
        return episode_key(self.env_id, self.split, self.task_id, self.sample)


@dataclass(frozen=True)
class RunRef:
    """One side of a comparison.

    Attributes:
        label: How the run is named in the output (the path given, or the viewer's id).
        path: Its trajectories file.
        file: The viewer's id of that file (what episode links carry), or None on the CLI.
    """

    label: str
    path: Path
    file: str | None = None


def _summary(record: Any, index: int) -> EpisodeSummary:
    if not isinstance(record, dict):
        raise TypeError(f"a JSON object, not {type(record).__name__}")
    missing = [k for k in ("env_id", "task_id") if k not in record]
    if missing:
        raise TypeError(f"no {', '.join(missing)}")
    return EpisodeSummary(
        env_id=str(record["env_id"]),
        split=record.get("split"),
        task_id=record["task_id"],
        sample=int(record.get("sample") or 0),
        success=bool(record.get("success", False)),
        score=float(record.get("score") or 0.0),
        turns=int(record.get("turns") or 0),
        end=str(record.get("end") or ""),
        index=index,
    )


def _read_jsonl(path: Path) -> Iterator[EpisodeSummary]:
    with path.open("rb") as file:
        for index, raw in enumerate(file):
            if not raw.strip():
                continue
            try:
                yield _summary(orjson.loads(raw), index)
            except (orjson.JSONDecodeError, TypeError, ValueError) as error:
                if not raw.endswith(b"\n"):
                    return  # only the last line lacks its newline: a run still being written
                raise ValueError(f"{path}:{index + 1}: not a trajectory: {error}") from None


def _read_parquet(path: Path) -> Iterator[EpisodeSummary]:
    import pyarrow.parquet

    try:
        parquet = pyarrow.parquet.ParquetFile(str(path))
    except pyarrow.ArrowInvalid as error:
        raise ValueError(f"{path}: not a Parquet file: {error}") from None
    names = set(parquet.schema_arrow.names)
    if parquet.metadata.num_rows == 0:
        return
    columns = [c for c in SUMMARY_FIELDS if c in names]
    index = 0
    for batch in parquet.iter_batches(columns=columns):
        for record in batch.to_pylist():
            task = record.get("task_id")
            if isinstance(task, str):
                # write_parquet stores task ids as JSON (ints and strings in one column).
                try:
                    record["task_id"] = orjson.loads(task)
                except orjson.JSONDecodeError:
                    pass
            try:
                yield _summary(record, index)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: row {index}: not a trajectory: {error}") from None
            index += 1


def read_summaries(path: str | Path) -> Iterator[EpisodeSummary]:
    """The episodes of a trajectories file, a summary each, streamed in file order.

    A last JSONL line without its newline (a run still being written) is skipped.

    Raises:
        ValueError: A line (row) is not a trajectory; the line number says which.
    """
    path = Path(path)
    return _read_parquet(path) if path.suffix == ".parquet" else _read_jsonl(path)


# --- the comparison ----------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _reading(row: dict[str, Any], unit: str) -> str:
    n, b, c = row["n"], row["only_a"], row["only_b"]
    if n == 0:
        return (
            "No episode was played by both runs (same env, split, task and sample): "
            "nothing to compare."
        )
    p = row["mcnemar_p"]
    text = (
        f"B solves {c} {unit}{'' if c == 1 else 's'} A failed and fails {b} A solved; "
        f"McNemar p = {p:.2g}: "
    )
    if p < ALPHA:
        better = "B" if c > b else "A"
        text += f"{better} succeeds more often (significant at {ALPHA:.0%})."
    else:
        text += f"no evidence of a difference at {ALPHA:.0%}."
    score = row["score_diff"]
    contains = score["low"] <= 0 <= score["high"]
    text += (
        f" Score B - A = {score['diff']:+.3f}, {score['level']:.0%} interval "
        f"[{score['low']:+.3f}, {score['high']:+.3f}]"
        + (
            ": it contains 0."
            if contains
            else f": {'B' if score['low'] > 0 else 'A'} scores higher."
        )
    )
    return text


def _row(
    env: str,
    pairs: list[tuple[EpisodeSummary, EpisodeSummary]],
    unpaired: tuple[int, int],
    *,
    seed: int,
    resamples: int,
    unit: str,
) -> dict[str, Any]:
    success_a = [float(a.success) for a, _ in pairs]
    success_b = [float(b.success) for _, b in pairs]
    score_a = [a.score for a, _ in pairs]
    score_b = [b.score for _, b in pairs]
    both = sum(1 for a, b in pairs if a.success and b.success)
    only_a = sum(1 for a, b in pairs if a.success and not b.success)
    only_b = sum(1 for a, b in pairs if b.success and not a.success)
    clusters = [f"{a.env_id}|{a.split}|{type(a.task_id).__name__}:{a.task_id}" for a, _ in pairs]

    if pairs:
        # One set of resamples for both measures: half the work, and coherent intervals.
        score, success = (
            found.to_json()
            for found in paired_bootstraps(
                [(score_a, score_b), (success_a, success_b)],
                clusters=clusters,
                resamples=resamples,
                seed=seed,
            )
        )
    else:
        score = success = {
            "diff": None,
            "low": None,
            "high": None,
            "level": 0.95,
            "resamples": resamples,
        }

    row: dict[str, Any] = {
        "env": env,
        "n": len(pairs),
        "successes_a": int(sum(success_a)),
        "successes_b": int(sum(success_b)),
        "success_a": _mean(success_a),
        "success_b": _mean(success_b),
        "both": both,
        "neither": len(pairs) - both - only_a - only_b,
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": mcnemar_exact(only_a, only_b),
        "score_a": _mean(score_a),
        "score_b": _mean(score_b),
        "score_diff": score,
        "success_diff": success,
        "unpaired_a": unpaired[0],
        "unpaired_b": unpaired[1],
    }
    row["reading"] = _reading(row, unit)
    return row


def _task_order(episode: EpisodeSummary) -> tuple[Any, ...]:
    # Numeric task ids in numeric order, before string ids (one env may not mix, but be safe).
    task = episode.task_id
    numeric = isinstance(task, int | float) and not isinstance(task, bool)
    return (
        episode.env_id,
        str(episode.split),
        0 if numeric else 1,
        task if numeric else str(task),
        episode.sample,
    )


def _side(episode: EpisodeSummary) -> dict[str, Any]:
    return {
        "index": episode.index,
        "success": episode.success,
        "score": episode.score,
        "turns": episode.turns,
        "end": episode.end,
    }


def _flip(a: EpisodeSummary, b: EpisodeSummary) -> dict[str, Any]:
    return {
        "env": a.env_id,
        "split": a.split,
        "task_id": a.task_id,
        "sample": a.sample,
        "a": _side(a),
        "b": _side(b),
    }


def _run_json(run: RunRef, episodes: int, duplicates: int) -> dict[str, Any]:
    return {
        "label": run.label,
        "path": str(run.path),
        "file": run.file,
        "episodes": episodes,
        "duplicates": duplicates,
    }


def compare_runs(
    a: RunRef, b: RunRef, *, seed: int = 0, resamples: int = 10_000, flips: int | None = 20
) -> dict[str, Any]:
    """Compare two runs on the episodes both played.

    Args:
        a: Run A (the reference: differences are B - A).
        b: Run B.
        seed: Seeds the bootstrap.
        resamples: Bootstrap resamples per interval.
        flips: How many flipped tasks of each direction to list (None: all);
            the counts of all of them are in the table either way.

    Returns:
        A JSON-serialisable dict: ``a`` and ``b`` (label, path, file id, episodes,
        duplicate keys ignored), ``envs`` (a row per env: ``n`` paired,
        ``success_a``/``success_b`` rates and counts, ``both``, ``neither``,
        ``only_a``, ``only_b``, ``mcnemar_p``, ``score_a``/``score_b`` means,
        ``score_diff`` and ``success_diff`` (``diff``, ``low``, ``high``, ``level``,
        ``resamples``), ``unpaired_a``/``unpaired_b`` and a ``reading`` sentence),
        ``overall`` (the same over every env), ``flips`` (``a_won``: A succeeded and
        B failed; ``b_won``: the reverse; each ``env``, ``split``, ``task_id``,
        ``sample`` and per side ``index`` (0-based line in the file), ``success``,
        ``score``, ``turns``, ``end``), and ``seed``, ``resamples``, ``alpha``.

    Raises:
        ValueError: A line of either file is not a trajectory.
    """
    first: dict[str, EpisodeSummary] = {}
    duplicates_a = 0
    for episode in read_summaries(a.path):
        if episode.key in first:
            duplicates_a += 1  # keep the first: a resumed run may repeat an episode
        else:
            first[episode.key] = episode
    seen_b: set[str] = set()
    duplicates_b = 0
    episodes_b = 0
    pairs: dict[str, list[tuple[EpisodeSummary, EpisodeSummary]]] = {}
    unpaired_b: dict[str, int] = {}
    for episode in read_summaries(b.path):
        if episode.key in seen_b:
            duplicates_b += 1
            continue
        seen_b.add(episode.key)
        episodes_b += 1
        partner = first.get(episode.key)
        if partner is None:
            unpaired_b[episode.env_id] = unpaired_b.get(episode.env_id, 0) + 1
        else:
            pairs.setdefault(episode.env_id, []).append((partner, episode))
    unpaired_a: dict[str, int] = {}
    for key, episode in first.items():
        if key not in seen_b:
            unpaired_a[episode.env_id] = unpaired_a.get(episode.env_id, 0) + 1
    del seen_b
    for env_pairs in pairs.values():
        env_pairs.sort(key=lambda pair: _task_order(pair[0]))
    all_pairs = sorted((p for ps in pairs.values() for p in ps), key=lambda p: _task_order(p[0]))
    unit = "task" if all(a_.sample == 0 for a_, _ in all_pairs) else "episode"
    envs = sorted(set(pairs) | set(unpaired_a) | set(unpaired_b))
    rows = [
        _row(
            env,
            pairs.get(env, []),
            (unpaired_a.get(env, 0), unpaired_b.get(env, 0)),
            seed=seed,
            resamples=resamples,
            unit=unit,
        )
        for env in envs
    ]
    unpaired = (sum(unpaired_a.values()), sum(unpaired_b.values()))
    if len(pairs) == 1:
        # One env: the overall row is that env's row (no second bootstrap of the same pairs).
        (only,) = pairs
        overall = {**next(r for r in rows if r["env"] == only), "env": "all"}
        overall["unpaired_a"], overall["unpaired_b"] = unpaired
    else:
        overall = _row("all", all_pairs, unpaired, seed=seed, resamples=resamples, unit=unit)
    a_won = [_flip(x, y) for x, y in all_pairs if x.success and not y.success]
    b_won = [_flip(x, y) for x, y in all_pairs if y.success and not x.success]
    if flips is not None:
        a_won, b_won = a_won[: max(0, flips)], b_won[: max(0, flips)]
    return {
        "a": _run_json(a, len(first), duplicates_a),
        "b": _run_json(b, episodes_b, duplicates_b),
        "envs": rows,
        "overall": overall,
        "flips": {"a_won": a_won, "b_won": b_won},
        "seed": seed,
        "resamples": resamples,
        "alpha": ALPHA,
    }


# --- the printed form --------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _interval(found: dict[str, Any], percent: bool = False) -> str:
    if found["diff"] is None:
        return ""
    if percent:
        return f"{found['diff']:+.1%} [{found['low']:+.1%}, {found['high']:+.1%}]"
    return f"{found['diff']:+.3f} [{found['low']:+.3f}, {found['high']:+.3f}]"


TABLE_HEADERS = (
    "env",
    "paired",
    "success A",
    "success B",
    "both",
    "neither",
    "only A",
    "only B",
    "McNemar p",
    "score A",
    "score B",
    "score B-A [95%]",
    "success B-A [95%]",
)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The per-env table's rows (and the overall row when there are several envs)."""
    rows = result["envs"] + ([result["overall"]] if len(result["envs"]) > 1 else [])
    return [
        [
            row["env"],
            str(row["n"]),
            _pct(row["success_a"]),
            _pct(row["success_b"]),
            str(row["both"]),
            str(row["neither"]),
            str(row["only_a"]),
            str(row["only_b"]),
            f"{row['mcnemar_p']:.3g}",
            _num(row["score_a"]),
            _num(row["score_b"]),
            _interval(row["score_diff"]),
            _interval(row["success_diff"], percent=True),
        ]
        for row in rows
    ]


def _flip_table(flips: list[dict[str, Any]]) -> str:
    rows = [
        [
            f["env"],
            str(f["split"]),
            str(f["task_id"]),
            str(f["sample"]),
            f"{f['a']['score']:.2f}",
            f"{f['b']['score']:.2f}",
            str(f["a"]["turns"]),
            str(f["b"]["turns"]),
            str(f["a"]["index"] + 1),
            str(f["b"]["index"] + 1),
        ]
        for f in flips
    ]
    headers = ("env", "split", "task", "sample", "score A", "score B", "turns A", "turns B")
    return format_table((*headers, "line A", "line B"), rows)


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as ``palaestra compare`` prints it: runs, table, readings, flips."""
    a, b, overall = result["a"], result["b"], result["overall"]
    lines = [
        f"A: {a['label']} ({a['episodes']} episodes)",
        f"B: {b['label']} ({b['episodes']} episodes)",
        f"paired by (env, split, task, sample): {overall['n']}; only in A: "
        f"{overall['unpaired_a']}; only in B: {overall['unpaired_b']}"
        + (
            f"; repeated episodes ignored: A {a['duplicates']}, B {b['duplicates']}"
            if a["duplicates"] or b["duplicates"]
            else ""
        ),
        "",
        format_table(TABLE_HEADERS, table_rows(result)),
        "",
    ]
    for row in result["envs"] + ([overall] if len(result["envs"]) > 1 else []):
        lines.append(f"{row['env']}: {row['reading']}")
    for key, title, count in (
        ("b_won", "B won, A lost", overall["only_b"]),
        ("a_won", "A won, B lost", overall["only_a"]),
    ):
        listed = result["flips"][key]
        if not count:
            continue
        shown = f"; the first {len(listed)}" if len(listed) < count else ""
        lines += ["", f"{title}: {count}{shown} (line = line of the episode in its file)"]
        if listed:
            lines.append(_flip_table(listed))
    return "\n".join(lines)
