import asyncio

import pytest
from scripted import FirstOpenMove

from palaestra.agents.baselines import ExpertPolicy
from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.formats import get_format
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine

MAZE = "palaestra/Maze-v0"


def play(policy, specs, concurrency=8, **config):
    engine = RolloutEngine(policy, LocalEnvs(), RolloutConfig(**config), concurrency=concurrency)
    errors = []
    result = asyncio.run(engine.run(specs, on_error=lambda s, m: errors.append((s, m))))
    return result, engine.stats, errors


def test_expert_trajectories_are_complete_conversations():
    specs = [EpisodeSpec(MAZE, t, "test") for t in (3000, 3001, 3002)]
    trajectories, stats, errors = play(ExpertPolicy(), specs)
    assert not errors and [t.task_id for t in trajectories] == [3000, 3001, 3002]
    fmt = get_format("react")
    for t in trajectories:
        assert t.success and t.score == 1.0 and t.end == "terminated"
        assert t.turns == len(t.actions) == len(t.rewards) > 0
        roles = [m["role"] for m in t.messages]
        assert roles == ["system", "user"] + ["assistant", "user"] * (t.turns - 1) + ["assistant"]
        assert [m["loss"] for m in t.messages] == [r == "assistant" for r in roles]
        replies = [m["content"] for m in t.messages if m["role"] == "assistant"]
        assert [fmt.parse(r).action for r in replies] == t.actions
        assert t.invalid_actions == 0 and t.format_errors == 0
    assert stats.episodes == 3 and stats.steps == sum(t.turns for t in trajectories)


def test_prompts_of_concurrent_episodes_are_batched():
    policy = FirstOpenMove()
    specs = [EpisodeSpec(MAZE, t, "test") for t in range(3000, 3008)]
    trajectories, stats, _ = play(policy, specs, concurrency=8, max_turns=12)
    assert all(t.turns == 12 and t.end == "max_turns" for t in trajectories)
    assert stats.rows == 8 * 12
    assert max(len(b) for b in policy.batches) == 8
    assert stats.calls <= 14  # one call per turn for all eight, give or take stragglers


def test_the_oldest_turns_are_dropped_to_fit_the_context():
    policy = FirstOpenMove(context_length=700)
    [t], _, _ = play(policy, [EpisodeSpec(MAZE, 3005, "test")], max_turns=15, max_tokens=32)
    assert t.turns == 15 and t.context_truncations > 0
    for [prompt] in policy.batches:
        assert policy.count_tokens(prompt) + 32 <= 700
        assert prompt[0]["role"] == "system" and prompt[-1]["role"] == "user"
    last = policy.batches[-1][0]
    assert "earlier turns omitted" in last[1]["content"]
    # the recorded conversation keeps everything
    assert len(t.messages) == 2 + 2 * 15  # the observation after the last turn too


def test_history_keeps_only_the_last_turns():
    policy = FirstOpenMove()
    play(policy, [EpisodeSpec(MAZE, 3005, "test")], max_turns=6, history=1)
    assert [len(b[0]) for b in policy.batches] == [2, 4, 4, 4, 4, 4]


def test_a_context_too_small_for_the_latest_observation_ends_the_episode():
    [t], _, _ = play(FirstOpenMove(context_length=50), [EpisodeSpec(MAZE, 3005, "test")])
    assert t.end == "context" and t.turns == 0 and not t.success


def test_unparsable_replies_are_invalid_actions_with_the_error_shown():
    fmt = get_format("react")
    [t], _, _ = play(FirstOpenMove(garble_every=3), [EpisodeSpec(MAZE, 3005, "test")], max_turns=9)
    assert t.format_errors == 3
    assert t.invalid_actions >= 3
    assert t.actions[2] == t.actions[5] == ""
    error = fmt.parse("I am not sure what to do.").error
    assert error and error in t.messages[2 + 2 * 2 + 1]["content"]


def test_an_env_error_loses_one_episode_not_the_run():
    class Boom(FirstOpenMove):
        async def generate(self, conversations, **kwargs):
            return [
                [f"Thought: x\nAction: {'boom' if 'task 11' in c[1]['content'] else 'inc'}"]
                for c in conversations
            ]

    specs = [EpisodeSpec("toy/Counter-v0", t, "test") for t in (10, 11)]
    trajectories, stats, errors = play(Boom(), specs)
    assert [t.task_id for t in trajectories] == [10] and trajectories[0].success
    assert [(s.task_id, "exploded" in m) for s, m in errors] == [(11, True)]
    assert stats.errors == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="concurrency"):
        RolloutEngine(ExpertPolicy(), LocalEnvs(), concurrency=0)
    with pytest.raises(ValueError, match="react"):
        RolloutEngine(ExpertPolicy(), LocalEnvs(), RolloutConfig(format="xml"))


def test_history_zero_without_system_prompt_sends_only_the_latest_observation():
    from palaestra.agents.rollout import OMITTED_NOTE

    policy = FirstOpenMove()
    [t], _, _ = play(
        policy, [EpisodeSpec(MAZE, 3000, "test")], max_turns=4, history=0, system_prompt=False
    )
    prompts = [batch[0] for batch in policy.batches]
    assert [len(p) for p in prompts] == [1, 1, 1, 1]
    assert all(p[0]["role"] == "user" for p in prompts)
    assert prompts[0][0]["content"] == t.messages[1]["content"]
    # later prompts: the same note whatever the turn (no turn count to latch on to)
    for turn in (1, 2, 3):
        assert (
            prompts[turn][0]["content"] == f"{OMITTED_NOTE}\n{t.messages[1 + 2 * turn]['content']}"
        )
    assert t.messages[0]["role"] == "system"  # the trajectory still records it
