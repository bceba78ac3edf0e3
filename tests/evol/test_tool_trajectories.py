"""Tool-call trajectories from rollout to training: prompts, storage round trips, the loss mask."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from cli_runner import run_cli
from tool_policies import TallyCaller
from toy_envs import Tally

from palaestra.agents.baselines import ExpertPolicy
from palaestra.agents.env_pool import LocalEnvs
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine
from palaestra.agents.trajectory import Trajectory
from palaestra.evol.data import (
    dataset_card,
    from_dataset,
    load_trajectories,
    read_parquet,
    save_trajectories,
    to_dataset,
    transcript,
    write_parquet,
)
from palaestra.evol.examples import IGNORE_INDEX, template_messages, turn_examples

TALLY = "toy/Tally-v0"


def rollout(policy, specs, fmt="tools", **config):
    async def go():
        engine = RolloutEngine(policy, LocalEnvs(), RolloutConfig(format=fmt, **config))
        return await engine.run(specs)

    return asyncio.run(go())


def no_loss(messages):
    return [{k: v for k, v in m.items() if k != "loss"} for m in messages]


# --- turn_examples reproduce the prompts -------------------------------------------


@pytest.mark.parametrize("history", [None, 0, 1, 2])
def test_turn_examples_are_the_prompts_the_engine_sent(history):
    policy = TallyCaller(garble_turn=1)  # one unreadable reply: a user error message too
    specs = [EpisodeSpec(TALLY, task, "test", seed=task) for task in (21, 24)]
    trajectories = rollout(policy, specs, history=history)
    sent = [prompt for prompt, _ in policy.seen]
    examples = []
    for t in trajectories:
        assert t.tools == list(Tally.tools)
        replies = [m for m in t.messages if m["role"] == "assistant"]
        if history is None:
            [whole] = turn_examples(t, None)
            assert whole == t.messages
            starts = [i for i, m in enumerate(t.messages) if m["role"] == "assistant"]
            examples += [no_loss(t.messages[:i]) for i in starts]
            continue
        made = turn_examples(t, history)
        assert len(made) == len(replies)
        for example, reply in zip(made, replies, strict=True):
            assert example[-1] == {k: v for k, v in reply.items()}  # the call included
            assert all(m["loss"] is False for m in example[:-1])
            examples.append(no_loss(example[:-1]))

    # Batched across episodes, the engine's prompts come in another order: compare as sets
    # of exact message lists, and count them.
    def key(prompt):
        return json.dumps(prompt, sort_keys=True)

    assert sorted(map(key, sent)) == sorted(map(key, examples))
    assert any(m["role"] == "tool" for prompt in sent for m in prompt) == (history != 0)


# --- storage round trips ------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed() -> list[Trajectory]:
    """Tool episodes (a model's, with an unreadable reply, and the expert's) and text ones."""
    tools = rollout(TallyCaller(garble_turn=0), [EpisodeSpec(TALLY, 21, "test")])
    expert_tools = rollout(ExpertPolicy(), [EpisodeSpec(TALLY, 3, "train")])
    text = rollout(ExpertPolicy(), [EpisodeSpec("toy/Counter-v0", 10, "test")], fmt="react")
    react_on_tools = rollout(ExpertPolicy(), [EpisodeSpec(TALLY, 4, "train")], fmt="react")
    return text + tools + expert_tools + react_on_tools


def test_mixed_trajectories_round_trip(mixed, tmp_path):
    assert any(t.tools for t in mixed) and any(t.tools is None for t in mixed)
    assert mixed[0].messages[1].keys() == {"role", "content", "loss"}
    jsonl = save_trajectories(mixed, tmp_path / "mixed.jsonl")
    assert load_trajectories(jsonl) == mixed
    dataset = to_dataset(mixed)
    assert from_dataset(dataset) == mixed
    parquet = write_parquet(mixed, tmp_path / "mixed.parquet")
    assert read_parquet(parquet) == mixed
    assert load_trajectories([jsonl, parquet]) == mixed + mixed
    # The whole chain, and the text episodes keep exactly their old keys.
    again = read_parquet(write_parquet(from_dataset(to_dataset(load_trajectories(jsonl))), parquet))
    assert again == mixed
    assert again[0].messages[1].keys() == {"role", "content", "loss"}


def test_the_dataset_schema_does_not_depend_on_the_rows(mixed):
    # Arrow infers a column of only nulls as null: text-only and tool datasets would not
    # concatenate. The messages column is typed explicitly.
    import datasets

    text_only, tools_only = to_dataset(mixed[:1]), to_dataset(mixed[1:3])
    assert text_only.features["messages"] == tools_only.features["messages"]
    call = tools_only.features["messages"].feature["tool_calls"].feature
    assert call["function"]["arguments"] == datasets.Value("string")  # JSON text, not a struct
    both = datasets.concatenate_datasets([text_only, tools_only])
    assert from_dataset(both) == mixed[:3]


def test_arguments_written_as_objects_are_stored_as_json_text():
    t = Trajectory(TALLY, 1, "train", 0, 0)
    t.messages = [
        {"role": "system", "content": "s", "loss": False},
        {"role": "user", "content": "u", "loss": False},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "add", "arguments": {"n": 1}},
                }
            ],
            "loss": True,
        },
    ]
    [back] = from_dataset(to_dataset([t]))
    assert back.messages[2]["tool_calls"][0]["function"]["arguments"] == '{"n": 1}'


def test_files_from_before_tools_still_read(tmp_path):
    old = {
        "env_id": "toy/Counter-v0",
        "task_id": 1,
        "split": "train",
        "sample": 0,
        "seed": 0,
        "messages": [{"role": "user", "content": "count 0", "loss": False}],
    }
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    [t] = load_trajectories(path)
    assert t.tools is None
    # An old Parquet file: no tools column, messages without the tool fields.
    import datasets

    legacy = tmp_path / "old.parquet"
    row = {**t.to_json(), "task_id": "1", "timings": "{}"}
    assert "tools" not in row
    datasets.Dataset.from_list([row]).to_parquet(str(legacy))
    assert read_parquet(legacy) == [t]


# --- the card shows tool messages -----------------------------------------------------


def test_transcript_and_card_show_the_calls(mixed):
    text = transcript(mixed[1])
    assert "tools given: add, total, finish" in text
    assert '-> add({"n": 4})  [call_1]' in text
    assert '[tool call_1] {"total":4}' in text
    assert "[assistant*] I would rather chat." in text  # the unreadable reply, as text
    card = {(row["env"], row["split"]): row for row in dataset_card(mixed)}
    assert card[(TALLY, "test")]["tool calls"] == 2
    assert card[("toy/Counter-v0", "test")]["tool calls"] == 0


def test_data_info_shows_tool_episodes(mixed, tmp_path):
    path = save_trajectories(mixed, tmp_path / "mixed.jsonl")
    result = run_cli("data", "info", str(path), "--show", "1")
    assert result.returncode == 0, result.stderr
    assert "tool calls" in result.stdout
    assert '-> add({"n": 4})  [call_1]' in result.stdout
    assert "[tool call_1]" in result.stdout
    assert result.stdout.count("== toy/Tally-v0") == 1  # one episode per env


# --- the loss mask ------------------------------------------------------------------

transformers = pytest.importorskip("transformers")

# A Hermes-style template over the tiny tokenizer's role tokens: tools in the system turn,
# calls as <tool_call>{...}</tool_call> after the content, results in their own turn.
TOOLS_TEMPLATE = (
    "{{- bos_token }}"
    "{%- set rest = messages %}"
    "{%- if tools %}"
    "{%- set system = '' %}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] + '\n' %}{%- set rest = messages[1:] %}"
    "{%- endif %}"
    "{{- '<|system|>' + system + '<tools>' }}"
    "{%- for tool in tools %}{{- tool['function'] | tojson }}{%- endfor %}"
    "{{- '</tools>' + eos_token }}"
    "{%- endif %}"
    "{%- for message in rest %}"
    "{{- '<|' + message['role'] + '|>' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{{- '<tool_call>{\"name\": ' + call['function']['name'] | tojson + ', \"arguments\": ' }}"
    "{{- call['function']['arguments'] | tojson + '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- eos_token }}{%- endgeneration %}"
    "{%- else %}{{- message['content'] + eos_token }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from palaestra.agents.models import resolve_model

    return transformers.AutoTokenizer.from_pretrained(resolve_model("tiny").path)


@pytest.fixture(scope="module", params=["generation marks", "prefixes"])
def tool_tokenizer(request, tokenizer):
    """The tiny tokenizer with a tools template, with and without ``{% generation %}``."""
    made = copy.deepcopy(tokenizer)
    made.chat_template = TOOLS_TEMPLATE
    if request.param == "prefixes":
        made.chat_template = TOOLS_TEMPLATE.replace("{%- generation %}", "").replace(
            "{%- endgeneration %}", ""
        )
    return made


def labelled_text(tokenizer, encoded):
    """The trained spans, decoded, and everything untrained, decoded."""
    spans, current, untrained = [], [], []
    for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True):
        if label == IGNORE_INDEX:
            if current:
                spans.append(tokenizer.decode(current))
            current = []
            untrained.append(token)
        else:
            assert label == token
            current.append(token)
    if current:
        spans.append(tokenizer.decode(current))
    return spans, tokenizer.decode(untrained)


def test_loss_is_on_the_assistant_calls_only(tool_tokenizer, mixed):
    from palaestra.evol.examples import tokenize_example

    t = mixed[1]  # garbled first reply (text), then add 4, finish; every reply trained
    [whole] = turn_examples(t, None)
    whole[2] = {**whole[2], "loss": False}  # the garbled reply: not trained
    encoded = tokenize_example(tool_tokenizer, whole, tools=t.tools)
    spans, rest = labelled_text(tool_tokenizer, encoded)
    assert spans == [
        '<tool_call>{"name": "add", "arguments": {"n": 4}}</tool_call><|end|>',
        '<tool_call>{"name": "finish", "arguments": {}}</tool_call><|end|>',
    ]
    # Everything else is prompt: the tools, the system and user turns, the tool result,
    # the untrained reply.
    assert '"name": "add", "description": "Add a number (1 to 5) to the total."' in rest
    assert '<|tool|>{"total":4}<|end|>' in rest
    assert "I would rather chat." in rest and "Target: 4. The total is 0." in rest
    # The ids are the chat template's rendering, arguments as a dict.
    rendered = tool_tokenizer.apply_chat_template(
        template_messages(whole), tools=t.tools, tokenize=True, return_dict=True
    )
    assert encoded["input_ids"] == rendered["input_ids"]


def test_windowed_tool_examples_train_one_call_each(tool_tokenizer, mixed):
    from palaestra.evol.examples import tokenize_example

    t = mixed[2]  # the expert on task 3: target 6, add 5, add 1, finish
    made = [tokenize_example(tool_tokenizer, e, tools=t.tools) for e in turn_examples(t, 1)]
    trained = [labelled_text(tool_tokenizer, e)[0] for e in made]
    assert trained == [
        ['<tool_call>{"name": "add", "arguments": {"n": 5}}</tool_call><|end|>'],
        ['<tool_call>{"name": "add", "arguments": {"n": 1}}</tool_call><|end|>'],
        ['<tool_call>{"name": "finish", "arguments": {}}</tool_call><|end|>'],
    ]


def test_template_messages_give_templates_dict_arguments(mixed):
    messages = template_messages(mixed[2].messages)
    assert all("loss" not in m for m in messages)
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"n": 5}
    assert mixed[2].messages[2]["tool_calls"][0]["function"]["arguments"] == '{"n": 5}'
    assert messages[3] == {"role": "tool", "content": '{"total":5}', "tool_call_id": "call_0"}


def test_build_examples_render_the_trajectory_tools(tokenizer, mixed):
    from palaestra.evol.sft import SFTConfig, build_examples

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = TOOLS_TEMPLATE
    examples, dropped = build_examples(mixed[2:3], plain, SFTConfig(history=1))
    assert dropped == 0 and len(examples) == 3
    assert all("<tools>" in plain.decode(e["input_ids"]) for e in examples)


def test_the_tiny_template_trains_the_calls(tokenizer, mixed):
    from palaestra.evol.examples import tokenize_example

    if "tool_calls" not in (tokenizer.chat_template or ""):
        pytest.skip("this tiny build's chat template renders no tools (tiny v1)")
    t = mixed[2]
    [whole] = turn_examples(t, None)
    spans, rest = labelled_text(tokenizer, tokenize_example(tokenizer, whole, tools=t.tools))
    assert len(spans) == 3
    for span, name in zip(spans, ("add", "add", "finish"), strict=True):
        assert f'"{name}"' in span and span.endswith("<|end|>")
    assert '{"total":5}' in rest and '{"total":5}' not in "".join(spans)


# --- AgentEvol end to end --------------------------------------------------------------


@pytest.mark.slow
def test_agentevol_with_tools_end_to_end(tokenizer, tmp_path, capsys):
    # ~40 s on 2 cores: BC on expert tool calls, evals, one round of exploration.
    if "tool_calls" not in (tokenizer.chat_template or ""):
        pytest.skip("this tiny build's chat template renders no tools (tiny v1)")
    from palaestra.cli import main
    from palaestra.evol.agentevol import AgentEvolConfig, run_agentevol
    from palaestra.evol.sft import SFTConfig

    out = tmp_path / "run"
    config = AgentEvolConfig(
        envs=(TALLY,),
        model="tiny",
        iterations=1,
        base_tasks=8,
        explore_tasks=4,
        samples=2,
        explore_temperature=1.0,
        min_score=1.0,
        sft=SFTConfig(max_steps=12, batch_size=8, learning_rate=3e-3, history=1),
        iteration_steps=4,
        eval_tasks=3,
        baselines=("random",),
        rollout=RolloutConfig(format="tools", max_tokens=24, history=1),
        concurrency=8,
    )
    result = run_agentevol(config, out, progress=False, log=lambda line: None)
    assert {"BC", "AgentEvol 1"} <= {row["policy"] for row in result.rows}
    base = load_trajectories(out / "base" / "data.jsonl")
    assert base and all(t.tools == list(Tally.tools) and t.success for t in base)
    explored = load_trajectories(out / "iter-1" / "explore" / "trajectories.jsonl")
    for t in explored:  # the model's replies: calls, or text with the format's error
        assert t.tools == list(Tally.tools)
        for reply, answer in zip(t.messages[2::2], t.messages[3::2], strict=False):
            assert reply["role"] == "assistant"
            assert answer["role"] == ("tool" if reply.get("tool_calls") else "user")
    # The dataset card of the run's data shows the tool messages.
    assert main(["data", "info", str(out / "base" / "data.jsonl"), "--show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "-> add(" in shown and "[tool call_0]" in shown and "tools given: add" in shown


def test_text_trajectories_are_written_as_before(mixed):
    # No "tools" key without tools: JSONL lines, and the SFT data digest that decides
    # whether a training run resumes, are those of files written before tools existed.
    text, tools = mixed[0], mixed[1]
    assert "tools" not in text.to_json()
    assert tools.to_json()["tools"] == list(Tally.tools)
    assert Trajectory.from_json(text.to_json()) == text
    assert Trajectory.from_json(tools.to_json()) == tools
