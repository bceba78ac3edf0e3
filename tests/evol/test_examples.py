"""Training examples: prompt windows, the loss mask token by token, the SFT collator."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from palaestra.agents.models import resolve_model  # noqa: E402
from palaestra.agents.rollout import prompt_window  # noqa: E402
from palaestra.agents.trajectory import Trajectory  # noqa: E402
from palaestra.evol.examples import IGNORE_INDEX, tokenize_example, turn_examples  # noqa: E402
from palaestra.evol.sft import SFTCollator, SFTConfig, build_examples  # noqa: E402

SYSTEM = "You are in a maze.\nReply with one action."
CONVERSATION = [
    {"role": "system", "content": SYSTEM, "loss": False},
    {"role": "user", "content": "Position: (1, 1).\n#####\n#A.G#\n#####", "loss": False},
    {
        "role": "assistant",
        "content": "Thought: the goal is right.\nAction: move right",
        "loss": True,
    },
    {"role": "user", "content": "You moved right. Café ✓", "loss": False},
    {"role": "assistant", "content": "Action: dance", "loss": False},
    {"role": "user", "content": "Unknown action 'dance'.", "loss": False},
    {"role": "assistant", "content": "Action: move right", "loss": True},
]
TRAINED = [CONVERSATION[2]["content"], CONVERSATION[6]["content"]]


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(resolve_model("tiny").path)


@pytest.fixture(scope="module")
def plain_tokenizer(tokenizer):
    """The same tokenizer whose chat template has no ``{% generation %}`` marks."""
    plain = copy.deepcopy(tokenizer)
    template = tokenizer.chat_template
    assert "{%- generation %}" in template and "{%- endgeneration %}" in template
    plain.chat_template = template.replace("{%- generation %}", "").replace(
        "{%- endgeneration %}", ""
    )
    assert "{%- generation" not in plain.chat_template
    assert "endgeneration" not in plain.chat_template
    return plain


def expected_tokens(tokenizer, messages):
    """The ids and labels built by hand: bos, then per message its role token, text, <|end|>."""
    special = dict(
        zip(
            ("bos", "end", "system", "user", "assistant"),
            tokenizer.convert_tokens_to_ids(
                ["<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
            ),
            strict=True,
        )
    )
    ids, labels = [special["bos"]], [IGNORE_INDEX]
    for m in messages:
        text = tokenizer(m["content"], add_special_tokens=False)["input_ids"]
        ids += [special[m["role"]], *text, special["end"]]
        labels.append(IGNORE_INDEX)
        trained = m["role"] == "assistant" and m["loss"]
        labels += [*text, special["end"]] if trained else [IGNORE_INDEX] * (len(text) + 1)
    return ids, labels


def labelled_spans(tokenizer, encoded):
    spans, current = [], []
    for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True):
        if label == IGNORE_INDEX:
            if current:
                spans.append(tokenizer.decode(current))
            current = []
        else:
            assert label == token
            current.append(token)
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_loss_mask_token_by_token(tokenizer):
    encoded = tokenize_example(tokenizer, CONVERSATION)
    ids, labels = expected_tokens(tokenizer, CONVERSATION)
    assert encoded["input_ids"] == ids
    assert encoded["labels"] == labels
    # the same ids as the chat template renders the conversation for generation
    plain = [{"role": m["role"], "content": m["content"]} for m in CONVERSATION]
    assert (
        encoded["input_ids"]
        == tokenizer.apply_chat_template(plain, tokenize=True, return_dict=True)["input_ids"]
    )
    assert labelled_spans(tokenizer, encoded) == [f"{text}<|end|>" for text in TRAINED]
    assert sum(label != IGNORE_INDEX for label in encoded["labels"]) == sum(
        len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in TRAINED
    )


def test_the_fallback_without_generation_marks_gives_the_same_labels(tokenizer, plain_tokenizer):
    with_marks = tokenize_example(tokenizer, CONVERSATION)
    without = tokenize_example(plain_tokenizer, CONVERSATION)
    assert without == with_marks
    assert labelled_spans(plain_tokenizer, without) == [f"{text}<|end|>" for text in TRAINED]
    # and on windowed examples too
    for example in turn_examples(trajectory(), history=0):
        assert tokenize_example(plain_tokenizer, example) == tokenize_example(tokenizer, example)


def test_max_length_drops_and_no_trained_token_gives_none(tokenizer):
    full = tokenize_example(tokenizer, CONVERSATION)
    length = len(full["input_ids"])
    assert tokenize_example(tokenizer, CONVERSATION, max_length=length) == full
    assert tokenize_example(tokenizer, CONVERSATION, max_length=length - 1) is None
    untrained = [{**m, "loss": False} for m in CONVERSATION]
    assert tokenize_example(tokenizer, untrained) is None


def trajectory():
    return Trajectory(
        env_id="palaestra/Maze-v0",
        task_id=3,
        split="train",
        sample=0,
        seed=0,
        messages=[dict(m) for m in CONVERSATION]
        + [{"role": "user", "content": "Won.", "loss": False}],
        actions=["move right", "dance", "move right"],
        rewards=[0.0, 0.0, 1.0],
        success=True,
        score=1.0,
        turns=3,
    )


def test_turn_examples_history_zero():
    t = trajectory()
    examples = turn_examples(t, history=0)
    assert examples == [
        [
            {"role": "system", "content": SYSTEM, "loss": False},
            {"role": "user", "content": CONVERSATION[1]["content"], "loss": False},
            {"role": "assistant", "content": TRAINED[0], "loss": True},
        ],
        [
            {"role": "system", "content": SYSTEM, "loss": False},
            {
                "role": "user",
                "content": "(earlier turns omitted)\nUnknown action 'dance'.",
                "loss": False,
            },
            {"role": "assistant", "content": TRAINED[1], "loss": True},
        ],
    ]
    # exactly the prompts a rollout with history=0 sends
    for example, index in zip(examples, (2, 6), strict=True):
        assert [{k: m[k] for k in ("role", "content")} for m in example[:-1]] == prompt_window(
            t.messages[:index], 0
        )
    assert t.messages == [*CONVERSATION, {"role": "user", "content": "Won.", "loss": False}]


def test_turn_examples_history_one_and_whole():
    t = trajectory()
    one = turn_examples(t, history=1)
    assert len(one) == 2
    assert one[0] == turn_examples(t, history=0)[0]  # no turn before the first reply
    assert one[1] == [
        {"role": "system", "content": SYSTEM, "loss": False},
        {
            "role": "user",
            "content": "(earlier turns omitted)\nYou moved right. Café ✓",
            "loss": False,
        },
        {"role": "assistant", "content": "Action: dance", "loss": False},
        {"role": "user", "content": "Unknown action 'dance'.", "loss": False},
        {"role": "assistant", "content": TRAINED[1], "loss": True},
    ]
    whole = turn_examples(t, history=None)
    assert whole == [t.messages]
    whole[0][0]["content"] = "changed"  # copies, not the trajectory's own dicts
    assert t.messages[0]["content"] == SYSTEM


def test_build_examples_counts_dropped(tokenizer):
    t = trajectory()
    examples, dropped = build_examples([t, t], tokenizer, SFTConfig(history=0))
    assert (len(examples), dropped) == (4, 0)
    lengths = sorted(len(e["input_ids"]) for e in examples[:2])
    examples, dropped = build_examples([t], tokenizer, SFTConfig(history=0, max_length=lengths[0]))
    assert (len(examples), dropped) == (1, 1)
    assert len(examples[0]["input_ids"]) == lengths[0]
    whole, dropped = build_examples([t], tokenizer, SFTConfig(history=None))
    assert dropped == 0 and whole == [tokenize_example(tokenizer, t.messages)]


def test_collator_pads_right():
    collator = SFTCollator(pad_token_id=0)
    batch = collator(
        [
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
            {"input_ids": [8, 9, 10, 11, 12], "labels": [-100, -100, 10, 11, -100]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, -100], [-100, -100, 10, 11, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"].dtype == torch.long and batch["labels"].dtype == torch.long
    assert collator.tokens == 8
    collator([{"input_ids": [1], "labels": [1]}])
    assert collator.tokens == 9
