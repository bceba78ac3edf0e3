"""Agent-R (Yuan et al. 2025, arXiv 2501.11425): learn to notice and repair mistakes.

Each iteration ``i`` of a run:

1. ``search-i``: the current model searches one MCTS tree per search task
   (:mod:`palaestra.evol.mcts`, envs forked mid-episode) -> ``iter-i/trees.jsonl``.
2. ``revise-i``: from each tree, pairs (good, bad) of leaf paths (good score >=
   ``alpha`` of the iteration, score gap > ``beta``); the first error of each bad
   path, by the judge (``"actor"``: the current model, Good/Bad per step;
   ``"expert"``: the env's expert); a revision trajectory per pair (bad prefix
   up to the error, loss off; a reflection; the good path, loss on; with
   ``revise_from="error"``, a good path the model finds from the error's own
   state, searched on there -> ``iter-i/repaired.jsonl``), plus good
   paths alone -> ``iter-i/data.jsonl`` (with base trajectories mixed in at
   ``base_ratio``). Where the env has an expert, both judges run and their
   agreement is recorded.
3. ``train-i``: fine-tune the current model (``retrain="continue"``) or the base
   model (``"base"``) on it for ``iteration_steps``.
4. ``eval-i``: the new model on the test tasks (greedy and sampled).

A run starts either from scratch (``baselines``, ``expert`` and ``bc`` stages, as
AgentEvol's) or ``start_from`` a finished run folder (AgentEvol's or Agent-R's),
whose base set and BC model it adopts: the demo runs Agent-R from AgentEvol's BC
model, so both methods start from the same weights. Stages are resumable
(:mod:`palaestra.evol.stages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.evaluate import env_packages
from palaestra.agents.policy import Policy
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig
from palaestra.agents.trajectory import Trajectory
from palaestra.envs import TaskId
from palaestra.evol.agentevol import (
    DEFAULT_ROLLOUT,
    AgentEvolConfig,
    AgentEvolResult,
    _Run,
    plan_tasks,
    render_evolution_table,
)
from palaestra.evol.data import load_trajectories, save_trajectories
from palaestra.evol.mcts import MCTS, MCTSConfig, load_trees, save_trees
from palaestra.evol.progress import StageLine
from palaestra.evol.reflection import (
    AgentRData,
    agent_r_data,
    judge_agreement,
    repair_trajectory,
    repaired_pair,
)
from palaestra.evol.sft import SFTConfig
from palaestra.evol.stages import Stages
from palaestra.files import write_json, write_text
from palaestra.settings import NOT_IDENTITY

__all__ = ["AgentRConfig", "run_agent_r"]


@dataclass
class AgentRConfig:
    """An Agent-R run.

    Attributes:
        envs: Env ids to search, train and evaluate on.
        model: The base model (``"tiny"`` is built with the run seed).
        start_from: A finished run folder (``palaestra evolve agentevol``'s or
            ``agent-r``'s) whose base set (``base/data.jsonl``) and BC model
            (``iter-0/sft/model``) this run adopts instead of its own expert and
            BC stages; its task plan is adopted too.
        iterations: Search-revise-train rounds.
        base_tasks: Train tasks per env the expert plays for BC (own BC only).
        search_tasks: Train tasks per env searched each round (spread over all
            train tasks; each round searches the same tasks with its own seeds).
        alphas: Least good-path score of each round (the last repeats); Agent-R
            raises it round by round.
        beta: Least score gap between a pair's good and bad path.
        pairs_per_tree: Most pairs (revision trajectories) per tree.
        goods_per_tree: Good paths per tree trained on as they are.
        judge: Who finds a bad path's first error: ``"actor"`` (the current
            model) or ``"expert"`` (the env's expert, where it has one).
        revise_from: Where a revision's good path starts. ``"split"`` (Agent-R as
            published): the good path of the pair, from where the two paths
            parted, after the bad prefix up to the error (the spliced episode is
            not one the env would play). ``"error"``: the current model searches on
            (``MCTS.repair``, one expansion with ``k`` replies played out) from the
            state the first error left, and a good leaf found there continues the
            bad prefix (a state-consistent revision; pairs with none are dropped).
        base_ratio: Base (expert) trajectories mixed into each round's data, as
            a share of the round's own trajectories (0: none).
        retrain: ``"continue"`` from the current model or ``"base"`` (BC's start).
        mcts: Search settings.
        sft: Training settings of BC (``max_steps``) and of each round.
        iteration_steps: Training steps of each round (default ``sft.max_steps``).
        eval_tasks: Test tasks per env.
        eval_temperatures: One evaluation per temperature (0 = greedy).
        baselines: Baseline policies for the table (own BC only).
        rollout: How every episode is played (temperature and seed set per stage).
        seed: The run seed: every random choice derives from it.
        tasks: Explicit ``{env: {"train": [...], "test": [...]}}`` task pools.
        concurrency: Episodes at once (speed only).
        threads: torch CPU threads (speed only).
        ray: Play the expert, baseline and evaluation episodes on Ray rollout
            workers (see :class:`~palaestra.evol.agentevol.AgentEvolConfig`; the
            tree searches stay in this process).
        ray_workers: Rollout workers with ``ray`` (default: one per node).
    """

    envs: tuple[str, ...] = ("palaestra/Maze-v0",)
    model: str = "tiny"
    start_from: str | None = None
    iterations: int = 3
    base_tasks: int = 200
    search_tasks: int = 100
    alphas: tuple[float, ...] = (0.5, 0.7, 1.0)
    beta: float = 0.2
    pairs_per_tree: int = 4
    goods_per_tree: int = 1
    judge: str = "actor"
    revise_from: str = "split"
    base_ratio: float = 0.0
    retrain: str = "continue"
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    iteration_steps: int | None = None
    eval_tasks: int = 100
    eval_temperatures: tuple[float, ...] = (0.0, 1.0)
    baselines: tuple[str, ...] = ()
    rollout: RolloutConfig = DEFAULT_ROLLOUT
    seed: int = 0
    tasks: dict[str, dict[str, list[TaskId]]] | None = None
    concurrency: int = field(default=32, metadata=NOT_IDENTITY)
    threads: int | None = field(default=None, metadata=NOT_IDENTITY)
    ray: str | None = field(default=None, metadata=NOT_IDENTITY)
    ray_workers: int | None = field(default=None, metadata=NOT_IDENTITY)

    def __post_init__(self) -> None:
        if self.judge not in ("actor", "expert"):
            raise ValueError(f"judge must be 'actor' or 'expert', not {self.judge!r}")
        if self.revise_from not in ("split", "error"):
            raise ValueError(f"revise_from must be 'split' or 'error', not {self.revise_from!r}")
        if self.retrain not in ("base", "continue"):
            raise ValueError(f"retrain must be 'base' or 'continue', not {self.retrain!r}")
        if self.iterations < 1 or self.search_tasks < 1 or not self.alphas:
            raise ValueError("need iterations >= 1, search_tasks >= 1 and at least one alpha")
        if self.base_ratio < 0:
            raise ValueError(f"base_ratio must be >= 0, not {self.base_ratio}")
        for name, kind in (("mcts", MCTSConfig), ("sft", SFTConfig), ("rollout", RolloutConfig)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, kind(**getattr(self, name)))
        self.envs = tuple(self.envs)
        self.alphas = tuple(self.alphas)
        self.eval_temperatures = tuple(self.eval_temperatures)
        self.baselines = tuple(self.baselines)

    def alpha(self, i: int) -> float:
        """The least good-path score of round ``i`` (1-based)."""
        return self.alphas[min(i, len(self.alphas)) - 1]

    def evol(self) -> AgentEvolConfig:
        """The AgentEvol settings of the stages both methods share (expert, BC, evaluations)."""
        return AgentEvolConfig(
            envs=self.envs,
            model=self.model,
            iterations=0,
            base_tasks=self.base_tasks,
            explore_tasks=self.search_tasks,
            explore_from="all",
            retrain=self.retrain,
            sft=self.sft,
            iteration_steps=self.iteration_steps,
            eval_tasks=self.eval_tasks,
            eval_temperatures=self.eval_temperatures,
            baselines=self.baselines,
            rollout=self.rollout,
            seed=self.seed,
            tasks=self.tasks,
            concurrency=self.concurrency,
            threads=self.threads,
            ray=self.ray,
            ray_workers=self.ray_workers,
        )


def _plan(config: AgentRConfig) -> dict[str, dict[str, list[TaskId]]]:
    """Base, search (``explore``) and test tasks; a started-from run's base and test tasks.

    Without explicit ``tasks``, a run that starts from another searches the train
    pools that run was given (the demo's 5x5 mazes), not the env's whole split.
    """
    if config.start_from is None:
        return plan_tasks(config.evol())
    saved = json.loads((Path(config.start_from) / "run.json").read_text())
    missing = [env for env in config.envs if env not in saved["tasks"]]
    if missing:
        raise ValueError(f"{config.start_from} has no tasks of {', '.join(missing)}")
    pools = config.tasks or saved["config"].get("tasks")
    fresh = plan_tasks(replace(config.evol(), tasks=pools))
    return {env: {**saved["tasks"][env], "explore": fresh[env]["explore"]} for env in config.envs}


def run_agent_r(
    config: AgentRConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after: str | None = None,
) -> AgentEvolResult:
    """Run (or resume) Agent-R in ``out``; returns the per-stage success table.

    Args:
        config: The run.
        out: The run folder.
        resume: Continue the run in ``out`` (skipping finished stages).
        progress: One progress line per stage.
        log: Where the other stage messages go.
        stop_after: Stop once this stage is done (for tests of resumption).

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
        FileNotFoundError: ``start_from`` holds no finished BC stage.
        ValueError: ``resume`` with other settings.

    A round whose search found no leaf scoring at least its alpha has no data: its
    ``revise`` record says so (``trajectories`` 0, ``empty`` why) and the round
    trains and evaluates nothing; the next round searches with the same model.
    """
    out = Path(out)
    if config.start_from is not None:
        _require_bc(Path(config.start_from))
    stages = Stages(
        out, config, lambda: _plan(config), resume=resume, progress=progress, log=log,
        stop_after=stop_after, provenance={"env_packages": env_packages(config.envs)},
    )  # fmt: skip
    evol = _Run(config.evol(), stages)
    run = _AgentR(config, stages, evol)
    rows: list[dict[str, Any]] = []
    with stages:
        if config.start_from is None:
            for name in config.baselines:
                rows += stages.run(f"baseline-{name}", partial(evol.baseline, name))["rows"]
            stages.run("expert", evol.expert)
            record = stages.run("bc", partial(evol.train, 0, evol.base_model))
            model_dir = out / record["model"]
            rows += stages.run("eval-0", partial(evol.evaluate, 0, model_dir))["rows"]
        else:
            record = stages.run("bc", run.adopt)
            model_dir = out / record["model"]
        bc_model = model_dir
        for i in range(1, config.iterations + 1):
            stages.run(f"search-{i}", partial(run.search, i, model_dir))
            revised = stages.run(f"revise-{i}", partial(run.revise, i, model_dir))
            if not revised["trajectories"]:
                log(f"[revise-{i}] {revised['empty']}")
                continue
            start = str(model_dir) if config.retrain == "continue" else str(bc_model)
            if config.retrain == "base" and config.start_from is None:
                start = evol.base_model
            record = stages.run(f"train-{i}", partial(evol.train, i, start))
            model_dir = out / record["model"]
            rows += stages.run(f"eval-{i}", partial(run.evaluate, i, model_dir))["rows"]
    table = render_evolution_table(rows)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", rows)
    return AgentEvolResult(rows, table, out)


def _require_bc(folder: Path) -> None:
    record = None
    manifest = folder / "run.json"
    if manifest.exists():
        record = json.loads(manifest.read_text()).get("stages", {}).get("bc")
    if record is None or not (folder / "base" / "data.jsonl").exists():
        raise FileNotFoundError(
            f"{folder} holds no finished BC stage to start from (run "
            "`palaestra evolve agentevol` there first, or leave out --start-from)"
        )


class _AgentR:
    """Agent-R's own stages (the shared ones are AgentEvol's ``_Run``)."""

    def __init__(self, config: AgentRConfig, stages: Stages, evol: _Run) -> None:
        self.config, self.stages, self.evol = config, stages, evol
        self.out = stages.out

    def adopt(self, line: StageLine) -> dict[str, Any]:
        """``bc``: copy ``start_from``'s base set and BC model into this run."""
        source = Path(self.config.start_from or "")
        record = json.loads((source / "run.json").read_text())["stages"]["bc"]
        (self.out / "base").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "base" / "data.jsonl", self.out / "base" / "data.jsonl")
        target = self.out / "iter-0" / "sft" / "model"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source / record["model"], target)
        line.finish(f"adopted from {source}")
        return {**record, "model": str(target.relative_to(self.out)), "from": str(source)}

    def search(self, i: int, model_dir: Path, line: StageLine) -> dict[str, Any]:
        """``search-i``: one tree per search task with the current model."""
        config = self.config
        seed = self.stages.seed("search", i)
        rollout = replace(config.rollout, temperature=config.mcts.temperature, seed=seed)
        specs = [
            EpisodeSpec(env, task, "train", seed=seed + n)
            for env in config.envs
            for n, task in enumerate(self.stages.tasks[env]["explore"])
        ]
        policy = self.evol._policy(model_dir)
        envs = LocalEnvs()
        done = line.episodes("trees")
        count = 0

        def on_tree(_: Any) -> None:
            nonlocal count
            count += 1
            done(count, len(specs))

        search = MCTS(policy, envs, replace(config.mcts, concurrency=config.concurrency), rollout)
        try:
            trees = asyncio.run(search.search(specs, on_tree=on_tree))
        finally:
            asyncio.run(policy.aclose())
            asyncio.run(envs.aclose())
        if not trees:
            raise ValueError(
                f"every search failed ({search.stats.errors}): "
                + "; ".join(search.stats.error_messages[:3])
            )
        save_trees(trees, self.out / f"iter-{i}" / "trees.jsonl")
        s = search.stats
        return {
            "trees": len(trees),
            "nodes": s.nodes,
            "leaves": sum(len(t.leaves()) for t in trees),
            "solved_trees": sum(any(n.success for n in t.leaves()) for t in trees),
            "expansions": s.expansions,
            "forks": s.forks,
            "errors": s.errors,
            "seed": seed,
        }

    def revise(self, i: int, model_dir: Path, line: StageLine) -> dict[str, Any]:
        """``revise-i``: pairs, first errors, revision and good trajectories -> ``data.jsonl``."""
        config = self.config
        folder = self.out / f"iter-{i}"
        trees = load_trees(folder / "trees.jsonl")
        seed = self.stages.seed("revise", i)
        alpha = config.alpha(i)
        options = {
            "alpha": alpha, "beta": config.beta, "max_pairs": config.pairs_per_tree,
            "max_good": config.goods_per_tree, "seed": seed,
        }  # fmt: skip
        policy = self.evol._policy(model_dir)
        envs = LocalEnvs()
        repair: dict[str, Any] = {}
        try:
            actor = asyncio.run(agent_r_data(trees, policy, **options))
            expert = None
            if all("expert" in asyncio.run(envs.spec(e)).capabilities for e in config.envs):
                expert = asyncio.run(agent_r_data(trees, envs, **options))
            if config.judge == "expert" and expert is None:
                raise ValueError("judge='expert' needs envs with an expert; use judge='actor'")
            chosen = actor if config.judge == "actor" or expert is None else expert
            revisions = chosen.revisions
            if config.revise_from == "error":
                revisions, repair = asyncio.run(self._repair(chosen, policy, envs, seed, alpha))
                save_trees(trees, folder / "repaired.jsonl")
        finally:
            asyncio.run(policy.aclose())
            asyncio.run(envs.aclose())
        own = revisions + chosen.good
        if not own:
            why = (
                f"no leaf scored >= alpha={alpha:g} in {len(trees)} trees: nothing to train "
                "on, so this round trains and evaluates nothing (search more tasks, raise "
                "--simulations, lower --alphas, or start from a stronger model)"
            )
            line.finish(why)
            return {"alpha": alpha, "judge": config.judge, "pairs": len(chosen.pairs),
                    "revisions": 0, "goods": 0, "trajectories": 0, **repair, "empty": why,
                    "seed": seed}  # fmt: skip
        data = own
        mixed = 0
        if config.base_ratio > 0:
            base = load_trajectories(self.out / "base" / "data.jsonl")
            mixed = min(len(base), round(config.base_ratio * len(own)))
            data = own + base[:mixed]
        save_trajectories(data, folder / "data.jsonl")
        record: dict[str, Any] = {
            "alpha": alpha,
            "judge": config.judge,
            "pairs": len(chosen.pairs),
            "revisions": len(revisions),
            "revise_from": config.revise_from,
            **repair,
            "goods": len(chosen.good),
            "base_mixed": mixed,
            "trajectories": len(data),
            "mean_steps_before_error": round(chosen.mean_steps_before_error, 2),
            "actor_found": sum(e is not None for e in actor.errors),
            "seed": seed,
        }
        if expert is not None:
            agreement = judge_agreement(actor.pairs, actor.errors, expert.errors)
            record["agreement"] = {
                "pairs": agreement.pairs,
                "same": agreement.same,
                "rate": round(agreement.rate, 3),
                "actor_found": agreement.actor_found,
                "expert_found": agreement.expert_found,
                "mean_distance": round(agreement.mean_distance, 2),
            }
        return record

    async def _repair(
        self, data: AgentRData, policy: Policy, envs: LocalEnvs, seed: int, alpha: float
    ) -> tuple[list[Trajectory], dict[str, Any]]:
        """State-consistent revisions: search on from each bad path's first error."""
        config = self.config
        rollout = replace(config.rollout, temperature=config.mcts.temperature, seed=seed)
        search = MCTS(policy, envs, replace(config.mcts, concurrency=config.concurrency), rollout)
        pairs = zip(data.pairs, data.splices, strict=True)
        targets = [(pair.bad.tree, pair.bad.nodes[splice]) for pair, splice in pairs]
        await search.repair(targets)
        revisions: list[Trajectory] = []
        for pair, splice in zip(data.pairs, data.splices, strict=True):
            fixed = repaired_pair(pair, splice, alpha=alpha, beta=config.beta)
            if fixed is not None:
                with contextlib.suppress(ValueError):  # a good reply without an action
                    revisions.append(repair_trajectory(fixed, seed=seed))
        return revisions, {
            "repaired": len(revisions),
            "unrepaired": len(data.pairs) - len(revisions),
            "repair_nodes": search.stats.nodes,
            "repair_errors": search.stats.errors,
        }

    def evaluate(self, i: int, model_dir: Path, line: StageLine) -> dict[str, Any]:
        """``eval-i``: the model of round ``i`` on the test tasks."""
        folder = self.out / f"iter-{i}" / "eval"
        return self.evol._test(line, f"Agent-R {i}", folder, f"agent-r-{i}", model_dir)
