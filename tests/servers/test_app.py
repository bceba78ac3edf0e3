"""The HTTP API against a real uvicorn server on a free loopback port."""

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
import toy_envs

import palaestra
from palaestra.errors import (
    CapacityError,
    EnvFailedError,
    EpisodeOverError,
    SessionBrokenError,
    SessionNotFoundError,
    StepTimeoutError,
    UnauthorizedError,
    UnknownTaskError,
)
from palaestra.servers import RetryPolicy


def test_same_seeded_episode_in_process_and_over_http(maze_url):
    local = palaestra.make("palaestra/Maze-v0")
    remote = palaestra.make("palaestra/Maze-v0", base_url=maze_url)
    assert isinstance(remote, palaestra.RemoteEnv)
    assert local.reset(seed=11, options={"task_id": 3005}) == remote.reset(
        seed=11, options={"task_id": 3005}
    )
    actions = ["move up", "jump", "move left"]
    steps = 0
    while True:
        action = actions[steps] if steps < len(actions) else local.expert_action()
        assert remote.expert_action() == local.expert_action()
        expected = local.step(action)
        got = remote.step(action)
        assert got == expected  # observation, reward, terminated, truncated, info
        steps += 1
        if expected[2] or expected[3]:
            break
    assert got[4]["success"] is True and got[2] is True
    remote.close()


def test_envs_tasks_status_and_health(maze_url):
    specs = httpx.get(f"{maze_url}/v1/envs").json()
    maze = next(s for s in specs if s["id"] == "palaestra/Maze-v0")
    assert maze["splits"] == {"train": 3000, "test": 300}
    assert set(maze["capabilities"]) == {"available_actions", "expert", "random_action", "snapshot"}
    tasks = httpx.get(f"{maze_url}/v1/tasks", params={"env": "toy/Counter-v0", "split": "test"})
    assert tasks.json()["task_ids"] == [10, 11]
    created = httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0", "task_id": 2})
    assert created.status_code == 201
    sid = created.json()["session_id"]
    httpx.post(f"{maze_url}/v1/sessions/{sid}/step", json={"action": "inc"})
    status = httpx.get(f"{maze_url}/v1/sessions/{sid}").json()
    assert status["task_id"] == 2 and status["steps"] == 1 and not status["done"]
    assert httpx.get(f"{maze_url}/health").json()["sessions"] == 1
    assert httpx.delete(f"{maze_url}/v1/sessions/{sid}").status_code == 204
    assert httpx.get(f"{maze_url}/health").json()["sessions"] == 0
    metrics = httpx.get(f"{maze_url}/metrics").text
    assert 'palaestra_steps_total{env="toy/Counter-v0"} 1.0' in metrics


def problem(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["error"] == error, body
    return body["detail"]


def test_404_unknown_and_deleted_sessions(maze_url):
    assert "no session" in problem(
        httpx.post(f"{maze_url}/v1/sessions/nope/step", json={"action": "x"}),
        404,
        "session_not_found",
    )
    env = palaestra.make("toy/Counter-v0", base_url=maze_url)
    env.reset(options={"task_id": 0})
    sid = env.session_id
    httpx.delete(f"{maze_url}/v1/sessions/{sid}")
    with pytest.raises(SessionNotFoundError):
        env.step("inc")
    problem(httpx.get(f"{maze_url}/v1/nowhere"), 404, "not_found")


def test_409_step_after_episode_end(maze_url):
    sid = httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0"}).json()["session_id"]
    for _ in range(3):
        httpx.post(f"{maze_url}/v1/sessions/{sid}/step", json={"action": "inc"})
    detail = problem(
        httpx.post(f"{maze_url}/v1/sessions/{sid}/step", json={"action": "inc"}),
        409,
        "episode_over",
    )
    assert "reset" in detail
    reset = httpx.post(f"{maze_url}/v1/sessions/{sid}/reset", json={"task_id": 1})
    assert reset.status_code == 200 and reset.json()["info"]["task_id"] == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"actoin": "inc"}, "invalid_request"),
        ({"action": 3}, "invalid_request"),
        ({}, "invalid_request"),
        ({"action": "x" * 5000}, "action_too_long"),
    ],
)
def test_422_bad_step_bodies(maze_url, body, error):
    sid = httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0"}).json()["session_id"]
    problem(httpx.post(f"{maze_url}/v1/sessions/{sid}/step", json=body), 422, error)
    # the session is untouched and still usable
    ok = httpx.post(f"{maze_url}/v1/sessions/{sid}/step", json={"action": "inc"})
    assert ok.status_code == 200 and ok.json()["info"]["step"] == 1


def test_422_malformed_json_unknown_env_and_task(maze_url):
    bad = httpx.post(
        f"{maze_url}/v1/sessions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    problem(bad, 422, "invalid_request")
    assert "palaestra/Maze-v0" in problem(
        httpx.post(f"{maze_url}/v1/sessions", json={"env": "palaestra/Nope-v0"}), 422, "unknown_env"
    )
    problem(
        httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0", "task_id": 99}),
        422,
        "unknown_task",
    )
    problem(
        httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0", "seed": -1}),
        422,
        "invalid_request",
    )
    remote = palaestra.make("toy/Counter-v0", base_url=maze_url)
    with pytest.raises(UnknownTaskError):
        remote.reset(options={"task_id": 99})
    assert httpx.get(f"{maze_url}/health").json()["sessions"] == 0  # nothing leaked


def test_413_oversized_body(serve):
    with serve(["toy/Counter-v0"], max_body_bytes=1024) as url:
        problem(
            httpx.post(f"{url}/v1/sessions/x/step", json={"action": "y" * 2000}),
            413,
            "body_too_large",
        )


def test_429_at_capacity_and_room_again_after_close(serve):
    with serve(["toy/Counter-v0"], max_sessions=2) as url:
        # busy_wait=0: raise the 429 at once instead of waiting for room.
        no_wait = RetryPolicy(busy_wait=0)
        envs = [palaestra.make("toy/Counter-v0", base_url=url, retry=no_wait) for _ in range(3)]
        envs[0].reset()
        envs[1].reset()
        with pytest.raises(CapacityError, match="maximum of 2"):
            envs[2].reset()
        fork = httpx.post(f"{url}/v1/sessions/{envs[0].session_id}/fork")
        problem(fork, 429, "capacity")
        envs[0].close()
        envs[2].reset()
        for env in envs:
            env.close()


def test_504_step_timeout_marks_only_that_session_broken(serve):
    with serve(["toy/Counter-v0"], step_timeout=0.2) as url:
        slow = palaestra.make("toy/Counter-v0", base_url=url)
        other = palaestra.make("toy/Counter-v0", base_url=url)
        slow.reset(options={"task_id": 0})
        other.reset(options={"task_id": 0})
        started = time.monotonic()
        with pytest.raises(StepTimeoutError, match=r"longer than 0\.2s"):
            slow.step("sleep 6")
        # Answered at the timeout, not after the env's 6 s (a wide margin for a busy machine).
        assert time.monotonic() - started < 5
        assert other.step("inc")[4]["step"] == 1
        with pytest.raises(SessionBrokenError, match="broken"):
            slow.step("inc")
        assert slow.status()["broken"].startswith("an env call exceeded")
        _observation, info = slow.reset(options={"task_id": 1})  # a fresh env repairs it
        assert info["task_id"] == 1 and slow.step("inc")[4]["step"] == 1


def test_500_env_exception_breaks_only_that_session(maze_url):
    bad = palaestra.make("toy/Counter-v0", base_url=maze_url)
    good = palaestra.make("toy/Counter-v0", base_url=maze_url)
    bad.reset(options={"task_id": 0})
    good.reset(options={"task_id": 0})
    with pytest.raises(EnvFailedError, match="RuntimeError: the counter exploded"):
        bad.step("boom")
    with pytest.raises(SessionBrokenError, match="broken"):
        bad.step("inc")
    assert "RuntimeError" in bad.status()["broken"]
    assert good.step("inc")[4]["step"] == 1
    assert httpx.get(f"{maze_url}/health").status_code == 200
    bad.reset(options={"task_id": 0})
    assert bad.step("inc")[4]["step"] == 1


def test_token_required_everywhere_but_health(serve):
    with serve(["toy/Counter-v0"], token="s3cret") as url:
        assert httpx.get(f"{url}/health").status_code == 200
        problem(httpx.get(f"{url}/v1/envs"), 401, "unauthorized")
        problem(httpx.get(f"{url}/metrics"), 401, "unauthorized")
        problem(httpx.get(f"{url}/openapi.json"), 401, "unauthorized")
        wrong = {"Authorization": "Bearer s3cre"}
        problem(httpx.get(f"{url}/v1/envs", headers=wrong), 403, "unauthorized")
        with pytest.raises(UnauthorizedError):
            palaestra.make("toy/Counter-v0", base_url=url, token="nope")
        env = palaestra.make("toy/Counter-v0", base_url=url, token="s3cret")
        env.reset()
        assert env.step("inc")[4]["step"] == 1
        env.close()


def test_token_from_environment_variable(serve, monkeypatch):
    with serve(["toy/Counter-v0"], token="from-env") as url:
        monkeypatch.setenv("PALAESTRA_TOKEN", "from-env")
        env = palaestra.make("toy/Counter-v0", base_url=url)
        env.reset()
        env.close()


def test_reaper_frees_idle_sessions(serve):
    with serve(["toy/Counter-v0"], session_ttl=1.0) as url:
        idle = palaestra.make("toy/Counter-v0", base_url=url)
        busy = palaestra.make("toy/Counter-v0", base_url=url)
        idle.reset()
        busy.reset()
        deadline = time.monotonic() + 60
        while True:  # until the reaper took the idle one (no fixed sleep to guess)
            busy.status()  # status does not count as use...
            busy.reset()  # ...a reset does
            try:
                idle.status()  # (nor for the idle one)
            except SessionNotFoundError:
                break
            assert time.monotonic() < deadline, "the idle session was never reaped"
            time.sleep(0.05)
        with pytest.raises(SessionNotFoundError, match="reaped"):
            idle.step("inc")
        assert busy.status()["task_id"] is not None
        assert httpx.get(f"{url}/health").json()["sessions"] == 1


def test_fork_by_snapshot_and_by_replay(maze_url):
    maze = palaestra.make("palaestra/Maze-v0", base_url=maze_url)
    maze.reset(seed=0, options={"task_id": 8})
    maze.step(maze.expert_action())
    twin = maze.fork()
    assert twin.session_id != maze.session_id
    action = maze.expert_action()
    assert twin.step(action) == maze.step(action)
    counter = httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0", "seed": 5})
    sid = counter.json()["session_id"]
    httpx.post(f"{maze_url}/v1/sessions/{sid}/step", json={"action": "inc"})
    forked = httpx.post(f"{maze_url}/v1/sessions/{sid}/fork").json()
    assert forked["method"] == "replay"
    step = lambda s: httpx.post(f"{maze_url}/v1/sessions/{s}/step", json={"action": "inc"}).json()  # noqa: E731
    assert step(forked["session_id"]) == step(sid)
    assert httpx.get(f"{maze_url}/v1/sessions/{forked['session_id']}").json()["steps"] == 2
    assert httpx.get(f"{maze_url}/v1/sessions/{sid}/expert").json() == {"action": "inc"}


def test_expert_route_answers_409_without_expert(serve):
    class NoExpert(toy_envs.Counter):
        expert_action = palaestra.TextEnv.expert_action

    palaestra.register("toy/NoExpert-v0", NoExpert)
    with serve(["toy/NoExpert-v0"]) as url:
        sid = httpx.post(f"{url}/v1/sessions", json={"env": "toy/NoExpert-v0"}).json()["session_id"]
        problem(httpx.get(f"{url}/v1/sessions/{sid}/expert"), 409, "not_supported")


def test_random_action_over_http_is_the_in_process_one(maze_url):
    local = palaestra.make("palaestra/Maze-v0")
    remote = palaestra.make("palaestra/Maze-v0", base_url=maze_url)
    local.reset(seed=2, options={"task_id": 3007})
    remote.reset(seed=2, options={"task_id": 3007})
    for seed in (0, 1, 7, 2**63 - 1):
        action = remote.random_action(seed)
        assert action == local.random_action(np.random.default_rng(seed))
        assert action == remote.random_action(seed)  # the same seed, the same state
        *_, info = remote.step(action)
        assert info == local.step(action)[4] and info["invalid_action"] is False
    url = f"{maze_url}/v1/sessions/{remote.session_id}/random_action"
    assert httpx.get(url, params={"seed": 3}).json() == {"action": remote.random_action(3)}
    remote.close()


def test_random_action_route_errors(maze_url, serve):
    maze = httpx.post(f"{maze_url}/v1/sessions", json={"env": "palaestra/Maze-v0", "task_id": 0})
    url = f"{maze_url}/v1/sessions/{maze.json()['session_id']}/random_action"
    for params in ({}, {"seed": -1}, {"seed": 2**63}, {"seed": "x"}, {"seed": 1.5}):
        problem(httpx.get(url, params=params), 422, "invalid_request")
    missing = httpx.get(f"{maze_url}/v1/sessions/nope/random_action", params={"seed": 0})
    problem(missing, 404, "session_not_found")
    counter = httpx.post(f"{maze_url}/v1/sessions", json={"env": "toy/Counter-v0", "task_id": 0})
    sid = counter.json()["session_id"]
    detail = problem(
        httpx.get(f"{maze_url}/v1/sessions/{sid}/random_action?seed=0"), 409, "not_supported"
    )
    assert "toy/Counter-v0" in detail
    env = palaestra.make("toy/Counter-v0", base_url=maze_url)
    with pytest.raises(EpisodeOverError, match="reset"):
        env.random_action(0)
    env.close()

    class Listed(toy_envs.Counter):
        def available_actions(self) -> list[str]:
            return ["inc"]

    palaestra.register("toy/Listed-v0", Listed)
    with serve(["toy/Listed-v0"]) as url:
        env = palaestra.make("toy/Listed-v0", base_url=url)
        env.reset(options={"task_id": 0})
        for _ in range(3):
            env.step(env.random_action(5))
        with pytest.raises(EpisodeOverError, match="reset first"):
            env.random_action(5)
        with pytest.raises(ValueError, match="2\\*\\*63"):
            env.random_action(-1)
        with pytest.raises(TypeError):
            env.random_action(1.5)
        env.close()


def test_concurrent_steps_on_one_session_are_serialised(serve):
    deadline = time.monotonic() + 60
    while toy_envs.Counter.active:  # a step another test abandoned (a 504) still runs
        assert time.monotonic() < deadline
        time.sleep(0.05)
    toy_envs.Counter.overlap_seen = False
    with serve(["toy/Counter-v0"]) as url:
        sid = httpx.post(f"{url}/v1/sessions", json={"env": "toy/Counter-v0"}).json()["session_id"]

        async def hammer() -> list[int]:
            async with httpx.AsyncClient() as client:
                calls = [
                    client.post(f"{url}/v1/sessions/{sid}/step", json={"action": "sleep 0.05"})
                    for _ in range(4)
                ]
                return [r.json()["info"]["step"] for r in await asyncio.gather(*calls)]

        steps = asyncio.run(hammer())
        assert sorted(steps) == [1, 2, 3, 4]
        assert not toy_envs.Counter.overlap_seen


def test_env_code_does_not_block_the_event_loop(serve):
    with serve(["toy/Counter-v0"], step_timeout=5) as url:
        sid = httpx.post(f"{url}/v1/sessions", json={"env": "toy/Counter-v0"}).json()["session_id"]
        slow = threading.Thread(
            target=httpx.post,
            args=(f"{url}/v1/sessions/{sid}/step",),
            kwargs={"json": {"action": "sleep 4"}, "timeout": 30},
        )
        slow.start()
        deadline = time.monotonic() + 30
        while toy_envs.Counter.active == 0:  # the step is running in the env (same process)
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.01)
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        # Answered while the env still runs its step: ordering, not a stopwatch.
        assert toy_envs.Counter.active == 1 and slow.is_alive()
        slow.join()


def test_remote_reset_after_the_session_was_reaped_opens_a_new_one(serve):
    with serve(["toy/Counter-v0"], session_ttl=0.2) as url:
        env = palaestra.make("toy/Counter-v0", base_url=url)
        env.reset(options={"task_id": 1})
        first = env.session_id
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").json()["sessions"]:  # until the reaper took it
            assert time.monotonic() < deadline, "the session was never reaped"
            time.sleep(0.05)
        with pytest.raises(SessionNotFoundError):
            env.step("inc")
        _, info = env.reset(options={"task_id": 2})
        assert env.session_id != first and info["task_id"] == 2
        assert env.step("inc")[4]["step"] == 1
        env.close()


def test_gymnasium_make_with_base_url_gives_a_remote_env(maze_url):
    import gymnasium

    env = gymnasium.make("palaestra/Maze-v0", base_url=maze_url)
    assert isinstance(env, palaestra.RemoteEnv)
    assert env.spec.id == "palaestra/Maze-v0"
    local = gymnasium.make("palaestra/Maze-v0")
    assert env.reset(seed=4) == local.reset(seed=4)
    assert env.step("move down") == local.step("move down")
    env.close()


def test_unauthorized_answers_name_the_scheme(serve):
    with serve(["toy/Counter-v0"], token="t") as url:
        assert httpx.get(f"{url}/v1/envs").headers["www-authenticate"] == "Bearer"


def test_an_env_without_room_for_another_instance_answers_429(serve):
    from palaestra.errors import EnvBusyError

    class Busy(toy_envs.Counter):
        def __init__(self, render_mode=None):
            raise EnvBusyError("all 2 JVMs hold their 8 games")

    palaestra.register("toy/Busy-v0", Busy)
    with serve(["toy/Busy-v0"]) as url:
        detail = problem(
            httpx.post(f"{url}/v1/sessions", json={"env": "toy/Busy-v0"}), 429, "env_busy"
        )
        assert "all 2 JVMs hold their 8 games" in detail
        remote = palaestra.make("toy/Busy-v0", base_url=url, retry=RetryPolicy(busy_wait=0))
        with pytest.raises(EnvBusyError, match="all 2 JVMs"):  # the env's class, remotely too
            remote.reset()
        assert httpx.get(f"{url}/health").json()["sessions"] == 0
