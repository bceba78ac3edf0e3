import dataclasses
import json
import random

import pytest

from palaestra.agents.formats import (
    FORMATS,
    Format,
    JSONFormat,
    ParsedReply,
    ReActFormat,
    get_format,
)

REACT = ReActFormat()
JSONF = JSONFormat()
NO_THOUGHT = None

# (id, reply, action, thought)
REACT_OK = [
    ("plain", "Thought: The door is north.\nAction: go north", "go north", "The door is north."),
    (
        "text before and after",
        "Let me think step by step.\nThought: I see a key.\nAction: take key\nThis should work.",
        "take key",
        "I see a key.",
    ),
    (
        "several action lines with invented observations",
        "Thought: up\nAction: move up\nObservation: You moved.\nThought: again\n"
        "Action: move up\nObservation: A wall.\nAction: move left",
        "move up",
        "up",
    ),
    (
        "fence around whole reply",
        "```\nThought: go in\nAction: open door to kitchen\n```",
        "open door to kitchen",
        "go in",
    ),
    (
        "fence with language tag",
        "```text\nThought: t\nAction: go to red ball\n```",
        "go to red ball",
        "t",
    ),
    (
        "fence around action only",
        "Thought: cold\nAction:\n```\nput apple in fridge\n```",
        "put apple in fridge",
        "cold",
    ),
    (
        "fence with tag around action only",
        "Thought: cold\nAction:\n```bash\nput apple in fridge\n```\n",
        "put apple in fridge",
        "cold",
    ),
    ("inline triple backticks", "Action: ```guess crane```", "guess crane", NO_THOUGHT),
    ("missing thought", "Action: go to red ball", "go to red ball", NO_THOUGHT),
    ("eos </s>", "Thought: t\nAction: move up</s>", "move up", "t"),
    ("eos im_end repeated", "Thought: t\nAction: move up<|im_end|><|im_end|>", "move up", "t"),
    ("eos eot_id with newline", "Thought: t\nAction: move up\n<|eot_id|>\n", "move up", "t"),
    ("eos endoftext spaced", "Action: move up <|endoftext|> <|endoftext|>", "move up", NO_THOUGHT),
    ("eos end", "Action: move up<|end|>", "move up", NO_THOUGHT),
    ("eos eos", "Action: move up<eos>\n<eos>", "move up", NO_THOUGHT),
    ("eos mixed", "Action: move up\n</s>\n<|im_end|><|endoftext|>  ", "move up", NO_THOUGHT),
    (
        "text after eos is not the model's",
        "Action: move up<|im_end|>\n<|im_start|>user\nAction: move down",
        "move up",
        NO_THOUGHT,
    ),
    ("bold labels colon inside", "**Thought:** t\n**Action:** move up", "move up", "t"),
    ("bold labels colon outside", "**Thought**: t\n**Action**: move up", "move up", "t"),
    ("bold around whole line", "**Thought: t**\n**Action: move up**", "move up", "t"),
    ("italic label", "*Action:* move up", "move up", NO_THOUGHT),
    ("list marker", "- Thought: t\n- Action: move up", "move up", "t"),
    ("quote marker", "> Thought: t\n> Action: move up", "move up", "t"),
    ("heading marker", "### Action: move up", "move up", NO_THOUGHT),
    ("lower-case labels", "thought: t\naction: move up", "move up", "t"),
    ("upper-case labels", "THOUGHT: t\nACTION: move up", "move up", "t"),
    ("double quotes", 'Action: "guess crane"', "guess crane", NO_THOUGHT),
    ("single quotes", "Action: 'guess crane'", "guess crane", NO_THOUGHT),
    ("backticks", "Action: `guess crane`", "guess crane", NO_THOUGHT),
    ("curly quotes", "Action: \u201cguess crane\u201d", "guess crane", NO_THOUGHT),
    ("square brackets", "Action: [go north]", "go north", NO_THOUGHT),
    ("angle brackets", "Action: <go north>", "go north", NO_THOUGHT),
    ("bold action", "Action: **go north**", "go north", NO_THOUGHT),
    ("trailing period", "Action: move up.", "move up", NO_THOUGHT),
    ("period after quotes", 'Action: "move up".', "move up", NO_THOUGHT),
    ("period inside quotes is kept", 'Action: "move up."', "move up.", NO_THOUGHT),
    ("ellipsis is kept", "Action: wait...", "wait...", NO_THOUGHT),
    ("lone period is kept", "Action: .", ".", NO_THOUGHT),
    ("periods inside are kept", "Action: focus on 1.5 g.", "focus on 1.5 g", NO_THOUGHT),
    ("inner quotes are kept", 'Action: say "hi" and "bye"', 'say "hi" and "bye"', NO_THOUGHT),
    ("separate quotes are kept", 'Action: "red" and "blue"', '"red" and "blue"', NO_THOUGHT),
    ("separate brackets are kept", "Action: (a) or (b)", "(a) or (b)", NO_THOUGHT),
    ("apostrophe is kept", "Action: take bob's key", "take bob's key", NO_THOUGHT),
    ("action on the next line", "Thought: t\nAction:\nmove up", "move up", "t"),
    ("action after blank lines", "Action:\n\n   move up  \n", "move up", NO_THOUGHT),
    (
        "multi-line thought",
        "Thought: first line\nsecond line\n\nthird\nAction: look",
        "look",
        "first line\nsecond line\n\nthird",
    ),
    ("crlf", "Thought: t\r\nAction: move up\r\n", "move up", "t"),
    ("cr only", "Thought: t\rAction: move up\r", "move up", "t"),
    (
        "unicode thought",
        "Thought: Der Schl\u00fcssel liegt im Norden \u2014 \u5317 \U0001f5dd\nAction: go north",
        "go north",
        "Der Schl\u00fcssel liegt im Norden \u2014 \u5317 \U0001f5dd",
    ),
    (
        "word action inside thought",
        "Thought: my action: wait\nAction: look",
        "look",
        "my action: wait",
    ),
    ("label-like action text", "Action: Action: look", "Action: look", NO_THOUGHT),
    ("exactly 300 characters", "Action: " + "x" * 300, "x" * 300, NO_THOUGHT),
    ("indented", "  Thought: t\n  Action:   move up  ", "move up", "t"),
]

# (id, reply, words the error must contain)
REACT_ERRORS = [
    ("no action line", "Thought: I am thinking about the maze.", "Action:"),
    ("bare one-line reply", "move up", "'Action: move up'"),
    ("bare fenced reply", "```\nmove up\n```", "'Action: move up'"),
    ("bare prose", "I will move up.\nThat is best.", "no line starting with 'Action:'"),
    ("empty reply", "", "empty"),
    ("only whitespace and eos", "  \n</s><|im_end|>", "empty"),
    ("empty action", "Thought: t\nAction:", "no action"),
    ("empty action before a label", "Action:\nObservation: You see a wall.", "no action"),
    ("empty quotes", 'Action: ""', "no action"),
    ("action too long", "Action: " + "x" * 301, "301 characters"),
    ("action not at line start", "Thought: go up. Action: move up", "own line"),
    ("plural label", "Actions: move up", "Action:"),
    ("action label without colon", "Action move up", "Action:"),
]


@pytest.mark.parametrize(
    ("reply", "action", "thought"),
    [case[1:] for case in REACT_OK],
    ids=[case[0] for case in REACT_OK],
)
def test_react_parses(reply, action, thought):
    parsed = REACT.parse(reply)
    assert parsed.error is None
    assert parsed.ok
    assert parsed.action == action
    assert parsed.thought == thought


@pytest.mark.parametrize(
    ("reply", "words"),
    [case[1:] for case in REACT_ERRORS],
    ids=[case[0] for case in REACT_ERRORS],
)
def test_react_rejects(reply, words):
    parsed = REACT.parse(reply)
    assert parsed.action is None
    assert not parsed.ok
    assert parsed.error is not None
    assert words in parsed.error
    # One sentence the model can act on.
    assert parsed.error.endswith(".")
    assert "\n" not in parsed.error


def test_react_clean_reply_has_no_notes():
    assert REACT.parse("Thought: t\nAction: look").notes == ()


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        ("Action: a\nObservation: x\nAction: b\nAction: c", "ignored 2 later Action lines"),
        ("Action: a\nObservation: x\nAction: b", "ignored 1 later Action line"),
        ("Thought: t\nAction: a\nI hope it works.", "ignored text after the action"),
        ("```\nThought: t\nAction: a\n```", "stripped code fence"),
        ("Thought: t\nAction: a</s></s>", "stripped end-of-sequence tokens"),
        ("Thought: t\nAction: a<|im_end|>\nmore", "ignored text after <|im_end|>"),
        ("Action: a", "no 'Thought:' line"),
        ("Hmm.\nThought: t\nAction: a", "ignored text before 'Thought:'"),
        ("Thought: t\nAction:\na", "took the action from the line after 'Action:'"),
        ("Thought: t\nAction: a.", "stripped trailing period"),
        ("Thought: t\nAction: `a`", "stripped quotes or brackets around the action"),
    ],
)
def test_react_notes(reply, note):
    parsed = REACT.parse(reply)
    assert parsed.ok
    assert note in parsed.notes


def test_react_stop_sequence_cuts_before_the_invented_observation():
    assert ReActFormat.stop == ("\nObservation:",)
    generated = "Thought: t\nAction: move up\nObservation: you moved\nAction: move down"
    truncated = generated[: generated.index(REACT.stop[0])]
    parsed = REACT.parse(truncated)
    assert parsed.action == "move up"
    assert parsed.notes == ()


# (id, reply, action, thought)
JSON_OK = [
    ("plain", '{"thought": "t", "action": "look"}', "look", "t"),
    ("fenced with tag", '```json\n{"thought": "t", "action": "go north"}\n```', "go north", "t"),
    ("fenced without tag", '```\n{"thought": "t", "action": "go north"}\n```', "go north", "t"),
    (
        "prose around",
        'Here is my reply:\n{"thought": "t", "action": "take key"}\nGood luck!',
        "take key",
        "t",
    ),
    (
        "braces inside strings",
        '{"thought": "a } and { here", "action": "say {hi}"}',
        "say {hi}",
        "a } and { here",
    ),
    (
        "escaped quotes inside strings",
        r'{"thought": "he said \"}\"", "action": "say \"yes\""}',
        'say "yes"',
        'he said "}"',
    ),
    ("stray quote in prose", 'I\'d say "go":\n{"action": "go north"}', "go north", NO_THOUGHT),
    ("odd quote in prose", 'The 12" box is shut.\n{"action": "open box"}', "open box", NO_THOUGHT),
    ("missing thought", '{"action": "look"}', "look", NO_THOUGHT),
    ("non-string thought", '{"thought": 3, "action": "look"}', "look", NO_THOUGHT),
    ("empty thought", '{"thought": "  ", "action": "look"}', "look", NO_THOUGHT),
    (
        "extra keys, nested",
        '{"thought": "t", "action": "look", "meta": {"a": {"b": 1}}, "plan": []}',
        "look",
        "t",
    ),
    ("whitespace around action", '{"action": "  move up "}', "move up", NO_THOUGHT),
    ("first object that is JSON", 'Like {this}: {"action": "look"}', "look", NO_THOUGHT),
    ("first of two objects", '{"action": "look"} {"action": "jump"}', "look", NO_THOUGHT),
    ("eos", '{"action": "look"}<|im_end|><|im_end|>', "look", NO_THOUGHT),
    ("crlf", '{\r\n  "thought": "t",\r\n  "action": "look"\r\n}\r\n', "look", "t"),
    ("unicode escaped", '{"thought": "\\u5317", "action": "look"}', "look", "\u5317"),
    (
        "unicode raw",
        '{"thought": "\u00fc \U0001f5dd", "action": "look"}',
        "look",
        "\u00fc \U0001f5dd",
    ),
]

# (id, reply, words the error must contain)
JSON_ERRORS = [
    ("no json", "move up", "no JSON object"),
    ("single quotes", "{'thought': 't', 'action': 'look'}", "not valid JSON"),
    ("trailing comma", '{"action": "look",}', "not valid JSON"),
    ("not closed", '{"action": "look"', "not closed"),
    ("missing action", '{"thought": "t"}', '"action"'),
    ("action key in other case", '{"Action": "look"}', 'no "action" key'),
    ("integer action", '{"action": 3}', "int, not a string"),
    ("list action", '{"action": ["look"]}', "list, not a string"),
    ("null action", '{"action": null}', "null, not a string"),
    ("empty action", '{"action": "   "}', "empty"),
    ("multi-line action", '{"action": "look\\njump"}', "several lines"),
    ("too long action", json.dumps({"action": "x" * 301}), "301 characters"),
    ("empty reply", "", "no JSON object"),
]


@pytest.mark.parametrize(
    ("reply", "action", "thought"),
    [case[1:] for case in JSON_OK],
    ids=[case[0] for case in JSON_OK],
)
def test_json_parses(reply, action, thought):
    parsed = JSONF.parse(reply)
    assert parsed.error is None
    assert parsed.action == action
    assert parsed.thought == thought


@pytest.mark.parametrize(
    ("reply", "words"),
    [case[1:] for case in JSON_ERRORS],
    ids=[case[0] for case in JSON_ERRORS],
)
def test_json_rejects(reply, words):
    parsed = JSONF.parse(reply)
    assert parsed.action is None
    assert not parsed.ok
    assert parsed.error is not None
    assert words in parsed.error
    assert parsed.error.endswith(".")
    assert "\n" not in parsed.error


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        ('```json\n{"action": "a"}\n```', "stripped code fence"),
        ('Sure! {"action": "a"}', "ignored text before the JSON object"),
        ('{"action": "a"} Done.', "ignored text after the JSON object"),
        ('{"action": "a", "z": 1, "plan": 2}', "ignored unknown keys: plan, z"),
        ('{"action": "a", "thought": ["x"]}', 'ignored "thought", which is not a string'),
        ('{"action": "a"}</s>', "stripped end-of-sequence tokens"),
    ],
)
def test_json_notes(reply, note):
    parsed = JSONF.parse(reply)
    assert parsed.ok
    assert note in parsed.notes


def test_json_clean_reply_has_no_notes():
    assert JSONF.parse('{"thought": "t", "action": "look"}').notes == ()
    assert JSONFormat.stop == ()


# --- render -------------------------------------------------------------------

TRICKY_ACTIONS = [
    "look",
    "guess crane",
    "go to red ball",
    "open door to kitchen",
    "put apple in fridge",
    'say "hi"',
    '"quoted"',
    "'single'",
    "`tick`",
    "```fenced```",
    "[bracketed]",
    "(paren)",
    "<angle>",
    "{curly}",
    "**bold**",
    "*star*",
    "go.",
    "wait...",
    "take 2.5 coins.",
    ".",
    "..",
    '""',
    "''",
    "``",
    "```",
    "```python",
    "[",
    "]",
    "[a",
    "a]",
    "(a) or (b)",
    "Action: look",
    "Thought: hmm",
    "Observation: x",
    "- move up",
    "> quote",
    "# heading",
    "move up ```",
    "\u201cgo\u201d",
    "x" * 300,
]

TRICKY_THOUGHTS = [
    "",
    "simple",
    "line one\nAction: wrong\nline two",
    "```\nfenced\n```",
    "ends with eos</s>",
    "<|im_end|>",
    "Observation: invented",
    "\u00fcnicode \u5317",
]

_ALPHABET = "abcxyz ABC 0129 .,;:!?\"'`[](){}<>*_-#/\\\u00e9\u5317"


def _random_actions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    actions: list[str] = []
    while len(actions) < count:
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 30))).strip()
        if text:
            actions.append(text)
    return actions


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_round_trip_tricky(fmt):
    for action in TRICKY_ACTIONS:
        for thought in TRICKY_THOUGHTS:
            parsed = fmt.parse(fmt.render(action, thought))
            assert parsed.action == action, (action, thought)


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_round_trip_generated(fmt):
    actions = _random_actions(3000, seed=1234)
    thoughts = _random_actions(50, seed=99)
    for index, action in enumerate(actions):
        thought = thoughts[index % len(thoughts)] if index % 3 else ""
        parsed = fmt.parse(fmt.render(action, thought))
        assert parsed.action == action, (action, thought)


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_render_keeps_the_thought(fmt):
    parsed = fmt.parse(fmt.render("move up", "The exit is north."))
    assert parsed.thought == "The exit is north."
    assert parsed.notes == ()
    assert fmt.parse(fmt.render("move up")).thought is None


def test_render_react_shape():
    assert REACT.render("move up", "t") == "Thought: t\nAction: move up"
    assert REACT.render("move up") == "Action: move up"
    # Quotes are added only when the parser would change the action otherwise.
    assert REACT.render("go.") == 'Action: "go."'
    assert REACT.render('say "hi"') == 'Action: say "hi"'


def test_render_json_shape():
    assert json.loads(JSONF.render("move up", "t")) == {"thought": "t", "action": "move up"}
    assert json.loads(JSONF.render("move up")) == {"action": "move up"}


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
@pytest.mark.parametrize("action", ["", "  ", "a\nb", "a\rb", "x" * 301, "look</s>"])
def test_render_refuses_actions_that_cannot_parse_back(fmt, action):
    with pytest.raises(ValueError, match="cannot render action"):
        fmt.render(action)


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_render_strips_surrounding_whitespace(fmt):
    # Envs strip actions too; a stray space from an expert must not crash a rollout.
    assert fmt.render("  look \t") == fmt.render("look")
    assert fmt.parse(fmt.render(" look ")).action == "look"


# --- prompts, messages, registry ---------------------------------------------

INSTRUCTION = "Find the exit of the maze. Actions: move up, move down, move left, move right."


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_system_prompt(fmt):
    prompt = fmt.system_prompt(INSTRUCTION)
    assert prompt.startswith(INSTRUCTION + "\n\n")
    example = prompt.rsplit("\n", 2 if fmt.name == "react" else 1)
    example_reply = "\n".join(example[1:])
    assert example_reply == fmt.render("look", "I should look around before I move.")
    assert fmt.parse(example_reply).action == "look"
    assert fmt.parse(example_reply).notes == ()
    # Short enough for a small context.
    assert len(prompt) - len(INSTRUCTION) < 500


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_observation_message(fmt):
    assert fmt.observation_message("You see a wall.") == "You see a wall."
    error = fmt.parse("").error
    assert error is not None
    message = fmt.observation_message("You see a wall.", error)
    assert message.startswith(f"Your previous reply could not be used: {error}")
    assert message.endswith("You see a wall.")
    assert message.index(error) < message.index("You see a wall.")


def test_get_format():
    assert set(FORMATS) == {"react", "json", "tools"}
    for name, cls in FORMATS.items():
        fmt = get_format(name)
        assert type(fmt) is cls
        assert isinstance(fmt, Format)
        assert fmt.name == name


def test_get_format_unknown_lists_known_names():
    with pytest.raises(ValueError, match="unknown format 'xml'") as info:
        get_format("xml")
    assert "json" in str(info.value)
    assert "react" in str(info.value)


def test_parsed_reply():
    assert ParsedReply("look", None, None).ok
    assert not ParsedReply(None, None, "bad").ok
    reply = ParsedReply("look", "t", None)
    assert reply.notes == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.action = "jump"  # type: ignore[misc]


@pytest.mark.parametrize("fmt", [REACT, JSONF], ids=lambda fmt: fmt.name)
def test_parse_never_raises(fmt):
    rng = random.Random(7)
    pieces = ["Action:", "Thought:", "```", "{", "}", '"', "\n", "</s>", "**", " ", "x", "\\", "["]
    for _ in range(2000):
        reply = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        parsed = fmt.parse(reply)
        assert (parsed.action is None) == (parsed.error is not None)
