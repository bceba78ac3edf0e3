"""palaestra/SciWorld-v0: task table, scoring, expert, determinism, and the JVM pool.

JVM tests share one module-scoped pool (2 JVMs x 4 games); the failure tests
use pools of their own so that killing a JVM touches nothing else.
"""

import asyncio
import gc
import os
import signal
import string
import threading
import time
from pathlib import Path

import gymnasium
import httpx
import numpy as np
import pytest

import palaestra.envs
from palaestra.envs.checker import check
from palaestra.envs.core import CHARSET
from palaestra.envs.sciworld import (
    SPLITS,
    TASK_NAMES,
    JvmDiedError,
    JvmPool,
    PoolExhaustedError,
    PoolSettings,
    SciWorldEnv,
    task_id_of,
    task_of,
)
from palaestra.envs.sciworld import env as sciworld_env
from palaestra.envs.sciworld import pool as pool_module
from palaestra.envs.sciworld._table import TABLE
from palaestra.envs.sciworld.env import fold_waiting
from palaestra.envs.sciworld.make_table import live_table, render, runs
from palaestra.errors import (
    EnvError,
    EnvFailedError,
    EnvUnavailableError,
    SessionConflictError,
)

ENV_ID = "palaestra/SciWorld-v0"
FIND_ANIMAL = task_id_of("find-animal", 3)  # train; animals wander: random draws each tick
FIND_PLANT = task_id_of("find-plant", 230)  # test
BOIL = task_id_of("boil", 0)

needs_java = pytest.mark.skipif(
    SciWorldEnv.unavailable_reason() is not None, reason=str(SciWorldEnv.unavailable_reason())
)


@pytest.fixture(scope="module")
def pool():
    shared = JvmPool(PoolSettings(max_jvms=2, games_per_jvm=4))
    yield shared
    shared.shutdown()


@pytest.fixture
def env(pool):
    made = SciWorldEnv(pool=pool)
    yield made
    made.close()


def play_expert(env, task_id, limit=None):
    """Reset to ``task_id`` and follow the expert; the transcript (first obs, then steps)."""
    observation, _ = env.reset(options={"task_id": task_id})
    record = [observation]
    while limit is None or len(record) <= limit:
        step = env.step(env.expert_action())
        record.append(step)
        if step[2] or step[3]:
            break
    return record


# -- no JVM needed ------------------------------------------------------------------------


def test_registered_with_splits_from_the_shipped_table():
    assert palaestra.envs.env_class(ENV_ID) is SciWorldEnv
    assert {k: len(v) for k, v in SciWorldEnv.splits.items()} == {
        "train": 3592,
        "dev": 1796,
        "test": 1819,
    }
    assert SciWorldEnv.splits["train"] == range(0, 3592)
    assert len(TASK_NAMES) == 30 and TASK_NAMES[0] == "boil"
    assert SciWorldEnv.capabilities() == {"expert", "random_action"}
    for split, ids in SPLITS.items():
        for task_id in (ids[0], ids[len(ids) // 2], ids[-1]):
            task = task_of(task_id)
            assert task.split == split
            assert task_id_of(task.name, task.variation) == task_id
    assert task_of(0).name == "boil" and task_of(0).variation == 0
    assert task_of(FIND_PLANT).split == "test"
    with pytest.raises(KeyError):
        task_of(len(SPLITS["test"]) + SPLITS["test"][-1])
    with pytest.raises(KeyError):
        task_id_of("boil", 10_000)


def test_table_renders_stably():
    assert runs([3, 0, 1, 2, 7]) == ((0, 4), (7, 8))
    source = render(list(TABLE), "x")
    scope: dict = {}
    exec(compile(source, "_table.py", "exec"), scope)
    assert scope["TABLE"] == TABLE
    assert all(len(line) <= 100 for line in source.splitlines())


def test_pool_settings_from_environment():
    assert PoolSettings.from_env({}) == PoolSettings()
    settings = PoolSettings.from_env(
        {
            "PALAESTRA_SCIWORLD_JVMS": "3",
            "PALAESTRA_SCIWORLD_GAMES": "5",
            "PALAESTRA_SCIWORLD_HEAP": "1g",
            "PALAESTRA_SCIWORLD_WAIT": "2.5",
        }
    )
    assert (settings.max_jvms, settings.games_per_jvm, settings.heap, settings.wait) == (
        3,
        5,
        "1g",
        2.5,
    )
    assert settings.memory_budget == 3 * (2**30 + pool_module.NON_HEAP_BUDGET)
    assert "-Xmx1g" in settings.java_options()
    for bad in ({"PALAESTRA_SCIWORLD_JVMS": "two"}, {"PALAESTRA_SCIWORLD_HEAP": "lots"}):
        with pytest.raises(ValueError, match="PALAESTRA_SCIWORLD"):
            PoolSettings.from_env(bad)
    with pytest.raises(ValueError):
        PoolSettings(max_jvms=0)


def test_unavailable_without_java(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = SciWorldEnv.unavailable_reason()
    assert reason is not None and "java" in reason and "openjdk-17-jre-headless" in reason
    with pytest.raises(EnvUnavailableError, match="java"):
        SciWorldEnv()


# -- one shared pool ----------------------------------------------------------------------


@needs_java
def test_table_matches_a_live_jvm(pool):
    game = pool.acquire()
    try:
        assert [tuple(row) for row in game.run(live_table)] == list(TABLE)
    finally:
        pool.release(game)


@needs_java
def test_expert_solves_a_train_and_a_test_task(env):
    for task_id in (FIND_ANIMAL, FIND_PLANT):
        record = play_expert(env, task_id)
        first = record[0]
        assert first.startswith("Your task is to find a(n) ")
        assert "This " in first and "You also see:" in first
        *_, (observation, _, terminated, truncated, info) = record
        assert terminated and not truncated, observation
        assert info["success"] is True and info["score"] == 1.0
        assert sum(step[1] for step in record[1:]) == pytest.approx(1.0)
        assert all(set(step[0]) <= set(CHARSET) for step in record[1:])


@needs_java
def test_the_score_a_task_starts_with_is_no_reward_of_an_invalid_first_action(env):
    # mendelian-genetics-unknown-plant starts at 10 points: a first action, even an
    # invalid one, used to earn them (the checker's invalid-action check saw it).
    task = task_id_of("mendelian-genetics-unknown-plant", 106)
    env.reset(seed=1, options={"task_id": task})
    _, reward, terminated, _, info = env.step("")
    assert info["invalid_action"] and not terminated
    assert reward == 0.0


@needs_java
def test_failure_scores_zero_and_junk_changes_nothing(env):
    observation, info = env.reset(options={"task_id": BOIL})
    assert observation.startswith("Your task is to boil water.")
    assert info == {"task_id": BOIL, "step": 0}
    for junk in ("dance wildly", "", "\x00\t☃ ünïcödé", "x" * 300):
        text, reward, terminated, truncated, info = env.step(junk)
        assert text == "No known action matches that input."
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert info["invalid_action"] is True
    assert env.step("look\n  around")[0].startswith("This room is called the hallway.")
    text, reward, terminated, _, info = env.step("focus on agent")
    assert terminated and info["success"] is False and info["score"] == 0.0
    assert reward == 0.0  # the score went to -100: clamped, the rewards sum to 0


@needs_java
@pytest.mark.parametrize(
    ("action", "invalid"),
    [
        ("", True),
        ("xyzzy-not-an-action 12345", True),
        ("look at unicorn", True),
        ("look around", False),
        ("go to kitchen", False),  # "The door is not open.": parsed, and blocked
    ],
)
def test_invalid_action_flag(env, action, invalid):
    env.reset(options={"task_id": BOIL})
    assert env.step(action)[4]["invalid_action"] is invalid


@needs_java
def test_an_ambiguous_command_waits_for_an_option_number(env):
    env.reset(options={"task_id": BOIL})
    text, *_, info = env.step("look at door")
    assert text.startswith("Ambiguous request: Please enter the number")
    assert info["invalid_action"] is False
    options = text.count(":\t")
    assert options > 1
    drawn = {env.random_action(np.random.default_rng(seed)) for seed in range(40)}
    assert drawn == {str(n) for n in range(options)}
    text, *_, info = env.step("look around")  # not a number: refused
    assert text.startswith("Unknown action.") and info["invalid_action"] is True
    env.step("look at door")
    text, *_, info = env.step("1")
    assert text.startswith("A door to") and info["invalid_action"] is False
    assert env.random_action(np.random.default_rng(0)) != "0"  # no question pending


@needs_java
def test_random_action_is_valid_repeatable_and_leaves_the_env_alone(env):
    env.reset(options={"task_id": FIND_ANIMAL})
    actions = []
    for seed in range(15):
        state = env.np_random.bit_generator.state
        action = env.random_action(np.random.default_rng(seed))
        assert env.np_random.bit_generator.state == state
        assert action == env.random_action(np.random.default_rng(seed))
        actions.append(action)
        text, *_, terminated, truncated, info = env.step(action)
        assert info["invalid_action"] is False, (action, text)
        if terminated or truncated:
            break
    # Drawing queries the simulator but changes nothing in it: the same commands
    # without the draws give the same episode (animals wander: random draws each tick).
    env.reset(options={"task_id": FIND_ANIMAL})
    with_draws = []
    for action in actions:
        env.random_action(np.random.default_rng(99))
        with_draws.append(env.step(action))
    env.reset(options={"task_id": FIND_ANIMAL})
    assert [env.step(action) for action in actions] == with_draws


def test_nth_command_numbers_every_filling_of_every_template():
    templates, objects = ["look around", "open OBJ", "connect OBJ to OBJ"], ["a", "b", "c"]
    commands = [sciworld_env._nth_command(templates, objects, i) for i in range(1 + 3 + 9)]
    assert commands[:4] == ["look around", "open a", "open b", "open c"]
    assert commands[4:7] == ["connect a to a", "connect a to b", "connect a to c"]
    assert commands[-1] == "connect c to c" and len(set(commands)) == 13
    with pytest.raises(IndexError):
        sciworld_env._nth_command(templates, objects, 13)


@needs_java
def test_expert_skips_off_path_commands(env):
    env.reset(options={"task_id": FIND_ANIMAL})
    first = env.expert_action()
    env.step("dance wildly")
    assert env.expert_action() == first
    env.step(first)
    assert env.expert_action() != first or env.over


@needs_java
def test_same_task_same_episode_across_jvms_and_interleaved_games(pool):
    # a and b share a JVM and step in turns; c runs alone on the other JVM. Each
    # game must see the random stream it would see alone (animals wander).
    envs = [SciWorldEnv(pool=pool) for _ in range(3)]
    try:
        by_jvm: dict = {}
        for made in envs:
            by_jvm.setdefault(made.game.jvm, []).append(made)
        (a, b), (c,) = sorted(by_jvm.values(), key=len, reverse=True)
        firsts = [made.reset(options={"task_id": FIND_ANIMAL})[0] for made in (a, b, c)]
        gold = [a.expert_action()]
        commands = [*gold, "look around", "wait1", "wait1", "wait", "look around"]
        records: dict = {a: [], b: [], c: []}
        for command in commands:
            for made in (a, b):
                records[made].append(made.step(command))
        for command in commands:
            records[c].append(c.step(command))
        assert firsts[0] == firsts[1] == firsts[2]
        assert records[a] == records[b] == records[c]
        # The same again on a JVM that has run other things since.
        a.reset(options={"task_id": BOIL})
        a.step("open door to kitchen")
        a.reset(options={"task_id": FIND_ANIMAL})
        assert [a.step(command) for command in commands] == records[c]
    finally:
        for made in envs:
            made.close()


@needs_java
def test_several_games_per_jvm_and_slots_are_reused(pool):
    envs = [SciWorldEnv(pool=pool) for _ in range(8)]
    started = pool.started
    try:
        games = sorted(j["games"] for j in pool.stats()["jvms"])
        assert games == [4, 4]  # 2 JVMs x 4 games: the pool is full
        for made, task_id in zip(envs, (FIND_ANIMAL, FIND_PLANT) * 4, strict=True):
            made.reset(options={"task_id": task_id})
            assert made.step("look around")[0].startswith("This ")
    finally:
        for made in envs:
            made.close()
    assert sorted(j["games"] for j in pool.stats()["jvms"]) == [0, 0]
    again = SciWorldEnv(pool=pool)  # a freed slot, on a running JVM
    again.close()
    assert pool.started == started <= 2


# -- pools of their own -------------------------------------------------------------------


@needs_java
def test_full_pool_waits_then_raises_and_gc_frees_a_slot():
    small = JvmPool(PoolSettings(max_jvms=1, games_per_jvm=1, wait=0.5))
    try:
        held = SciWorldEnv(pool=small)
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError, match="1 JVMs x 1 games"):
            SciWorldEnv(pool=small)
        assert 0.4 < time.monotonic() - started < 5
        del held
        gc.collect()
        reused = SciWorldEnv(pool=small)  # the collected env's slot
        reused.reset(options={"task_id": FIND_PLANT})
        reused.close()
        assert small.started == 1
    finally:
        small.shutdown()


@needs_java
def test_killed_jvm_fails_its_envs_fast_and_is_replaced():
    own = JvmPool(PoolSettings(max_jvms=2, games_per_jvm=2, wait=30))
    try:
        first = SciWorldEnv(pool=own)
        first.reset(options={"task_id": BOIL})
        # Starting the second JVM does not hold up the running one.
        made: list = []
        starter = threading.Thread(target=lambda: made.append(SciWorldEnv(pool=own)))
        starter.start()
        steps_meanwhile = 0
        while starter.is_alive():
            if first.over:
                first.reset(options={"task_id": BOIL})
            first.step("look around")
            steps_meanwhile += 1
        starter.join()
        assert steps_meanwhile >= 3
        # On a loaded machine the loop can end on the episode's last step; the
        # step below must meet a dead JVM, not a finished episode.
        first.reset(options={"task_id": BOIL})
        second, third = made[0], SciWorldEnv(pool=own)
        assert second.game.jvm is not first.game.jvm and third.game.jvm is first.game.jvm
        victim = first.game.jvm
        genetics = task_of(task_id_of("mendelian-genetics-known-plant", 0))
        for each, task_id in ((second, FIND_PLANT), (third, genetics.task_id)):
            each.reset(options={"task_id": task_id})

        # Kill the JVM during a long call: generating this gold path takes ~7 s.
        sciworld_env._GOLD.pop((genetics.name, genetics.variation), None)
        errors: list = []

        def long_call() -> None:
            try:
                third.expert_action()
            except Exception as error:
                errors.append((error, time.monotonic()))

        caller = threading.Thread(target=long_call)
        caller.start()
        time.sleep(0.5)
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        caller.join(timeout=10)
        assert not caller.is_alive()
        assert errors and isinstance(errors[0][0], JvmDiedError)
        assert errors[0][1] - killed_at < 5
        started = time.monotonic()
        with pytest.raises(JvmDiedError, match="reset the env"):
            first.step("look around")
        assert time.monotonic() - started < 3
        with pytest.raises(JvmDiedError):
            third.step("look around")
        # The other JVM goes on.
        assert second.step("look around")[0].startswith("This ")
        # A new env gets a working JVM; so does a reset of a failed one.
        fresh = SciWorldEnv(pool=own)
        assert fresh.game.jvm.alive() and fresh.game.jvm.pid != victim.pid
        assert fresh.reset(options={"task_id": FIND_PLANT})[0].startswith("Your task")
        first.reset(options={"task_id": BOIL})
        assert first.game.jvm.alive() and first.step("look around")[0].startswith("This ")
        assert own.started == 3 and victim not in own.jvms
    finally:
        own.shutdown()


@needs_java
def test_pool_shutdown_stops_the_jvms():
    own = JvmPool(PoolSettings(max_jvms=1, games_per_jvm=1))
    env = SciWorldEnv(pool=own)
    pid = env.game.jvm.pid
    own.shutdown()
    assert not Path(f"/proc/{pid}").exists() or "java" not in _comm(pid)
    with pytest.raises(EnvError, match="shut down"):
        env.reset(options={"task_id": BOIL})  # its JVM is gone, and the pool starts no other


# -- the contract, and a real server -------------------------------------------------------


@needs_java
def test_gymnasium_make_and_check_env(pool):
    from gymnasium.utils.env_checker import check_env

    made = gymnasium.make(ENV_ID, pool=pool).unwrapped
    assert isinstance(made, SciWorldEnv)
    check_env(made, skip_render_check=True)
    made.close()


@needs_java
@pytest.mark.slow
def test_checker_passes():
    results = check(ENV_ID, episodes=2)
    failures = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failures, "\n".join(failures)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _java_children(pid: int) -> list[int]:
    """The java processes whose parent is ``pid`` (a psutil-free walk of /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm == "java":
            children.append(int(entry.name))
    return children


@needs_java
def test_server_with_8_sessions_stays_in_budget_and_survives_a_killed_jvm(monkeypatch):
    from palaestra.servers import AsyncEnvClient, Settings, create_app, serve_in_thread

    settings = PoolSettings(max_jvms=2, games_per_jvm=4, heap="512m")
    server_pool = JvmPool(settings)
    monkeypatch.setattr(pool_module, "_default", server_pool)
    monkeypatch.setattr(pool_module, "_default_pid", os.getpid())
    me = os.getpid()
    # JVMs of other pools (earlier tests in this process) are not this pool's business.
    others = set(_java_children(me))
    baseline = _rss(me) + sum(_rss(pid) for pid in others)
    peaks = {"java": 0, "total": 0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            java = sum(_rss(pid) for pid in set(_java_children(me)) - others)
            peaks["java"] = max(peaks["java"], java)
            peaks["total"] = max(peaks["total"], java + _rss(me) + sum(map(_rss, others)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tasks = [task_id_of(name, 5) for name in TASK_NAMES if name.startswith(("find", "lifespan"))]
    tasks = (tasks * 2)[:8]
    app = create_app([ENV_ID], Settings(step_timeout=60, threads=16))

    async def run(url: str) -> None:
        async with AsyncEnvClient(url) as client:
            sessions = await asyncio.gather(*(client.create(ENV_ID, task_id=t) for t in tasks))

            async def play(session, steps: int) -> None:
                for _ in range(steps):
                    step = await session.step(await session.expert_action())
                    if step.terminated or step.truncated:
                        await session.reset(task_id=session.info["task_id"])

            await asyncio.gather(*(play(s, 4) for s in sessions))
            assert sorted(j["games"] for j in server_pool.stats()["jvms"]) == [4, 4]

            store = app.state.store
            victim = store.sessions[sessions[0].id].env.game.jvm
            on_victim = {s.id for s in sessions if store.sessions[s.id].env.game.jvm is victim}
            assert len(on_victim) == 4
            os.kill(victim.pid, signal.SIGKILL)
            started = time.monotonic()
            for session in sessions:
                if session.id in on_victim:
                    with pytest.raises(EnvFailedError, match="JvmDiedError"):
                        await session.step("look around")
                    with pytest.raises(SessionConflictError, match="broken"):
                        await session.step("look around")
                else:
                    step = await session.step("look around")
                    assert step.observation.startswith("This ")
            assert time.monotonic() - started < 10
            # A reset builds a fresh env, on a fresh JVM.
            broken = next(s for s in sessions if s.id in on_victim)
            observation, _ = await broken.reset(task_id=FIND_PLANT)
            assert observation.startswith("Your task")
            assert store.sessions[broken.id].env.game.jvm.pid != victim.pid
            await asyncio.gather(*(s.close() for s in sessions))

    try:
        with serve_in_thread(app) as url:
            asyncio.run(run(url))
    finally:
        sampling.set()
        sampler.join()
        server_pool.shutdown()
    # The JVMs stay within the pool's budget; Python adds its own few hundred MB.
    assert 0 < peaks["java"] <= settings.memory_budget, peaks
    assert peaks["total"] <= baseline + settings.memory_budget + 256 * 2**20, (peaks, baseline)
    assert server_pool.started == 3


def test_capacity_is_the_pools_game_slots(monkeypatch):
    monkeypatch.setattr(pool_module, "_default", None)
    monkeypatch.setenv(pool_module.ENV_JVMS, "3")
    monkeypatch.setenv(pool_module.ENV_GAMES, "5")
    assert SciWorldEnv.capacity == 15
    small = JvmPool(PoolSettings(max_jvms=1, games_per_jvm=2))
    monkeypatch.setattr(pool_module, "_default", small)
    monkeypatch.setattr(pool_module, "_default_pid", os.getpid())
    assert SciWorldEnv.capacity == 2  # the pool made wins over the variables


@needs_java
def test_more_episodes_than_game_slots_over_http_lose_nothing(monkeypatch):
    """A full pool is backpressure: with 2 slots, 6 concurrent episodes all finish.

    Before, a 32-episode eval against the default 16 slots finished 16 and lost 16
    to "CapacityError: [429] ... all 16 ScienceWorld game slots ... stayed taken".
    """
    from palaestra.agents.baselines import RandomPolicy
    from palaestra.agents.env_pool import RemoteEnvs
    from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine
    from palaestra.servers import AsyncEnvClient, Settings, create_app, serve_in_thread

    server_pool = JvmPool(PoolSettings(max_jvms=1, games_per_jvm=2, wait=2))
    monkeypatch.setattr(pool_module, "_default", server_pool)
    monkeypatch.setattr(pool_module, "_default_pid", os.getpid())
    app = create_app([ENV_ID], Settings(step_timeout=60))
    tasks = [FIND_ANIMAL, FIND_PLANT, BOIL] * 2
    specs = [EpisodeSpec(ENV_ID, task_id=t, split="train", seed=i) for i, t in enumerate(tasks)]

    async def engine_run(url: str):
        envs = RemoteEnvs([url])
        try:
            engine = RolloutEngine(
                RandomPolicy(), envs, RolloutConfig(max_turns=3), concurrency=len(specs)
            )
            return await engine.run(specs), engine.stats
        finally:
            await envs.aclose()

    async def clients_run(url: str) -> None:
        # Without the engine's gate: the 429s are waited out by the client.
        async with AsyncEnvClient(url) as client:

            async def one(task_id: int) -> None:
                session = await client.create(ENV_ID, task_id=task_id)
                await session.step("look around")
                await session.close()

            await asyncio.gather(*(one(t) for t in tasks))

    try:
        with serve_in_thread(app) as url:
            trajectories, stats = asyncio.run(engine_run(url))
            assert stats.errors == 0, stats.error_messages
            assert len(trajectories) == len(specs)
            asyncio.run(clients_run(url))
            assert not app.state.store.sessions
            spec = next(s for s in httpx.get(f"{url}/v1/envs").json() if s["id"] == ENV_ID)
            assert spec["capacity"] == 2
    finally:
        server_pool.shutdown()
    assert server_pool.started == 1


def test_fold_waiting_turns_runs_of_looks_into_waits():
    look = "look at inclined plane"
    path = ["go to kitchen", *[look] * 23, "wait1", "wait1", *[look] * 9]
    folded = ("go to kitchen", "wait", "wait", look, look, look, "wait1", "wait1", *[look] * 9)
    assert fold_waiting(path) == folded


def test_observations_are_printable_ascii_only():
    from palaestra.envs.sciworld.env import _clean

    assert _clean("25°C\u2014ok") == "25?C?ok"
    assert set(_clean("a\tb\nc")) <= set(string.printable)
