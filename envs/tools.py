"""Tool calling on the text protocol: ``ToolEnv``, the ``@tool`` decorator, tool-call actions.

An env may declare ``tools``: function definitions in the OpenAI chat API's shape
(``{"type": "function", "function": {"name", "description", "parameters"}}``,
``parameters`` a JSON schema of an object). Its actions are then tool calls. A
tool call travels as one action string, its canonical JSON text
``{"arguments":{...},"name":"..."}`` (keys sorted, ASCII, no spaces; see
:func:`tool_call_action`), so the protocol stays ``gymnasium.Env[str, str]`` and
every part of palaestra that stores, replays or forks actions handles tool calls
unchanged. On the wire an action may also be sent as the object
``{"name": ..., "arguments": {...}}``; the server turns it into that same string.
The observation of a tool call is its result.

:class:`ToolEnv` is the base of tool envs. A subclass writes its tools as
methods marked with :func:`tool`; the base class builds ``tools`` from them,
reads each action, rejects malformed calls (not JSON, unknown tool, arguments
that break the schema) as invalid actions with an observation that says what
was wrong, calls the method, and keeps the score as AgentBoard's *progress
rate*: the fraction of the task's sub-goals reached, the best seen so far.
Success is every sub-goal reached when the episode ends.

Example::

    class Counter(ToolEnv):
        \"\"\"Count to a target with two tools.\"\"\"

        instruction = "Reach the target number, then call finish."
        max_steps = 20
        splits = {"train": range(0, 80), "test": range(80, 100)}

        def start(self, task_id):
            self.world = {"n": 0, "target": task_id % 7 + 1, "done": False}
            return f"Count to {self.world['target']}."

        @tool("Add one to the counter.", {})
        def increment(self):
            self.world["n"] += 1
            return {"n": self.world["n"]}

        @tool("End the episode.", {})
        def finish(self):
            return self.end_episode("Finished.")

        def subgoals(self):
            return [self.world["n"] == self.world["target"]]
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from palaestra.envs.core import CHARSET, Outcome, TextEnv, echo_action
from palaestra.errors import EpisodeOverError

__all__ = [
    "ToolCall",
    "ToolCallError",
    "ToolEnv",
    "check_tools",
    "parse_tool_call",
    "tool",
    "tool_call_action",
    "tool_names",
]

MAX_RESULT_CHARS = 4000
"""A tool result longer than this is cut (with a note) before it becomes the observation."""


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool: its name and its (JSON object) arguments."""

    name: str
    arguments: dict[str, Any]

    def action(self) -> str:
        """The canonical action string of this call (see :func:`tool_call_action`)."""
        return tool_call_action(self.name, self.arguments)


class ToolCallError(ValueError):
    """An action that is not a well-formed call of one of the env's tools; says why."""


def tool_call_action(name: str, arguments: Mapping[str, Any] | None = None) -> str:
    """The action string of a call of ``name`` with ``arguments``.

    Canonical: keys sorted, ASCII only, no spaces, so the same call is always the
    same string (replays, forks and trajectories compare actions as strings).

    Args:
        name: The tool.
        arguments: Its arguments (a JSON object; ``None`` for none).

    Raises:
        TypeError: ``arguments`` is not JSON-serialisable.
    """
    return json.dumps(
        {"name": name, "arguments": dict(arguments or {})},
        sort_keys=True,
        ensure_ascii=True,
        separators=(",", ":"),
        allow_nan=False,
    )


def parse_tool_call(action: str) -> ToolCall:
    """Read a tool call out of an action string.

    Accepts ``{"name": str, "arguments": object}``, where ``arguments`` may also be
    a JSON string holding an object (the OpenAI API sends them so) or be left out
    (no arguments). Nothing else may be in the object.

    Raises:
        ToolCallError: What is wrong, in one sentence meant for the agent.
    """
    text = action.strip()
    if not text.startswith("{"):
        raise ToolCallError(
            'an action here is a tool call, the JSON object {"name": ..., "arguments": {...}}'
        )
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise ToolCallError(f"the tool call is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ToolCallError("a tool call is a JSON object with 'name' and 'arguments'")
    extra = sorted(set(data) - {"name", "arguments"})
    if extra:
        raise ToolCallError(f"a tool call has only 'name' and 'arguments', not {extra}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ToolCallError("the tool call has no 'name' (a string naming one of the tools)")
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = (
                json.loads(arguments, parse_constant=_no_constant) if arguments.strip() else {}
            )
        except ValueError as error:
            raise ToolCallError(f"the arguments of {name} are not valid JSON ({error})") from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolCallError(f"the arguments of {name} must be a JSON object")
    return ToolCall(name, arguments)


def _no_constant(name: str) -> Any:
    # json.loads takes NaN and Infinity, which are not JSON: no tool can want them.
    raise ValueError(f"{name} is not a JSON number")


def tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    """The function names of OpenAI-shaped tool definitions."""
    return [str(t["function"]["name"]) for t in tools]


def check_tools(tools: Sequence[Mapping[str, Any]]) -> None:
    """Check tool definitions: OpenAI's function shape, unique names, valid JSON schemas.

    Raises:
        ValueError: The first problem found, naming the tool.
    """
    seen: set[str] = set()
    for index, definition in enumerate(tools):
        if not isinstance(definition, Mapping) or definition.get("type") != "function":
            raise ValueError(f"tools[{index}] is not {{'type': 'function', 'function': {{...}}}}")
        function = definition.get("function")
        if not isinstance(function, Mapping):
            raise ValueError(f"tools[{index}] has no 'function' object")
        name = function.get("name")
        if not isinstance(name, str) or not name.replace("_", "a").isalnum() or len(name) > 64:
            raise ValueError(f"tools[{index}] has a bad name {name!r} (letters, digits, '_')")
        if name in seen:
            raise ValueError(f"two tools are named {name!r}")
        seen.add(name)
        if not isinstance(function.get("description"), str) or not function["description"].strip():
            raise ValueError(f"tool {name!r} has no description")
        schema = function.get("parameters")
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise ValueError(f"tool {name!r}: 'parameters' must be a JSON schema of type 'object'")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise ValueError(f"tool {name!r}: invalid JSON schema: {error.message}") from None
        try:
            json.dumps(definition, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"tool {name!r} is not plain JSON: {error}") from None


def tool(
    description: str, properties: Mapping[str, Any], *, required: Sequence[str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a :class:`ToolEnv` method as a tool.

    The method is called with the call's arguments as keyword arguments and
    returns the result: a ``str`` (the observation as is), any JSON-serialisable
    value (shown as JSON), or an :class:`~palaestra.envs.Outcome` (e.g. from
    :meth:`ToolEnv.end_episode`). Raise :class:`ToolCallError` for a call the world
    rejects (an unknown city, a row out of range): it becomes an invalid action
    whose observation is the message.

    Args:
        description: What the tool does, for the model.
        properties: JSON-schema ``properties`` of the arguments.
        required: Required argument names (default: all of ``properties``).
    """

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        method.__palaestra_tool__ = {  # type: ignore[attr-defined]
            "type": "function",
            "function": {
                "name": method.__name__,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": dict(properties),
                    "required": list(properties if required is None else required),
                    "additionalProperties": False,
                },
            },
        }
        return method

    return mark


class ToolEnv(TextEnv):
    """Base class of envs whose actions are tool calls.

    Subclasses write :meth:`start` (which sets ``self.world``), their tools as
    ``@tool`` methods, and :meth:`subgoals`. All mutable episode state lives in
    ``self.world`` (plain data: dicts, lists, numbers, strings): snapshot/restore
    copy it, so every tool env can be forked for search.

    Attributes:
        tools: The tool definitions (OpenAI's shape), built from the ``@tool``
            methods in the order they are defined; read-only.
        world: The episode's mutable state.
        last_call: The latest call that passed :meth:`read_call` (the one running, while
            a tool runs), or ``None``.
    """

    tools: ClassVar[tuple[dict[str, Any], ...]] = ()
    _validators: ClassVar[dict[str, Draft202012Validator]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, dict[str, Any]] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                definition = getattr(value, "__palaestra_tool__", None)
                if definition is not None:
                    found.pop(definition["function"]["name"], None)
                    found[definition["function"]["name"]] = definition
        cls.tools = tuple(found.values())
        check_tools(cls.tools)
        cls._validators = {
            t["function"]["name"]: Draft202012Validator(t["function"]["parameters"])
            for t in cls.tools
        }

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.world: Any = None
        self.last_call: ToolCall | None = None
        self._progress = 0.0

    # -- what a subclass writes ----------------------------------------------------

    def subgoals(self) -> Sequence[bool]:
        """Which of the task's sub-goals hold now (AgentBoard's progress rate counts them).

        Called after ``start`` and after every valid call. The default, no sub-goals,
        scores an episode 1.0 when :meth:`finish` says so and 0.0 otherwise.
        """
        return ()

    # -- helpers for subclasses ------------------------------------------------------

    def end_episode(self, observation: str) -> Outcome:
        """End the episode: a tool such as ``finish`` or ``submit`` returns this.

        Named so that it never clashes with a tool: ``finish`` is the natural name of one.
        """
        return Outcome(observation, done=True)

    # -- the protocol ----------------------------------------------------------------

    def act(self, action: str) -> Outcome:
        """Run one tool call; a malformed call is an invalid action that says why.

        A tool that raises :class:`ToolCallError` leaves the world as it was before
        the call (the base class restores it), so a tool may check as it goes.
        Observations are made printable ASCII (gymnasium's Text charset): a
        character outside it, e.g. quoted back from an argument, shows as ``?``.
        """
        before = None
        try:
            call = self.read_call(action)
            self.last_call = call
            before = copy.deepcopy(self.world)
            result = getattr(self, call.name)(**call.arguments)
        except ToolCallError as error:
            if before is not None:
                self.world = before
            return Outcome(_printable(f"Error: {error}"), invalid=True, score=self._progress)
        outcome = result if isinstance(result, Outcome) else Outcome(self._result_text(result))
        outcome.observation = _printable(outcome.observation)
        reached = list(self.subgoals())
        if reached:
            self._progress = max(self._progress, sum(map(bool, reached)) / len(reached))
        if outcome.score is None:
            outcome.score = self._progress if reached else float(bool(outcome.success))
        if outcome.done and reached and not outcome.success:
            outcome.success = all(reached)
        outcome.reward = outcome.reward or (float(outcome.success) if outcome.done else 0.0)
        return outcome

    def read_call(self, action: str) -> ToolCall:
        """``action`` as a call of one of this env's tools, its arguments checked.

        Raises:
            ToolCallError: Not JSON, an unknown tool, or arguments that break its schema.
        """
        call = parse_tool_call(action)
        validator = self._validators.get(call.name)
        if validator is None:
            known = ", ".join(tool_names(self.tools))
            raise ToolCallError(f"there is no tool {echo_action(call.name)!r}; the tools: {known}")
        error = next(iter(sorted(validator.iter_errors(call.arguments), key=str)), None)
        if error is not None:
            raise ToolCallError(f"bad arguments for {call.name}: {_schema_message(error)}")
        # JSON Schema counts 3.0 as an integer; the tool gets the int it declared.
        properties = validator.schema.get("properties", {})
        for name, value in call.arguments.items():
            if type(value) is float and properties.get(name, {}).get("type") == "integer":
                call.arguments[name] = int(value)
        return call

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode (:meth:`TextEnv.reset`); progress starts at the sub-goals met."""
        self._progress = 0.0
        observation, info = super().reset(seed=seed, options=options)
        reached = list(self.subgoals())
        self._progress = sum(map(bool, reached)) / len(reached) if reached else 0.0
        return observation, info

    def get_state(self) -> Any:
        """The episode's world and progress (the base class copies them)."""
        return {"world": self.world, "progress": self._progress}

    def set_state(self, state: Any) -> None:
        """Load a state from :meth:`get_state`."""
        self.world = state["world"]
        self._progress = state["progress"]

    def random_action(self, rng: np.random.Generator) -> str:
        """A random call: a uniform tool, arguments drawn from :meth:`argument_choices`.

        Required arguments always, optional ones half the time.

        Raises:
            EpisodeOverError: ``reset`` was never called.
        """
        if self.task_id is None:
            raise EpisodeOverError("call reset() before random_action()")
        definition = self.tools[int(rng.integers(len(self.tools)))]["function"]
        choices = self.argument_choices()
        required = set(definition["parameters"].get("required", ()))
        arguments: dict[str, Any] = {}
        for name, schema in definition["parameters"]["properties"].items():
            if name not in required and rng.random() < 0.5:
                continue  # an optional argument is given half the time
            pool = choices.get(name) or _schema_choices(schema)
            arguments[name] = copy.deepcopy(pool[int(rng.integers(len(pool)))])
        return tool_call_action(definition["name"], arguments)

    def argument_choices(self) -> Mapping[str, Sequence[Any]]:
        """Plausible values per argument name, for :meth:`random_action` (override).

        Arguments not named here are drawn from their schema (enums, small
        numbers, a few words).
        """
        return {}

    @staticmethod
    def _result_text(result: Any) -> str:
        text = (
            result
            if isinstance(result, str)
            else json.dumps(result, ensure_ascii=True, separators=(",", ":"))
        )
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f" ... [cut: {len(text)} characters in all]"
        return text


_CHARSET = frozenset(CHARSET)


def _printable(text: str) -> str:
    if all(ch in _CHARSET for ch in text):
        return text
    return "".join(ch if ch in _CHARSET else "?" for ch in text)


def _schema_message(error: ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    message = error.message
    if len(message) > 200:
        message = message[:200] + "..."
    return f"{where}: {message}" if where else message


def _schema_choices(schema: Mapping[str, Any]) -> list[Any]:
    if "enum" in schema:
        return list(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        low = int(schema.get("minimum", 0))
        high = int(schema.get("maximum", low + 10))
        return list(range(low, min(high, low + 50) + 1))
    if kind == "number":
        return [0.0, 1.0, 2.5, 10.0]
    if kind == "boolean":
        return [True, False]
    if kind == "array":
        return [[]]
    if kind == "object":
        return [{}]
    return ["a", "b", "x", "test"]
