"""Training examples from trajectories, and their tokens with a loss mask.

An agent sampled with ``history=K`` sees, at each turn, the system prompt, its
last ``K`` turns and the newest observation (:func:`palaestra.agents.rollout.prompt_window`).
:func:`turn_examples` cuts a trajectory into exactly those prompts, each followed
by the reply that was given, so a model is trained on the prompts it is later
sampled on; ``history=None`` keeps the whole conversation as one example.

:func:`tokenize_example` renders an example with the tokenizer's chat template
and sets ``labels`` to ``-100`` everywhere except the tokens of assistant
messages whose ``loss`` flag is true (their end-of-turn token included). It uses
the template's ``{% generation %}`` marks where the template has them, and
otherwise the difference between the rendered prefixes before and after each
assistant message.

Tool calls (the tools format): an assistant message's ``tool_calls`` are part of
its reply, so trained with it; ``tool`` results are never trained. Messages reach
the template in OpenAI's shapes, except that each call's ``arguments`` are given
as a dict (templates write them with ``tojson``), and the trajectory's tool
definitions go in as ``tools=``, as the policy rendered them when it was sampled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from palaestra.agents.policy import Message, Tools
from palaestra.agents.rollout import prompt_window
from palaestra.agents.trajectory import Trajectory

__all__ = ["IGNORE_INDEX", "template_messages", "tokenize_example", "turn_examples"]

IGNORE_INDEX = -100
"""The label PyTorch's cross-entropy (and so ``transformers``) skips."""


def turn_examples(
    trajectory: Trajectory, history: int | None = None, *, system_prompt: bool = True
) -> list[list[Message]]:
    """The training conversations of one trajectory.

    Args:
        trajectory: An episode (system, observation, then reply/observation pairs).
        history: Past turns in each prompt, as the rollout was (or will be) run;
            ``None`` gives the whole conversation as one example.
        system_prompt: Keep the system message, as the rollout's ``system_prompt``.

    Returns:
        Conversations whose messages carry ``loss`` flags; with a ``history``, one
        per assistant message whose ``loss`` is true, with only that reply trained.
    """
    messages = trajectory.messages
    if history is None:
        return [[dict(m) for m in messages if system_prompt or m["role"] != "system"]]
    examples = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or not message.get("loss", False):
            continue
        prompt = prompt_window(messages[:index], history, system_prompt=system_prompt)
        reply = {"role": "assistant", "content": message["content"], "loss": True}
        if message.get("tool_calls"):
            reply["tool_calls"] = message["tool_calls"]
        examples.append([{**m, "loss": False} for m in prompt] + [reply])
    return examples


def template_messages(messages: Sequence[Message]) -> list[Message]:
    """``messages`` as chat templates take them: no ``loss``, tool-call arguments as dicts.

    Stored and sent over the OpenAI API, a call's ``arguments`` are a JSON text; Hugging
    Face chat templates write them with ``tojson`` and so need the dict. Arguments that
    are not a JSON object stay text.
    """
    out = []
    for m in messages:
        plain: Message = {"role": m["role"], "content": m["content"]}
        if m.get("tool_calls"):
            plain["tool_calls"] = [_with_dict_arguments(c) for c in m["tool_calls"]]
        if m.get("tool_call_id") is not None:
            plain["tool_call_id"] = m["tool_call_id"]
        out.append(plain)
    return out


def _with_dict_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call["function"])
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            loaded = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            function["arguments"] = loaded
    return {**call, "function": function}


def _render(
    tokenizer: Any, messages: Sequence[Message], tools: Tools | None = None, **kwargs: Any
) -> dict[str, Any]:
    if tools:
        kwargs["tools"] = [dict(t) for t in tools]
    return tokenizer.apply_chat_template(
        template_messages(messages), tokenize=True, return_dict=True, **kwargs
    )


def _has_generation_marks(tokenizer: Any) -> bool:
    template = tokenizer.chat_template or ""
    return "{% generation %}" in template or "{%- generation %}" in template


def tokenize_example(
    tokenizer: Any,
    messages: Sequence[Message],
    max_length: int | None = None,
    *,
    tools: Tools | None = None,
) -> dict[str, list[int]] | None:
    """``input_ids`` and ``labels`` of one conversation (see the module doc).

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.
        messages: The conversation; assistant messages with a true ``loss`` are trained
            (their ``tool_calls`` included).
        max_length: Longest example kept; a longer one gives ``None`` (it is
            dropped rather than cut, since cutting would train on a prompt the
            model never sees).
        tools: The tool definitions the policy was given (``Trajectory.tools``),
            rendered by the template as at sampling time; ``None`` for none.

    Returns:
        The token ids and labels, or ``None`` when over ``max_length`` or when no
        trained token is left.

    Raises:
        ValueError: The template renders a conversation differently from its own
            prefixes (no way to find the assistant tokens).
    """
    trained = [m["role"] == "assistant" and bool(m.get("loss", False)) for m in messages]
    if _has_generation_marks(tokenizer):
        encoded = _render(tokenizer, messages, tools, return_assistant_tokens_mask=True)
        ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
        spans = _runs(mask)
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if len(spans) != len(assistants):
            raise ValueError(
                f"the chat template marked {len(spans)} assistant spans for "
                f"{len(assistants)} assistant messages"
            )
        labels = [IGNORE_INDEX] * len(ids)
        for (start, end), index in zip(spans, assistants, strict=True):
            if trained[index]:
                labels[start:end] = ids[start:end]
    else:
        ids, labels = [], []
        for index in range(len(messages)):
            if messages[index]["role"] != "assistant":
                continue
            before = list(
                _render(tokenizer, messages[:index], tools, add_generation_prompt=True)["input_ids"]
            )
            after = list(_render(tokenizer, messages[: index + 1], tools)["input_ids"])
            if after[: len(before)] != before or ids != before[: len(ids)]:
                raise ValueError("the chat template does not render conversations prefix by prefix")
            labels += [IGNORE_INDEX] * (len(before) - len(ids))
            reply = after[len(before) :]
            labels += reply if trained[index] else [IGNORE_INDEX] * len(reply)
            ids = after
    if max_length is not None and len(ids) > max_length:
        return None
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def _runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of ones."""
    runs, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs
