"""The tools format: parsing tool calls, the OpenAI message shapes, the engine passing tools."""

from __future__ import annotations

import asyncio
import json

import pytest
from tool_policies import TallyCaller, call
from toy_envs import Tally

from palaestra.agents.baselines import ExpertPolicy, RandomPolicy
from palaestra.agents.env_pool import LocalEnvs, RemoteEnvs
from palaestra.agents.evaluate import EvalConfig, episode_loops, run_eval
from palaestra.agents.formats import (
    FORMATS,
    JSONFormat,
    ReActFormat,
    ToolsFormat,
    check_format,
    get_format,
)
from palaestra.agents.policy import Completion
from palaestra.agents.rollout import (
    OMITTED_NOTE,
    EpisodeSpec,
    RolloutConfig,
    RolloutEngine,
    prompt_window,
)
from palaestra.envs import tool_call_action

TOOLS = ToolsFormat()
TALLY = "toy/Tally-v0"


def play(policy, specs, **config):
    async def go():
        engine = RolloutEngine(policy, LocalEnvs(), RolloutConfig(format="tools", **config))
        return await engine.run(specs), engine.stats

    return asyncio.run(go())


# --- parsing -------------------------------------------------------------------


def test_native_call_becomes_the_canonical_action():
    parsed = TOOLS.parse(Completion("", tool_calls=[call("add", '{"n": 3}')]))
    assert (
        parsed.action == tool_call_action("add", {"n": 3}) == '{"arguments":{"n":3},"name":"add"}'
    )
    assert parsed.error is None and parsed.notes == () and parsed.thought is None


def test_arguments_may_be_an_object_or_empty():
    assert TOOLS.parse(Completion("", tool_calls=[call("add", {"n": 1})])).action == (
        tool_call_action("add", {"n": 1})
    )
    empty = {"id": "a", "type": "function", "function": {"name": "finish", "arguments": ""}}
    assert TOOLS.parse(Completion("", tool_calls=[empty])).action == tool_call_action("finish")


def test_several_calls_use_the_first_and_note_it():
    parsed = TOOLS.parse(Completion("ok", tool_calls=[call("add", {"n": 2}), call("total", {})]))
    assert parsed.action == tool_call_action("add", {"n": 2})
    assert parsed.thought == "ok"
    assert any("1 later tool call" in note for note in parsed.notes)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [("{n: 3", "not valid JSON"), ("[3]", "not a JSON object"), ('"3"', "not a JSON object")],
)
def test_bad_arguments_are_an_error_sentence(arguments, says):
    parsed = TOOLS.parse(Completion("", tool_calls=[call("add", arguments)]))
    assert parsed.action is None
    assert says in parsed.error and "add" in parsed.error


def test_a_call_without_a_name_is_an_error():
    nameless = {"id": "a", "type": "function", "function": {"arguments": "{}"}}
    assert "no name" in TOOLS.parse(Completion("", tool_calls=[nameless])).error


@pytest.mark.parametrize(
    ("reply", "thought"),
    [
        ('<tool_call>\n{"name": "add", "arguments": {"n": 4}}\n</tool_call>', None),
        ('I add four.\n<tool_call>{"name": "add", "arguments": {"n": 4}}', "I add four."),
        ('```json\n{"name": "add", "arguments": "{\\"n\\": 4}"}\n```', "```json\n\n```"),
        ('{"name": "add", "arguments": {"n": 4}}<|im_end|>', None),
        ('{"name": "add", "parameters": {"n": 4}}', None),
    ],
)
def test_a_call_written_as_text_is_read(reply, thought):
    parsed = TOOLS.parse(reply)
    assert parsed.action == tool_call_action("add", {"n": 4})
    assert parsed.thought == thought
    assert "read the tool call from the reply's text" in parsed.notes


@pytest.mark.parametrize("reply", ["", "I add four.", '{"n": 4}', "<tool_call>add 4</tool_call>"])
def test_no_call_is_an_error_that_asks_for_a_tool(reply):
    parsed = TOOLS.parse(reply)
    assert parsed.action is None
    assert "call" in parsed.error and "tool" in parsed.error


def test_render_is_a_completion_with_one_call_that_parses_back():
    action = tool_call_action("add", {"n": 2})
    reply = TOOLS.render(action)
    assert isinstance(reply, Completion) and str(reply) == ""
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (call("add", {"n": 2}, "call_0"),)
    assert TOOLS.parse(reply).action == action
    # Any JSON call is made canonical; a text action is no call.
    assert TOOLS.parse(TOOLS.render('{"name": "add", "arguments": {"n": 2}}')).action == action
    with pytest.raises(ValueError, match="as a tool call"):
        TOOLS.render("look")


def test_system_prompt_has_the_rule_and_not_the_tools():
    prompt = TOOLS.system_prompt(Tally.instruction, Tally.tools)
    assert prompt.startswith(Tally.instruction + "\n\n")
    assert "exactly one of the tools" in prompt and "finish" in prompt
    assert "Add a number" not in prompt  # the definitions travel as ``tools``


def test_text_formats_list_the_tools_of_a_tool_env():
    for fmt in (ReActFormat(), JSONFormat()):
        prompt = fmt.system_prompt(Tally.instruction, Tally.tools)
        assert '"name": "add"' in prompt and "Add a number (1 to 5)" in prompt
        # Without tools, today's prompt exactly.
        assert fmt.system_prompt(Tally.instruction) == fmt.system_prompt(Tally.instruction, None)
        assert "Tools:" not in fmt.system_prompt(Tally.instruction)


def test_react_keeps_the_braces_of_a_json_call():
    # It used to strip one pair of brackets around the action, braces included, which
    # turned a tool env's call into '"arguments":...,"name":"add"' (not JSON).
    action = tool_call_action("add", {"n": 2})
    assert ReActFormat().parse(f"Thought: add.\nAction: {action}").action == action
    assert ReActFormat().render(action) == f"Action: {action}"
    assert ReActFormat().parse("Action: {take key}").action == "take key"  # as before


def test_check_format():
    check_format("tools", TALLY, Tally.tools)
    check_format("react", TALLY, Tally.tools)  # a tool env under a text format: allowed
    check_format("react", "toy/Counter-v0", None)
    with pytest.raises(ValueError, match="tools format needs an env with tools"):
        check_format(get_format("tools"), "toy/Counter-v0", None)
    assert FORMATS["tools"] is ToolsFormat and ToolsFormat.uses_tools


# --- messages and the engine -----------------------------------------------------


def test_rollout_messages_have_openai_tool_shapes():
    policy = TallyCaller()
    [t], stats = play(policy, [EpisodeSpec(TALLY, 21, "test")])  # target 4: add 4, finish
    assert t.success and t.end == "terminated" and t.score == 1.0
    assert t.actions == [tool_call_action("add", {"n": 4}), tool_call_action("finish")]
    assert t.tools == list(Tally.tools)
    system, first, *rest = t.messages
    assert system == {
        "role": "system",
        "content": TOOLS.system_prompt(Tally.instruction),
        "loss": False,
    }
    assert first == {"role": "user", "content": "Target: 4. The total is 0.", "loss": False}
    assert rest == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [call("add", {"n": 4}, "call_0")],
            "loss": True,
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"total":4}', "loss": False},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [call("finish", {}, "call_1")],
            "loss": True,
        },
    ]
    # Each conversation came with Tally's tools; prompts are what the trajectory holds.
    assert [tools for _, tools in policy.seen] == [list(Tally.tools)] * 2
    assert policy.seen[1][0] == prompt_window(t.messages[:4], 1)
    assert stats.calls == 2


def test_a_reply_without_a_call_is_text_then_a_user_error():
    [t], _ = play(TallyCaller(garble_turn=0), [EpisodeSpec(TALLY, 21, "test")])
    assert t.format_errors == 1 and t.success
    garbled, answer, called = t.messages[2:5]
    assert garbled == {"role": "assistant", "content": "I would rather chat.", "loss": True}
    assert answer["role"] == "user" and answer["content"].startswith(
        "Your previous reply could not be used: the reply calls no tool"
    )
    assert "tool_call_id" not in answer
    # Ids count turns, unreadable ones included.
    assert called["tool_calls"][0]["id"] == "call_1"
    assert t.messages[5]["tool_call_id"] == "call_1"


def test_extra_calls_are_dropped_from_the_message():
    # The env ran one call; a second call left in the message would have no result.
    [t], _ = play(TallyCaller(extra_call=True), [EpisodeSpec(TALLY, 20, "test")])
    assert t.success
    assert all(len(m.get("tool_calls", [])) <= 1 for m in t.messages)


@pytest.mark.parametrize("policy", [ExpertPolicy(), RandomPolicy()], ids=["expert", "random"])
def test_env_policies_play_in_the_tools_format(policy):
    trajectories, _ = play(
        policy, [EpisodeSpec(TALLY, task, "test", seed=task) for task in (20, 23)]
    )
    for t in trajectories:
        assert t.format_errors == 0
        for index, message in enumerate(t.messages[2:]):
            if index % 2 == 0:
                assert message["role"] == "assistant" and message["loss"] is True
                assert message["tool_calls"][0]["id"] == f"call_{index // 2}"
                function = message["tool_calls"][0]["function"]
                assert (
                    tool_call_action(function["name"], json.loads(function["arguments"]))
                    == (t.actions[index // 2])
                )
            else:
                assert message["role"] == "tool"
                assert message["tool_call_id"] == f"call_{index // 2}"
    if isinstance(policy, ExpertPolicy):
        assert all(t.success for t in trajectories)


def test_the_tools_format_is_refused_for_an_env_without_tools(tmp_path):
    with pytest.raises(ValueError, match="toy/Counter-v0 declares none"):
        run_eval(
            EvalConfig(
                policy="expert", envs=["toy/Counter-v0"], rollout=RolloutConfig(format="tools")
            ),
            tmp_path / "run",
            progress=False,
        )
    assert not (tmp_path / "run" / "trajectories.jsonl").exists()


def test_text_formats_play_a_tool_env():
    async def go():
        engine = RolloutEngine(ExpertPolicy(), LocalEnvs(), RolloutConfig(format="react"))
        return await engine.run([EpisodeSpec(TALLY, 22, "test")])

    [t] = asyncio.run(go())
    assert t.success and t.tools is None
    assert t.messages[2]["content"] == "Action: " + tool_call_action("add", {"n": 5})
    assert "tool_calls" not in t.messages[2] and t.messages[3]["role"] == "user"
    assert '"name": "finish"' in t.messages[0]["content"]  # the tools are listed


def test_loops_count_tool_results_as_observations():
    [t], _ = play(TallyCaller(), [EpisodeSpec(TALLY, 21, "test")])
    assert episode_loops(t.messages, t.actions) == (0, 2)


# --- prompt_window -------------------------------------------------------------


def test_prompt_window_keeps_tool_fields_and_drops_loss():
    [t], _ = play(TallyCaller(), [EpisodeSpec(TALLY, 24, "test")])  # target 7: add 5, 2, finish
    before_last = t.messages[:-1]
    whole = prompt_window(before_last, 10)
    assert whole == [{k: v for k, v in m.items() if k != "loss"} for m in before_last]
    assert whole[2]["tool_calls"][0]["id"] == "call_0" and whole[3]["tool_call_id"] == "call_0"


def test_prompt_window_turns_an_orphan_tool_result_into_a_user_message():
    [t], _ = play(TallyCaller(), [EpisodeSpec(TALLY, 24, "test")])
    before_last = t.messages[:-1]  # system, obs, call_0, result_0, call_1, result_1
    window = prompt_window(before_last, 1)
    assert [m["role"] for m in window] == ["system", "user", "assistant", "tool"]
    assert window[1] == {"role": "user", "content": f'{OMITTED_NOTE}\n{{"total":5}}'}
    latest = prompt_window(before_last, 0, system_prompt=False)
    assert latest == [{"role": "user", "content": f'{OMITTED_NOTE}\n{{"total":7}}'}]


def test_history_limits_the_prompts_sent():
    policy = TallyCaller()
    [t], _ = play(policy, [EpisodeSpec(TALLY, 24, "test")], history=1)
    assert t.success
    assert [m["role"] for m in policy.seen[2][0]] == ["system", "user", "assistant", "tool"]
    for index, (prompt, _) in enumerate(policy.seen):
        upto = [i for i, m in enumerate(t.messages) if m["role"] == "assistant"][index]
        assert prompt == prompt_window(t.messages[:upto], 1)


# --- remote ----------------------------------------------------------------------


def test_remote_envs_spec_carries_the_tools(serve):
    async def go(url):
        pool = RemoteEnvs([url], transport="http")
        try:
            return await pool.spec(TALLY), await pool.spec("toy/Counter-v0")
        finally:
            await pool.aclose()

    with serve([TALLY, "toy/Counter-v0"]) as url:
        tally, counter = asyncio.run(go(url))
    assert tally.tools == Tally.tools and counter.tools is None
    local = asyncio.run(LocalEnvs().spec(TALLY))
    assert local == tally


def test_remote_rollout_matches_local(serve):
    async def go(pool):
        engine = RolloutEngine(TallyCaller(), pool, RolloutConfig(format="tools"))
        try:
            return await engine.run([EpisodeSpec(TALLY, 22, "test", seed=3)])
        finally:
            await pool.aclose()

    with serve([TALLY]) as url:
        [remote] = asyncio.run(go(RemoteEnvs([url])))
    [local] = asyncio.run(go(LocalEnvs()))
    assert remote.messages == local.messages and remote.actions == local.actions
    assert remote.tools == local.tools == list(Tally.tools)


# --- the command line ---------------------------------------------------------------


def cli(*args):
    from palaestra.cli import main

    return main(list(args))


def test_cli_eval_format_tools(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("eval", "--policy", "expert", "--envs", TALLY, "--format", "tools",
               "--limit", "2", "--quiet", "--out", str(out)) == 0  # fmt: skip
    from palaestra.agents.trajectory import read_trajectories

    trajectories = read_trajectories(out / "trajectories.jsonl")
    assert len(trajectories) == 2 and all(t.success for t in trajectories)
    assert all(t.tools == list(Tally.tools) for t in trajectories)
    assert trajectories[0].messages[2]["tool_calls"][0]["id"] == "call_0"
    assert "tools format" in (out / "results.md").read_text()


def test_cli_eval_all_envs_under_tools_means_the_tool_envs(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("eval", "--policy", "expert", "--envs", "all", "--format", "tools",
               "--limit", "1", "--quiet", "--out", str(out)) == 0  # fmt: skip
    import json as json_

    envs = json_.loads((out / "results.json").read_text())["config"]["envs"]
    assert TALLY in envs and "toy/Counter-v0" not in envs and "palaestra/Maze-v0" not in envs


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("eval", "--policy", "expert", "--envs", "toy/Counter-v0", "--format", "tools"),
         "the tools format needs an env with tools, and toy/Counter-v0 declares none"),
        (("evolve", "agentevol", "--envs", "toy/Counter-v0", "--format", "tools"),
         "toy/Counter-v0 declares none"),
        (("evolve", "agent-r", "--envs", TALLY, "--format", "tools"),
         "agent-r does not support --format tools"),
        (("eval", "--policy", "expert", "--envs", TALLY, "--format", "xml"), "unknown --format"),
    ],
    ids=["eval", "agentevol", "agent-r", "unknown"],
)  # fmt: skip
def test_cli_refuses_the_tools_format_where_it_cannot_play(args, says, tmp_path, capsys):
    assert cli(*args, "--out", str(tmp_path / "run")) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_help_names_the_tools_format(capsys):
    with pytest.raises(SystemExit):
        cli("eval", "--help")
    assert "tools (native function calling" in " ".join(capsys.readouterr().out.split())


def test_the_context_count_includes_the_tools():
    class Counting(TallyCaller):
        context_length = 10_000

        def __init__(self) -> None:
            super().__init__()
            self.counted: list[object] = []

        def count_tokens(self, messages, tools=None):
            self.counted.append(tools)
            return len(json.dumps(messages)) // 4 + len(json.dumps(tools)) // 4

    policy = Counting()
    [t], _ = play(policy, [EpisodeSpec(TALLY, 21, "test")])
    assert t.success and policy.counted and all(c == list(Tally.tools) for c in policy.counted)


def test_the_tiny_corpus_is_built_from_the_text_formats():
    # The tools format renders tool calls only: the corpus of a text env used to crash
    # on ToolsFormat.render("inc") once "tools" was among the formats.
    from palaestra.agents.tiny import build_corpus

    texts = build_corpus(["toy/Counter-v0"], 1, 0)
    assert "Action: inc" in texts
    assert not any(ToolsFormat._rules in text for text in texts)
