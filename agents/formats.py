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
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "FORMATS",
    "Format",
    "JSONFormat",
    "ParsedReply",
    "ReActFormat",
    "get_format",
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
    # This format's rules for the model, in a few plain sentences.
    _rules: ClassVar[str]

    def system_prompt(self, instruction: str) -> str:
        """The system prompt: the env's instruction, then this format's rules and an example.

        Args:
            instruction: The env's ``instruction`` (what the task is, which actions exist).

        Returns:
            The instruction, a blank line, the rules, and one example reply made by
            :meth:`render`.
        """
        example = self.render(_EXAMPLE_ACTION, _EXAMPLE_THOUGHT)
        return (
            f"{instruction.strip()}\n\n{self._rules}\n"
            "Example reply (it shows the format only; use the actions of your task):\n"
            f"{example}"
        )

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
            return text[1:-1]
    return text


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


FORMATS: dict[str, type[Format]] = {
    ReActFormat.name: ReActFormat,
    JSONFormat.name: JSONFormat,
}
"""Every format by name; ``react`` is the default."""


def get_format(name: str) -> Format:
    """A new instance of the format called ``name``.

    Args:
        name: A key of :data:`FORMATS` (``"react"`` or ``"json"``).

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
