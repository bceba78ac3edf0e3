"""``TransformersPolicy(record_tokens=True)``: each reply's exact ids, where it really ended."""

from __future__ import annotations

import pytest

from palaestra.agents.transformers_policy import TransformersPolicy

CONVERSATIONS = [
    [{"role": "user", "content": f"Observation: maze {i}. Where now?"}] for i in range(6)
]


@pytest.fixture(scope="module")
def policy() -> TransformersPolicy:
    return TransformersPolicy("tiny", record_tokens=True, threads=1)


def test_a_stop_string_ends_the_ids_at_its_last_token_and_padding_is_not_counted(policy):
    tok = policy.tokenizer
    replies = policy.generate_sync(CONVERSATIONS, n=2, temperature=1.0, max_tokens=24,
                                   stop=("e",), seed=11)  # fmt: skip
    stopped = 0
    for reply in (r for rs in replies for r in rs):
        ids = reply.tokens.completion_ids
        assert len(reply.tokens.logprobs) == len(ids) == reply.completion_tokens
        assert all(lp <= 0.0 for lp in reply.tokens.logprobs)
        text = tok.decode(ids, skip_special_tokens=True)
        assert text.startswith(str(reply))  # the reply is the ids' text, cut at the stop
        if "e" in text:
            stopped += 1
            # the stop string is complete only with the last id: the reply ended there
            assert "e" not in tok.decode(ids[:-1], skip_special_tokens=True)
            assert tok.pad_token_id not in ids[-1:]
        elif len(ids) < 24:
            assert ids[-1] == tok.eos_token_id  # else it ended at its end-of-turn token
    assert stopped >= 3  # most replies of a random model write an "e" within 24 tokens


def test_the_prompt_ids_are_the_chat_templates_and_greedy_logprobs_are_at_temperature_1(policy):
    import torch

    [[reply]] = policy.generate_sync(CONVERSATIONS[:1], temperature=0.0, max_tokens=6)
    prompt = list(reply.tokens.prompt_ids)
    assert prompt == policy._prompt_ids(CONVERSATIONS[0])
    ids = torch.tensor([prompt + list(reply.tokens.completion_ids)])
    with torch.no_grad():
        logits = policy.model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    expected = logits.log_softmax(-1).gather(-1, ids[0, len(prompt) :, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(reply.tokens.logprobs), expected, atol=1e-4)


def test_without_recording_replies_carry_no_tokens():
    plain = TransformersPolicy("tiny", threads=1)
    [[reply]] = plain.generate_sync(CONVERSATIONS[:1], temperature=0.0, max_tokens=4)
    assert reply.tokens is None
