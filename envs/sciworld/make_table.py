"""Regenerate ``_table.py``, the ScienceWorld task/variation table, from a live JVM.

Run once per ``scienceworld`` release (needs Java)::

    python -m palaestra.envs.sciworld.make_table

It loads each of the 30 tasks, in the package's own order (``tasks.json``, the
paper's numbering 1-1 ... 10-2), asks the simulator for its train, dev and test
variations, and writes them as runs of ``range(start, stop)``. The env reads the
table at import, so ``SciWorldEnv.splits`` (and ``palaestra envs``) never start a
JVM. ``tests/envs/test_sciworld.py`` checks the table against a live JVM.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["TABLE_PATH", "live_table", "main", "render", "runs"]

TABLE_PATH = Path(__file__).with_name("_table.py")


def runs(values: list[int]) -> tuple[tuple[int, int], ...]:
    """``values`` as sorted ``(start, stop)`` runs: ``[0, 1, 2, 5]`` -> ``((0, 3), (5, 6))``."""
    out: list[list[int]] = []
    for value in sorted(values):
        if out and out[-1][1] == value:
            out[-1][1] = value + 1
        else:
            out.append([value, value + 1])
    return tuple((start, stop) for start, stop in out)


def live_table(interface: Any) -> list[tuple[str, str, int, tuple, tuple, tuple]]:
    """The table as a JVM reports it: ``(paper_id, name, variations, train, dev, test)`` rows.

    Args:
        interface: A ScienceWorld ``PythonInterface`` (a py4j proxy).
    """
    from scienceworld.constants import ID2TASK
    from scienceworld.utils import infer_task

    rows = []
    for paper_id, raw_name in ID2TASK.items():
        name = infer_task(raw_name)
        error = interface.load(name, 0, "", False)
        if error:
            raise RuntimeError(f"ScienceWorld could not load {name!r}: {error}")
        rows.append(
            (
                paper_id,
                name,
                int(interface.getTaskMaxVariations(name)),
                runs([int(v) for v in interface.getVariationsTrain()]),
                runs([int(v) for v in interface.getVariationsDev()]),
                runs([int(v) for v in interface.getVariationsTest()]),
            )
        )
    return rows


def render(rows: list[tuple[str, str, int, tuple, tuple, tuple]], version: str) -> str:
    """The source of ``_table.py`` for ``rows``."""
    lines = [
        '"""ScienceWorld\'s tasks and their train/dev/test variations (generated; do not edit).',
        "",
        "Made by ``python -m palaestra.envs.sciworld.make_table`` from a live JVM.",
        "Each row: (paper id, task name, number of variations, train, dev, test), the",
        "splits as ``(start, stop)`` runs of variation indices.",
        '"""',
        "",
        f"SCIENCEWORLD_VERSION = {json.dumps(version)}",
        "",
        "TABLE = (",
    ]
    for row in rows:
        # ruff-format-stable: double quotes; rows too long for one line go one field a line.
        fields = [json.dumps(row[0]), json.dumps(row[1]), *(repr(x) for x in row[2:])]
        one_line = f"    ({', '.join(fields)}),"
        if len(one_line) <= 100:
            lines.append(one_line)
        else:
            lines += ["    (", *(f"        {field}," for field in fields), "    ),"]
    lines += [")", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Write ``_table.py`` (or ``--out``) from a freshly started JVM."""
    from importlib.metadata import version

    from palaestra.envs.sciworld.pool import JvmPool, PoolSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    pool = JvmPool(PoolSettings(max_jvms=1, games_per_jvm=1))
    try:
        game = pool.acquire()
        rows = game.run(live_table)
    finally:
        pool.shutdown()
    args.out.write_text(render(rows, version("scienceworld")))
    total = {
        split: sum(stop - start for row in rows for start, stop in row[3 + i])
        for i, split in enumerate(("train", "dev", "test"))
    }
    print(f"wrote {args.out}: {len(rows)} tasks, variations per split {total}")


if __name__ == "__main__":
    main()
