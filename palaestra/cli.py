"""The ``palaestra`` command line: every sub-command (envs ... eval, train, evolve, demo).

The CLI is the one place that sees every layer (envs, servers, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from palaestra.servers.local import is_loopback
from palaestra.servers.protocol import TOKEN_ENV
from palaestra.tables import format_table

__all__ = ["main"]

DESCRIPTION = """\
palaestra: a gym for LLM agents.

Every environment is a gymnasium env with text observations and text actions,
served by one HTTP server and checked by one contract.

examples:
  palaestra envs                          list installed envs and their splits
  palaestra check palaestra/Maze-v0       run the contract (in-process and over HTTP)
  palaestra serve --port 8000             serve every installed env on 127.0.0.1:8000
  palaestra serve --ray --replicas 3 palaestra/Maze-v0   three servers as Ray actors
  palaestra play palaestra/Wordle-v0      play an env yourself in the terminal
  palaestra prepare palaestra/TextWorld-v0 --split test   generate its games now
  palaestra tour                          serve Maze and Wordle; their experts play
  palaestra demo                          self-train the tiny model: BC, AgentEvol, table
  palaestra eval --policy expert --envs all --limit 20   benchmark a policy, print a table
  palaestra serve-policy tiny             a local model as an OpenAI-compatible server

exit status: 0 done; 1 the run failed (a server unreachable or refusing, an env or
model error, a failed check); 2 the command line was wrong (a flag, an unknown env
or task, a missing or unreadable input file); 130 interrupted. A failure is one
`error: ...` line on stderr; set PALAESTRA_DEBUG=1 for its traceback.
"""

DEBUG_ENV = "PALAESTRA_DEBUG"


# -- envs -----------------------------------------------------------------------------


def cmd_envs(args: argparse.Namespace) -> int:
    """List installed envs."""
    from palaestra.envs import list_envs

    infos = list_envs()
    if args.json:
        print(json.dumps([info.to_json() for info in infos], indent=2))
        return 0
    rows = [
        (
            info.id,
            ", ".join(f"{name} {size}" for name, size in info.split_sizes.items()),
            info.max_steps,
            ", ".join(sorted(info.capabilities)) or "-",
        )
        for info in infos
        if info.unavailable is None
    ]
    print(format_table(["env", "splits (tasks)", "max steps", "capabilities"], rows))
    for info in infos:
        if info.unavailable is not None:
            print(f"unavailable here: {info.id}: {info.unavailable}")
    return 0


# -- check ----------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Run the contract on one env, in-process and over HTTP."""
    import contextlib
    import textwrap

    import palaestra
    from palaestra.envs.checker import CheckResult, check
    from palaestra.servers import Settings, create_app, serve_in_thread

    try:
        palaestra.env_class(args.env_id)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2

    def show(result: CheckResult) -> None:
        mark = result.status.upper()
        print(f"  [{mark}] {result.name:<30} {result.seconds:6.2f}s  {result.detail}", flush=True)
        if args.verbose and result.traceback:
            print(textwrap.indent(result.traceback.rstrip(), "      "), flush=True)

    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            app = create_app([args.env_id], Settings(token=args.token))
            url = stack.enter_context(serve_in_thread(app))
            where = f"a temporary server at {url}"
        else:
            where = url
        print(f"checking {args.env_id} ({args.episodes} tasks per split; HTTP via {where})")
        results = check(
            args.env_id,
            episodes=args.episodes,
            remote=lambda: palaestra.make(args.env_id, base_url=url, token=args.token),
            seed=args.seed,
            on_result=show,
        )
    count = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    print(f"{args.env_id}: {count['pass']} passed, {count['fail']} failed, {count['skip']} skipped")
    return 1 if count["fail"] else 0


# -- serve ----------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve envs over HTTP until interrupted."""
    from palaestra.cli_agents import connection_limits
    from palaestra.envs import list_envs
    from palaestra.servers import Settings, create_app
    from palaestra.servers.local import run_server
    from palaestra.servers.protocol import read_token_file
    from palaestra.servers.workers import run_workers, worker_urls

    if args.token_file:
        try:
            args.token = read_token_file(args.token_file)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.ray is None and (args.replicas is not None or args.replica_cpus is not None):
        print("error: --replicas and --replica-cpus need --ray", file=sys.stderr)
        return 2
    if args.ray is not None and "/" in args.ray and "://" not in args.ray:
        # `serve --ray ENV...`: argparse gave --ray the first env id (an address has
        # no "/" but after a scheme).
        args.env_ids, args.ray = [args.ray, *args.env_ids], ""
    if args.ray is not None and args.workers != 1:
        print("error: --workers does not apply to --ray: use --replicas", file=sys.stderr)
        return 2
    if args.ray is None and not is_loopback(args.host) and not args.token and not args.insecure:
        print(
            f"error: refusing to bind {args.host} without a token; pass --token "
            f"(or set {TOKEN_ENV}), or --insecure to serve an open API on the network",
            file=sys.stderr,
        )
        return 2
    infos = {info.id: info for info in list_envs()}
    known = sorted(i for i, info in infos.items() if info.unavailable is None)
    env_ids = args.env_ids or known
    for env_id in env_ids:
        if env_id not in infos:
            print(f"error: unknown env {env_id!r}; installed: {known}", file=sys.stderr)
            return 2
        if infos[env_id].unavailable is not None:
            print(f"error: {env_id} is unavailable: {infos[env_id].unavailable}", file=sys.stderr)
            return 2
    settings = Settings(
        max_sessions=args.max_sessions,
        session_ttl=args.session_ttl,
        step_timeout=args.step_timeout,
        max_action_chars=args.max_action_chars,
        threads=args.threads,
        token=args.token,
        allowed_origins=tuple(args.allow_origin),
    )
    try:
        limits = connection_limits(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.ray is not None:
        try:
            from palaestra.scale import serve_replicas
        except ImportError as error:
            raise ImportError(
                f"--ray needs the ray extra (pip install 'palaestra[ray]'): {error}"
            ) from None
        return serve_replicas(
            env_ids,
            args.replicas if args.replicas is not None else 1,
            address=args.ray or None,
            name=args.name,
            replica_cpus=args.replica_cpus if args.replica_cpus is not None else 1.0,
            settings=settings,
            insecure=args.insecure,
            limits=limits,
        )
    auth = "token required" if args.token else "no token"
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    _check_bindable(args.host, range(args.port, args.port + args.workers))
    if args.workers > 1:
        urls = worker_urls(args.host, args.port, args.workers)
        print(
            f"palaestra serving {', '.join(env_ids)} with {args.workers} workers, one port "
            f"each ({auth}): {' '.join(urls)}\n(a session lives on the worker that made it; "
            f"give clients every URL, e.g. palaestra eval {' '.join('--url ' + u for u in urls)})",
            flush=True,
        )
        return run_workers(
            env_ids, settings, args.host, args.port, args.workers, args.log_level, limits
        )
    app = create_app(env_ids, settings)
    print(f"palaestra serving {', '.join(env_ids)} on http://{args.host}:{args.port} ({auth})")
    run_server(app, args.host, args.port, log_level=args.log_level, limits=limits)
    return 0


def _check_bindable(host: str, ports: range) -> None:
    """Raise OSError naming the address when a port is taken (uvicorn would log and exit 3)."""
    import socket

    for port in ports:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family = infos[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
                probe.bind((host, port))
        except OSError as error:
            raise OSError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


# -- play -----------------------------------------------------------------------------

PLAY_HELP = """commands: :expert (the expert's next action), :actions (valid actions),
          :reset [TASK_ID], :help, :quit (or Ctrl-D); anything else is sent as an action"""


def cmd_play(args: argparse.Namespace) -> int:
    """Play an env yourself in the terminal.

    A mistake (an action after the episode ended, an unknown task id) is answered
    with what went wrong and the session goes on; only a lost server ends it.
    """
    import palaestra
    from palaestra.errors import (
        EnvError,
        EpisodeOverError,
        PalaestraError,
        ServerUnavailableError,
        SessionConflictError,
        SessionNotFoundError,
        UnauthorizedError,
    )

    # Errors that leave no session to go on with: the server is gone or refuses us.
    fatal = (ServerUnavailableError, SessionNotFoundError, UnauthorizedError)
    env = palaestra.make(
        args.env_id, base_url=args.url, **({"token": args.token} if args.url else {})
    )
    try:
        print(f"== {args.env_id} ==\n{env.unwrapped.instruction}\n\n{PLAY_HELP}\n")
        observation, info = env.reset(
            seed=args.seed, options=_task_options(args.task_id) if args.task_id else None
        )
        print(f"[task {info['task_id']}]\n{observation}")
        total = 0.0
        over = False
        while True:
            try:
                line = input("> ").strip()
            except EOFError:
                print()
                break
            if line in (":quit", ":q"):
                break
            if line == ":help":
                print(PLAY_HELP)
                continue
            if line == ":actions":
                print(info.get("available_actions", "this env does not list its actions"))
                continue
            try:
                if line == ":expert":
                    expert = getattr(env.unwrapped, "expert_action", None)
                    print(f"expert: {expert()}" if expert else "no expert: this env has none")
                    continue
                if line.startswith(":reset"):
                    arg = line.split(maxsplit=1)[1:]
                    observation, info = env.reset(options=_task_options(arg[0]) if arg else None)
                    total, over = 0.0, False
                    print(f"[task {info['task_id']}]\n{observation}")
                    continue
                if over:
                    print("the episode is over: :reset [TASK_ID] plays again, :quit ends")
                    continue
                observation, reward, terminated, truncated, info = env.step(line)
            except fatal:
                raise
            except (EpisodeOverError, SessionConflictError) as error:
                print(f"error: {error}; :reset [TASK_ID] plays again, :quit ends")
                continue
            except (PalaestraError, NotImplementedError, KeyError, ValueError) as error:
                # an unknown task, no expert, an env error: say so, keep the session
                text = error.args[0] if isinstance(error, KeyError) and error.args else error
                hint = "; :reset gives a fresh env" if isinstance(error, EnvError) else ""
                print(f"error: {text}{hint}")
                continue
            total += reward
            print(observation)
            if terminated or truncated:
                over = True
                end = "terminated" if terminated else "truncated"
                print(
                    f"-- episode {end} after {info['step']} steps: success={info['success']} "
                    f"score={info['score']:.2f} return={total:g}; :reset to play again, :quit ends"
                )
    finally:
        env.close()
    return 0


def _task_options(text: str) -> dict[str, int | str]:
    """``{"task_id": ...}`` of a typed task id: digits are an int id, anything else a str id."""
    return {"task_id": int(text) if text.isdigit() else text}


# -- prepare --------------------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build an env's generated data ahead of time."""
    import palaestra

    try:
        cls = palaestra.env_class(args.env_id)
        splits = args.split or list(cls.splits)
        for split in splits:
            cls.tasks(split)  # a clear KeyError for a typo, before any work
        for split in splits:
            count = cls.prepare(split, args.limit, workers=args.workers)
            print(f"{args.env_id} {split}: {count or 'nothing'} prepared")
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    return 0


# -- tour -----------------------------------------------------------------------------


def cmd_tour(args: argparse.Namespace) -> int:
    """Serve the envs and let the experts play over HTTP; print a results table."""
    from palaestra.tour import run_tour

    return run_tour(args.envs, episodes=args.episodes, concurrency=args.concurrency, out=args.out)


# -- parser ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _Parser(
        prog="palaestra",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("envs", help="list installed envs (id, splits, max steps, capabilities)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser(
        "check",
        help="run the env contract (gymnasium's check_env, determinism, snapshot, expert, HTTP)",
        description="Run gymnasium's check_env and palaestra's contract on ENV_ID. Without "
        "--url, a temporary server on a free loopback port serves the HTTP check. "
        "A check is skipped (SKIP) when the env does not declare what it checks, when it has "
        "nothing to run on, or when a check it depends on did not pass. "
        "Exit status 1 when any check fails.",
    )
    p.add_argument("env_id", help="a registered env id, e.g. palaestra/Maze-v0")
    p.add_argument("--url", help="check against this running server instead of a temporary one")
    p.add_argument("--episodes", type=int, default=3, help="tasks sampled per split (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of task sampling (default 0)")
    p.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default ${TOKEN_ENV})"
    )
    p.add_argument(
        "--verbose", action="store_true", help="print the whole traceback of each failure"
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "serve",
        help="serve envs over HTTP (FastAPI + uvicorn)",
        description="Serve ENV_IDs (default: every installed env) on one HTTP API. Binds "
        "127.0.0.1 by default; a non-loopback address needs a token or --insecure. Pass "
        f"the token in ${TOKEN_ENV} or --token-file: --token shows in `ps`. Web pages may "
        "not open the WebSocket /v1/ws (a browser's upgrade with a foreign Origin is "
        "refused with 403) unless --allow-origin lists their origin; programs send no "
        "Origin and are not affected.",
    )
    p.add_argument("env_ids", nargs="*", metavar="ENV_ID", help="envs to serve (default: all)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"require this bearer token (default ${TOKEN_ENV}; visible in `ps`)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="require the bearer token stored in PATH (its first line)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages of ORIGIN (scheme://host[:port], or '*') open /v1/ws; repeatable "
        "(default: none but the server's own loopback origin)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind without a token"
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=4096,
        help="open sessions at most; more get 429 (default 4096)",
    )
    p.add_argument(
        "--session-ttl",
        type=float,
        default=600.0,
        help="seconds idle before a session is reaped (default 600)",
    )
    p.add_argument(
        "--step-timeout",
        type=float,
        default=30.0,
        help="seconds per env call before 504 (default 30)",
    )
    p.add_argument(
        "--max-action-chars", type=int, default=4096, help="longest accepted action (default 4096)"
    )
    p.add_argument("--threads", type=int, default=16, help="threads running env code (default 16)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, one port each from --port up (default 1); a session stays on "
        "the worker that made it, so clients get every URL (eval --url ... --url ...)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the servers as Ray actors on the cluster at ADDRESS (default: $RAY_ADDRESS, "
        "else the one started on this machine, else a new local one): --replicas of them, "
        "each on its node's IP and a free port (--host/--port do not apply), restarted by Ray "
        "when killed, found by clients through Ray (palaestra.scale.remote_envs); a token is "
        "generated unless --token or --insecure; needs the ray extra",
    )
    p.add_argument(
        "--replicas", type=int, help="with --ray: server replicas across the cluster (default 1)"
    )
    p.add_argument(
        "--replica-cpus",
        type=float,
        metavar="C",
        help="with --ray: CPUs each replica reserves, at least (default 1; an env may declare "
        "more, and memory: TextEnv.resources)",
    )
    p.add_argument(
        "--name",
        default="palaestra",
        help="with --ray: the replicas' name on the cluster, by which clients find them "
        "(default palaestra)",
    )
    from palaestra.cli_agents import add_connection_flags

    add_connection_flags(p, limit_concurrency=8192)
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("play", help="play an env yourself in the terminal")
    p.add_argument("env_id", help="a registered env id")
    p.add_argument("--task-id", help="task to play (default: a train task drawn from the seed)")
    p.add_argument("--seed", type=int, default=None, help="reset seed")
    p.add_argument("--url", help="play on this server instead of in-process")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help="bearer token for --url")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser(
        "prepare",
        help="build an env's generated data ahead of time (e.g. TextWorld's games)",
        description="Envs that generate their tasks on first use (palaestra/TextWorld-v0 "
        "compiles a game per task) can build them all now, with a progress bar.",
    )
    p.add_argument("env_id", help="a registered env id")
    p.add_argument("--split", action="append", help="split to prepare (repeatable; default all)")
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks of each split")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPUs)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "tour",
        help="serve envs and let their experts play over HTTP; print a results table",
    )
    p.add_argument(
        "--envs",
        nargs="+",
        default=["palaestra/Maze-v0", "palaestra/Wordle-v0"],
        metavar="ENV_ID",
        help="envs whose experts play, or all: every installed env with an expert "
        "(default: palaestra/Maze-v0 palaestra/Wordle-v0, the two that take seconds)",
    )
    p.add_argument(
        "--episodes", type=int, default=20, help="episodes per env and split (default 20)"
    )
    p.add_argument("--concurrency", type=int, default=16, help="concurrent sessions (default 16)")
    p.add_argument(
        "--out", default="runs/tour", help="where results.json/results.md go (default runs/tour)"
    )
    p.set_defaults(func=cmd_tour)

    from palaestra.cli_agents import add_agent_commands
    from palaestra.cli_evol import add_evol_commands
    from palaestra.cli_view import add_view_commands

    add_agent_commands(sub)
    add_evol_commands(sub)
    add_view_commands(sub)
    return parser


def exit_status(error: BaseException) -> int | None:
    """The exit status of an expected failure: 2 bad command line, 1 failed run; None: a bug.

    ``KeyError`` is how the registry names an unknown env, task or split, and
    ``ValueError`` how settings and input files are refused, so both are usage errors.
    """
    from palaestra.errors import PalaestraError, UnknownTaskError

    usage = (
        KeyError,
        UnknownTaskError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
    )
    if isinstance(error, usage):
        return 2
    if isinstance(error, PalaestraError):
        return 1
    if isinstance(error, ValueError):
        return 2
    if isinstance(error, (OSError, ImportError)):
        return 1
    return None


def error_line(error: BaseException) -> str:
    """``error: ...``, one line, saying what failed in the user's terms."""
    from palaestra.errors import UnauthorizedError

    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        text = error.args[0]  # str(KeyError) would quote the message
    else:
        text = str(error) or type(error).__name__
    if isinstance(error, UnauthorizedError):
        text += f" (pass --token, or set {TOKEN_ENV})"
    return "error: " + " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``palaestra`` console script.

    Every expected failure (see :func:`exit_status`) ends as one ``error:`` line on
    stderr and exit status 1 or 2; ``PALAESTRA_DEBUG=1`` lets it raise with its traceback.
    A command may set ``$PALAESTRA_TOKEN`` for its env clients (``eval --token``);
    it is put back as it was on return, so a caller in the same process (a test, a
    script calling ``main``) and the processes it starts later do not inherit it.
    """
    args = build_parser().parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        status = exit_status(error)
        if status is None or os.environ.get(DEBUG_ENV):
            raise
        print(error_line(error), file=sys.stderr)
        return status
    finally:
        if token is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = token


if __name__ == "__main__":
    sys.exit(main())
