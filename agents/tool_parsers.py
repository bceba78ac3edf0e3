"""Tool calls in and out of model text: chat-template messages, and parsers per template family.

A local model (``TransformersPolicy``, ``VLLMPolicy``) sees tools through its chat
template (``apply_chat_template(messages, tools=...)``) and writes its calls as
text in its family's own convention. This module turns that text back into
OpenAI-shaped calls, and OpenAI-shaped conversations into what templates expect.

Parsers (``TOOL_PARSERS``), picked from the chat template's text by
:func:`parser_for_template`, never from a model's name:

* ``hermes`` -- Hermes, Qwen 2.5/3, SmolLM3 and palaestra's tiny model: each call is
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (whitespace around the
  JSON is free); the text outside the blocks is the reply's text.
* ``llama3_json`` -- Llama 3.1/3.2/3.3 with custom tools: the whole reply is
  ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``), or
  several such objects separated by ``;``.

A reply that opens a call and never closes it, or whose call is not valid JSON
naming a tool with object arguments, parses to no calls with the raw text kept:
the agent format then reports it as unreadable, as for any malformed reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from palaestra.agents.policy import Message, ToolCallDict, Tools

__all__ = [
    "TOOL_PARSERS",
    "ParsedReply",
    "ToolParser",
    "get_tool_parser",
    "openai_message",
    "parser_for_template",
    "template_message",
    "tools_key",
]


@dataclass(frozen=True)
class ParsedReply:
    """A reply split into its text and its tool calls.

    Attributes:
        text: The text besides the calls (the raw reply when no call was read).
        tool_calls: OpenAI-shaped calls (``arguments`` a JSON text), ``None`` for none.
    """

    text: str
    tool_calls: tuple[ToolCallDict, ...] | None = None


class ToolParser:
    """Reads one template family's tool calls out of a reply.

    Attributes:
        name: The parser's name in :data:`TOOL_PARSERS`.
    """

    name: str = ""

    def parse(self, text: str) -> ParsedReply:
        """Split ``text`` into its calls and the text besides them."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _call(index: int, data: Any, argument_keys: Sequence[str]) -> ToolCallDict | None:
    """The OpenAI-shaped call in a decoded JSON object, or ``None`` if it is none."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    key = next((k for k in argument_keys if k in data), None)
    if set(data) - {"name", *argument_keys}:
        return None
    arguments = {} if key is None else data[key]
    if isinstance(arguments, str):  # some models write the arguments as a JSON text
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": data["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


class HermesParser(ToolParser):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Hermes, Qwen)."""

    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    _BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

    def parse(self, text: str) -> ParsedReply:
        """Split ``text`` into its ``<tool_call>`` blocks and the text around them."""
        if self.OPEN not in text:
            return ParsedReply(text)
        calls: list[ToolCallDict] = []
        for index, match in enumerate(self._BLOCK.finditer(text)):
            try:
                data = json.loads(match.group(1))
            except ValueError:
                return ParsedReply(text)
            call = _call(index, data, ("arguments", "parameters"))
            if call is None:
                return ParsedReply(text)
            calls.append(call)
        rest = self._BLOCK.sub("", text)
        if self.OPEN in rest or not calls:  # a call opened and never closed
            return ParsedReply(text)
        return ParsedReply(rest.strip(), tuple(calls))


class Llama3JsonParser(ToolParser):
    """A reply that is one or more ``{"name", "parameters"}`` objects (Llama 3.x, custom tools)."""

    name = "llama3_json"
    TAG = "<|python_tag|>"

    def parse(self, text: str) -> ParsedReply:
        """Read the reply as ``;``-separated call objects; anything else is plain text."""
        body = text.strip()
        if body.startswith(self.TAG):
            body = body[len(self.TAG) :].lstrip()
        if not body.startswith("{"):
            return ParsedReply(text)
        decoder = json.JSONDecoder()
        calls: list[ToolCallDict] = []
        at = 0
        while at < len(body):
            try:
                data, end = decoder.raw_decode(body, at)
            except ValueError:
                return ParsedReply(text)
            call = _call(len(calls), data, ("parameters", "arguments"))
            if call is None:
                return ParsedReply(text)
            calls.append(call)
            at = end
            while at < len(body) and body[at] in " \t\r\n;":
                at += 1
        return ParsedReply("", tuple(calls))


TOOL_PARSERS: dict[str, ToolParser] = {p.name: p for p in (HermesParser(), Llama3JsonParser())}
"""The parsers by name."""


def get_tool_parser(name: str) -> ToolParser:
    """The parser named ``name``.

    Raises:
        ValueError: No parser has that name (the message lists them).
    """
    try:
        return TOOL_PARSERS[name]
    except KeyError:
        known = ", ".join(sorted(TOOL_PARSERS))
        raise ValueError(f"unknown tool parser {name!r}; known: {known}") from None


def parser_for_template(template: str | None) -> ToolParser | None:
    """The parser of the convention a chat template teaches, or ``None`` if it shows none.

    Read from the template's text: ``<tool_call>`` -> ``hermes``; Llama 3's
    ``"parameters"`` instruction or ``<|python_tag|>`` -> ``llama3_json``.
    """
    if not template:
        return None
    if HermesParser.OPEN in template:
        return TOOL_PARSERS["hermes"]
    if Llama3JsonParser.TAG in template or '"parameters": dictionary of argument' in template:
        return TOOL_PARSERS["llama3_json"]
    return None


def _arguments_object(arguments: Any) -> Any:
    """A call's arguments as a dict when they are a JSON text of one (templates call ``tojson``)."""
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return arguments
        return decoded if isinstance(decoded, dict) else arguments
    return arguments


def _arguments_text(arguments: Any) -> str:
    """A call's arguments as the JSON text the OpenAI API carries."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps({} if arguments is None else arguments, ensure_ascii=False)


def _with_calls(message: Message, arguments: Any) -> list[dict[str, Any]]:
    calls = []
    for call in message.get("tool_calls") or ():
        function = dict(call.get("function") or {})
        function["arguments"] = arguments(function.get("arguments"))
        calls.append({**{k: v for k, v in call.items() if k != "function"}, "function": function})
    return calls


def template_message(message: Mapping[str, Any]) -> Message:
    """``message`` as a Hugging Face chat template takes it.

    Only ``role`` and ``content`` (``None`` -> ``""``), plus ``tool_calls`` with each
    call's ``arguments`` as a dict (a JSON text of an object; other values stay) and
    ``tool_call_id`` on tool results;
    palaestra's own keys (``loss``...) are dropped. A plain message becomes exactly
    ``{"role", "content"}``, as it always did.
    """
    out: Message = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = _with_calls(message, _arguments_object)
    if message["role"] == "tool" and message.get("tool_call_id") is not None:
        out["tool_call_id"] = message["tool_call_id"]
    return out


def openai_message(message: Mapping[str, Any]) -> Message:
    """``message`` as the OpenAI chat API takes it.

    ``role`` and ``content`` (``None`` -> ``""``; ``None`` on an assistant turn that only
    called tools), ``tool_calls`` with ``arguments`` as a JSON text, ``tool_call_id`` on
    tool results; palaestra's ``loss`` and other keys are dropped. A plain message
    becomes exactly ``{"role", "content"}``, as it always did.
    """
    content = message.get("content") or ""
    out: Message = {"role": message["role"], "content": content}
    if message.get("tool_calls"):
        out["content"] = content or None
        out["tool_calls"] = _with_calls(message, _arguments_text)
    if message["role"] == "tool" and message.get("tool_call_id") is not None:
        out["tool_call_id"] = message["tool_call_id"]
    return out


def tools_key(tools: Tools | None) -> str:
    """A hashable identity of a tool list (for grouping conversations by tools)."""
    return json.dumps(list(tools or ()), sort_keys=True, default=str)
