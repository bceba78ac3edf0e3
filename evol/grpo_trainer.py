"""Multi-turn GRPO on TRL's ``GRPOTrainer``: episodes in, one training row per reply out.

Why a subclass and not ``rollout_func``/``environment_factory``: both give TRL one
row per episode, a prompt and one causal completion that the env's text is spliced
into (masked with ``env_mask``). That holds only when every prompt extends the
previous one token for token. palaestra's prompts keep a window of the last
``history`` turns (the demo's Maze keeps one): the prompt of turn 5 is not a prefix
of the prompt of turn 6, so an episode is not one sequence, and splicing it into one
would train the model on contexts it never saw. Here each reply is its own row: the
prompt ids the model read and the ids it generated, both exactly as recorded by the
policy at generation time (:class:`~palaestra.agents.policy.TurnTokens`), never a
re-tokenization of the text. The env's observations are in the prompt part of a
row, so they carry no loss by construction, whatever the window.

Only the generation step (``_generate_and_score_completions``) is palaestra's: it
plays the batch's episodes with the :class:`~palaestra.agents.rollout.RolloutEngine`
(lockstep, so a seeded run plays the same episodes in-process and on a server),
scores each episode with TRL's reward machinery (``_calculate_rewards``), gives
every reply of an episode its episode's group-relative advantage (GRPO's
normalisation: minus the group mean, over the group std when ``scale_rewards`` is
``"group"``) and returns TRL's batch dict. The loss, clipping, KL to the reference,
optimizer, scheduler, logging and checkpoints are TRL's.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import pad

from palaestra.agents.env_pool import EnvPool
from palaestra.agents.policy import TurnTokens
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine, derive_seed
from palaestra.agents.trajectory import Trajectory
from palaestra.agents.transformers_policy import TransformersPolicy

__all__ = ["EpisodeGRPOTrainer", "episode_reward", "turn_rows"]


def episode_reward(kind: str = "score", turn_penalty: float = 0.0) -> Callable[..., list[float]]:
    """The reward function TRL is given: an episode's return, from its trajectory.

    Args:
        kind: ``"score"`` (the env's 0..1 score at the end), ``"success"`` (1 or 0)
            or ``"return"`` (the sum of the env's step rewards).
        turn_penalty: Subtracted once per turn (a shaped return that prefers short
            episodes); 0 by default.

    Returns:
        ``f(prompts, completions, trajectory, **kwargs) -> list[float]``, named after
        ``kind`` (TRL logs ``rewards/<name>/mean``).
    """
    if kind not in ("score", "success", "return"):
        raise ValueError(f"reward must be 'score', 'success' or 'return', not {kind!r}")

    def reward(
        prompts: Any, completions: Any, trajectory: Sequence[Trajectory], **_: Any
    ) -> list[float]:
        values = []
        for t in trajectory:
            value = {"score": t.score, "success": float(t.success), "return": sum(t.rewards)}[kind]
            values.append(float(value) - turn_penalty * t.turns)
        return values

    reward.__name__ = kind if not turn_penalty else f"{kind}-{turn_penalty:g}/turn"
    return reward


def turn_rows(trajectory: Trajectory) -> list[TurnTokens]:
    """The recorded tokens of each reply of ``trajectory``, in order.

    Raises:
        ValueError: The episode was played by a policy that did not record tokens.
    """
    if trajectory.tokens is None or len(trajectory.tokens) != trajectory.turns:
        raise ValueError(
            f"episode {trajectory.key} has no recorded tokens for its {trajectory.turns} "
            "replies: play it with TransformersPolicy(record_tokens=True)"
        )
    return [TurnTokens.from_json(tokens) for tokens in trajectory.tokens]


class _LoopThread:
    """One asyncio loop in a thread, for the rollouts of every step (pooled clients live on)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="grpo-envs")
        self._thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class EpisodeGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose completions are palaestra episodes (see the module doc).

    Each dataset row names a task (``env_id`` and ``task_id``, a JSON text); TRL's
    sampler repeats it ``num_generations`` times, and each repeat is one episode.

    Args:
        envs: Where the episodes are played (``LocalEnvs`` or ``RemoteEnvs``); the
            trainer closes it in :meth:`close`.
        rollout: Format, history window, reply length, turn limit; its temperature
            must equal the TRL config's (the log-probabilities are TRL's at it).
        seed: The run seed: episode ``j`` of step ``s`` plays env seed
            ``derive_seed(seed, "grpo", s, group)`` and the policy samples from
            ``derive_seed(seed, "grpo-sampling", s)``.
        on_episodes: Called after each step's episodes with them (a run writes them).
        drop_flat_groups: Leave out the replies of groups whose rewards are all equal
            (zero advantage, zero policy gradient; DAPO's dynamic sampling), unless
            ``beta`` > 0. A step whose groups are all flat trains on one zero-advantage
            row (a step of no effect, so TRL's schedule and checkpoints go on).
        weigh_episodes: Scale each reply's advantage by (mean turns of the step's
            episodes / its episode's turns), so that every episode weighs the same
            in the loss whatever its length (else long failures dominate the step).
        **kwargs: ``GRPOTrainer``'s (``model``, ``args``, ``train_dataset``,
            ``processing_class``, ``reward_funcs``, ``peft_config``...).
    """

    def __init__(
        self,
        *args: Any,
        envs: EnvPool,
        rollout: RolloutConfig,
        seed: int = 0,
        on_episodes: Callable[[list[Trajectory]], None] | None = None,
        drop_flat_groups: bool = False,
        weigh_episodes: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if rollout.temperature <= 0:
            raise ValueError("GRPO samples its episodes: the rollout temperature must be > 0")
        if abs(rollout.temperature - self.temperature) > 1e-9:
            raise ValueError(
                f"the rollout temperature ({rollout.temperature}) must be TRL's "
                f"({self.temperature}): the trained log-probabilities are taken at it"
            )
        if self.args.steps_per_generation != 1 or self.args.gradient_accumulation_steps != 1:
            raise ValueError(
                "one generation per optimizer step: steps_per_generation and "
                "gradient_accumulation_steps must be 1 (a step's rows are all its replies)"
            )
        self.envs = envs
        self.rollout = rollout
        self.run_seed = seed
        self.on_episodes = on_episodes
        self.drop_flat_groups = drop_flat_groups
        self.weigh_episodes = weigh_episodes
        self.last_episodes: list[Trajectory] = []
        self.last_batch: dict[str, Any] = {}
        self._loop = _LoopThread()
        self._policy = TransformersPolicy(
            self.accelerator.unwrap_model(self.model),
            self.processing_class,
            device=str(self.accelerator.device),
            max_batch_size=10**6,
            record_tokens=True,
            train_mode=True,
            name="grpo",
        )

    def close(self) -> None:
        """Close the env pool and the rollout loop."""
        self._loop.run(self.envs.aclose())
        self._loop.close()

    # -- generation ---------------------------------------------------------------------

    def _play(self, inputs: list[dict[str, Any]]) -> list[Trajectory]:
        """One episode per input row, all at once, in lockstep."""
        step = self.state.global_step
        group = self.num_generations if self.model.training else self.num_generations_eval
        first = self.accelerator.process_index * len(inputs)
        specs = [
            EpisodeSpec(
                env_id=row["env_id"],
                task_id=json.loads(row["task_id"]),
                split="train",
                sample=(first + i) % group,
                seed=derive_seed(self.run_seed, "grpo", step, (first + i) // group) % 2**31,
            )
            for i, row in enumerate(inputs)
        ]
        config = replace(
            self.rollout, seed=derive_seed(self.run_seed, "grpo-sampling", step, first)
        )
        engine = RolloutEngine(
            self._policy, self.envs, config, concurrency=max(1, len(specs)), lockstep=True
        )
        errors: list[str] = []
        episodes = self._loop.run(
            engine.run(
                specs, on_error=lambda spec, message: errors.append(f"{spec.key}: {message}")
            )
        )
        if errors:
            raise RuntimeError(f"{len(errors)} of {len(specs)} episodes failed: {errors[0]}")
        return episodes

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        episodes = self._play(inputs)
        self.last_episodes = episodes
        if self.on_episodes is not None:
            self.on_episodes(episodes)

        prompts = [row["prompt"] for row in inputs]
        completions = [
            [{"role": "assistant", "content": t.actions[-1] if t.actions else ""}] for t in episodes
        ]
        scored = [{**row, "trajectory": t} for row, t in zip(inputs, episodes, strict=True)]
        rewards_per_func = self._calculate_rewards(
            scored, prompts, completions, [[] for _ in episodes]
        )
        rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        grouped = rewards.view(-1, group)
        mean = grouped.mean(dim=1).repeat_interleave(group)
        std = (
            grouped.std(dim=1) if group > 1 else torch.zeros_like(grouped[:, 0])
        ).repeat_interleave(group)
        if self.scale_rewards == "batch":
            std = (
                rewards.std().expand_as(rewards)
                if rewards.numel() > 1
                else torch.zeros_like(rewards)
            )
        advantages = rewards - mean
        if self.scale_rewards != "none":
            advantages = advantages / (std + 1e-4)
        local = slice(
            self.accelerator.process_index * len(inputs),
            (self.accelerator.process_index + 1) * len(inputs),
        )
        episode_advantages = advantages[local].tolist()
        flat = (grouped.std(dim=1) < 1e-6).repeat_interleave(group)[local].tolist()
        dropping = self.drop_flat_groups and self.beta == 0.0
        if self.weigh_episodes:
            mean_turns = sum(t.turns for t in episodes) / max(1, len(episodes))
            episode_advantages = [
                a * mean_turns / t.turns if t.turns else a
                for a, t in zip(episode_advantages, episodes, strict=True)
            ]

        # One row per reply: its prompt ids and generated ids as recorded.
        rows = [
            (tokens, advantage)
            for t, advantage, is_flat in zip(episodes, episode_advantages, flat, strict=True)
            if not (dropping and is_flat)
            for tokens in turn_rows(t)
        ]
        self._metrics[mode]["rows_dropped_flat"].append(
            float(sum(t.turns for t, f in zip(episodes, flat, strict=True) if dropping and f))
        )
        if not rows:
            first = next((t for t in episodes if t.turns), None)
            if first is None:
                raise RuntimeError("no episode of this step made a reply (check max_turns)")
            rows = [(turn_rows(first)[0], 0.0)]
        pad_id = self._tokenizer.pad_token_id
        prompt_ids = pad([torch.tensor(r.prompt_ids) for r, _ in rows], pad_id, "left").to(device)
        prompt_mask = pad(
            [torch.ones(len(r.prompt_ids), dtype=torch.long) for r, _ in rows], 0, "left"
        ).to(device)
        completion_ids = pad([torch.tensor(r.completion_ids) for r, _ in rows], pad_id, "right").to(
            device
        )
        completion_mask = pad(
            [torch.ones(len(r.completion_ids), dtype=torch.long) for r, _ in rows], 0, "right"
        ).to(device)
        sampling_logps = pad(
            [torch.tensor(r.logprobs, dtype=torch.float32) for r, _ in rows], 0.0, "right"
        ).to(device)
        row_advantages = torch.tensor([a for _, a in rows], dtype=torch.float32, device=device)
        num_items = self.accelerator.gather(completion_mask.sum()).sum()

        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        keep = completion_ids.size(1)
        batch = self.args.per_device_train_batch_size
        with torch.no_grad():
            old_logps = None
            if self.num_iterations > 1:
                old_logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, keep, batch_size=batch
                )
            ref_logps = None
            if self.beta != 0.0:
                ref_logps = self._reference_logps(input_ids, attention_mask, keep, batch)

        self._log_step(mode, rewards_per_func, rewards, episodes, grouped, prompt_mask,
                       completion_mask)  # fmt: skip
        output: dict[str, Any] = {
            "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask,
            "completion_ids": completion_ids,
            "completion_mask": completion_mask,
            "advantages": row_advantages,
            "num_items_in_batch": num_items,
            "sampling_per_token_logps": sampling_logps,
        }
        if old_logps is not None:
            output["old_per_token_logps"] = old_logps
        if ref_logps is not None:
            output["ref_per_token_logps"] = ref_logps
        self.last_batch = output
        return output

    def _reference_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int, batch: int
    ) -> torch.Tensor:
        """Per-token log-probabilities under the reference model.

        TRL's ``ref_model`` when it made one, else the PEFT base (adapter disabled).
        """
        if self.ref_model is not None:
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.ref_model, input_ids, attention_mask, keep, batch_size=batch
            )
            return logps
        model = self.accelerator.unwrap_model(self.model)
        with model.disable_adapter():
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, keep, batch_size=batch
            )
        return logps

    def _log_step(
        self,
        mode: str,
        rewards_per_func: torch.Tensor,
        rewards: torch.Tensor,
        episodes: list[Trajectory],
        grouped: torch.Tensor,
        prompt_mask: torch.Tensor,
        completion_mask: torch.Tensor,
    ) -> None:
        """What TRL logs for a generation, and the episodes' own figures."""
        metrics = self._metrics[mode]
        tokens = prompt_mask.sum() + completion_mask.sum()  # as TRL counts: prompt + completion
        if mode == "train":
            self.state.num_input_tokens_seen += int(self.accelerator.gather(tokens).sum().item())
        metrics["num_tokens"] = [self.state.num_input_tokens_seen]
        metrics["reward"].append(rewards.mean().item())
        metrics["reward_std"].append(rewards.std().item() if rewards.numel() > 1 else 0.0)
        metrics["frac_reward_zero_std"].append(
            (grouped.std(dim=1) < 1e-6).float().mean().item() if grouped.size(1) > 1 else 1.0
        )
        for i, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"].append(torch.nanmean(rewards_per_func[:, i]).item())
        lengths = completion_mask.sum(dim=1).float()
        metrics["completions/mean_length"].append(lengths.mean().item())
        metrics["episodes/success"].append(sum(t.success for t in episodes) / len(episodes))
        metrics["episodes/score"].append(sum(t.score for t in episodes) / len(episodes))
        metrics["episodes/turns"].append(sum(t.turns for t in episodes) / len(episodes))
        metrics["episodes/replies"].append(float(sum(t.turns for t in episodes)))
