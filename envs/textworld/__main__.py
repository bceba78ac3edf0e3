"""``python -m palaestra.envs.textworld prepare --split train``: make the games ahead of time.

Also the entry point of the generating subprocesses (``_generate CACHE TASK_ID...``)
that :func:`palaestra.envs.textworld.games.ensure_games` starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from palaestra.envs.textworld.games import cache_dir, prepare, run_generator


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m palaestra.envs.textworld")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="generate a split's games into the cache")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    p.add_argument("--workers", type=int, default=None, help="games made at once (default: CPUs)")
    p = sub.add_parser("_generate", help=argparse.SUPPRESS)
    p.add_argument("root", type=Path)
    p.add_argument("task_ids", type=int, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        paths = prepare(args.split, args.limit, workers=args.workers)
        print(f"{len(paths)} {args.split} games in {cache_dir()}")
        return 0
    return run_generator(args.root, args.task_ids)


if __name__ == "__main__":
    sys.exit(main())
