"""Tool calling on the protocol: tool-call actions, ToolEnv, the checker, the wire."""

from __future__ import annotations

import json

import httpx
import pytest
from toy_envs import Tally

import palaestra
from palaestra.envs import ToolCallError, ToolEnv, parse_tool_call, tool, tool_call_action
from palaestra.envs.checker import check
from palaestra.envs.registration import list_envs
from palaestra.envs.tools import check_tools


def test_a_tool_call_action_is_canonical_json():
    a = tool_call_action("add", {"n": 2, "b": "x"})
    assert a == '{"arguments":{"b":"x","n":2},"name":"add"}'
    assert tool_call_action("add", {"b": "x", "n": 2}) == a
    assert (
        tool_call_action("say", {"text": "São"})
        == '{"arguments":{"text":"S\\u00e3o"},"name":"say"}'
    )
    assert tool_call_action("finish") == '{"arguments":{},"name":"finish"}'


@pytest.mark.parametrize(
    ("action", "name", "arguments"),
    [
        ('{"name": "add", "arguments": {"n": 1}}', "add", {"n": 1}),
        ('  {"name": "add", "arguments": "{\\"n\\": 1}"}\n', "add", {"n": 1}),  # OpenAI's string
        ('{"name": "finish"}', "finish", {}),
        ('{"name": "finish", "arguments": ""}', "finish", {}),
        ('{"name": "finish", "arguments": null}', "finish", {}),
    ],
)
def test_parse_tool_call_reads_the_shapes_models_send(action, name, arguments):
    call = parse_tool_call(action)
    assert (call.name, call.arguments) == (name, arguments)


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("add 1", "is a tool call"),
        ('{"name": "add", ', "not valid JSON"),
        ("[1, 2]", "is a tool call"),
        ('{"arguments": {}}', "no 'name'"),
        ('{"name": "", "arguments": {}}', "no 'name'"),
        ('{"name": "add", "arguments": [1]}', "must be a JSON object"),
        ('{"name": "add", "arguments": "{oops"}', "not valid JSON"),
        ('{"name": "add", "args": {}}', "only 'name' and 'arguments'"),
    ],
)
def test_parse_tool_call_says_what_is_wrong(action, says):
    with pytest.raises(ToolCallError, match=says):
        parse_tool_call(action)


def test_tool_methods_make_openai_function_definitions():
    assert [t["function"]["name"] for t in Tally.tools] == ["add", "total", "finish"]
    add = Tally.tools[0]
    assert add["type"] == "function"
    assert add["function"]["parameters"] == {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["n"],
        "additionalProperties": False,
    }
    assert "tools" in Tally.capabilities()
    assert "tools" not in palaestra.envs.env_class("palaestra/Maze-v0").capabilities()


def test_a_bad_schema_is_refused_when_the_class_is_made():
    with pytest.raises(ValueError, match="invalid JSON schema"):

        class Broken(ToolEnv):
            @tool("Bad.", {"n": {"type": "no-such-type"}})
            def bad(self, n: int) -> int:
                return n


@pytest.mark.parametrize(
    ("tools", "says"),
    [
        ([{"type": "function"}], "no 'function'"),
        ([{"type": "x", "function": {}}], "is not"),
        ([{"type": "function", "function": {"name": "a b", "description": "d"}}], "bad name"),
        ([{"type": "function", "function": {"name": "a", "description": ""}}], "no description"),
        (
            [{"type": "function", "function": {"name": "a", "description": "d", "parameters": {}}}],
            "type 'object'",
        ),
    ],
)
def test_check_tools_names_the_problem(tools, says):
    with pytest.raises(ValueError, match=says):
        check_tools(tools)


def test_malformed_calls_are_invalid_actions_that_say_why():
    env = Tally()
    env.reset(options={"task_id": 0})
    for action, says in [
        ("add 2", "Error: an action here is a tool call"),
        (
            tool_call_action("multiply", {"n": 2}),
            "there is no tool 'multiply'; the tools: add, total",
        ),
        (tool_call_action("add", {"n": 9}), "bad arguments for add: n: 9 is greater than"),
        (tool_call_action("add", {}), "'n' is a required property"),
        (tool_call_action("add", {"n": 1, "m": 2}), "Additional properties"),
        (tool_call_action("add", {"n": "2"}), "'2' is not of type 'integer'"),
    ]:
        observation, reward, terminated, _, info = env.step(action)
        assert says in observation, (action, observation)
        assert info["invalid_action"] is True
        assert not terminated and reward == 0.0
    assert env.world["total"] == 0


def test_results_become_observations_and_the_score_is_the_progress_rate():
    env = Tally()
    observation, _ = env.reset(options={"task_id": 2})  # target 5
    assert observation == "Target: 5. The total is 0."
    observation, *_, info = env.step(tool_call_action("add", {"n": 3}))
    assert observation == '{"total":3}'  # compact: every space is a token to the model
    assert info["invalid_action"] is False
    assert env.step(tool_call_action("total"))[0] == "The total is 3."
    observation, reward, terminated, _, info = env.step(tool_call_action("finish"))
    assert terminated and info["success"] is False and info["score"] == 0.5 and reward == 0.0
    env.reset(options={"task_id": 2})
    env.step(tool_call_action("add", {"n": 5}))
    *_, reward, terminated, _, info = env.step(tool_call_action("finish"))
    assert info["success"] is True and info["score"] == 1.0 and reward == 1.0


def test_progress_is_the_best_reached_not_the_last():
    env = Tally()
    env.reset(options={"task_id": 0})  # target 3
    env.step(tool_call_action("add", {"n": 3}))  # both sub-goals
    env.step(tool_call_action("add", {"n": 1}))  # overshoots: one sub-goal
    *_, info = env.step(tool_call_action("finish"))
    assert info["success"] is False and info["score"] == 1.0


def test_a_tool_env_passes_the_checker_in_process_and_over_http(serve):
    with serve(["toy/Tally-v0"]) as url:
        results = check("toy/Tally-v0", remote=lambda: palaestra.make("toy/Tally-v0", base_url=url))
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]
    spec = next(r for r in results if r.name == "spec")
    assert "tools=['add', 'total', 'finish']" in spec.detail


class _SloppyExpert(Tally):
    def expert_action(self) -> str:
        return '{"name": "add", "arguments": {"n": 9}}'  # breaks the schema


def test_the_checker_fails_an_expert_whose_calls_break_the_schema():
    palaestra.envs.register("toy/SloppyTally-v0", _SloppyExpert)
    results = {r.name: r for r in check("toy/SloppyTally-v0")}
    expert = results["expert solves sampled tasks"]
    assert expert.failed and "breaks the schema of add" in expert.detail


def test_the_server_lists_tools_and_takes_a_call_as_an_object(serve):
    with serve(["toy/Tally-v0", "toy/Counter-v0"]) as url, httpx.Client(base_url=url) as http:
        specs = {s["id"]: s for s in http.get("/v1/envs").json()}
        assert specs["toy/Tally-v0"]["tools"] == json.loads(json.dumps(list(Tally.tools)))
        assert "tools" in specs["toy/Tally-v0"]["capabilities"]
        assert specs["toy/Counter-v0"]["tools"] is None
        created = http.post("/v1/sessions", json={"env": "toy/Tally-v0", "task_id": 1}).json()
        sid = created["session_id"]
        as_object = http.post(
            f"/v1/sessions/{sid}/step", json={"action": {"name": "add", "arguments": {"n": 2}}}
        )
        assert as_object.status_code == 200
        assert json.loads(as_object.json()["observation"]) == {"total": 2}
        as_text = http.post(
            f"/v1/sessions/{sid}/step", json={"action": tool_call_action("add", {"n": 2})}
        ).json()
        assert json.loads(as_text["observation"]) == {"total": 4}
        bad = http.post(f"/v1/sessions/{sid}/step", json={"action": {"name": "add", "x": 1}})
        assert bad.status_code == 422
        counter = http.post("/v1/sessions", json={"env": "toy/Counter-v0"}).json()["session_id"]
        refused = http.post(
            f"/v1/sessions/{counter}/step", json={"action": {"name": "inc", "arguments": {}}}
        )
        assert refused.status_code == 422
        assert "declares no tools" in refused.json()["detail"]


def test_the_socket_takes_a_call_as_an_object(serve):
    from websockets.sync.client import connect

    with serve(["toy/Tally-v0"]) as url:
        with connect(url.replace("http://", "ws://") + "/v1/ws") as ws:
            ws.send(json.dumps({"id": 1, "op": "create", "env": "toy/Tally-v0", "task_id": 0}))
            assert json.loads(ws.recv())["ok"]
            ws.send(
                json.dumps(
                    {"id": 2, "op": "step", "action": {"name": "add", "arguments": {"n": 3}}}
                )
            )
            reply = json.loads(ws.recv())
            assert reply["ok"] and json.loads(reply["result"]["observation"]) == {"total": 3}


def test_envs_json_lists_tools():
    infos = {info.id: info.to_json() for info in list_envs()}
    assert [t["function"]["name"] for t in infos["toy/Tally-v0"]["tools"]] == [
        "add",
        "total",
        "finish",
    ]
    assert infos["palaestra/Maze-v0"]["tools"] is None


class _Notes(ToolEnv):
    """A tool env for the base class's edge cases: a tool that fails half-way, echoes, ints."""

    instruction = "Write notes."
    max_steps = 5
    splits = {"train": range(0, 4), "test": range(4, 6)}

    def start(self, task_id: int) -> str:
        self.world = {"notes": [], "count": 0}
        return "No notes."

    @tool(
        "Add a note, then fail if it is 'bad'.",
        {"text": {"type": "string"}, "times": {"type": "integer", "minimum": 1}},
        required=["text"],
    )
    def add(self, text: str, times: int = 1) -> str:
        self.world["notes"].append(text)  # changed before the check below, on purpose
        self.world["count"] += times
        if text == "bad":
            raise ToolCallError(f"{text!r} is not allowed")
        return f"noted {text} x{times} ({type(times).__name__})"


def test_a_tool_that_fails_half_way_leaves_the_world_as_it_was():
    env = _Notes()
    env.reset(options={"task_id": 0})
    env.step(tool_call_action("add", {"text": "good"}))
    observation, *_, info = env.step(tool_call_action("add", {"text": "bad", "times": 3}))
    assert info["invalid_action"] and "'bad' is not allowed" in observation
    assert env.world == {"notes": ["good"], "count": 1}
    assert env.last_call is not None and env.last_call.arguments == {"text": "bad", "times": 3}


def test_observations_are_kept_printable():
    env = _Notes()
    env.reset(options={"task_id": 0})
    observation, *_ = env.step(tool_call_action("add", {"text": "caf\u00e9 \u2603"}))
    assert observation == "noted caf? ? x1 (int)"
    assert env.observation_space.contains(observation)
    observation, *_ = env.step(tool_call_action("add", {"text": "\u2603", "times": "x"}))
    assert env.observation_space.contains(observation) and observation.startswith("Error: ")


def test_an_integral_float_reaches_an_integer_argument_as_an_int():
    env = _Notes()
    env.reset(options={"task_id": 0})
    observation, *_ = env.step('{"name": "add", "arguments": {"text": "a", "times": 2.0}}')
    assert observation == "noted a x2 (int)"
    observation, *_, info = env.step('{"name": "add", "arguments": {"text": "a", "times": 2.5}}')
    assert info["invalid_action"] and "is not of type 'integer'" in observation


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    with pytest.raises(ToolCallError, match=f"{constant.lstrip('-')} is not a JSON number"):
        parse_tool_call(f'{{"name": "add", "arguments": {{"times": {constant}}}}}')
    with pytest.raises(ToolCallError, match="not a JSON number"):
        parse_tool_call(json.dumps({"name": "add", "arguments": f'{{"times": {constant}}}'}))


def test_random_calls_give_optional_arguments_about_half_the_time():
    import numpy as np

    env = _Notes()
    env.reset(options={"task_id": 0})
    rng = np.random.default_rng(0)
    calls = [parse_tool_call(env.random_action(rng)) for _ in range(200)]
    assert all("text" in c.arguments for c in calls)
    with_times = sum("times" in c.arguments for c in calls)
    assert 70 < with_times < 130
