"""The self-training sub-commands of ``palaestra``: data, train sft, evolve, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_evol_commands"]

GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
"""``palaestra.evol.grpo.LOSS_TYPES``, restated so that building the parser imports no
training code (a test keeps the two equal)."""


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


# -- data -----------------------------------------------------------------------------


def cmd_data_info(args: argparse.Namespace) -> int:
    """Print the dataset card of trajectory files."""
    from palaestra.evol.data import dataset_card, load_trajectories, transcript
    from palaestra.tables import format_table

    try:
        trajectories = load_trajectories(args.paths)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    rows = dataset_card(trajectories)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    headers = ["env", "split", "trajectories", "tasks", "success", "mean score", "mean turns"]
    headers += ["assistant turns", "tool calls"]
    table = [
        [
            r["env"],
            r["split"],
            r["trajectories"],
            r["tasks"],
            f"{r['success']:.1%}",
            f"{r['mean score']:.3f}",
            f"{r['mean turns']:.1f}",
            r["assistant turns"],
            r["tool calls"],
        ]
        for r in rows
    ]
    print(format_table(headers, table))
    print(f"\n{len(trajectories)} trajectories in {len(args.paths)} file(s)")
    if args.show:
        shown: dict[str, int] = {}
        for t in trajectories:  # the first --show episodes of each env
            if shown.get(t.env_id, 0) < args.show:
                shown[t.env_id] = shown.get(t.env_id, 0) + 1
                print(f"\n{transcript(t)}")
    return 0


def cmd_data_filter(args: argparse.Namespace) -> int:
    """Filter, dedupe and merge trajectory files into one JSONL (or Parquet) file."""
    from palaestra.evol.data import (
        best_per_task,
        filter_trajectories,
        load_trajectories,
        merge,
        save_trajectories,
        write_parquet,
    )

    try:
        groups = [load_trajectories(path) for path in args.paths]
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    kept = filter_trajectories(
        merge(*groups),
        envs=args.envs,
        split=args.split,
        success=True if args.success else None,
        min_score=args.min_score,
    )
    if args.best:
        kept = best_per_task(kept)
    out = Path(args.out)
    if out.suffix == ".parquet":
        write_parquet(kept, out)
    else:
        save_trajectories(kept, out)
    print(f"{len(kept)} of {sum(map(len, groups))} trajectories written to {out}")
    return 0


# -- train ----------------------------------------------------------------------------


def cmd_train_sft(args: argparse.Namespace) -> int:
    """Fine-tune a model on trajectory files (in this process, its launcher's, or on Ray)."""
    from palaestra.evol.data import filter_trajectories, load_trajectories
    from palaestra.evol.progress import quiet_libraries
    from palaestra.evol.sft import SFTConfig, is_main_process, train_sft

    shaped = args.ray_workers != 1 or args.ray_cpus != 1 or args.ray_gpu or args.ray_max_failures
    if args.ray is None and shaped:
        return _fail("--ray-workers, --ray-cpus, --ray-gpu and --ray-max-failures need --ray")
    try:
        data = load_trajectories(args.data)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    if args.success_only:
        data = filter_trajectories(data, success=True)
    config = SFTConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        learning_rate=args.lr,
        history=args.history,
        max_length=args.max_length,
        packing=args.packing,
        lora=args.lora,
        lora_r=args.lora_r,
        seed=args.seed,
        save_steps=args.save_steps,
        threads=args.threads,
        logging_steps=args.logging_steps,
    )
    if args.ray is not None:
        from palaestra.evol.sft_ray import train_sft_ray

        if not args.quiet:
            print(f"training on {args.ray_workers} Ray Train worker(s)", file=sys.stderr)
        result = train_sft_ray(
            args.model,
            data,
            args.out,
            config,
            workers=args.ray_workers,
            address=args.ray or None,
            use_gpu=args.ray_gpu,
            cpus_per_worker=args.ray_cpus,
            max_failures=args.ray_max_failures,
        )
    else:
        # Under accelerate launch / torchrun every process runs this command; the
        # main one keeps the log and prints, the others only train.
        main = is_main_process()
        with quiet_libraries(Path(args.out) / "run.log" if main else None):
            result = train_sft(args.model, data, args.out, config, progress=not args.quiet)
        if not main:
            return 0
    if result.reused:
        print(
            f"{args.out} already holds this training run (same model, data and settings): "
            f"{result.steps} steps on {result.examples} examples; nothing trained"
        )
        print(f"model: {result.model_dir}")
        return 0
    processes = f" in {result.processes} processes" if result.processes > 1 else ""
    print(
        f"trained {result.steps} steps on {result.examples} examples{processes} "
        f"({result.dropped} dropped as too long); {result.tokens_per_s:.0f} tokens/s; "
        f"final loss {result.losses[-1][1] if result.losses else float('nan'):.4f}"
    )
    print(f"model: {result.model_dir}  (try: palaestra eval --policy {result.model_dir} ...)")
    return 0


def _check_envs(env_ids: list[str]) -> None:
    """Refuse an env that is not registered here, or cannot run here, before any work.

    GRPO reads each env's task pools from its class in this process (even with
    ``--url``), so the env must be installed here either way.

    Raises:
        KeyError: An unknown env id (its message lists the installed ones).
        ValueError: An env that is registered but unavailable here (and why).
    """
    from palaestra.envs import list_envs

    infos = {info.id: info for info in list_envs()}
    for env_id in env_ids:
        if env_id not in infos:
            available = sorted(i for i, info in infos.items() if info.unavailable is None)
            raise KeyError(f"unknown env {env_id!r}; installed: {available}")
        if infos[env_id].unavailable is not None:
            raise ValueError(f"{env_id} is unavailable: {infos[env_id].unavailable}")


def cmd_train_grpo(args: argparse.Namespace) -> int:
    """Run (or resume) online multi-turn GRPO; print the table, the curve and where it all is."""
    from palaestra.agents.models import resolve_model
    from palaestra.cli_agents import check_format_envs, rollout_from_args
    from palaestra.evol.agentevol import seeded_model
    from palaestra.evol.grpo import GRPOConfig, run_grpo
    from palaestra.servers.protocol import TOKEN_ENV

    if args.token:
        # Every env client of the run (training and evaluation alike) reads the token
        # from the environment; GRPOConfig.token is left empty, as run.json records the
        # config in full and a secret has no place there.
        os.environ[TOKEN_ENV] = args.token
    try:
        config = GRPOConfig(
            envs=tuple(args.envs),
            model=args.model,
            train_tasks=args.train_tasks,
            group_size=args.group_size,
            tasks_per_step=args.tasks_per_step,
            steps=args.steps,
            learning_rate=args.lr,
            warmup_steps=args.warmup_steps,
            beta=args.beta,
            epsilon=args.epsilon,
            loss_type=args.loss_type,
            scale_rewards=args.scale_rewards,
            reward=args.reward,
            turn_penalty=args.turn_penalty,
            rollout=rollout_from_args(args, temperature=args.temperature),
            eval_every=args.eval_every,
            eval_tasks=args.eval_tasks,
            eval_temperatures=tuple(args.eval_temperatures),
            max_seconds=args.max_seconds,
            eval_start=args.eval_start,
            drop_flat_groups=args.drop_flat_groups,
            weigh_episodes=args.weigh_episodes,
            lora=args.lora,
            lora_r=args.lora_r,
            lora_alpha=args.lora_alpha,
            seed=args.seed,
            save_steps=args.save_steps,
            threads=args.threads,
            concurrency=args.concurrency,
            urls=tuple(args.url or ()),
        )
        # Everything that can be refused is refused here, before a model loads or a
        # run folder is written: the settings, the envs, the format, the model name.
        config.check()
        _check_envs(list(config.envs))
        check_format_envs(config.rollout.format, config.envs)
        # A missing folder, an uncached hub id, a malformed tiny:SEED (the tiny model is
        # built here if the cache lacks it: the run needs it next anyway).
        resolve_model(seeded_model(config.model, config.seed))
        result = run_grpo(config, args.out, resume=args.resume, progress=not args.quiet)
    except KeyError as error:  # str() of a KeyError would quote its message
        return _fail(str(error.args[0]) if error.args else "unknown key")
    except (FileExistsError, FileNotFoundError, ValueError, ImportError) as error:
        return _fail(str(error))
    record = json.loads((result.out / "run.json").read_text())["stages"]["grpo"]
    print()
    print(result.table)
    print()
    stopped = " (stopped by --max-seconds)" if record["steps"] < config.steps else ""
    print(
        f"trained {record['steps']} GRPO step{'s' * (record['steps'] != 1)} in "
        f"{record['train_seconds']:.0f}s of training "
        f"(evaluations excluded){stopped}"
    )
    if result.curve:
        print(_curve_line(result.curve))
    print(f"run folder: {result.out}  (results.md, results.json, run.json, plot.png)")
    print(f"curve: {result.out / 'grpo' / 'curve.jsonl'}")
    print(f"model: {result.model_dir}  (try: palaestra eval --policy {result.model_dir} ...)")
    return 0


def _curve_line(curve: list[dict[str, Any]]) -> str:
    """The learning curve in one line: every point, or the first and last three of a long one."""

    def point(p: dict[str, Any]) -> str:
        return f"step {p['step']} {p['success']:.1%}"

    shown = ", ".join(map(point, curve))
    if len(curve) > 6:
        shown = ", ".join(map(point, curve[:3])) + ", ..., " + ", ".join(map(point, curve[-3:]))
    return f"learning curve (greedy success on {curve[-1]['episodes']} test episodes): {shown}"


def add_ray_train_flags(p: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and the shape of the Ray Train worker group."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="train with Ray Train workers on a Ray cluster (ADDRESS, else RAY_ADDRESS or "
        "the local one; needs the [ray] extra and OUT on a file system the workers share)",
    )
    p.add_argument(
        "--ray-workers", type=int, default=1, metavar="N", help="Ray Train workers (default 1)"
    )
    p.add_argument("--ray-cpus", type=float, default=1, help="CPUs per worker (default 1)")
    p.add_argument("--ray-gpu", action="store_true", help="one GPU per worker (nccl)")
    p.add_argument(
        "--ray-max-failures",
        type=int,
        default=0,
        metavar="N",
        help="restart a failed worker group N times, from the newest checkpoint (default 0)",
    )


# -- evolve ---------------------------------------------------------------------------


def cmd_evolve_agentevol(args: argparse.Namespace) -> int:
    """Run (or resume) AgentEvol."""
    from palaestra.cli_agents import check_format_envs, rollout_from_args
    from palaestra.evol.agentevol import AgentEvolConfig, run_agentevol
    from palaestra.evol.sft import SFTConfig

    try:
        check_format_envs(args.format, args.envs)
        config = AgentEvolConfig(
            envs=tuple(args.envs),
            model=args.model,
            iterations=args.iterations,
            base_tasks=args.base_tasks,
            explore_tasks=args.explore_tasks,
            explore_from=args.explore_from,
            samples=args.samples,
            explore_temperature=args.temperature,
            min_score=args.min_score,
            keep=args.keep,
            retrain=args.retrain,
            sft=SFTConfig(
                max_steps=args.steps,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                lora=args.lora,
            ),
            iteration_steps=args.iteration_steps,
            eval_tasks=args.eval_tasks,
            baselines=tuple(args.baselines),
            rollout=rollout_from_args(args),
            concurrency=args.concurrency,
            seed=args.seed,
            threads=args.threads,
            ray=args.ray,
            ray_workers=args.ray_workers,
        )
        result = run_agentevol(config, args.out, resume=args.resume, progress=not args.quiet)
    except (FileExistsError, FileNotFoundError, ValueError, ImportError) as error:
        return _fail(str(error))
    print()
    print(result.table)
    print(f"\nwritten: {result.out}/results.md, {result.out}/run.json")
    return 0


def cmd_evolve_agent_r(args: argparse.Namespace) -> int:
    """Run (or resume) Agent-R."""
    from palaestra.cli_agents import rollout_from_args
    from palaestra.evol.agent_r import AgentRConfig, run_agent_r
    from palaestra.evol.mcts import MCTSConfig
    from palaestra.evol.sft import SFTConfig

    if args.format == "tools":
        # The tree search writes its nodes' messages itself, as text turns: it would
        # neither pass the tools nor record tool calls.
        return _fail(
            "agent-r does not support --format tools yet (its tree search plays text turns)"
        )
    try:
        config = AgentRConfig(
            envs=tuple(args.envs),
            model=args.model,
            start_from=args.start_from,
            iterations=args.iterations,
            base_tasks=args.base_tasks,
            search_tasks=args.search_tasks,
            alphas=tuple(args.alphas),
            beta=args.beta,
            pairs_per_tree=args.pairs_per_tree,
            goods_per_tree=args.goods_per_tree,
            judge=args.judge,
            revise_from=args.revise_from,
            base_ratio=args.base_ratio,
            retrain=args.retrain,
            mcts=MCTSConfig(
                k=args.k,
                c=args.c,
                simulations=args.simulations,
                max_depth=args.max_depth,
                temperature=args.temperature,
            ),
            sft=SFTConfig(
                max_steps=args.steps,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                lora=args.lora,
            ),
            iteration_steps=args.iteration_steps,
            eval_tasks=args.eval_tasks,
            baselines=tuple(args.baselines),
            rollout=rollout_from_args(args),
            concurrency=args.concurrency,
            seed=args.seed,
            threads=args.threads,
            ray=args.ray,
            ray_workers=args.ray_workers,
        )
        result = run_agent_r(config, args.out, resume=args.resume, progress=not args.quiet)
    except (FileExistsError, FileNotFoundError, ValueError, ImportError) as error:
        return _fail(str(error))
    print()
    print(result.table)
    print(f"\nwritten: {result.out}/results.md, {result.out}/run.json")
    print(f"trees: palaestra tree show {result.out}/iter-1/trees.jsonl")
    return 0


def cmd_tree_show(args: argparse.Namespace) -> int:
    """Print search trees of a trees.jsonl file."""
    from rich.console import Console

    from palaestra.evol.mcts import load_trees
    from palaestra.evol.tree_view import render_tree, tree_marks, tree_summary

    try:
        trees = load_trees(args.path)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    if args.index is not None:
        if not 0 <= args.index < len(trees):
            return _fail(f"--index {args.index}: {args.path} holds {len(trees)} trees")
        trees = [trees[args.index]]
    elif args.all is False:
        trees = trees[:1]
    console = Console(highlight=False, no_color=args.no_color)
    for tree in trees:
        marks = tree_marks(
            tree, pair=args.pair, alpha=args.alpha, beta=args.beta, first_error=args.first_error
        )
        for line in tree_summary(tree, marks):
            console.print(line)
        console.print(render_tree(tree, marks, full=args.full, max_nodes=args.max_nodes))
        console.print()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The self-training demo on the embedded tiny model."""
    from palaestra.demo import DEMO_PRESETS, run_demo

    try:
        return run_demo(
            args.out,
            preset=DEMO_PRESETS[args.preset],
            model=args.model,
            resume=args.resume,
            progress=not args.quiet,
            threads=args.threads,
            envs=tuple(args.envs),
            seed=args.seed,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        return _fail(str(error))


GRPO_DESCRIPTION = """\
Online multi-turn GRPO (TRL's GRPOTrainer) over palaestra envs. Each step plays
--group-size episodes on each of --tasks-per-step train tasks with palaestra's
rollout engine (sampled at --temperature, with the format and history window eval
uses, in this process or on --url servers), rewards each episode (its score by
default), and takes one optimizer step on every reply of those episodes with its
episode's group-relative advantage. The tokens trained on are the ones the model
generated (no re-tokenization of the text); observations are never trained on.
The start model and the trained one are evaluated on the test tasks (greedy, and
each --eval-temperatures) and the learning curve (greedy success on the test tasks)
is taken every --eval-every steps. See docs/online-rl.md.
"""

GRPO_EPILOG = """\
examples:
  palaestra train grpo --out runs/grpo-maze --threads 2
  palaestra train grpo --model runs/demo/iter-0/sft/model --max-tokens 12 --history 1 \\
      --no-system-prompt --steps 200 --max-seconds 600 --out runs/grpo-from-bc
  palaestra train grpo --envs palaestra/Wordle-v0 --model runs/x/model --lora \\
      --url http://127.0.0.1:8000 --out runs/grpo-wordle

The run folder (--out) gets run.json (settings, task plan, seeds, finished stages),
eval-0/ (the start model on the test tasks), grpo/ (checkpoints/, train_log.jsonl:
TRL's log per step; episodes.jsonl: every episode played; curve.jsonl: the learning
curve; model/: the trained model, LoRA merged), eval-1/ (the trained model on the
test tasks), results.md and results.json (start vs GRPO, as palaestra eval's table),
plot.png (the curve) and run.log (what the libraries logged). --resume continues a
stopped run from its last finished stage and newest checkpoint; a finished run
trains nothing again and prints its table.
"""


def _bounded(kind: type, low: float, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float) at least ``low`` (above it with ``above``)."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


def _add_train_grpo(train_sub: argparse._SubParsersAction) -> None:
    """``palaestra train grpo``: every default is GRPOConfig's (and DEFAULT_ROLLOUT's)."""
    from palaestra.cli_agents import add_rollout_flags
    from palaestra.evol.grpo import DEFAULT_ROLLOUT, GRPOConfig
    from palaestra.servers.protocol import TOKEN_ENV

    d = GRPOConfig()
    positive, at_least_0 = _bounded(int, 1), _bounded(int, 0)
    p = train_sub.add_parser(
        "grpo",
        help="online RL: multi-turn GRPO (TRL) on episodes played in the envs, token-exact",
        description=GRPO_DESCRIPTION,
        epilog=GRPO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--envs", nargs="+", default=list(d.envs), metavar="ENV_ID",
        help=f"envs to train on (default {' '.join(d.envs)}); each must be installed here, "
        "even with --url (the task pools are read from it)",
    )  # fmt: skip
    p.add_argument(
        "--model", default=d.model,
        help="start model: tiny (default; tiny:SEED with --seed SEED), a model folder (e.g. "
        "the BC model of a `palaestra evolve` run, RUN/iter-0/sft/model), smollm2, a cached hub id",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    g = p.add_argument_group("GRPO")
    g.add_argument(
        "--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})"
    )
    g.add_argument(
        "--group-size", type=int, default=d.group_size,
        help=f"episodes per task per step, GRPO's G (>= 2; default {d.group_size})",
    )  # fmt: skip
    g.add_argument(
        "--tasks-per-step", type=int, default=d.tasks_per_step,
        help=f"train tasks per step, each played --group-size times; the batch of one "
        f"generate call per turn (default {d.tasks_per_step})",
    )  # fmt: skip
    g.add_argument(
        "--lr", type=_bounded(float, 0, above=True), default=d.learning_rate,
        help=f"AdamW learning rate, constant after warm-up (default {d.learning_rate:g})",
    )  # fmt: skip
    g.add_argument(
        "--warmup-steps", type=at_least_0, default=d.warmup_steps,
        help=f"linear warm-up steps (default {d.warmup_steps})",
    )  # fmt: skip
    g.add_argument(
        "--beta", type=_bounded(float, 0), default=d.beta,
        help=f"KL coefficient to the start model; 0 loads no reference model (default {d.beta:g})",
    )  # fmt: skip
    g.add_argument(
        "--epsilon", type=_bounded(float, 0, above=True), default=d.epsilon,
        help="PPO clip range of the probability ratio; with one update per generation (as "
        "here) the ratio is 1 and the clip does not bind (TRL's setting, kept for parity; "
        f"default {d.epsilon:g})",
    )  # fmt: skip
    g.add_argument(
        "--loss-type", choices=GRPO_LOSS_TYPES, default=d.loss_type,
        help=f"TRL's loss normalisation (default {d.loss_type}: over the step's generated tokens)",
    )  # fmt: skip
    g.add_argument(
        "--scale-rewards", choices=("group", "batch", "none"), default=d.scale_rewards,
        help="divide advantages by the group's reward std, the batch's, or not at all "
        f"(default {d.scale_rewards})",
    )  # fmt: skip
    g.add_argument(
        "--reward", choices=("score", "success", "return"), default=d.reward,
        help="an episode's reward: the env's 0..1 score, success (1/0), or the sum of step "
        f"rewards (default {d.reward})",
    )  # fmt: skip
    g.add_argument(
        "--turn-penalty", type=_bounded(float, 0), default=d.turn_penalty,
        help=f"subtracted from the reward per turn, to prefer short episodes (default "
        f"{d.turn_penalty:g})",
    )  # fmt: skip
    g.add_argument(
        "--train-tasks", type=positive, default=d.train_tasks,
        help="train tasks per env, spread over its train split (default: all)",
    )  # fmt: skip
    g.add_argument(
        "--max-seconds", type=_bounded(float, 0, above=True), default=d.max_seconds,
        help="stop training after this much training time, evaluations excluded (for "
        "comparisons at equal wall time; default: run every step)",
    )  # fmt: skip
    g.add_argument(
        "--keep-flat-groups", dest="drop_flat_groups", action="store_false",
        help="train on the replies of groups whose episodes all got the same reward too "
        "(their advantage is 0; by default they are left out, as DAPO's dynamic sampling "
        "does, unless --beta > 0)",
    )  # fmt: skip
    g.add_argument(
        "--weigh-replies", dest="weigh_episodes", action="store_false",
        help="every reply weighs the same in the loss (by default every episode does: a "
        "reply's advantage is scaled by the mean episode length over its episode's)",
    )  # fmt: skip
    g.add_argument(
        "--no-eval-start", dest="eval_start", action="store_false",
        help="do not evaluate the start model (eval-0); the curve's step 0 is then played",
    )  # fmt: skip
    g.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged after")
    g.add_argument(
        "--lora-r", type=positive, default=d.lora_r, help=f"LoRA rank (default {d.lora_r})"
    )
    g.add_argument(
        "--lora-alpha", type=positive, default=d.lora_alpha,
        help=f"LoRA scaling (default {d.lora_alpha})",
    )  # fmt: skip
    g.add_argument(
        "--save-steps", type=positive, default=d.save_steps,
        help=f"checkpoint every N steps, for --resume (default {d.save_steps})",
    )  # fmt: skip
    g = p.add_argument_group("episodes")
    g.add_argument(
        "--temperature", type=float, default=DEFAULT_ROLLOUT.temperature,
        help="sampling temperature of the training episodes (> 0: GRPO learns from samples; "
        f"default {DEFAULT_ROLLOUT.temperature:g})",
    )  # fmt: skip
    add_rollout_flags(g, DEFAULT_ROLLOUT)
    g.add_argument(
        "--url", action="append",
        help="play on this palaestra server (repeatable: episodes are spread over them); "
        "training and evaluation episodes both",
    )  # fmt: skip
    g.add_argument("--token", default=None, help=f"bearer token for --url (default ${TOKEN_ENV})")
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--eval-every", type=at_least_0, default=d.eval_every,
        help="a point of the learning curve (greedy, on the test tasks) every N steps and at "
        f"the last; 0: only the start (default {d.eval_every})",
    )  # fmt: skip
    g.add_argument(
        "--eval-tasks", type=positive, default=d.eval_tasks,
        help=f"test tasks per env, spread over its test split (default {d.eval_tasks})",
    )  # fmt: skip
    g.add_argument(
        "--eval-temperatures", type=_bounded(float, 0), nargs="*", metavar="T",
        default=list(d.eval_temperatures),
        help="temperatures of the start and final evaluations; greedy (0) is always one "
        "(default: 0 only)",
    )  # fmt: skip
    g.add_argument(
        "--concurrency", type=positive, default=d.concurrency,
        help=f"evaluation episodes at once (default {d.concurrency})",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=d.seed,
        help="run seed: derives the tiny model's init, TRL's seed, sampling and env seeds",
    )  # fmt: skip
    p.add_argument("--threads", type=positive, default=d.threads, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_train_grpo)


# -- parser ---------------------------------------------------------------------------

DEMO_DESCRIPTION = """\
The self-training pipeline end to end on this machine's CPU, in about 15 minutes:
build the embedded tiny model (a 1.1M-parameter Llama and a tokenizer trained on
the envs' text), collect expert trajectories on Maze's 1,000 5x5 train mazes,
behaviour-clone them (prompts hold the latest observation and the turn before it),
evaluate, run an AgentEvol round (sample 2 episodes on 150 train mazes, keep the
best success per maze, fine-tune the BC model 300 more steps on base + kept) and,
from the same BC model, an Agent-R round (MCTS on 50 train mazes; each bad path's
first error, by the maze's expert, repaired from the state it left; revision and
good trajectories plus as many expert ones, 300 more steps), and print the table:
uniform random, random valid moves, a heuristic, BC, AgentEvol and Agent-R, per
env, greedy and sampled, with 95% intervals, then mean turns and loop rates. It
prints one progress line per stage, then the table. The report folder (--out) gets
results.md, results.json, run.json (every stage, resumable), report.md, plot.png,
run.log (what the libraries logged) and agent-r/ (Agent-R's run and its trees).
--preset rl then trains the BC model online with GRPO (palaestra train grpo) for as
long as the AgentEvol round took, and adds its row (grpo/: its run and learning
curve); --preset quick runs every stage, GRPO included, on tiny budgets.
"""


def add_evol_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``data``, ``train``, ``evolve`` and ``demo`` to the ``palaestra`` parser."""
    from palaestra.cli_agents import add_ray_flags, add_rollout_flags
    from palaestra.evol.agentevol import DEFAULT_ROLLOUT

    # data
    data = sub.add_parser("data", help="inspect, filter and convert trajectory files")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = data_sub.add_parser(
        "info", help="the dataset card: per env and split, counts, success, mean turns"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="trajectories .jsonl or .parquet")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--show", type=int, default=0, metavar="N",
        help="also print the first N episodes of each env as transcripts (tool calls "
        "as name(arguments), tool results with their call id; * marks trained turns)",
    )  # fmt: skip
    p.set_defaults(func=cmd_data_info)
    p = data_sub.add_parser(
        "filter", help="merge files, drop duplicates, filter; write .jsonl or .parquet"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="trajectories .jsonl or .parquet")
    p.add_argument("--out", required=True, help="output file (.jsonl, or .parquet)")
    p.add_argument("--envs", nargs="+", default=None, metavar="ENV_ID", help="keep these envs")
    p.add_argument("--split", default=None, help="keep this split")
    p.add_argument("--success", action="store_true", help="keep successes only")
    p.add_argument("--min-score", type=float, default=None, help="keep scores >= this")
    p.add_argument(
        "--best", action="store_true", help="one per task: best score, then fewest turns"
    )
    p.set_defaults(func=cmd_data_filter)

    # train
    train = sub.add_parser("train", help="fine-tune a model on trajectories")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    p = train_sub.add_parser(
        "sft",
        help="supervised fine-tuning (transformers.Trainer) on assistant turns with loss",
        description="Fine-tune on the assistant messages of trajectories whose loss flag "
        "is true. Resumes from OUT/checkpoints when run again with the same --out, model, "
        "data and settings (others are refused); the model lands in OUT/model, a summary in "
        "OUT/sft.json. Several processes or GPUs: run it under accelerate launch or torchrun "
        "(python -m palaestra train sft ...), or on a Ray cluster with --ray; --batch-size is "
        "then split over the processes, which train as one process would "
        "(docs/distributed-training.md).",
    )
    p.add_argument("--data", nargs="+", required=True, help="trajectory files (.jsonl/.parquet)")
    p.add_argument("--model", default="tiny", help="base model: tiny, a folder, smollm2...")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="examples per step, split over the processes (default 16)",
    )
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation (default 1)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument(
        "--history",
        type=int,
        default=None,
        help="past turns per example, as in eval --history (default: whole conversations)",
    )
    p.add_argument("--max-length", type=int, default=2048, help="longest example (tokens)")
    p.add_argument("--packing", action="store_true", help="pack examples into full rows")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged after")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--success-only", action="store_true", help="train on successes only")
    p.add_argument("--save-steps", type=int, default=100, help="checkpoint interval")
    p.add_argument(
        "--logging-steps", type=int, default=10, help="record the loss every N steps (default 10)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_train_flags(p)
    p.set_defaults(func=cmd_train_sft)
    _add_train_grpo(train_sub)

    # evolve
    evolve = sub.add_parser("evolve", help="self-training: AgentEvol, Agent-R")
    evolve_sub = evolve.add_subparsers(dest="evolve_command", required=True, metavar="COMMAND")
    p = evolve_sub.add_parser(
        "agentevol",
        help="behaviour cloning, then rounds of explore / keep successes / retrain / evaluate",
        description="AgentEvol (Xi et al. 2024). Every stage's data, model and table is "
        "saved under --out with a run.json manifest; --resume continues after a crash "
        "from the last finished stage.",
    )
    p.add_argument(
        "--envs",
        nargs="+",
        default=["palaestra/Maze-v0", "palaestra/Wordle-v0"],
        metavar="ENV_ID",
    )
    p.add_argument("--model", default="tiny", help="base model (default tiny)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--iterations", type=int, default=2, help="AgentEvol rounds (default 2)")
    p.add_argument("--base-tasks", type=int, default=200, help="expert-cloned tasks per env")
    p.add_argument("--explore-tasks", type=int, default=200, help="explored tasks per env")
    p.add_argument(
        "--explore-from",
        choices=("rest", "all"),
        default="rest",
        help="explore the train tasks after the base ones (default) or all of them",
    )
    p.add_argument("--samples", type=int, default=2, help="samples per explored task (K)")
    p.add_argument("--temperature", type=float, default=1.0, help="exploration temperature")
    p.add_argument("--min-score", type=float, default=1.0, help="lowest score kept")
    p.add_argument("--keep", choices=("best", "all"), default="best")
    p.add_argument("--retrain", choices=("base", "continue"), default="base")
    p.add_argument("--steps", type=int, default=300, help="behaviour-cloning steps")
    p.add_argument("--iteration-steps", type=int, default=None, help="steps of later rounds")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lora", action="store_true")
    p.add_argument("--eval-tasks", type=int, default=100, help="test tasks per env")
    p.add_argument(
        "--baselines", nargs="*", default=[], metavar="POLICY", help="e.g. uniform random"
    )
    add_rollout_flags(p, DEFAULT_ROLLOUT)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed: derives the tiny model's init, training, sampling and env seeds",
    )
    p.add_argument("--threads", type=int, default=None)
    add_ray_flags(p, "the episodes of every stage (expert, explore, eval)", worker_cpus=False)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evolve_agentevol)

    p = evolve_sub.add_parser(
        "agent-r",
        help="MCTS over forked envs, revision trajectories spliced at the first error, retrain",
        description="Agent-R (Yuan et al. 2025): each round, the current model searches one "
        "MCTS tree per search task (envs forked mid-episode); good/bad leaf paths are paired, "
        "the first error of each bad path is found (by the model itself, --judge actor, or by "
        "the env's expert), and a revision trajectory splices the bad prefix, a reflection "
        "and the good path (--revise-from error: a good path searched for from the error's own "
        "state); the model is fine-tuned on revisions and good paths and "
        "evaluated. --start-from adopts an AgentEvol run's base set and BC model; without it "
        "the run clones the expert first. Trees go to OUT/iter-i/trees.jsonl (see `palaestra "
        "tree show`); --resume continues after a crash.",
    )
    p.add_argument("--envs", nargs="+", default=["palaestra/Maze-v0"], metavar="ENV_ID")
    p.add_argument("--model", default="tiny", help="base model (default tiny)")
    p.add_argument(
        "--start-from",
        default=None,
        metavar="RUN",
        help="a finished agentevol/agent-r run folder whose base set and BC model to start from",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--iterations", type=int, default=3, help="Agent-R rounds (default 3)")
    p.add_argument("--base-tasks", type=int, default=200, help="expert-cloned tasks per env")
    p.add_argument("--search-tasks", type=int, default=100, help="tasks searched per env")
    p.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=[0.5, 0.7, 1.0],
        help="least good-path score of each round; the last repeats (default 0.5 0.7 1.0)",
    )
    p.add_argument("--beta", type=float, default=0.2, help="least good-bad score gap")
    p.add_argument("--pairs-per-tree", type=int, default=4)
    p.add_argument("--goods-per-tree", type=int, default=1)
    p.add_argument("--judge", choices=("actor", "expert"), default="actor")
    p.add_argument(
        "--revise-from",
        choices=("split", "error"),
        default="split",
        help="where a revision's good path starts: 'split', where the pair's paths part "
        "(Agent-R as published); 'error', a good path the model finds by searching on from "
        "the state the bad path's first error left (state-consistent; pairs with none are "
        "dropped)",
    )
    p.add_argument(
        "--base-ratio", type=float, default=0.0, help="expert trajectories mixed in, per own one"
    )
    p.add_argument("--retrain", choices=("base", "continue"), default="continue")
    p.add_argument("--k", type=int, default=4, help="replies sampled per expansion")
    p.add_argument("--c", type=float, default=0.25, help="UCT exploration constant")
    p.add_argument("--simulations", type=int, default=8, help="MCTS iterations per tree")
    p.add_argument("--max-depth", type=int, default=64, help="steps after which a path is cut")
    p.add_argument("--temperature", type=float, default=1.0, help="search sampling temperature")
    p.add_argument("--steps", type=int, default=300, help="behaviour-cloning steps (own BC)")
    p.add_argument("--iteration-steps", type=int, default=None, help="steps of each round")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lora", action="store_true")
    p.add_argument("--eval-tasks", type=int, default=100, help="test tasks per env")
    p.add_argument(
        "--baselines", nargs="*", default=[], metavar="POLICY", help="e.g. uniform random"
    )
    add_rollout_flags(p, DEFAULT_ROLLOUT)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="run seed: derives every random choice")
    p.add_argument("--threads", type=int, default=None)
    add_ray_flags(p, "the expert, baseline and eval episodes (not the searches)", worker_cpus=False)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evolve_agent_r)

    # tree
    tree = sub.add_parser("tree", help="look at MCTS search trees")
    tree_sub = tree.add_subparsers(dest="tree_command", required=True)
    p = tree_sub.add_parser(
        "show",
        help="print a search tree: best path highlighted, a good/bad pair and its splice marked",
        description="Print the search trees of a trees.jsonl file (written by `palaestra evolve "
        "agent-r`): one line per node (action, visits N, mean value Q; how a leaf ended and its "
        "score), single-child runs folded; the best path in bold green; one good/bad pair "
        "([good], [bad]) and the node after which its revision is spliced ([splice]).",
    )
    p.add_argument("path", help="a trees.jsonl file")
    p.add_argument("--index", type=int, default=None, help="show the tree at this line (0-based)")
    p.add_argument("--all", action="store_true", help="show every tree (default: the first)")
    p.add_argument("--pair", type=int, default=0, help="which pair to mark (default 0)")
    p.add_argument("--alpha", type=float, default=0.5, help="least good-path score of a pair")
    p.add_argument("--beta", type=float, default=0.2, help="least score gap of a pair")
    p.add_argument(
        "--first-error", type=int, default=None, help="the bad path's first error (step)"
    )
    p.add_argument("--full", action="store_true", help="one line per node (no folding)")
    p.add_argument("--max-nodes", type=int, default=400, help="lines at most per tree")
    p.add_argument("--no-color", action="store_true", help="plain text")
    p.set_defaults(func=cmd_tree_show)

    # demo
    p = sub.add_parser(
        "demo",
        help="self-train the embedded tiny model end to end (BC, AgentEvol) and print the table",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", help="report folder (default runs/demo)")
    p.add_argument("--resume", action="store_true", help="continue the demo in --out")
    p.add_argument("--model", default="tiny", help="base model (default: the tiny model)")
    p.add_argument(
        "--preset",
        choices=("full", "quick", "rl"),
        default="full",
        help="full (~14 min on 2 cores), quick (a 3-minute smoke run) or rl (full, then "
        "GRPO from the BC model for as long as AgentEvol's round took: ~25 min)",
    )
    p.add_argument(
        "--envs",
        nargs="+",
        default=["palaestra/Maze-v0"],
        metavar="ENV_ID",
        help="envs to self-train on (default: palaestra/Maze-v0, its 5x5 mazes)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed: the tiny model's init, training, sampling and env seeds derive from it",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
