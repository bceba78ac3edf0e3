"""Prompt formats: how an LLM agent is told to reply, and how its replies are read.

A :class:`Format` turns an env's ``instruction`` into a system prompt, reads the
action out of each model reply (:meth:`Format.parse`), writes well-formed replies
for recorded baselines (:meth:`Format.render`) and words the next user turn
(:meth:`Format.observation_message`). An unparsable reply is not a crash: it
gives a :class:`ParsedReply` with ``action=None`` and an ``error`` sentence that
the rollout shows the model in its next observation.

The parsers are strict about the action and tolerant of the wrapping that models
really produce. Rules shared by both formats:

* the reply is cut at the first end-of-sequence or turn token (``</s>``,
  ``<|im_end|>``, ``<|endoftext|>``, ``<|eot_id|>``, ``<|end|>``, ``<eos>``, ...);
  CRLF and CR line endings become LF;
* the action is one non-empty line of at most :data:`MAX_ACTION_LENGTH` (300)
  characters, surrounding whitespace removed.

``react`` (:class:`ReActFormat`), the default: ``Thought: <reasoning>`` then
``Action: <one action>``.

* Lines that hold only a code fence (```` ``` ```` with or without a language
  tag) are dropped, wherever they are.
* A label is ``Thought:`` or ``Action:`` at the start of a line, in any case,
  optionally in markdown emphasis (``**Action:**``, ``**Action**:``) and after
  list, quote or heading markers (``- ``, ``* ``, ``> ``, ``## ``).
* The action is the rest of the first ``Action:`` line. If that is empty, the
  next non-empty line is taken unless it is itself a label (models write
  ``Action:`` and the action below it). Then a single trailing period is
  dropped (not an ellipsis), and one pair of matching quotes, backticks,
  brackets or emphasis around the whole action is removed. Nothing inside the
  action is touched.
* Later ``Action:`` lines and any text after the action line are ignored (the
  model is inventing the env's answer); this is noted, not an error.
* The thought runs from the first ``Thought:`` label before the action line up
  to that line; a missing ``Thought:`` is noted, not an error.
* Errors: no ``Action:`` line (a bare one-line reply such as ``move up``
  included), an empty action, an action that is too long.

``json`` (:class:`JSONFormat`): one object ``{"thought": "...", "action": "..."}``.

* The first balanced top-level ``{...}`` that is valid JSON is used; code
  fences and text around it are ignored and noted.
* ``action`` must be a non-empty one-line string; ``thought`` is optional and
  ignored (noted) when not a string; unknown keys are noted.

``tools`` (:class:`ToolsFormat`): native function calling, for envs that declare
``tools``. The tool definitions travel to the policy as ``tools`` (never pasted
in the prompt) and the reply's first call is the action (see the class).

Messages: the rollout engine asks the format for the messages a turn adds to the
conversation (:meth:`Format.reply_message`, :meth:`Format.observation_messages`).
The text formats add ``{"role": "assistant", "content": reply}`` and a ``user``
message with the observation; the tools format adds OpenAI's shapes (an
assistant message with ``tool_calls``, then a ``tool`` message with
``tool_call_id``).

Tool envs under a text format: allowed. The action of a tool env is the JSON text
of a call (``{"name": ..., "arguments": {...}}``), which a ReAct ``Action:`` line
or a JSON ``"action"`` string can carry; :meth:`Format.system_prompt` then lists
the tools in the prompt, since nothing else tells the model their names and
arguments. The tools format on an env without tools is refused
(:func:`check_format`).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from palaestra.agents.policy import Completion, Message
from palaestra.envs.tools import ToolCallError, parse_tool_call, tool_call_action

__all__ = [
    "FORMATS",
    "Format",
    "JSONFormat",
    "ParsedReply",
    "ReActFormat",
    "ToolsFormat",
    "check_format",
    "get_format",
    "tool_call_id",
]

MAX_ACTION_LENGTH = 300
"""The longest action a parser accepts, in characters."""

# The example reply in every system prompt: neutral, so it suggests no env's actions.
_EXAMPLE_THOUGHT = "I should look around before I move."
_EXAMPLE_ACTION = "look"

# Anything after one of these is not the model's turn any more.
_END_TOKENS: tuple[str, ...] = (
    "</s>",
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|end|>",
    "<eos>",
    "<end_of_turn>",
)
_END_RE = re.compile("|".join(re.escape(token) for token in _END_TOKENS))


@dataclass(frozen=True)
class ParsedReply:
    """What a format read out of one model reply.

    Attributes:
        action: The action to send to the env; ``None`` when the reply was unparsable.
        thought: The model's reasoning, when the format has one and the reply gave it.
        error: Why the reply was unparsable: one sentence telling the model what to do
            instead. ``None`` when ``action`` is set.
        notes: Non-fatal oddities fixed while parsing (e.g. ``"stripped code fence"``).
    """

    action: str | None
    thought: str | None
    error: str | None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the reply gave an action."""
        return self.action is not None


class Format(ABC):
    """A prompt format: system prompt, reply parser, reply writer, user-turn text.

    Attributes:
        name: The name :func:`get_format` knows this format by.
        stop: Stop sequences for generation, so the model does not write the env's turn.
    """

    name: ClassVar[str]
    stop: ClassVar[tuple[str, ...]]
    uses_tools: ClassVar[bool] = False
    """Whether the policy is given the env's ``tools`` (native function calling)."""
    # This format's rules for the model, in a few plain sentences.
    _rules: ClassVar[str]

    def system_prompt(
        self, instruction: str, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """The system prompt: the env's instruction, then this format's rules and an example.

        Args:
            instruction: The env's ``instruction`` (what the task is, which actions exist).
            tools: The env's tool definitions, if it declares tools: a text format
                lists them (one JSON line each) and says that an action is a call.

        Returns:
            The instruction, a blank line, the tools (if any), the rules, and one
            example reply made by :meth:`render`.
        """
        example = self.render(_EXAMPLE_ACTION, _EXAMPLE_THOUGHT)
        listed = f"{_tool_list(tools)}\n\n" if tools else ""
        return (
            f"{instruction.strip()}\n\n{listed}{self._rules}\n"
            "Example reply (it shows the format only; use the actions of your task):\n"
            f"{example}"
        )

    def reply_message(self, reply: str, parsed: ParsedReply, turn: int, *, loss: bool) -> Message:
        """The assistant message a reply adds to the conversation.

        Args:
            reply: The reply as the policy gave it (a :class:`~palaestra.agents.policy.Completion`
                for model policies).
            parsed: What :meth:`parse` read out of it.
            turn: The turn's index in the episode (0 for the first reply).
            loss: Whether a trainer should learn this reply.

        Returns:
            ``{"role": "assistant", "content": reply, "loss": loss}`` for text formats.
        """
        return {"role": "assistant", "content": str(reply), "loss": loss}

    def observation_messages(
        self, observation: str, parsed: ParsedReply, turn: int
    ) -> list[Message]:
        """The messages that carry an env's answer to a reply back to the model.

        Args:
            observation: The env's observation after the step.
            parsed: What :meth:`parse` read out of the reply.
            turn: The reply's turn index (as given to :meth:`reply_message`).

        Returns:
            One ``user`` message: :meth:`observation_message` of the observation and the
            parse error, if any.
        """
        text = self.observation_message(observation, parsed.error)
        return [{"role": "user", "content": text, "loss": False}]

    @abstractmethod
    def parse(self, reply: str) -> ParsedReply:
        """Read the action (and thought) out of a model reply.

        Args:
            reply: The model's raw reply text.

        Returns:
            The parsed reply; ``action`` is ``None`` and ``error`` says why when the
            reply is unusable. Never raises on any string.
        """

    @abstractmethod
    def render(self, action: str, thought: str = "") -> str:
        """A well-formed reply for ``action``, as a model following the rules would write.

        Used to record expert and random baselines as trajectories;
        ``parse(render(a, t)).action == a.strip()`` holds for every action this accepts.

        Args:
            action: One action: one line of at most :data:`MAX_ACTION_LENGTH` characters;
                surrounding whitespace is dropped (parsers strip it too).
            thought: The reasoning to show; omitted when empty.

        Returns:
            The reply text.

        Raises:
            ValueError: If no reply parses back to ``action`` (empty, several lines, too
                long, or holding an end-of-sequence token).
        """

    def observation_message(self, observation: str, error: str | None = None) -> str:
        """The user-turn text after a step.

        Args:
            observation: The env's observation.
            error: Why the previous reply could not be used (``ParsedReply.error``), if so.

        Returns:
            The observation, preceded by the format error when ``error`` is set.
        """
        if error is None:
            return observation
        return f"Your previous reply could not be used: {error}\n\n{observation}"


def _tool_list(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tools as text formats show them: the action rule, then one JSON line per tool."""
    lines = [
        "Tools: each action is a call of one tool, written as the JSON object "
        '{"name": "<tool>", "arguments": {...}}. The tools (name, description, JSON schema '
        "of the arguments):"
    ]
    for definition in tools:
        function = definition["function"]
        lines.append(
            json.dumps(
                {
                    "name": function["name"],
                    "description": function["description"],
                    "parameters": function["parameters"],
                },
                ensure_ascii=False,
            )
        )
    return "\n".join(lines)


def _renderable(action: str) -> str:
    """``action`` stripped, as a parser gives it back; ``ValueError`` if none can."""
    stripped = action.strip()
    problem = _action_problem(stripped)
    if problem is not None:
        raise ValueError(f"cannot render action {action!r}: {problem}")
    return stripped


def _action_problem(action: str) -> str | None:
    """Why a (stripped) action is not acceptable, as the start of an error; None if it is."""
    if not action:
        return "the action is empty"
    if "\n" in action or "\r" in action:
        return "the action spans several lines"
    if len(action) > MAX_ACTION_LENGTH:
        return f"the action is {len(action)} characters long, over the limit of {MAX_ACTION_LENGTH}"
    if _END_RE.search(action):
        return "the action contains an end-of-sequence token"
    return None


def _cut_at_end_token(reply: str, notes: list[str]) -> str:
    """The reply up to its first end-of-sequence token, with LF line endings."""
    match = _END_RE.search(reply)
    if match is not None:
        if _END_RE.sub("", reply[match.end() :]).strip():
            notes.append(f"ignored text after {match.group()}")
        else:
            notes.append("stripped end-of-sequence tokens")
        reply = reply[: match.start()]
    return reply.replace("\r\n", "\n").replace("\r", "\n")


def _one_line(text: str, limit: int = 40) -> str:
    """``text`` collapsed to one short line, to quote back to the model."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# --- ReAct -------------------------------------------------------------------

_FENCE_LINE = re.compile(r"^[ \t]*(?:```|~~~)[\w.+-]*[ \t]*$")
# A label line: markers, optional emphasis, the label, the colon, optional emphasis.
_LABEL_PREFIX = r"^[ \t]*(?:(?:[-*+]|\#{1,6})[ \t]+|>[ \t]*)*(?P<em>\*\*|__|\*)?"
_LABEL_SUFFIX = (
    r"(?(em)(?:(?P<closed>(?P=em))[ \t]*:|:(?:[ \t]*(?P<after>(?P=em)))?)|:)[ \t]*(?P<rest>.*)$"
)
_ACTION_LINE = re.compile(_LABEL_PREFIX + r"action" + _LABEL_SUFFIX, re.IGNORECASE)
_THOUGHT_LINE = re.compile(_LABEL_PREFIX + r"thought" + _LABEL_SUFFIX, re.IGNORECASE)
# Any label ("Observation:", "Next step:"), so an empty Action line does not swallow one.
_ANY_LABEL = re.compile(_LABEL_PREFIX + r"[a-z][a-z _-]{0,24}" + _LABEL_SUFFIX, re.IGNORECASE)
_ACTION_INLINE = re.compile(r"\baction\s*\**\s*:", re.IGNORECASE)

# Pairs that models wrap a whole action in; the longest openers come first.
_QUOTE_PAIRS: tuple[tuple[str, str], ...] = (
    ("```", "```"),
    ("**", "**"),
    ('"', '"'),
    ("'", "'"),
    ("`", "`"),
    ("*", "*"),
    ("\u201c", "\u201d"),
    ("\u2018", "\u2019"),
)
_BRACKET_PAIRS: tuple[tuple[str, str], ...] = (("[", "]"), ("(", ")"), ("<", ">"), ("{", "}"))


def _label_rest(match: re.Match[str]) -> str:
    """The text after a label, without the emphasis closing an opened one (``**Action: x**``)."""
    rest = match.group("rest").rstrip()
    em = match.group("em")
    if em and not match.group("closed") and not match.group("after") and rest.endswith(em):
        rest = rest[: -len(em)]
    return rest


def _unwrap(text: str) -> str:
    """``text`` without one pair of quotes or brackets around all of it, if it has one."""
    for opener, closer in _QUOTE_PAIRS:
        if (
            len(text) >= len(opener) + len(closer)
            and text.startswith(opener)
            and text.endswith(closer)
        ):
            inner = text[len(opener) : len(text) - len(closer)]
            # '"a" and "b"' is not one quoted action; a fence only needs no fence inside.
            if opener == "```" and opener not in inner:
                return inner
            if opener[0] not in inner and closer[0] not in inner:
                return inner
            return text
    for opener, closer in _BRACKET_PAIRS:
        if text.startswith(opener) and text.endswith(closer) and _closes_at_end(text, opener):
            if opener == "{" and _is_json_object(text):
                # A tool env's action is a call's JSON object: its braces are the action.
                return text
            return text[1:-1]
    return text


def _is_json_object(text: str) -> bool:
    """Whether ``text`` is one JSON object."""
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _closes_at_end(text: str, opener: str) -> bool:
    """Whether the bracket opening ``text`` is closed by its last character, not earlier."""
    closer = dict(_BRACKET_PAIRS)[opener]
    depth = 0
    for index, char in enumerate(text):
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return index == len(text) - 1
    return False


def _clean_action(raw: str, notes: list[str]) -> str:
    """The action written on an Action line: a trailing period and one wrapping pair removed."""
    action = raw.strip()
    if action.endswith(".") and not action.endswith("..") and action[:-1].strip():
        action = action[:-1].rstrip()
        notes.append("stripped trailing period")
    unwrapped = _unwrap(action)
    if unwrapped != action:
        notes.append("stripped quotes or brackets around the action")
        action = unwrapped.strip()
    return action


class ReActFormat(Format):
    """``Thought: <reasoning>`` then ``Action: <one action>`` (see the module docstring)."""

    name: ClassVar[str] = "react"
    stop: ClassVar[tuple[str, ...]] = ("\nObservation:",)

    _rules: ClassVar[str] = (
        "Reply with a line 'Thought: ' and your brief reasoning, then a line 'Action: ' "
        "and exactly one action. Write nothing after the Action line; the environment "
        "answers with the next observation."
    )

    def parse(self, reply: str) -> ParsedReply:
        """Read ``Thought:`` and ``Action:`` out of a reply (rules in the module docstring).

        Args:
            reply: The model's raw reply text.

        Returns:
            The parsed reply; never raises on any string.
        """
        notes: list[str] = []
        text = _cut_at_end_token(reply, notes)
        lines = text.split("\n")
        kept = [line for line in lines if not _FENCE_LINE.match(line)]
        if len(kept) != len(lines):
            notes.append("stripped code fence")
        lines = kept

        action_index = next(
            (index for index, line in enumerate(lines) if _ACTION_LINE.match(line)), None
        )
        if action_index is None:
            return ParsedReply(None, None, self._no_action_error(lines), tuple(notes))
        thought = self._thought(lines[:action_index], notes)

        match = _ACTION_LINE.match(lines[action_index])
        assert match is not None  # found by the same pattern above
        raw = _label_rest(match)
        last = action_index
        if not raw.strip():
            following = next(
                (index for index in range(action_index + 1, len(lines)) if lines[index].strip()),
                None,
            )
            if following is not None and not _ANY_LABEL.match(lines[following]):
                raw, last = lines[following], following
                notes.append("took the action from the line after 'Action:'")
        rest = [line for line in lines[last + 1 :] if line.strip()]
        later = sum(1 for line in rest if _ACTION_LINE.match(line))
        if later:
            notes.append(f"ignored {later} later Action line{'s' if later > 1 else ''}")
        if len(rest) > later:
            notes.append("ignored text after the action")

        action = _clean_action(raw, notes)
        problem = _action_problem(action)
        if problem is not None:
            if action:
                error = f"{problem}; put only one short action on the 'Action:' line."
            else:
                error = "the 'Action:' line holds no action; write it as 'Action: <your action>'."
            return ParsedReply(None, thought, error, tuple(notes))
        return ParsedReply(action, thought, None, tuple(notes))

    @staticmethod
    def _thought(lines: list[str], notes: list[str]) -> str | None:
        """The thought in the lines before the action line, noting what is odd about it."""
        start = next((index for index, line in enumerate(lines) if _THOUGHT_LINE.match(line)), None)
        if start is None:
            notes.append("no 'Thought:' line")
            return None
        if any(line.strip() for line in lines[:start]):
            notes.append("ignored text before 'Thought:'")
        match = _THOUGHT_LINE.match(lines[start])
        assert match is not None  # found by the same pattern above
        thought = "\n".join([_label_rest(match), *lines[start + 1 :]]).strip()
        if not thought:
            notes.append("empty thought")
            return None
        return thought

    @staticmethod
    def _no_action_error(lines: list[str]) -> str:
        """The error for a reply without an Action line, as helpful as the reply allows."""
        content = [line.strip() for line in lines if line.strip()]
        if not content:
            return "the reply is empty; end your reply with one line 'Action: <your action>'."
        if any(_ACTION_INLINE.search(line) for line in content):
            return (
                "'Action:' must start its own line; end your reply with one line "
                "'Action: <your action>'."
            )
        if len(content) == 1 and len(content[0]) <= 60 and not _ANY_LABEL.match(content[0]):
            shown = _one_line(content[0])
            return (
                f"the reply has no line starting with 'Action:'; to do {shown!r}, "
                f"reply with the line 'Action: {shown}'."
            )
        return (
            "the reply has no line starting with 'Action:'; end your reply with one line "
            "'Action: <your action>'."
        )

    def render(self, action: str, thought: str = "") -> str:
        """``Thought: <thought>`` (one line, if any) then ``Action: <action>``.

        The thought is flattened to one line so that nothing in it reads as a label;
        the action is quoted only when the parser would otherwise change it (e.g.
        ``"go."`` or ``"[x]"``).

        Args:
            action: One action: one line of at most :data:`MAX_ACTION_LENGTH` characters;
                surrounding whitespace is dropped (parsers strip it too).
            thought: The reasoning to show; omitted when empty.

        Returns:
            The reply text.

        Raises:
            ValueError: If no reply parses back to ``action`` (empty, several lines, too
                long, or holding an end-of-sequence token).
        """
        action = _renderable(action)
        candidates = (action, f'"{action}"', f"'{action}'", f"`{action}`", f"```{action}```")
        written = next((c for c in candidates if _clean_action(c, []) == action), None)
        if written is None:
            raise ValueError(f"cannot render action {action!r}: no quoting parses back to it")
        flat = " ".join(_END_RE.sub(" ", thought).split())
        if flat:
            return f"Thought: {flat}\nAction: {written}"
        return f"Action: {written}"


# --- JSON --------------------------------------------------------------------


def _object_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of balanced top-level ``{...}`` in ``text``, string-aware."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = 0
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            # Quotes only delimit strings inside an object; prose may hold stray quotes.
            in_string = depth > 0
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append((start, index + 1))
    return spans


class JSONFormat(Format):
    """One JSON object ``{"thought": "...", "action": "..."}`` (see the module docstring)."""

    name: ClassVar[str] = "json"
    stop: ClassVar[tuple[str, ...]] = ()

    _SHAPE = '{"thought": "...", "action": "..."}'

    _rules: ClassVar[str] = (
        'Reply with one JSON object with two string keys: "thought", your brief '
        'reasoning, and "action", exactly one action. Write nothing else.'
    )

    def parse(self, reply: str) -> ParsedReply:
        """Read the first JSON object out of a reply (rules in the module docstring).

        Args:
            reply: The model's raw reply text.

        Returns:
            The parsed reply; never raises on any string.
        """
        notes: list[str] = []
        text = _cut_at_end_token(reply, notes)
        spans = _object_spans(text)
        if not spans:
            if "{" in text:
                error = f"the JSON object is not closed; reply with one object like {self._SHAPE}."
            else:
                error = f"the reply holds no JSON object; reply with one object like {self._SHAPE}."
            return ParsedReply(None, None, error, tuple(notes))

        obj: object = None
        first_error: json.JSONDecodeError | None = None
        chosen = spans[0]
        for span in spans:
            try:
                obj = json.loads(text[span[0] : span[1]])
            except json.JSONDecodeError as exc:
                first_error = first_error or exc
                continue
            chosen = span
            break
        else:
            assert first_error is not None  # every span failed to load
            error = (
                f"the reply is not valid JSON ({first_error.msg} at character "
                f"{first_error.pos + 1}); reply with one object like {self._SHAPE}."
            )
            return ParsedReply(None, None, error, tuple(notes))
        assert isinstance(obj, dict)  # a balanced {...} that loads is an object

        before, after = text[: chosen[0]], text[chosen[1] :]
        if re.fullmatch(r"\s*```[\w.+-]*\s*", before) and re.fullmatch(r"\s*```\s*", after):
            notes.append("stripped code fence")
        else:
            if before.strip():
                notes.append("ignored text before the JSON object")
            if after.strip():
                notes.append("ignored text after the JSON object")
        unknown = sorted(str(key) for key in obj if key not in ("thought", "action"))
        if unknown:
            notes.append(f"ignored unknown keys: {', '.join(unknown)}")

        thought = obj.get("thought")
        if thought is not None and not isinstance(thought, str):
            notes.append('ignored "thought", which is not a string')
            thought = None
        if isinstance(thought, str):
            thought = thought.strip() or None

        if "action" not in obj:
            error = (
                f'the JSON object has no "action" key; reply with one object like {self._SHAPE}.'
            )
            return ParsedReply(None, thought, error, tuple(notes))
        action = obj["action"]
        if not isinstance(action, str):
            kind = "null" if action is None else type(action).__name__
            error = (
                f'the "action" value is a {kind}, not a string; write the action as a '
                'string, as in "action": "look".'
            )
            return ParsedReply(None, thought, error, tuple(notes))
        action = action.strip()
        problem = _action_problem(action)
        if problem is not None:
            error = f'{problem}; put exactly one action in the "action" string.'
            return ParsedReply(None, thought, error, tuple(notes))
        return ParsedReply(action, thought, None, tuple(notes))

    def render(self, action: str, thought: str = "") -> str:
        """The object ``{"thought": thought, "action": action}`` written by ``json.dumps``.

        Args:
            action: One action: one line of at most :data:`MAX_ACTION_LENGTH` characters;
                surrounding whitespace is dropped (parsers strip it too).
            thought: The reasoning to show; the key is omitted when empty.

        Returns:
            The reply text.

        Raises:
            ValueError: If no reply parses back to ``action`` (empty, several lines, too
                long, or holding an end-of-sequence token).
        """
        action = _renderable(action)
        flat = _END_RE.sub(" ", thought).strip()
        obj = {"thought": flat, "action": action} if flat else {"action": action}
        return json.dumps(obj, ensure_ascii=False)


# --- tools -------------------------------------------------------------------

MAX_TOOL_CALL_LENGTH = 4000
"""The longest tool-call action (its canonical JSON) the tools format accepts, in characters.

Below the server's default cap on actions (4096), so an accepted call is never a 422."""

# <tool_call> ... </tool_call> (Hermes, Qwen); the closing tag is often missing.
_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


def tool_call_id(turn: int) -> str:
    """The id of the tool call made at ``turn`` (0-based): ``call_<turn>``.

    Deterministic, so that the same episode always gives the same prompts (a model's
    own ids are random and would make every prompt unique).
    """
    return f"call_{turn}"


def _json_objects(text: str) -> list[tuple[int, int, dict[str, Any]]]:
    """``(start, end, object)`` of each balanced ``{...}`` in ``text`` that loads as JSON."""
    out = []
    for start, end in _object_spans(text):
        try:
            obj = json.loads(text[start:end])
        except ValueError:
            continue
        out.append((start, end, obj))
    return out


def _call_of(obj: Any) -> tuple[str, dict[str, Any]] | str:
    """``(name, arguments)`` of a call object, or why it is not one (an error sentence)."""
    if not isinstance(obj, Mapping):
        return "the tool call is not a JSON object"
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return "the tool call has no name"
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as error:
            return f"the arguments of {_one_line(name)} are not valid JSON ({error})"
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return f"the arguments of {_one_line(name)} are not a JSON object"
    return name.strip(), arguments


class ToolsFormat(Format):
    """Native function calling: the reply's tool call is the action.

    For envs that declare ``tools``: the rollout engine gives the policy the env's
    tool definitions (``generate(..., tools=...)``) and the model answers with
    ``tool_calls`` (:attr:`~palaestra.agents.policy.Completion.tool_calls`).

    * The system prompt is the env's instruction and a short rule (one tool call
      per turn, end with the tool that finishes the task); the tool definitions are
      not pasted in it.
    * :meth:`parse`: the reply's first tool call becomes the canonical action
      :func:`~palaestra.envs.tool_call_action` (a second call is ignored and noted).
      ``arguments`` may be a JSON text (the OpenAI API's) or an object; arguments that
      are not JSON or not an object are an error. A reply without ``tool_calls``
      (a backend that does not parse calls, a model that wrote one as text) is read
      as text: the first ``<tool_call>{...}</tool_call>`` block (Hermes/Qwen), else
      the first JSON object with a ``"name"``; the text around it is the thought. Else
      the error tells the model to call one of the tools. Which tools exist is the
      env's business: an unknown tool or arguments that break its schema are an
      invalid action whose observation says why.
    * Messages: a reply with a readable call is an assistant message with
      ``tool_calls`` (one call, id ``call_<turn>``) and its observation a ``tool``
      message; an unreadable reply is assistant text then a ``user`` message with
      the error and the observation (as in the text formats).
    """

    name: ClassVar[str] = "tools"
    stop: ClassVar[tuple[str, ...]] = ()
    uses_tools: ClassVar[bool] = True

    _rules: ClassVar[str] = (
        "Act by calling exactly one of the tools in each reply; its result comes back "
        "as the tool's answer. When the task is done, call the tool that finishes it."
    )

    def system_prompt(
        self, instruction: str, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """The env's instruction, a blank line and the rule (the tools travel apart).

        Args:
            instruction: The env's ``instruction``.
            tools: Ignored: the policy receives them as ``tools``.
        """
        return f"{instruction.strip()}\n\n{self._rules}"

    def parse(self, reply: str) -> ParsedReply:
        """Read the tool call out of a reply (rules in the class docstring).

        Args:
            reply: The model's reply: a ``Completion`` whose ``tool_calls`` hold the
                calls, or plain text holding a call.

        Returns:
            The parsed reply; never raises on any string.
        """
        notes: list[str] = []
        calls = getattr(reply, "tool_calls", None)
        if calls:
            if len(calls) > 1:
                notes.append(f"ignored {len(calls) - 1} later tool call(s): one call per turn")
            first = calls[0]
            function = first.get("function") if isinstance(first, Mapping) else None
            read = _call_of(function) if isinstance(function, Mapping) else _call_of(None)
            thought = str(reply).strip() or None
        else:
            text = _cut_at_end_token(str(reply), notes)
            found = self._text_call(text, notes)
            if found is None:
                error = (
                    "the reply calls no tool; call exactly one of the tools "
                    "(the one that finishes the task when it is done)."
                )
                return ParsedReply(None, text.strip() or None, error, tuple(notes))
            read, thought = found
        if isinstance(read, str):
            return ParsedReply(
                None,
                thought,
                f"{read}; call one tool, with a JSON object of arguments.",
                tuple(notes),
            )
        name, arguments = read
        try:
            action = tool_call_action(name, arguments)
        except (TypeError, ValueError) as error:  # NaN and the like
            return ParsedReply(
                None,
                thought,
                f"the arguments of {_one_line(name)} are not plain JSON ({error}).",
                tuple(notes),
            )
        if len(action) > MAX_TOOL_CALL_LENGTH:
            error = (
                f"the tool call is {len(action)} characters long, over the limit of "
                f"{MAX_TOOL_CALL_LENGTH}; call it with shorter arguments."
            )
            return ParsedReply(None, thought, error, tuple(notes))
        return ParsedReply(action, thought, None, tuple(notes))

    @staticmethod
    def _text_call(
        text: str, notes: list[str]
    ) -> tuple[tuple[str, dict[str, Any]] | str, str | None] | None:
        """A call written as text: ``(call or error, the text around it)``; None if none."""
        found: list[tuple[int, int, Any]] = []  # (start, end, object) of each call
        tagged = list(_TOOL_CALL_TAG.finditer(text))
        for match in tagged:
            obj = next(iter(_json_objects(match.group(1))), None)
            if obj is not None:
                found.append((match.start(), match.end(), obj[2]))
        if not tagged:
            found = [span for span in _json_objects(text) if "name" in span[2]]
        if not found:
            if tagged:
                return "the <tool_call> block holds no JSON object", None
            return None
        notes.append("read the tool call from the reply's text")
        if len(found) > 1:
            notes.append(f"ignored {len(found) - 1} later tool call(s): one call per turn")
        start, end, obj = found[0]
        return _call_of(obj), (text[:start] + text[end:]).strip() or None

    def render(self, action: str, thought: str = "") -> str:
        """The reply a model calling ``action``'s tool gives: no text, one tool call.

        Args:
            action: A tool call's action string (:func:`~palaestra.envs.tool_call_action`;
                any JSON ``{"name", "arguments"}`` text is accepted and made canonical).
            thought: Text besides the call (the reply's content); empty by default.

        Returns:
            A :class:`~palaestra.agents.policy.Completion` with one call in ``tool_calls``
            (id ``call_0``; the rollout engine numbers calls by turn) and finish reason
            ``"tool_calls"``; ``parse`` reads back the canonical action.

        Raises:
            ValueError: ``action`` is not a tool call.
        """
        try:
            call = parse_tool_call(action)
        except ToolCallError as error:
            raise ValueError(f"cannot render action {action!r} as a tool call: {error}") from None
        content = " ".join(_END_RE.sub(" ", thought).split())
        return Completion(
            content,
            finish_reason="tool_calls",
            tool_calls=[_call_dict(tool_call_id(0), call.name, call.arguments)],
        )

    def reply_message(self, reply: str, parsed: ParsedReply, turn: int, *, loss: bool) -> Message:
        """An assistant message with the call in ``tool_calls`` (id ``call_<turn>``).

        The content is the text besides the call (for a call the model wrote as text,
        that text without the call). A reply without a readable call is plain text.
        ``arguments`` keep the model's own JSON text when it gave one.
        """
        if parsed.action is None:
            return {"role": "assistant", "content": str(reply), "loss": loss}
        call = parse_tool_call(parsed.action)
        calls = getattr(reply, "tool_calls", None)
        arguments: str | None = None
        if calls:
            content = str(reply)
            given = calls[0]["function"].get("arguments")
            arguments = given if isinstance(given, str) and given.strip() else None
        else:
            content = parsed.thought or ""
        message = _call_dict(tool_call_id(turn), call.name, call.arguments)
        if arguments is not None:
            message["function"]["arguments"] = arguments
        return {"role": "assistant", "content": content, "tool_calls": [message], "loss": loss}

    def observation_messages(
        self, observation: str, parsed: ParsedReply, turn: int
    ) -> list[Message]:
        """The call's result as a ``tool`` message; after an unreadable reply, a ``user`` one."""
        if parsed.action is None:
            return super().observation_messages(observation, parsed, turn)
        return [
            {
                "role": "tool",
                "tool_call_id": tool_call_id(turn),
                "content": observation,
                "loss": False,
            }
        ]


def _call_dict(call_id: str, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """One call in OpenAI's shape, ``arguments`` as JSON text."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(dict(arguments), ensure_ascii=False)},
    }


FORMATS: dict[str, type[Format]] = {
    ReActFormat.name: ReActFormat,
    JSONFormat.name: JSONFormat,
    ToolsFormat.name: ToolsFormat,
}
"""Every format by name; ``react`` is the default."""


def check_format(fmt: Format | str, env_id: str, tools: Sequence[Mapping[str, Any]] | None) -> None:
    """Refuse a format that cannot play an env: ``tools`` on an env that declares no tools.

    A tool env under a text format is allowed (see the module docstring).

    Args:
        fmt: The format (or its name).
        env_id: The env, for the message.
        tools: The env's tool definitions (``None`` or empty: it has none).

    Raises:
        ValueError: The format needs tools and the env has none.
    """
    name = fmt if isinstance(fmt, str) else fmt.name
    uses_tools = FORMATS[name].uses_tools if name in FORMATS else False
    if uses_tools and not tools:
        raise ValueError(
            f"the {name} format needs an env with tools, and {env_id} declares none "
            "(use --format react or json for it)"
        )


def get_format(name: str) -> Format:
    """A new instance of the format called ``name``.

    Args:
        name: A key of :data:`FORMATS` (``"react"``, ``"json"`` or ``"tools"``).

    Returns:
        The format.

    Raises:
        ValueError: If no format has that name; the message lists the known ones.
    """
    try:
        cls = FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown format {name!r}; known formats: {known}") from None
    return cls()
