"""The ``Policy`` interface: batched, async text generation for chat conversations.

Every LLM backend (local transformers, an OpenAI-compatible server, in-process
vLLM) answers one call: ``await policy.generate(conversations, n=..., ...)`` ->
one list of ``n`` completions per conversation. The rollout engine batches the
pending turns of many episodes into one such call.

A completion is a :class:`Completion`: a ``str`` (so ``list[list[str]]`` holds)
that also carries its token counts, why generation stopped and, for envs with
tools, the tool calls the model made. A backend asked to record tokens (online RL:
:class:`~palaestra.agents.transformers_policy.TransformersPolicy` with
``record_tokens=True``) also attaches :class:`TurnTokens`: the exact prompt ids the
model read, the ids it generated and their log-probabilities, so a trainer learns
from those very tokens and never from a re-tokenization of the text.

Tool calling: ``generate(..., tools=...)`` takes, per conversation, the tool
definitions (OpenAI's shape, ``{"type": "function", "function": {...}}``) or
``None``. Conversations may then hold assistant messages with ``tool_calls`` and
``tool`` messages (``{"role": "tool", "tool_call_id", "content"}``), as in the
OpenAI chat API; a reply's calls are in :attr:`Completion.tool_calls`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Completion", "Message", "Policy", "Tools", "TurnTokens", "truncate_at_stop"]

Message = dict[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant" | "tool", "content": str}``,
plus ``tool_calls`` on an assistant message that called tools and ``tool_call_id`` on
a tool result (OpenAI's shapes)."""

Tools = Sequence[Mapping[str, Any]]
"""Tool definitions in the OpenAI chat API's shape (``{"type": "function", "function": ...}``)."""

ToolCallDict = dict[str, Any]
"""One call, OpenAI's shape: ``{"id", "type": "function", "function": {"name", "arguments"}}``
with ``arguments`` a JSON text."""


@dataclass(frozen=True)
class TurnTokens:
    """The tokens of one reply, exactly as the model read and wrote them.

    Attributes:
        prompt_ids: The prompt's token ids (the chat template's rendering, generation
            prompt included), as fed to the model.
        completion_ids: The generated ids, in order, up to and including the token
            that ended the reply (end of turn, or the last token of a stop string);
            tokens past the end are not included.
        logprobs: Per generated id, its log-probability under the distribution it was
            sampled from (temperature applied; greedy replies: ``temperature=1``).
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    logprobs: tuple[float, ...]

    def to_json(self) -> dict[str, list[Any]]:
        """Lists of ids and log-probabilities (a JSON object)."""
        return {
            "prompt_ids": list(self.prompt_ids),
            "completion_ids": list(self.completion_ids),
            "logprobs": list(self.logprobs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[Any]]) -> TurnTokens:
        """Inverse of :meth:`to_json`."""
        return cls(
            tuple(int(i) for i in data["prompt_ids"]),
            tuple(int(i) for i in data["completion_ids"]),
            tuple(float(x) for x in data["logprobs"]),
        )


class Completion(str):
    """A generated reply: the text itself, plus token counts and the finish reason.

    Attributes:
        prompt_tokens: Tokens of the prompt it answered.
        completion_tokens: Tokens generated.
        finish_reason: ``"stop"`` (end of turn or a stop sequence), ``"length"``
            (``max_tokens`` reached) or ``"tool_calls"`` (the reply called tools).
        tool_calls: The tool calls of the reply (OpenAI's shape, ``arguments`` a JSON
            text), or ``None`` when it made none; the text is then what the model
            wrote besides the calls (often empty).
        tokens: The reply's exact tokens (:class:`TurnTokens`) when the backend was
            asked to record them, else ``None``.
    """

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    tool_calls: tuple[ToolCallDict, ...] | None
    tokens: TurnTokens | None

    def __new__(
        cls,
        text: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        finish_reason: str = "stop",
        tool_calls: Sequence[ToolCallDict] | None = None,
        tokens: TurnTokens | None = None,
    ) -> Completion:
        """Make a completion of ``text``."""
        self = super().__new__(cls, text)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.finish_reason = finish_reason
        self.tool_calls = tuple(tool_calls) if tool_calls else None
        self.tokens = tokens
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Completion,
            (
                str(self),
                self.prompt_tokens,
                self.completion_tokens,
                self.finish_reason,
                self.tool_calls,
                self.tokens,
            ),
        )


class Policy(ABC):
    """A batched chat policy.

    Attributes:
        name: What the trajectories record as the model (a path, URL#model, ...).
        context_length: The model's context window in tokens (``None``: unknown,
            no truncation by the rollout engine).
    """

    name: str = "policy"
    context_length: int | None = None

    @abstractmethod
    async def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tools: Sequence[Tools | None] | None = None,
    ) -> list[list[Completion]]:
        """Reply to each conversation ``n`` times.

        Args:
            conversations: Chat histories, each ending with a user message.
            n: Replies per conversation.
            temperature: 0 for greedy decoding.
            max_tokens: Longest reply, in tokens.
            stop: Strings that end a reply (not included in it).
            seed: Makes sampling reproducible where the backend allows it.
            tools: Per conversation, the tools the model may call (``None`` for a
                conversation without tools); ``None`` for none at all. Backends
                pass them the way the model expects (the OpenAI API's ``tools``,
                a chat template's ``tools=``) and return the calls in
                :attr:`Completion.tool_calls`.

        Returns:
            ``n`` completions per conversation, in order.
        """

    def count_tokens(self, messages: Sequence[Message], tools: Tools | None = None) -> int:
        """Prompt tokens of ``messages`` with a generation prompt (an estimate by default).

        The default counts one token per 3 characters, a safe over-estimate for
        English text with BPE vocabularies; backends with a tokenizer override it.
        ``tools`` (the conversation's tool definitions) count as their JSON text, and
        assistant ``tool_calls`` as theirs.
        """
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        chars += sum(len(json.dumps(m["tool_calls"])) for m in messages if m.get("tool_calls"))
        if tools:
            chars += len(json.dumps(list(tools), default=str))
        return chars // 3 + 4 * len(messages)

    def describe(self) -> dict[str, Any]:
        """What provenance records of this policy."""
        return {"name": self.name, "backend": type(self).__name__}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Free connections or threads (nothing by default)."""


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the first stop sequence, and whether one was found."""
    cut = len(text)
    for s in stop:
        if s:
            at = text.find(s)
            if at != -1:
                cut = min(cut, at)
    return text[:cut], cut < len(text)
