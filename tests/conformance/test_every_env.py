"""`palaestra check` on every registered env, in-process and over HTTP."""

import pytest

import palaestra
from palaestra.envs import list_envs
from palaestra.envs.checker import check

ENV_IDS = [info.id for info in list_envs() if info.unavailable is None]
UNAVAILABLE = {info.id: info.unavailable for info in list_envs() if info.unavailable is not None}


def test_the_builtin_envs_are_registered():
    assert {"palaestra/Maze-v0", "palaestra/Wordle-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_passes_the_contract(env_id, serve):
    with serve([env_id]) as url:
        results = check(env_id, episodes=3, remote=lambda: palaestra.make(env_id, base_url=url))
    failures = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failures, "\n".join(failures)
    assert any(r.name == "same episodes over HTTP" and "identical" in r.detail for r in results)
