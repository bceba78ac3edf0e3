"""``palaestra demo``: self-training end to end on a CPU, the main job of ``make demo``.

It builds the embedded tiny model, evaluates the baselines, clones the expert on
a small set of train tasks, runs AgentEvol rounds (:mod:`palaestra.evol.agentevol`)
and, from the same BC model and at the same training steps per round, Agent-R
rounds (:mod:`palaestra.evol.agent_r`, in ``OUT/agent-r``), and writes a report
folder: ``results.md``/``results.json`` (the table), ``run.json`` (every stage;
``--resume`` continues after a crash), ``report.md`` and ``plot.png``. Maze is
played on its 5x5 mazes (task ids divisible by 3, see the Maze docstring) with the
previous turn in every prompt; BC trains on the observations' tokens too
(``SFTConfig.prompt_loss``): without that dense signal the 1M-parameter model sat
at chance for hundreds of steps (0% greedy on 3 of 3 seeds at 600 steps with a
history window), and escaped only on some runs.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import palaestra
from palaestra.agents.rollout import RolloutConfig
from palaestra.envs import env_class
from palaestra.envs.maze import MazeEnv
from palaestra.evol.agent_r import AgentRConfig, run_agent_r
from palaestra.evol.agentevol import AgentEvolConfig, render_evolution_table, run_agentevol
from palaestra.evol.grpo import GRPOConfig, run_grpo
from palaestra.evol.mcts import MCTSConfig
from palaestra.evol.sft import SFTConfig
from palaestra.files import atomic_path, write_json, write_text

__all__ = [
    "DEMO_PRESETS",
    "DemoPreset",
    "agent_r_config",
    "demo_config",
    "grpo_config",
    "plot_results",
    "run_demo",
]

MAZE = "palaestra/Maze-v0"
"""The env the demo plays by default (see the module doc)."""
HISTORY = 1
"""Past turns in every prompt: the model sees its last move and what it saw before it
(without it a model cannot tell that it is going in circles, and a revision cannot
be learned)."""


@dataclass(frozen=True)
class DemoPreset:
    """The budgets of a demo run (see :class:`~palaestra.evol.AgentEvolConfig`)."""

    base_tasks: int
    explore_tasks: int
    explore_from: str
    samples: int
    steps: int
    iteration_steps: int
    iterations: int
    eval_tasks: int
    max_turns: int
    batch_size: int
    learning_rate: float
    retrain: str
    expert_noise: float = 0.0
    agent_r_iterations: int = 1
    search_tasks: int = 50
    simulations: int = 3
    judge: str = "expert"
    revise_from: str = "error"
    base_ratio: float = 1.0
    prompt_loss: bool = True
    grpo: bool = False
    grpo_steps: int = 200
    grpo_group: int = 8
    grpo_tasks_per_step: int = 1
    grpo_lr: float = 2e-4
    grpo_eval_every: int = 0


DEMO_PRESETS: dict[str, DemoPreset] = {
    "full": DemoPreset(
        base_tasks=1000,
        explore_tasks=150,
        explore_from="all",
        samples=2,
        steps=900,
        iteration_steps=300,
        iterations=1,
        eval_tasks=100,
        max_turns=60,
        batch_size=16,
        learning_rate=3e-3,
        retrain="continue",
    ),
    "quick": DemoPreset(
        base_tasks=12,
        explore_tasks=6,
        explore_from="rest",
        samples=2,
        steps=6,
        iteration_steps=3,
        iterations=2,
        eval_tasks=4,
        # The expert needs up to 44 moves on a 5x5 maze: fewer turns leave BC no data.
        max_turns=60,
        batch_size=8,
        learning_rate=3e-3,
        retrain="base",
        search_tasks=4,
        simulations=2,
        grpo=True,
        grpo_steps=2,
        grpo_group=2,
    ),
}


DEMO_PRESETS["rl"] = replace(DEMO_PRESETS["full"], grpo=True)
"""The full demo, then GRPO from the same BC model for as long as AgentEvol's round took."""


def demo_config(
    preset: DemoPreset,
    model: str = "tiny",
    threads: int | None = None,
    envs: tuple[str, ...] = (MAZE,),
) -> AgentEvolConfig:
    """The AgentEvol run of the demo: Maze's 5x5 mazes (and any other ``envs``), with baselines.

    Only Maze by default: with Wordle's expert games mixed into the same budget
    the tiny model learned neither (0% on Maze against 23% for Maze alone).
    """
    # Every Maze flavour among ``envs`` (Maze-v0, MazeCells-v0) plays its 5x5 mazes.
    pools = {
        env_id: {
            split: [t for t in env_class(env_id).tasks(split) if int(t) % 3 == 0]
            for split in ("train", "test")
        }
        for env_id in envs
        if issubclass(env_class(env_id), MazeEnv)
    }
    return AgentEvolConfig(
        envs=envs,
        model=model,
        iterations=preset.iterations,
        base_tasks=preset.base_tasks,
        expert_noise=preset.expert_noise,
        explore_tasks=preset.explore_tasks,
        explore_from=preset.explore_from,
        samples=preset.samples,
        explore_temperature=1.0,
        min_score=1.0,
        keep="best",
        retrain=preset.retrain,
        sft=SFTConfig(
            max_steps=preset.steps,
            batch_size=preset.batch_size,
            learning_rate=preset.learning_rate,
            prompt_loss=preset.prompt_loss,
            save_steps=100,
        ),
        iteration_steps=preset.iteration_steps,
        eval_tasks=preset.eval_tasks,
        eval_temperatures=(0.0, 1.0),
        baselines=("uniform", "random", "heuristic"),
        rollout=RolloutConfig(
            max_turns=preset.max_turns, max_tokens=12, history=HISTORY, system_prompt=False
        ),
        concurrency=50,
        seed=0,
        tasks=pools,
        threads=threads,
    )


def agent_r_config(preset: DemoPreset, evol: AgentEvolConfig, start_from: Path) -> AgentRConfig:
    """The Agent-R run of the demo: from AgentEvol's BC model, at AgentEvol's training steps.

    Its rounds train as many steps as an AgentEvol round (``iteration_steps``) and
    continue or retrain as it does, so the two methods differ only in their data.
    """
    return AgentRConfig(
        envs=evol.envs,
        model=evol.model,
        start_from=str(start_from),
        iterations=preset.agent_r_iterations,
        search_tasks=preset.search_tasks,
        judge=preset.judge,
        revise_from=preset.revise_from,
        base_ratio=preset.base_ratio,
        retrain=evol.retrain,
        mcts=MCTSConfig(k=4, simulations=preset.simulations, max_depth=preset.max_turns),
        sft=evol.sft,
        iteration_steps=evol.iteration_steps,
        eval_tasks=evol.eval_tasks,
        eval_temperatures=evol.eval_temperatures,
        rollout=evol.rollout,
        seed=evol.seed,
        tasks=evol.tasks,
        concurrency=evol.concurrency,
        threads=evol.threads,
    )


def grpo_config(
    preset: DemoPreset, evol: AgentEvolConfig, start_from: Path, budget_s: float
) -> GRPOConfig:
    """The GRPO run of the demo: from AgentEvol's BC model, for ``budget_s`` of training.

    The budget is AgentEvol's round (its explore and train stages) as this run
    measured it, so the table compares them at equal wall time; GRPO samples at
    temperature 1 with the demo's prompts (the same window, reply length and turns)
    and evaluates on the same test tasks with the same seeds.
    """
    return GRPOConfig(
        envs=evol.envs,
        model=str(start_from),
        tasks=evol.tasks,
        group_size=preset.grpo_group,
        tasks_per_step=preset.grpo_tasks_per_step,
        steps=preset.grpo_steps,
        learning_rate=preset.grpo_lr,
        rollout=replace(evol.rollout, temperature=1.0),
        eval_every=preset.grpo_eval_every,
        eval_tasks=evol.eval_tasks,
        eval_temperatures=evol.eval_temperatures,
        max_seconds=budget_s,
        eval_start=False,
        seed=evol.seed,
        threads=evol.threads,
        concurrency=evol.concurrency,
    )


def plot_results(rows: list[dict[str, Any]], path: Path) -> Path:
    """A bar chart: success per policy, one panel per env, greedy and sampled side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from palaestra.agents.evaluate import wilson_interval

    envs = list(dict.fromkeys(r["env"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for offset, (temperature, label) in enumerate(((0.0, "greedy"), (1.0, "t=1"))):
            xs, heights, errors = [], [], [[], []]
            for i, policy in enumerate(policies):
                row = next(
                    (
                        r
                        for r in rows
                        if r["env"] == env
                        and r["policy"] == policy
                        and r["temperature"] == temperature
                    ),
                    None,
                )
                if row is None:
                    continue
                low, high = wilson_interval(row["successes"], row["episodes"])
                xs.append(i + (offset - 0.5) * 0.38)
                heights.append(row["success"])
                errors[0].append(row["success"] - low)
                errors[1].append(high - row["success"])
            if xs:
                ax.bar(xs, heights, width=0.38, yerr=errors, capsize=3, label=label)
        ax.set_xticks(range(len(policies)), policies, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(env)
        ax.set_ylabel("success (95% CI)")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def run_demo(
    out: str | Path = "runs/demo",
    *,
    preset: DemoPreset = DEMO_PRESETS["full"],
    model: str = "tiny",
    resume: bool = False,
    progress: bool = True,
    threads: int | None = None,
    envs: tuple[str, ...] = (MAZE,),
    seed: int = 0,
) -> int:
    """Run the demo (see the module doc); print the table; returns an exit status.

    Args:
        out: The report folder (AgentEvol's run; Agent-R's in ``out/agent-r``).
        preset: The budgets.
        model: The base model.
        resume: Continue the demo in ``out``.
        progress: One progress line per stage.
        threads: torch CPU threads.
        envs: The envs to self-train on.
        seed: The run seed (model init, training, sampling, env seeds).

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
    """
    out = Path(out)
    started = time.perf_counter()
    config = replace(demo_config(preset, model, threads, envs), seed=seed)
    evol = run_agentevol(config, out, resume=resume, progress=progress)
    rows = list(evol.rows)
    agent_r_out = out / "agent-r"
    if preset.agent_r_iterations > 0:
        r_config = agent_r_config(preset, config, out)
        agent_r = run_agent_r(r_config, agent_r_out, resume=resume, progress=progress)
        rows += agent_r.rows
    grpo_lines: list[str] = []
    if preset.grpo:
        evol_stages = json.loads((out / "run.json").read_text())["stages"]
        budget = sum(evol_stages[name]["seconds"] for name in ("explore-1", "train-1"))
        bc_model = out / evol_stages["bc"]["model"]
        grpo = run_grpo(grpo_config(preset, config, bc_model, budget), out / "grpo",
                        resume=resume, progress=progress)  # fmt: skip
        rows += grpo.rows
        record = json.loads((out / "grpo" / "run.json").read_text())["stages"]["grpo"]
        grpo_lines = [
            f"- grpo: {record['steps']} steps of {preset.grpo_group} x "
            f"{preset.grpo_tasks_per_step} episodes in {record['train_seconds']:.0f} s of "
            f"training (AgentEvol's round 1: {budget:.0f} s); curve in grpo/curve.jsonl"
        ]
    table = render_evolution_table(rows)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", rows)
    wall = time.perf_counter() - started
    plot = plot_results(rows, out / "plot.png")
    stages = json.loads((out / "run.json").read_text())["stages"]
    r_stages: dict[str, Any] = {}
    if (agent_r_out / "run.json").exists():
        r_stages = json.loads((agent_r_out / "run.json").read_text())["stages"]
    sizes = [
        f"- {label}{name}: {record.get('trajectories', '?')} trajectories, "
        f"{record.get('examples', '?')} examples, {record.get('steps', '?')} steps, "
        f"{record.get('tokens_per_s', '?')} tokens/s, {record['seconds']:.0f} s"
        for label, source in (("", stages), ("Agent-R ", r_stages))
        for name, record in source.items()
        if (name == "bc" and not label) or name.startswith("train-")
    ]
    explored = [
        f"- {name}: {record['explored']} episodes, {record['successes']} successes, "
        f"{record['kept']} kept ({record['tasks_solved']} tasks)"
        for name, record in stages.items()
        if name.startswith("explore-")
    ]
    searched = [
        f"- {name}: {record['trees']} trees ({record['solved_trees']} with a solved leaf), "
        f"{record['nodes']} nodes, {record['expansions']} expansions, {record['forks']} forks"
        for name, record in r_stages.items()
        if name.startswith("search-")
    ]
    revised = [_revise_line(name, record) for name, record in r_stages.items()]
    all_seconds = sum(r["seconds"] for r in stages.values()) + sum(
        r["seconds"] for r in r_stages.values()
    )
    report = [
        "# palaestra demo",
        "",
        f"palaestra {palaestra.__version__}, {platform.platform()}, model `{model}`, "
        f"seed {seed}; wall time this invocation {wall:.0f} s (all stages: {all_seconds:.0f} s).",
        "",
        "Success on the test tasks (95% Wilson interval); greedy and sampled at t=1. "
        f"{what_it_plays(config)}",
        "",
        table,
        "",
        "Mean turns and loop rate (share of steps repeating an observation and action "
        "already met in the episode), greedy:",
        "",
        _turns_table(rows),
        "",
        "Training (Agent-R's rounds train as many steps as AgentEvol's, from the same BC model):",
        *sizes,
        "",
        "Exploration (AgentEvol):",
        *(explored or ["- (none)"]),
        "",
        "Search (Agent-R):",
        *(searched or ["- (none)"]),
        "",
        "Revision data (Agent-R):",
        *([line for line in revised if line] or ["- (none)"]),
        "",
        *(
            ["Online RL (GRPO, from the BC model, at AgentEvol's wall time):", *grpo_lines, ""]
            if grpo_lines
            else []
        ),
        "Settings: " + json.dumps(asdict(preset)),
        "",
        "![success per policy](plot.png)",
    ]
    write_text(out / "report.md", "\n".join(report) + "\n")
    print()
    print(table)
    print(f"\ndemo finished in {wall:.0f} s; report: {out / 'report.md'}, plot: {plot}")
    return 0


def what_it_plays(config: AgentEvolConfig) -> str:
    """One sentence: the envs and task pools of the demo, and the prompt window."""
    plays = ", ".join(config.envs)
    history = config.rollout.history
    return (
        f"Plays {plays} (5x5 mazes: task ids divisible by 3; MazeCells-v0 moves cell "
        "to cell and says how many cells away the goal is), "
        f"{config.eval_tasks} test tasks; each prompt holds the latest observation"
        + ("" if not history else f" and the {history} turn(s) before it")
        + f"; at most {config.rollout.max_turns} turns an episode."
    )


def _revise_line(name: str, record: dict[str, Any]) -> str:
    if not name.startswith("revise-"):
        return ""
    if record.get("empty"):
        return f"- {name}: {record['empty']}"
    line = (
        f"- {name}: {record['pairs']} pairs, {record['revisions']} revision and "
        f"{record['goods']} good trajectories (alpha {record['alpha']:g}, judge "
        f"{record['judge']}), mean {record['mean_steps_before_error']} steps before the "
        "first error"
    )
    if record.get("revise_from") == "error":
        line += (
            f"; {record['repaired']} of {record['pairs']} bad paths repaired from their "
            "error's own state"
        )
    agreement = record.get("agreement")
    if agreement:
        line += (
            f"; actor and expert judges chose the same splice step on {agreement['same']} "
            f"of {agreement['pairs']} pairs ({agreement['rate']:.0%}; the actor found an "
            f"error after the split on {agreement['actor_found']}, the expert on "
            f"{agreement['expert_found']})"
        )
    return line


def _turns_table(rows: list[dict[str, Any]]) -> str:
    from palaestra.tables import format_table

    lines = [
        [r["policy"], r["env"].split("/")[-1], f"{r['mean turns']:.1f}", f"{r['loop rate']:.1%}"]
        for r in rows
        if r["temperature"] == 0 and "loop rate" in r
    ]
    return format_table(["policy", "env", "mean turns", "loop rate"], lines)
