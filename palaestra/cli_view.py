"""The CLI's ``view`` command (and ``compare``, its printed twin)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from palaestra.servers.local import is_loopback
from palaestra.servers.protocol import TOKEN_ENV

__all__ = ["add_view_commands"]

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
    """Add ``view`` to the CLI's sub-parsers."""
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
