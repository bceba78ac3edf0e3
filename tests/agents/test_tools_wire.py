"""``palaestra eval --format tools`` over the OpenAI wire: OpenAIPolicy -> serve-policy -> a policy.

The served policy is a real ``Policy`` that answers Tally with tool calls
(:class:`tool_policies.TallyCaller`): what it receives is what crossed the wire
(the request's ``tools``, the tool messages), and its calls reach the env only
through the API's ``tool_calls``.
"""

from __future__ import annotations

import inspect
import json

import pytest
from tool_policies import TallyCaller
from toy_envs import Tally

from palaestra.agents.openai_policy import OpenAIPolicy
from palaestra.agents.policy_server import create_policy_app
from palaestra.agents.rollout import prompt_window
from palaestra.agents.trajectory import read_trajectories
from palaestra.cli import main
from palaestra.servers import serve_in_thread

TALLY = "toy/Tally-v0"

if "tools" not in inspect.signature(OpenAIPolicy.generate).parameters:
    # Tool calling in the backends comes from the other half of issue 15 (branch pol).
    pytest.skip("OpenAIPolicy does not speak tools in this tree yet", allow_module_level=True)


def test_eval_with_tools_through_serve_policy(tmp_path, capsys):
    caller = TallyCaller(garble_turn=1)
    out = tmp_path / "run"
    with serve_in_thread(create_policy_app(caller, model_id="tally")) as url:
        code = main(
            ["eval", "--policy", f"openai:{url}#tally", "--envs", TALLY, "--format", "tools",
             "--split", "test", "--quiet", "--out", str(out)]
        )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    trajectories = read_trajectories(out / "trajectories.jsonl")
    assert len(trajectories) == 5 and all(t.success for t in trajectories)
    # The requests carried Tally's tools, with every conversation.
    assert caller.seen and all(tools == list(Tally.tools) for _, tools in caller.seen)
    # The replies' tool_calls reached the env: the actions are the served policy's calls.
    for t in trajectories:
        assert t.format_errors == 1  # the garbled turn, as text
        calls = [m for m in t.messages if m.get("tool_calls")]
        assert len(calls) == t.turns - 1 and calls[0]["tool_calls"][0]["id"] == "call_0"
        for message, action in zip(calls, [a for a in t.actions if a], strict=True):
            function = message["tool_calls"][0]["function"]
            assert json.loads(action) == {
                "name": function["name"],
                "arguments": json.loads(function["arguments"]),
            }
    # What crossed the wire are the engine's prompts (tool calls and results included).
    prompts = [
        prompt_window(t.messages[:i], len(t.messages))
        for t in trajectories
        for i, m in enumerate(t.messages)
        if m["role"] == "assistant"
    ]
    received = [conversation for conversation, _ in caller.seen]
    assert sorted(map(normal, received)) == sorted(map(normal, prompts))


def normal(prompt):
    return json.dumps(prompt, sort_keys=True)
