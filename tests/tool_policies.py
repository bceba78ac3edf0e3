"""A real ``Policy`` that answers with tool calls, for tests of the tools format (toy/Tally-v0)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from palaestra.agents.policy import Completion, Message, Policy, Tools


def call(name: str, arguments: object, call_id: str = "abc") -> dict:
    """One tool call in OpenAI's shape (``arguments`` as JSON text unless given as text)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


class TallyCaller(Policy):
    """Plays Tally with native tool calls, as a model with function calling would.

    Reads the target from the first observation and the total from the latest tool
    result; records every conversation and tool list it was given. ``garble_turn``:
    that turn's reply is text without a call.
    """

    name = "tally-caller"

    def __init__(self, garble_turn: int | None = None, extra_call: bool = False) -> None:
        self.garble_turn = garble_turn
        self.extra_call = extra_call
        self.seen: list[tuple[list[Message], Tools | None]] = []

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
        assert tools is not None and len(tools) == len(conversations)
        out = []
        for conversation, its_tools in zip(conversations, tools, strict=True):
            self.seen.append(([dict(m) for m in conversation], its_tools))
            turn = sum(m["role"] == "assistant" for m in conversation)
            if turn == self.garble_turn:
                out.append([Completion("I would rather chat.", 5, 4)] * n)
                continue
            found = re.search(r"Target: (\d+)", conversation[1]["content"])
            results = [m["content"] for m in conversation if m["role"] == "tool"]
            total = json.loads(results[-1])["total"] if results else 0
            target = int(found[1]) if found else total  # out of the window: done by now
            if total < target:
                calls = [call("add", {"n": min(5, target - total)}, f"random-{turn}")]
            else:
                calls = [call("finish", {}, "xyz")]
            if self.extra_call:
                calls.append(call("total", {}))
            out.append([Completion("", 9, 6, "tool_calls", calls)] * n)
        return out
