"""What tools cost a local policy: prompt tokens and calls/s, with vs without ``tools=``.

Two tool sets: ``toy/Tally-v0``'s three tools (tests/toy_envs.py) and eight tools of
a to-do list API (the size of the tool-use envs). Two tiny models: the default
(its tokenizer trained on Maze/Wordle/BabyAI text only) and one whose corpus holds
Tally (its tools and calls, as the tiny template writes them). Columns:

- prompt tokens of a first turn (system instruction + first observation), without
  tools and with them (the tiny template puts them in the system turn);
- calls/s of ``TransformersPolicy.generate`` (a batch of ``--batch`` such
  conversations, ``--max-tokens`` greedy tokens each), and of the same call through
  ``serve-policy`` by ``OpenAIPolicy`` (HTTP on loopback, the server in a thread);
- parse: microseconds to read the calls out of one Hermes reply.

    python bench/tool_overhead.py [--batch 8] [--max-tokens 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from toy_envs import Tally  # registers toy/Tally-v0

from palaestra.agents.openai_policy import OpenAIPolicy
from palaestra.agents.policy_server import create_policy_app
from palaestra.agents.tiny import TinyConfig, tiny_model_path
from palaestra.agents.tool_parsers import TOOL_PARSERS
from palaestra.agents.transformers_policy import TransformersPolicy
from palaestra.servers import serve_in_thread
from palaestra.tables import format_table


def function(name: str, description: str, properties: dict[str, Any], required=()) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(required),
                "additionalProperties": False,
            },
        },
    }


ID = {"type": "integer", "description": "The task's id."}
TODO_TOOLS = [
    function("list_projects", "List the projects with their ids and names.", {}),
    function(
        "list_tasks",
        "List the tasks of a project.",
        {"project": {"type": "string", "description": "The project's name."}},
        ["project"],
    ),
    function("get_task", "Show one task: title, due date, labels, status.", {"id": ID}, ["id"]),
    function(
        "add_task",
        "Add a task to a project.",
        {
            "project": {"type": "string"},
            "title": {"type": "string"},
            "due": {"type": "string", "description": "YYYY-MM-DD"},
        },
        ["project", "title"],
    ),
    function(
        "set_due",
        "Change a task's due date.",
        {"id": ID, "due": {"type": "string", "description": "YYYY-MM-DD"}},
        ["id", "due"],
    ),
    function(
        "add_label", "Put a label on a task.", {"id": ID, "label": {"type": "string"}}, ["id"]
    ),
    function("complete_task", "Mark a task done.", {"id": ID}, ["id"]),
    function("finish", "End the episode when the list is as asked.", {}),
]

TOOL_SETS = {
    "toy/Tally-v0 (3 tools)": (
        [dict(t) for t in Tally.tools],
        Tally.instruction,
        "Target: 4. The total is 0.",
    ),
    "to-do API (8 tools)": (
        TODO_TOOLS,
        "Bring the to-do list to the state asked for, then call finish.",
        "Move every task labelled 'urgent' in project Garden to 2026-05-01.",
    ),
}


def calls_per_second(run: Callable[[], object], repeats: int) -> float:
    run()  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return repeats / (time.perf_counter() - started)


def rates(
    policy: TransformersPolicy,
    remote: OpenAIPolicy,
    batch: list[list[dict[str, str]]],
    tools: list[dict[str, Any]],
    options: dict[str, Any],
    repeats: int,
) -> list[str]:
    """Calls/s locally without and with tools, then through serve-policy without and with."""
    out = []
    for given in (None, [tools] * len(batch)):
        rate = calls_per_second(
            lambda given=given: policy.generate_sync(batch, tools=given, **options), repeats
        )
        out.append(f"{rate:.1f}")
    for given in (None, [tools] * len(batch)):
        out.append(f"{asyncio.run(remote_rate(remote, batch, given, options, repeats)):.1f}")
    return out


async def remote_rate(
    remote: OpenAIPolicy, batch: list[Any], given: Any, options: dict[str, Any], repeats: int
) -> float:
    """Calls/s of ``remote.generate`` in one event loop (its connections closed after)."""
    try:
        await remote.generate(batch, tools=given, **options)  # warm up
        started = time.perf_counter()
        for _ in range(repeats):
            await remote.generate(batch, tools=given, **options)
        return repeats / (time.perf_counter() - started)
    finally:
        await remote.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="palaestra-bench-"))
    models = {
        "tiny (default corpus)": tiny_model_path(),
        "tiny (+Tally corpus)": tiny_model_path(
            TinyConfig(env_ids=(*TinyConfig().env_ids, "toy/Tally-v0")), cache_dir=cache
        ),
    }
    rows = []
    for model_name, folder in models.items():
        policy = TransformersPolicy(folder, threads=args.threads, name="tiny")
        with serve_in_thread(create_policy_app(policy)) as url:
            remote = OpenAIPolicy(url)
            for set_name, (tools, instruction, observation) in TOOL_SETS.items():
                conversation = [
                    {"role": "system", "content": instruction},
                    {"role": "user", "content": observation},
                ]
                batch = [conversation] * args.batch
                options = {"temperature": 0, "max_tokens": args.max_tokens}
                row: list[object] = [model_name, set_name]
                row += [policy.count_tokens(conversation), policy.count_tokens(conversation, tools)]
                row += rates(policy, remote, batch, tools, options, args.repeats)
                rows.append(row)
                print(row, flush=True)
    reply = '<tool_call>{"name":"add_task","arguments":{"project":"Garden","title":"Seeds"}}'
    reply += "</tool_call>"
    parser_ = TOOL_PARSERS["hermes"]
    started = time.perf_counter()
    for _ in range(10_000):
        parser_.parse(reply)
    parse_us = (time.perf_counter() - started) / 10_000 * 1e6
    headers = ["model", "tools", "prompt tok", "+tools tok"]
    headers += ["local calls/s", "+tools", "serve-policy calls/s", "+tools"]
    print()
    print(
        f"batch of {args.batch} first turns, {args.max_tokens} greedy tokens each, "
        f"{args.threads} torch thread(s); Hermes parse: {parse_us:.1f} us per reply"
    )
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
