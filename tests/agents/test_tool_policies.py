"""Native tool calling in the policy backends: parsers, real chat templates, the tiny model,
``TransformersPolicy``, ``serve-policy`` (driven by the official ``openai`` client) and
``OpenAIPolicy``."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from cli_runner import run_cli
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from toy_envs import Tally

from palaestra.agents.openai_policy import OpenAIPolicy
from palaestra.agents.policy import Completion, Message, Policy
from palaestra.agents.policy_server import create_policy_app
from palaestra.agents.tiny import TinyConfig, tiny_model_path, tools_text
from palaestra.agents.tool_parsers import (
    TOOL_PARSERS,
    get_tool_parser,
    openai_message,
    parser_for_template,
    template_message,
)
from palaestra.agents.transformers_policy import TransformersPolicy
from palaestra.servers import serve_in_thread

torch = pytest.importorskip("torch")

TOOLS = [dict(t) for t in Tally.tools]
HERMES = TOOL_PARSERS["hermes"]
LLAMA = TOOL_PARSERS["llama3_json"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and spinning threads crawl on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


# A Tally episode as the rollout engine stores it (OpenAI shapes, palaestra's loss flags).
EPISODE: list[Message] = [
    {"role": "system", "content": Tally.instruction, "loss": False},
    {"role": "user", "content": "Target: 4. The total is 0.", "loss": False},
    {"role": "assistant", "content": "", "tool_calls": [call("call_2", "add", {"n": 3})]},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"total": 3}', "loss": False},
    {"role": "assistant", "content": "", "tool_calls": [call("call_3", "add", {"n": 1})]},
    {"role": "tool", "tool_call_id": "call_3", "content": '{"total": 4}', "loss": False},
    {"role": "assistant", "content": "", "tool_calls": [call("call_4", "finish", {})]},
]
for _message in EPISODE:
    _message.setdefault("loss", _message["role"] == "assistant")


def trl_template(name: str) -> str:
    """A chat template as shipped by its model (TRL keeps verbatim copies for identification)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs trl (in the dev extra): its chat_templates are the real models' ones")
    folder = Path(next(iter(spec.submodule_search_locations))) / "chat_templates"
    return (folder / f"{name}.jinja").read_text()


def ids_free(calls: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls or ()]


# -- parsers ----------------------------------------------------------------------------


def test_hermes_reads_calls_and_keeps_the_text_around_them():
    reply = 'Let me add.\n<tool_call>\n{"name": "add", "arguments": {"n": 3}}\n</tool_call>'
    parsed = HERMES.parse(reply)
    assert parsed.text == "Let me add."
    assert parsed.tool_calls == (
        {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"n": 3}'}},
    )
    two = HERMES.parse(
        '<tool_call>{"name":"add","arguments":{"n":1}}</tool_call>'
        '<tool_call>{"name": "finish", "parameters": {}}</tool_call>'
    )
    assert ids_free(two.tool_calls) == [("add", {"n": 1}), ("finish", {})]
    assert [c["id"] for c in two.tool_calls] == ["call_0", "call_1"] and two.text == ""
    # Arguments written as a JSON text, or left out, are read too.
    assert ids_free(
        HERMES.parse(
            '<tool_call>{"name": "add", "arguments": "{\\"n\\": 2}"}</tool_call>'
        ).tool_calls
    ) == [("add", {"n": 2})]
    assert ids_free(HERMES.parse('<tool_call>{"name": "total"}</tool_call>').tool_calls) == [
        ("total", {})
    ]
    assert HERMES.parse("Action: move up") == type(two)("Action: move up")


@pytest.mark.parametrize(
    "reply",
    [
        '<tool_call>{"name": "add", "arguments": {"n": 3}}',  # opened, never closed
        '<tool_call>{"name": "add", "arguments": {"n": 3}</tool_call>',  # invalid JSON
        '<tool_call>{"name": "add", "arguments": [3]}</tool_call>',  # arguments not an object
        '<tool_call>{"arguments": {}}</tool_call>',  # no name
        '<tool_call>{"name": "add", "n": 3}</tool_call>',  # keys beside name and arguments
        '<tool_call>{"name": "add"}</tool_call> then <tool_call>{"name":',  # one good, one open
        "<tool_call></tool_call>",
    ],
)
def test_a_malformed_call_is_no_call_and_the_raw_text_is_kept(reply):
    parsed = HERMES.parse(reply)
    assert parsed.tool_calls is None and parsed.text == reply


def test_llama3_json_reads_one_or_several_calls():
    assert ids_free(LLAMA.parse('{"name": "add", "parameters": {"n": 3}}').tool_calls) == [
        ("add", {"n": 3})
    ]
    several = LLAMA.parse('<|python_tag|>{"name": "add", "parameters": {"n": 1}}; {"name": "f"}')
    assert ids_free(several.tool_calls) == [("add", {"n": 1}), ("f", {})]
    for text in ["I will add 3.", '{"name": "add", "parameters": {"n": 3}', '{"thought": "x"}']:
        assert LLAMA.parse(text).tool_calls is None and LLAMA.parse(text).text == text


def test_parser_is_picked_from_the_real_templates():
    assert parser_for_template(trl_template("qwen2_5")) is HERMES
    assert parser_for_template(trl_template("qwen3")) is HERMES
    assert parser_for_template(trl_template("llama3_1")) is LLAMA
    assert parser_for_template(trl_template("llama3_2")) is LLAMA
    assert parser_for_template(trl_template("phi3")) is None  # shows no tool convention
    assert parser_for_template(None) is None
    from palaestra.agents.tiny import CHAT_TEMPLATE

    assert parser_for_template(CHAT_TEMPLATE) is HERMES
    with pytest.raises(ValueError, match="hermes, llama3_json"):
        get_tool_parser("mistral")


def test_messages_for_templates_and_for_the_api():
    assistant, result = EPISODE[2], EPISODE[3]
    assert template_message(assistant) == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": {"n": 3}}}
        ],
    }
    assert openai_message(assistant) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [call("call_2", "add", {"n": 3})],
    }
    for convert in (template_message, openai_message):
        assert convert(result) == {
            "role": "tool",
            "content": '{"total": 3}',
            "tool_call_id": "call_2",
        }
        # A plain message is exactly what it always was: role and content.
        assert convert(EPISODE[1]) == {"role": "user", "content": "Target: 4. The total is 0."}
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"n": 3}'  # not mutated


def test_the_default_token_estimate_counts_tools_and_calls():
    class Plain(Policy):
        async def generate(self, conversations, **kwargs):
            return [[Completion("")] for _ in conversations]

    policy = Plain()
    chars = sum(len(m["content"]) for m in EPISODE[:2])
    assert policy.count_tokens(EPISODE[:2]) == chars // 3 + 8  # as before tools
    assert policy.count_tokens(EPISODE[:2], TOOLS) == (chars + len(json.dumps(TOOLS))) // 3 + 8
    assert policy.count_tokens(EPISODE[:3]) > policy.count_tokens(EPISODE[:2]) + 4


# -- real chat templates ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tool_tiny(tmp_path_factory) -> Path:
    """A tiny model whose tokenizer learnt Tally's tool text."""
    config = TinyConfig(
        env_ids=("toy/Tally-v0",), episodes_per_env=5, vocab_size=1024, context_length=512
    )
    return tiny_model_path(config, cache_dir=tmp_path_factory.getbasetemp() / "tool-models")


def policy_with_template(folder: Path, template: str | None = None) -> TransformersPolicy:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if template is not None:
        tokenizer.chat_template = template
    return TransformersPolicy(AutoModelForCausalLM.from_pretrained(folder), tokenizer)


def test_qwen_template_renders_tools_calls_and_results(tool_tiny):
    policy = policy_with_template(tool_tiny, trl_template("qwen2_5"))
    assert policy.tool_parser is HERMES
    text = policy.render(EPISODE[:4], TOOLS)
    assert text.startswith(f"<|im_start|>system\n{Tally.instruction}\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n" in text
    # The JSON-text arguments reached the template as an object (else tojson quotes them).
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "add", "arguments": {"n": 3}}\n' in text
    assert '<|im_start|>user\n<tool_response>\n{"total": 3}\n</tool_response><|im_end|>\n' in text
    assert text.endswith("<|im_start|>assistant\n")
    # What a Qwen model writes for a call is read back as the call it was rendered from.
    reply = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    assert ids_free(HERMES.parse(reply).tool_calls) == [("add", {"n": 3})]
    # Without tools the template's own plain rendering, as before.
    plain = policy.render(EPISODE[:2])
    assert "# Tools" not in plain and plain == policy.tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in EPISODE[:2]],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert policy.count_tokens(EPISODE[:2], TOOLS) > policy.count_tokens(EPISODE[:2])


def test_llama_template_call_round_trips_through_its_parser(tool_tiny):
    policy = policy_with_template(tool_tiny, trl_template("llama3_1"))
    assert policy.tool_parser is LLAMA
    text = policy.render(EPISODE[:4], TOOLS)
    assert '"parameters": dictionary of argument name and its value' in text
    reply = text.split("<|start_header_id|>assistant<|end_header_id|>\n\n")[1]
    reply = reply.split("<|eot_id|>")[0]
    assert ids_free(LLAMA.parse(reply).tool_calls) == [("add", {"n": 3})]


def test_a_template_without_tools_is_said_once_and_explicit_parsers_win(tool_tiny, caplog):
    policy = policy_with_template(tool_tiny, trl_template("phi3"))
    assert policy.tool_parser is HERMES  # no convention shown: Hermes, the common one
    with caplog.at_level("WARNING", logger="palaestra.agents.transformers_policy"):
        for _ in range(2):
            assert "Add a number" not in policy.render(EPISODE[:2], TOOLS)
    assert [r.getMessage() for r in caplog.records] == [
        f"the chat template of {policy.name} does not render tools: the model will not see them"
    ]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chosen = TransformersPolicy(
        AutoModelForCausalLM.from_pretrained(tool_tiny),
        AutoTokenizer.from_pretrained(tool_tiny),
        tool_parser="llama3_json",
    )
    assert chosen.tool_parser is LLAMA


def train(policy: TransformersPolicy, conversation: list[Message], tools) -> None:
    """Fit the policy's model to the assistant turns of ``conversation``, until it has them.

    With a template that marks them (``{% generation %}``) the loss is on every assistant
    turn; else on every token (the prompt's JSON helps the model learn the call's), until
    the last message, the tokens after the prompt of the others, is learnt.
    """
    import torch.nn.functional as F

    tokenizer, model = policy.tokenizer, policy.model
    messages = [template_message(m) for m in conversation]
    masked = "{%- generation %}" in (tokenizer.chat_template or "")
    encoded = tokenizer.apply_chat_template(
        messages,
        tools=tools,
        return_dict=True,
        return_tensors="pt",
        return_assistant_tokens_mask=masked,
    )
    ids = encoded["input_ids"]
    labels = ids.clone()
    if masked:
        labels = labels.masked_fill(encoded["assistant_masks"] == 0, -100)
        learnt = labels
    else:
        learnt = labels.clone()
        learnt[:, : policy.count_tokens(conversation[:-1], tools)] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(400):
            logits = model(input_ids=ids).logits[:, :-1]
            targets = learnt[:, 1:]
            wanted = targets != -100
            if (logits.argmax(-1)[wanted] == targets[wanted]).all():
                break  # greedy decoding writes every learnt token
            loss = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()


def test_transformers_policy_reads_a_qwen_style_call_the_model_writes(tool_tiny):
    """A model trained under the real Qwen 2.5 template writes its call; the policy reads it."""
    policy = policy_with_template(tool_tiny, trl_template("qwen2_5"))
    tools = TOOLS[:1]  # one tool keeps Qwen's long tool prompt within the tiny context
    train(policy, EPISODE[:3], tools)
    [[reply]] = asyncio.run(
        policy.generate(
            [EPISODE[:2]], temperature=0, max_tokens=40, stop=["<|im_end|>"], tools=[tools]
        )
    )
    assert reply.finish_reason == "tool_calls" and reply == ""
    assert ids_free(reply.tool_calls) == [("add", {"n": 3})]
    # The same conversation without tools: the raw text, no calls read.
    [[plain]] = asyncio.run(
        policy.generate([EPISODE[:2]], temperature=0, max_tokens=8, stop=["<|im_end|>"])
    )
    assert plain.tool_calls is None and plain.finish_reason != "tool_calls"


# -- the tiny model's own template -----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tool_tiny) -> TransformersPolicy:
    """The tiny model fitted to a whole Tally episode in its own template (three calls)."""
    policy = policy_with_template(tool_tiny)
    policy.name = "tiny-tools"
    train(policy, EPISODE, TOOLS)
    return policy


def test_tiny_template_renders_tools_compactly(tool_tiny):
    policy = policy_with_template(tool_tiny)
    text = policy.render(EPISODE[:4], TOOLS)
    functions = (
        "add(n: integer) Add a number (1 to 5) to the total.\n"
        "total() Read the total.\n"
        "finish() End the episode."
    )
    assert tools_text(TOOLS) == functions
    assert text == (
        f"<|bos|><|system|>{Tally.instruction}\n<tools>{functions}</tools><|end|>"
        "<|user|>Target: 4. The total is 0.<|end|>"
        '<|assistant|><tool_call>{"name":"add","arguments":{"n":3}}</tool_call><|end|>'
        '<|tool|>{"total": 3}<|end|><|assistant|>'
    )
    # Tools without a system message get a system turn of their own.
    assert policy.render(EPISODE[1:2], TOOLS).startswith("<|bos|><|system|><tools>add(")
    tokenizer = policy.tokenizer
    for marker in ("<tools>", "</tools>", "<tool_call>", "</tool_call>", "<|tool|>"):
        assert len(tokenizer(marker, add_special_tokens=False).input_ids) == 1
    # The call markers are not special: decoding that skips special tokens keeps them.
    ids = tokenizer('<tool_call>{"name":"add","arguments":{"n":3}}</tool_call>').input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True).startswith("<tool_call>{")
    # Trained on Tally's calls and tools, the tokenizer writes them in few tokens (the
    # tools took 53 tokens before the corpus held them as the template writes them).
    assert len(ids) <= 16
    assert len(tokenizer(functions, add_special_tokens=False).input_ids) <= 40


def test_tiny_template_writes_every_kind_of_parameter_as_tools_text(tool_tiny):
    """The Jinja template and :func:`tools_text` (which makes the corpus) agree."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "add_task",
                "description": "Add a task.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string"},
                        "due": {"type": "string", "description": "YYYY-MM-DD"},
                        "priority": {"type": "integer", "enum": [1, 2, 3]},
                        "label": {"enum": ["home", "work"]},
                        "note": {"type": ["string", "null"]},
                        "extra": {},
                    },
                    "required": ["title", "priority"],
                },
            },
        },
        {"type": "function", "function": {"name": "undo"}},
    ]
    expected = (
        "add_task(title: string, due?: string (YYYY-MM-DD), priority: 1|2|3, "
        'label?: "home"|"work", note?: string|null, extra?: any) Add a task.\nundo()'
    )
    assert tools_text(tools) == expected
    rendered = policy_with_template(tool_tiny).render([{"role": "user", "content": "x"}], tools)
    assert f"<tools>{expected}</tools>" in rendered


def test_tiny_assistant_mask_covers_the_calls():
    from transformers import AutoTokenizer

    path = tiny_model_path(TinyConfig(env_ids=(), episodes_per_env=0, context_length=256))
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoded = tokenizer.apply_chat_template(
        [template_message(m) for m in EPISODE],
        tools=TOOLS,
        return_assistant_tokens_mask=True,
        return_dict=True,
    )
    learnt = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(learnt) == (
        '<tool_call>{"name":"add","arguments":{"n":3}}</tool_call><|end|>'
        '<tool_call>{"name":"add","arguments":{"n":1}}</tool_call><|end|>'
        '<tool_call>{"name":"finish","arguments":{}}</tool_call><|end|>'
    )


def test_transformers_policy_returns_the_tiny_models_calls(trained):
    conversations = [EPISODE[:2], EPISODE[:4]]
    replies = asyncio.run(
        trained.generate(conversations, n=2, temperature=0, max_tokens=30, tools=[TOOLS, TOOLS])
    )
    for replies_of, expected in zip(replies, [("add", {"n": 3}), ("add", {"n": 1})], strict=True):
        for reply in replies_of:
            assert isinstance(reply, Completion) and reply == ""
            assert reply.finish_reason == "tool_calls"
            assert ids_free(reply.tool_calls) == [expected]
            assert reply.tool_calls[0]["id"] == "call_0"
    # Mixed batches: a conversation without tools is rendered and answered as before.
    [[with_tools], [without]] = asyncio.run(
        trained.generate(
            [EPISODE[:2], EPISODE[:2]], temperature=0, max_tokens=30, tools=[TOOLS, None]
        )
    )
    assert with_tools.tool_calls and without.tool_calls is None
    assert without.prompt_tokens == trained.count_tokens(EPISODE[:2]) < with_tools.prompt_tokens
    with pytest.raises(ValueError, match="tools has 1 entries for 2 conversations"):
        trained.generate_sync([EPISODE[:2]] * 2, tools=[TOOLS])


# -- serve-policy, with the official openai client --------------------------------------


@pytest.fixture(scope="module")
def served(trained) -> Iterator[str]:
    with serve_in_thread(create_policy_app(trained)) as url:
        yield url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def api(messages: list[Message]) -> list[dict[str, Any]]:
    return [openai_message(m) for m in messages]


def test_serve_policy_answers_tool_calls_to_the_openai_client(served):
    answer = client(served).chat.completions.create(
        model="tiny-tools", messages=api(EPISODE[:2]), tools=TOOLS, temperature=0, max_tokens=30
    )
    [choice] = answer.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [tool_call] = choice.message.tool_calls
    assert tool_call.type == "function" and tool_call.id.startswith("call_")
    assert len(tool_call.id) == len("call_") + 24
    assert tool_call.function.name == "add"
    assert json.loads(tool_call.function.arguments) == {"n": 3}
    # tool_choice "none": the model sees no tools, and no call is read.
    plain = client(served).chat.completions.create(
        model="tiny-tools",
        messages=api(EPISODE[:2]),
        tools=TOOLS,
        tool_choice="none",
        temperature=0,
        max_tokens=8,
    )
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].finish_reason != "tool_calls"
    assert plain.usage.prompt_tokens < answer.usage.prompt_tokens


def test_serve_policy_multi_turn_with_a_tool_result_round_trips(served):
    """The client sends back the call it got and the tool's result; the model calls again."""
    api_client = client(served)
    messages: list[Any] = api(EPISODE[:2])
    names = []
    for result in ['{"total": 3}', '{"total": 4}', None]:
        answer = api_client.chat.completions.create(
            model="tiny-tools", messages=messages, tools=TOOLS, temperature=0, max_tokens=30
        )
        message = answer.choices[0].message
        [tool_call] = message.tool_calls
        names.append((tool_call.function.name, json.loads(tool_call.function.arguments)))
        if result is not None:
            messages.append(message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
    assert names == [("add", {"n": 3}), ("add", {"n": 1}), ("finish", {})]


@pytest.mark.parametrize(
    "tool_choice",
    ["required", {"type": "function", "function": {"name": "add"}}, "sometimes"],
)
def test_serve_policy_refuses_tool_choices_it_cannot_honour(served, tool_choice):
    with pytest.raises(openai.BadRequestError, match="tool_choice") as caught:
        client(served).chat.completions.create(
            model="tiny-tools", messages=api(EPISODE[:2]), tools=TOOLS, tool_choice=tool_choice
        )
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "tool_choice"


def test_serve_policy_refuses_malformed_tools_and_results(served):
    for tools in ([{"type": "function"}], [{"type": "retrieval", "function": {"name": "x"}}]):
        with pytest.raises(openai.BadRequestError, match="tools"):
            client(served).chat.completions.create(
                model="tiny-tools", messages=api(EPISODE[:2]), tools=tools
            )
    orphan = [*api(EPISODE[:2]), {"role": "tool", "content": '{"total": 3}'}]
    with pytest.raises(openai.BadRequestError, match="tool_call_id") as caught:
        client(served).chat.completions.create(model="tiny-tools", messages=orphan, tools=TOOLS)
    assert caught.value.body["param"] == "messages.2.tool_call_id"


def test_serve_policy_cli_takes_a_tool_parser():
    done = run_cli("serve-policy", "tiny", "--tool-parser", "mistral", timeout=60)
    assert done.returncode == 2
    assert "--tool-parser: invalid choice: 'mistral'" in done.stderr
    assert "(choose from 'hermes', 'llama3_json')" in done.stderr


def test_openai_policy_speaks_tools_with_serve_policy(served):
    """The rollout path: OpenAIPolicy -> serve-policy -> TransformersPolicy and back."""
    policy = OpenAIPolicy(served)

    async def run() -> list[list[Completion]]:
        try:
            return await policy.generate(
                [EPISODE[:2], EPISODE[:4], EPISODE[:2]],
                temperature=0,
                max_tokens=30,
                tools=[TOOLS, TOOLS, None],
            )
        finally:
            await policy.aclose()

    [[first], [second], [plain]] = asyncio.run(run())
    assert first.finish_reason == second.finish_reason == "tool_calls"
    assert ids_free(first.tool_calls) == [("add", {"n": 3})]
    assert ids_free(second.tool_calls) == [("add", {"n": 1})]
    assert first.tool_calls[0]["id"].startswith("call_") and first == ""
    assert plain.tool_calls is None


# -- OpenAIPolicy's wire format, seen by a stub server ----------------------------------


@contextmanager
def stub(answer: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A server answering every chat request with ``answer``; yields its URL and the bodies."""
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        seen.append(await request.json())
        return JSONResponse(answer)

    with serve_in_thread(app) as url:
        yield url, seen


def answer_with(message: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
    }


def test_openai_policy_sends_tools_and_history_and_reads_calls():
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"n":2}'}},
        # Servers that send an object for the arguments, and no type, are read too.
        {"id": "call_b", "function": {"name": "total", "arguments": {}}},
    ]
    message = {"role": "assistant", "content": "Adding.", "tool_calls": calls}
    with stub(answer_with(message, "tool_calls")) as (url, seen):
        policy = OpenAIPolicy(url, "stub", context_length=100)
        [[reply]] = asyncio.run(policy.generate([EPISODE[:4]], temperature=0, tools=[TOOLS]))
    assert reply == "Adding." and reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (
        calls[0],
        {"id": "call_b", "type": "function", "function": {"name": "total", "arguments": "{}"}},
    )
    body = seen[0]
    assert body["tools"] == TOOLS
    assert body["messages"] == [
        {"role": "system", "content": Tally.instruction},
        {"role": "user", "content": "Target: 4. The total is 0."},
        {"role": "assistant", "content": None, "tool_calls": [call("call_2", "add", {"n": 3})]},
        {"role": "tool", "content": '{"total": 3}', "tool_call_id": "call_2"},
    ]


def test_openai_policy_without_tools_sends_what_it_always_sent():
    plain = {"role": "assistant", "content": "Action: move up"}
    with stub(answer_with(plain, "stop")) as (url, seen):
        policy = OpenAIPolicy(url, "stub", context_length=100)
        convs = [[{"role": "user", "content": "go", "loss": False}]] * 2
        [[a], [_]] = asyncio.run(policy.generate(convs, temperature=0, max_tokens=9))
        asyncio.run(policy.generate(convs[:1], temperature=0, max_tokens=9, tools=[None]))
    expected = {
        "model": "stub",
        "messages": [{"role": "user", "content": "go"}],
        "n": 1,
        "temperature": 0,
        "max_tokens": 9,
    }
    assert seen == [expected] * 3
    assert a.tool_calls is None and a.finish_reason == "stop"
    # A server that reports a tool call with finish_reason "stop" (some do) still counts it.
    stopped = answer_with({**plain, "tool_calls": [call("c", "add", {"n": 1})]}, "stop")
    with stub(stopped) as (url, _):
        [[reply]] = asyncio.run(
            OpenAIPolicy(url, "stub", context_length=100).generate(convs[:1], tools=[TOOLS])
        )
    assert reply.finish_reason == "tool_calls" and ids_free(reply.tool_calls) == [("add", {"n": 1})]
