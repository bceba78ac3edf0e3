"""The ``Policy`` interface: batched, async text generation for chat conversations.

Every LLM backend (local transformers, an OpenAI-compatible server, in-process
vLLM) answers one call: ``await policy.generate(conversations, n=..., ...)`` ->
one list of ``n`` completions per conversation. The rollout engine batches the
pending turns of many episodes into one such call.

A completion is a :class:`Completion`: a ``str`` (so ``list[list[str]]`` holds)
that also carries its token counts and why generation stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

__all__ = ["Completion", "Message", "Policy", "truncate_at_stop"]

Message = dict[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""


class Completion(str):
    """A generated reply: the text itself, plus token counts and the finish reason.

    Attributes:
        prompt_tokens: Tokens of the prompt it answered.
        completion_tokens: Tokens generated.
        finish_reason: ``"stop"`` (end of turn or a stop sequence) or ``"length"``
            (``max_tokens`` reached).
    """

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str

    def __new__(
        cls,
        text: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        finish_reason: str = "stop",
    ) -> Completion:
        """Make a completion of ``text``."""
        self = super().__new__(cls, text)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.finish_reason = finish_reason
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Completion,
            (str(self), self.prompt_tokens, self.completion_tokens, self.finish_reason),
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
    ) -> list[list[Completion]]:
        """Reply to each conversation ``n`` times.

        Args:
            conversations: Chat histories, each ending with a user message.
            n: Replies per conversation.
            temperature: 0 for greedy decoding.
            max_tokens: Longest reply, in tokens.
            stop: Strings that end a reply (not included in it).
            seed: Makes sampling reproducible where the backend allows it.

        Returns:
            ``n`` completions per conversation, in order.
        """

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of ``messages`` with a generation prompt (an estimate by default).

        The default counts one token per 3 characters, a safe over-estimate for
        English text with BPE vocabularies; backends with a tokenizer override it.
        """
        return sum(len(str(m.get("content", ""))) for m in messages) // 3 + 4 * len(messages)

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
