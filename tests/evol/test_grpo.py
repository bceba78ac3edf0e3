"""Multi-turn GRPO on TRL: the tokens trained on are the tokens generated, turn by turn.

Real parts throughout: the tiny model, Maze episodes of several turns with a one-turn
history window (so a turn's prompt is not a prefix of the next one's), TRL's
``GRPOTrainer`` doing a real step, and a real palaestra server for the remote run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from palaestra.agents.rollout import RolloutConfig
from palaestra.envs.maze import MazeEnv
from palaestra.evol.grpo import GRPOConfig, run_grpo
from palaestra.evol.grpo_train import make_trainer
from palaestra.evol.grpo_trainer import EpisodeGRPOTrainer, episode_reward

MAZE = "palaestra/Maze-v0"
TASKS = {MAZE: {"train": [t for t in MazeEnv().tasks("train") if int(t) % 3 == 0][:4],
                "test": [t for t in MazeEnv().tasks("test") if int(t) % 3 == 0][:2]}}  # fmt: skip
ROLLOUT = RolloutConfig(temperature=1.0, max_turns=4, max_tokens=8, history=1, system_prompt=False)


@pytest.fixture(scope="module")
def bc_model(tmp_path_factory) -> str:
    """A tiny model cloned briefly from the Maze expert: it plays, and sometimes wins."""
    from palaestra.agents.evaluate import EvalConfig, run_eval
    from palaestra.evol.sft import SFTConfig, train_sft

    root = tmp_path_factory.mktemp("bc")
    expert = run_eval(
        EvalConfig(policy="expert", envs=(MAZE,), split="train",
                   tasks={MAZE: [t for t in MazeEnv().tasks("train") if int(t) % 3 == 0][:40]},
                   rollout=ROLLOUT),
        root / "expert", progress=False,
    )  # fmt: skip
    sft = SFTConfig(max_steps=120, batch_size=16, learning_rate=3e-3, prompt_loss=True,
                    history=1, system_prompt=False, threads=1)  # fmt: skip
    return str(train_sft("tiny", expert.trajectories, root / "sft", sft, progress=False).model_dir)


def config(**changes: Any) -> GRPOConfig:
    settings: dict[str, Any] = {
        "envs": (MAZE,), "model": "tiny", "tasks": TASKS, "group_size": 2,
        "tasks_per_step": 2, "steps": 1, "learning_rate": 1e-3, "rollout": ROLLOUT,
        "eval_every": 0, "eval_tasks": 2, "threads": 1, "save_steps": 100,
    }  # fmt: skip
    settings.update(changes)
    return GRPOConfig(**settings)


class _Recording(EpisodeGRPOTrainer):
    """Keeps what generate was fed and produced, and the logps TRL computes before its update."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generated: list[tuple[list[int], list[int]]] = []
        self.trl_logps: torch.Tensor | None = None
        self.loss_inputs: dict[str, Any] = {}
        model = self._policy.model
        original = model.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            width = kwargs["input_ids"].shape[1]
            for prompt, mask, row in zip(kwargs["input_ids"], kwargs["attention_mask"],
                                         output.sequences, strict=True):  # fmt: skip
                fed = prompt[mask.bool()].tolist()
                self.generated.append((fed, row[width:].tolist()))
            return output

        model.generate = generate

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        with torch.no_grad():
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
            self.trl_logps, _, _ = self._get_per_token_logps_and_entropies(
                model, ids, mask, inputs["completion_ids"].size(1)
            )
        self.loss_inputs = inputs  # TRL shuffled the rows of the batch on the way here
        return super()._compute_loss(model, inputs)


def unpadded(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    return [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]


def test_the_rows_trained_on_are_the_tokens_generated_turn_by_turn(tmp_path):
    settings = config(drop_flat_groups=False, weigh_episodes=False)
    trainer = make_trainer(settings, "tiny", TASKS, tmp_path / "ckpt", seed=3,
                           trainer_class=_Recording)  # fmt: skip
    try:
        trainer.train()
    finally:
        trainer.close()
    episodes, batch = trainer.last_episodes, trainer.last_batch
    assert len(episodes) == 4 and all(t.turns >= 2 for t in episodes)  # multi-turn episodes
    turns = [turn for t in episodes for turn in t.tokens]
    prompts = unpadded(batch["prompt_ids"], batch["prompt_mask"])
    completions = unpadded(batch["completion_ids"], batch["completion_mask"])
    # One row per reply, in episode order: exactly the ids recorded at generation...
    assert prompts == [turn["prompt_ids"] for turn in turns]
    assert completions == [turn["completion_ids"] for turn in turns]
    # ...which are exactly what the model was fed and what it generated.
    pad = trainer.processing_class.pad_token_id
    unmatched = list(trainer.generated)
    for turn in turns:
        n = len(turn["completion_ids"])
        # A row fed this very prompt generated these very ids, then only padding.
        match = next(
            (fed, out) for fed, out in unmatched
            if fed == turn["prompt_ids"] and out[:n] == turn["completion_ids"]
            and set(out[n:]) <= {pad}
        )  # fmt: skip
        unmatched.remove(match)
    assert not unmatched
    # The window: a later turn's prompt is not its predecessor's prompt + reply (no
    # single causal sequence holds the episode), yet each row is exact.
    first = episodes[0].tokens
    assert first[1]["prompt_ids"][: len(first[0]["prompt_ids"])] != first[0]["prompt_ids"] or (
        first[2:]
        and first[2]["prompt_ids"][: len(first[1]["prompt_ids"])] != first[1]["prompt_ids"]
    )
    # Observation tokens carry no loss: the loss mask covers the generated ids only.
    assert int(batch["completion_mask"].sum()) == sum(len(t["completion_ids"]) for t in turns)
    assert int(batch["num_items_in_batch"]) == sum(len(t["completion_ids"]) for t in turns)
    # TRL's own log-probabilities of those rows, before its update, are the sampler's.
    inputs = trainer.loss_inputs
    mask = inputs["completion_mask"].bool()
    assert torch.allclose(trainer.trl_logps[mask], inputs["sampling_per_token_logps"][mask],
                          atol=2e-4)  # fmt: skip
    # Every reply of an episode carries its episode's advantage.
    rewards = torch.tensor([t.score for t in episodes]).view(-1, 2)
    expected = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    per_row = [a for t, a in zip(episodes, expected.flatten().tolist(), strict=True)
               for _ in range(t.turns)]  # fmt: skip
    assert batch["advantages"].tolist() == pytest.approx(per_row, abs=1e-5)


@pytest.mark.slow  # a model that plays: ~1 min of expert cloning
def test_a_remote_server_gives_the_first_step_rewards_of_the_in_process_run(
    tmp_path, serve, bc_model
):
    batches: list[dict[str, Any]] = []

    def first_step(**changes: Any) -> list[tuple[Any, ...]]:
        played: list[Any] = []
        trainer = make_trainer(config(**changes), bc_model, TASKS, tmp_path / "ckpt", seed=5,
                               on_episodes=played.extend)  # fmt: skip
        try:
            trainer.train()
        finally:
            trainer.close()
        batches.append(trainer.last_batch)
        return [(t.task_id, t.sample, t.actions, t.rewards, t.score, t.success, t.tokens)
                for t in played]  # fmt: skip

    long = {"rollout": replace(ROLLOUT, max_turns=30), "group_size": 4, "drop_flat_groups": False}
    local = first_step(**long)
    with serve([MAZE]) as url:
        remote = first_step(urls=(url,), **long)
    assert remote == local
    assert torch.equal(batches[0]["advantages"], batches[1]["advantages"])
    # Each episode weighs the same: its replies' advantage is scaled by mean turns / turns.
    scores = torch.tensor([score for *_, score, _, _ in local]).view(-1, 4)
    advantages = (scores - scores.mean(1, keepdim=True)) / (scores.std(1, keepdim=True) + 1e-4)
    turns = [len(actions) for _, _, actions, *_ in local]
    mean_turns = sum(turns) / len(turns)
    flat = advantages.flatten().tolist()
    expected = [a * mean_turns / n for a, n in zip(flat, turns, strict=True) for _ in range(n)]
    assert batches[0]["advantages"].tolist() == pytest.approx(expected, abs=1e-5)
    print("first-step rewards:", [score for *_, score, _, _ in local])
    assert len({tuple(actions) for _, _, actions, *_ in local}) > 1  # sampled, not one path


def test_groups_with_one_reward_for_all_are_left_out_of_the_step(tmp_path):
    # The untrained tiny model wins no maze: every group is flat (advantage 0), so
    # no reply carries a gradient and the step trains on one zero-advantage row.
    trainer = make_trainer(config(), "tiny", TASKS, tmp_path / "ckpt", seed=3)
    try:
        trainer.train()
    finally:
        trainer.close()
    assert all(t.score == 0 for t in trainer.last_episodes)
    batch = trainer.last_batch
    assert batch["completion_ids"].shape[0] == 1 and batch["advantages"].tolist() == [0.0]


def test_episode_rewards():
    from palaestra.agents.trajectory import Trajectory

    t = Trajectory(MAZE, 3, "train", 0, 0, rewards=[0.0, 0.5, 0.5], score=0.75, success=False,
                   turns=3)  # fmt: skip
    assert episode_reward("score")(None, None, [t]) == [0.75]
    assert episode_reward("success")(None, None, [t]) == [0.0]
    assert episode_reward("return")(None, None, [t]) == [1.0]
    assert episode_reward("score", 0.05)(None, None, [t]) == pytest.approx([0.6])
    with pytest.raises(ValueError, match="reward must be"):
        episode_reward("win")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"group_size": 1}, "group_size must be >= 2"),
        ({"rollout": RolloutConfig(temperature=0.0)}, "temperature must be > 0"),
        ({"rollout": RolloutConfig(format="tools", temperature=1.0)}, "tools is not supported"),
        ({"scale_rewards": "all"}, "scale_rewards must be"),
    ],
)
def test_settings_that_cannot_run_are_refused(changes, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_grpo(config(**changes), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_stopped_midway_resumes_to_the_end_with_one_curve(tmp_path):
    out = tmp_path / "run"
    settings = config(steps=2, eval_every=1, save_steps=1)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    original = EpisodeGRPOTrainer._play

    def crash_in_step_two(self: Any, inputs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash
        return original(self, inputs)

    EpisodeGRPOTrainer._play = crash_in_step_two  # the process "dies" in its second step
    try:
        with pytest.raises(Crash):
            run_grpo(settings, out, progress=False)
    finally:
        EpisodeGRPOTrainer._play = original
    assert (out / "grpo" / "checkpoints" / "checkpoint-1").exists()
    result = run_grpo(settings, out, resume=True, progress=False)
    assert [p["step"] for p in result.curve] == [0, 1, 2]
    record = json.loads((out / "run.json").read_text())["stages"]["grpo"]
    assert record["steps"] == 2
    steps = [
        json.loads(x)["step"] for x in (out / "grpo" / "episodes.jsonl").read_text().splitlines()
    ]
    assert steps.count(0) == 4 and steps.count(1) == 4  # step 2's episodes were never written twice
    assert (out / "results.md").read_text().count("GRPO") == 1
    assert Path(result.model_dir, "config.json").exists()


def test_lora_with_a_kl_term_trains_and_saves_a_merged_model(tmp_path):
    from palaestra.agents.models import load_model, resolve_model

    result = run_grpo(config(lora=True, beta=0.04, eval_start=False), tmp_path / "run",
                      progress=False)  # fmt: skip
    log = [json.loads(line) for line in (tmp_path / "run" / "grpo" / "train_log.jsonl")
           .read_text().splitlines()]  # fmt: skip
    assert "kl" in log[0]  # the KL to the adapter-free base was computed
    trained, _ = load_model(resolve_model(str(result.model_dir)))
    base, _ = load_model(resolve_model("tiny"))
    assert not any("lora" in name for name, _ in trained.named_parameters())  # merged
    assert set(dict(trained.named_parameters())) == set(dict(base.named_parameters()))
