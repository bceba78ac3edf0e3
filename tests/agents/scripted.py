"""Policies for engine tests: real ``Policy`` subclasses whose replies follow a rule."""

from __future__ import annotations

import re
from collections.abc import Sequence

from palaestra.agents.policy import Completion, Message, Policy, Tools


class FirstOpenMove(Policy):
    """Replies in ReAct with the first move the Maze observation lists as open.

    Records every batch it was called with, and can pretend to a small context.
    """

    name = "first-open-move"

    def __init__(self, context_length: int | None = None, garble_every: int = 0) -> None:
        self.context_length = context_length
        self.garble_every = garble_every
        self.batches: list[list[list[Message]]] = []
        self.replies = 0

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
        self.batches.append([list(c) for c in conversations])
        out = []
        for conversation in conversations:
            self.replies += 1
            if self.garble_every and self.replies % self.garble_every == 0:
                out.append([Completion("I am not sure what to do.", 10, 7)] * n)
                continue
            moves = re.findall(r"move (up|down|left|right)", conversation[-1]["content"])
            action = f"move {moves[0]}" if moves else "move up"
            out.append([Completion(f"Thought: go.\nAction: {action}", 10, 5)] * n)
        return out

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m["content"]) for m in messages) // 4
