"""The README's tool env is tested code: pasted as a reader does, it passes `palaestra check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import palaestra
from palaestra.envs import tool_call_action
from palaestra.envs.checker import check

ROOT = Path(__file__).parents[1]


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Tool envs and native function calling")
    return text[start : text.index("\n## ", start)]


@pytest.fixture(scope="module")
def piggy() -> type:
    (code,) = re.findall(r"^```python\n(.*?)^```", section(), re.DOTALL | re.MULTILINE)
    namespace: dict = {}
    exec(code, namespace)  # the README block, as a reader pastes it
    palaestra.register("readme/Piggy-v0", namespace["Piggy"])
    return namespace["Piggy"]


def test_the_readme_tool_env_passes_the_checker_in_process_and_over_http(piggy, serve):
    with serve(["readme/Piggy-v0"]) as url:
        results = check(
            "readme/Piggy-v0", remote=lambda: palaestra.make("readme/Piggy-v0", base_url=url)
        )
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


def test_the_readme_says_what_its_env_does(piggy):
    env = piggy()
    assert env.reset(options={"task_id": 4})[0] == "Save 7 coins."
    observation, *_ = env.step(tool_call_action("put", {"coins": 5}))
    assert observation == '{"saved":5}'
    assert tool_call_action("put", {"coins": 5}) == '{"arguments":{"coins":5},"name":"put"}'
    assert '{"arguments":{"coins":5},"name":"put"}' in section()
    *_, info = env.step(tool_call_action("close"))
    assert info["success"] is False and info["score"] == 0.5  # one of two sub-goals
    env.reset(options={"task_id": 4})
    observation, *_, info = env.step(tool_call_action("put", {"coins": 3}))
    assert info["invalid_action"] and "3 is not one of [1, 2, 5]" in observation
    assert env.world["saved"] == 0


def test_the_readme_piggy_signature_is_what_the_tiny_template_shows(piggy):
    from palaestra.agents.tiny import tools_text

    assert "put(coins: 1|2|5) Put 1, 2 or 5 coins in." in tools_text(piggy.tools)
