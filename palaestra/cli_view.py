"""The CLI's ``view`` command (and ``compare``, its printed twin)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from palaestra.servers.local import is_loopback
from palaestra.servers.protocol import TOKEN_ENV

__all__ = ["add_view_commands", "cmd_compare"]

VIEW_DESCRIPTION = (
    "Serve one local web page over run folders: results tables of evals and self-training "
    "runs (with intervals and the run's plot and provenance), episodes as chats with the "
    "loss mark of each message, two runs compared with paired tests, Agent-R's search "
    "trees with their splices, and play a task in the browser against a running `palaestra "
    "serve` (--env-url; the viewer holds its token), with the expert's next move on request. "
    "PATHs are run folders (palaestra eval, evolve, demo), folders of runs, or "
    "data files (trajectories .jsonl/.parquet, trees .jsonl/.json); a run still being "
    "written updates in the page. Binds 127.0.0.1; another address needs a token (one is "
    "made up and printed in the link if you pass --token auto)."
)

COMPARE_DESCRIPTION = (
    "Compare two runs on the tasks both played: RUN_A and RUN_B are `palaestra eval` "
    "folders or trajectories files (.jsonl/.parquet); an evolve run is refused with the list "
    "of its eval folders to pick from (e.g. iter-0/eval/t0 = BC greedy, iter-1/eval/t0 = "
    "AgentEvol round 1 greedy). Episodes are paired by (env, split, task, sample); those only "
    "one run has are counted, not compared. Per env: success of A and B, the paired table "
    "(both solved, neither, only A, only B), McNemar's exact test, mean scores, and paired "
    "bootstrap intervals of the differences; then the flipped tasks with each episode's line "
    "in its file. How to read them: McNemar's test looks only at the tasks that flipped; p is "
    "the chance of a split at least this uneven between 'only A' and 'only B' if the two "
    "policies were equally good, so p < 0.05 says one succeeds more often, and a large p "
    "says the data show no difference (not that there is none). The interval "
    "[low, high] of B - A is a 95% percentile bootstrap over tasks (resampled with their "
    "pairs kept together, --resamples times, seeded by --seed): if it excludes 0, B scores "
    "higher (above 0) or lower (below 0); its width is how much the tasks played can tell."
)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print (or --json) the comparison of two runs."""
    import json

    from palaestra.view.compare import RunRef, compare_runs, format_comparison
    from palaestra.view.evals import resolve_run

    if args.resamples < 1:
        raise ValueError(f"--resamples must be at least 1, not {args.resamples}")
    if args.flips < 0:
        raise ValueError(f"--flips must be 0 or more, not {args.flips}")
    runs = [RunRef(label, resolve_run(label)) for label in (args.run_a, args.run_b)]
    result = compare_runs(*runs, seed=args.seed, resamples=args.resamples, flips=args.flips)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_comparison(result))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the viewer until interrupted."""
    from palaestra.cli import _check_bindable
    from palaestra.servers.local import run_server
    from palaestra.view import create_view_app

    token = args.token
    if token == "auto":
        token = secrets.token_urlsafe(18)
    if not is_loopback(args.host) and not token:
        print(
            f"error: refusing to bind {args.host} without a token; pass --token (or --token "
            "auto for a made-up one)",
            file=sys.stderr,
        )
        return 2
    app = create_view_app(
        args.paths, env_url=args.env_url, env_token=args.env_token, token=token or None
    )
    _check_bindable(args.host, range(args.port, args.port + 1))
    link = f"http://{args.host}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"palaestra view of {', '.join(args.paths)}: {link}", flush=True)
    run_server(app, args.host, args.port, log_level=args.log_level)
    return 0


def add_view_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``view`` and ``compare`` to the CLI's sub-parsers."""
    p = sub.add_parser(
        "view",
        help="a local web page over runs: results, episodes, comparisons, trees, play",
        description=VIEW_DESCRIPTION,
    )
    p.add_argument(
        "paths", nargs="*", default=["runs"], metavar="PATH", help="what to show (default: runs)"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8800, help="port (default 8800)")
    p.add_argument(
        "--token",
        default=os.environ.get("PALAESTRA_VIEW_TOKEN"),
        help="require this token (the printed link carries it; 'auto' makes one up; "
        "default $PALAESTRA_VIEW_TOKEN)",
    )
    p.add_argument(
        "--env-url",
        help="a `palaestra serve` URL for the Play page (default: none; the page says how to "
        "start one)",
    )
    p.add_argument(
        "--env-token",
        default=os.environ.get(TOKEN_ENV),
        help=f"bearer token of --env-url (default ${TOKEN_ENV})",
    )
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=cmd_view)

    c = sub.add_parser(
        "compare",
        help="two runs on the same tasks: paired tests (McNemar, bootstrap) and flipped tasks",
        description=COMPARE_DESCRIPTION,
    )
    c.add_argument(
        "run_a", metavar="RUN_A", help="eval folder or trajectories file (the reference)"
    )
    c.add_argument(
        "run_b", metavar="RUN_B", help="eval folder or trajectories file (differences are B - A)"
    )
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    c.add_argument(
        "--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)"
    )
    c.add_argument(
        "--flips",
        type=int,
        default=20,
        metavar="N",
        help="list the first N flipped tasks of each direction (default 20; 0: none)",
    )
    c.set_defaults(func=cmd_compare)
