"""The Play page: the viewer's proxy to a real ``palaestra serve``; a Maze played in Chromium."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import gymnasium
import httpx
import pytest
from view_helpers import open_route, screenshot

from palaestra.envs.registration import env_class
from palaestra.view import play_api
from palaestra.view.play_api import NO_ENV_URL

Serve = Callable[..., AbstractContextManager[str]]
View = Callable[..., AbstractContextManager[str]]

TOKEN = "env-s3cret"
ENVS = ["palaestra/Maze-v0", "palaestra/Wordle-v0"]


def expert_episode(env_id: str, task_id: Any) -> tuple[list[str], dict[str, Any]]:
    """The env's own run of its expert on a task, in-process: the actions and the last info."""
    env = gymnasium.make(env_id).unwrapped
    env.reset(options={"task_id": task_id})
    actions: list[str] = []
    while True:
        action = env.expert_action()
        actions.append(action)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return actions, info


def env_sessions(env_url: str) -> int:
    """Open sessions on the env server (its /health, open without the token)."""
    return httpx.get(f"{env_url}/health").json()["sessions"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_maze_episode_to_the_goal_with_the_experts_moves_through_the_proxy(
    serve: Serve, view: View, tmp_path: Path
) -> None:
    with (
        serve(ENVS, token=TOKEN) as env_url,
        view([tmp_path], env_url=env_url, env_token=TOKEN) as url,
        httpx.Client(base_url=url) as client,
    ):
        listed = client.get("/api/play/envs").json()
        assert listed["env_url"] == env_url
        envs = {e["id"]: e for e in listed["envs"]}
        assert sorted(envs) == ENVS
        maze = env_class("palaestra/Maze-v0")
        assert envs["palaestra/Maze-v0"]["splits"] == {k: len(v) for k, v in maze.splits.items()}
        assert envs["palaestra/Maze-v0"]["description"] == maze.instruction
        assert envs["palaestra/Maze-v0"]["available_actions"] is True
        assert envs["palaestra/Wordle-v0"]["available_actions"] is False
        assert envs["palaestra/Wordle-v0"]["expert"] is True

        tasks = client.get(
            "/api/play/tasks",
            params={"env": "palaestra/Maze-v0", "split": "test", "offset": 5, "limit": 3},
        ).json()
        assert tasks["total"] == len(maze.splits["test"])
        assert tasks["task_ids"] == list(maze.splits["test"])[5:8]
        task_id = tasks["task_ids"][0]

        created = client.post(
            "/api/play/sessions",
            json={"env_id": "palaestra/Maze-v0", "split": "test", "task_id": task_id},
        ).json()
        assert created["task_id"] == task_id
        assert created["observation"].startswith("Maze of")
        assert created["available_actions"]
        session = created["session"]
        assert env_sessions(env_url) == 1

        expected_actions, expected_info = expert_episode("palaestra/Maze-v0", task_id)
        played: list[str] = []
        reply: dict[str, Any] = {}
        while not (reply.get("terminated") or reply.get("truncated")):
            action = client.get(f"/api/play/sessions/{session}/expert").json()["action"]
            played.append(action)
            reply = client.post(
                f"/api/play/sessions/{session}/step", json={"action": action}
            ).json()
            assert reply["invalid"] is False
            assert reply["steps"] == len(played)
        assert played == expected_actions
        assert reply["terminated"] is True and reply["success"] is True
        assert (reply["success"], reply["score"]) == (
            expected_info["success"],
            expected_info["score"],
        )
        # The episode is over: the expert has no move, and the env server says why.
        over = client.get(f"/api/play/sessions/{session}/expert")
        assert over.status_code == 409 and "episode_over" in over.json()["error"]

        assert client.delete(f"/api/play/sessions/{session}").status_code == 204
        assert env_sessions(env_url) == 0
        gone = client.post(f"/api/play/sessions/{session}/step", json={"action": "move up"})
        assert gone.status_code == 404 and "no session" in gone.json()["error"]


def test_an_invalid_action_is_marked_and_a_random_task_is_drawn_from_the_split(
    serve: Serve, view: View, tmp_path: Path
) -> None:
    with (
        serve(ENVS) as env_url,
        view([tmp_path], env_url=env_url) as url,
        httpx.Client(base_url=url) as client,
    ):
        created = client.post(
            "/api/play/sessions", json={"env_id": "palaestra/Maze-v0", "split": "train"}
        ).json()
        assert created["task_id"] in env_class("palaestra/Maze-v0").splits["train"]
        session = created["session"]
        reply = client.post(f"/api/play/sessions/{session}/step", json={"action": "fly away"})
        assert reply.status_code == 200
        assert reply.json()["invalid"] is True and reply.json()["terminated"] is False
        assert reply.json()["available_actions"] == created["available_actions"]

        first = next(iter(env_class("palaestra/Wordle-v0").splits["test"]))
        wordle = client.post(
            "/api/play/sessions",
            json={"env_id": "palaestra/Wordle-v0", "split": "test", "task_id": str(first)},
        ).json()
        # Typed as text, the task is found as the split spells it (an int here).
        assert wordle["task_id"] == first and wordle["available_actions"] is None

        unknown = client.post(
            "/api/play/sessions",
            json={"env_id": "palaestra/Maze-v0", "split": "test", "task_id": 10**9},
        )
        assert unknown.status_code == 400 and "no task" in unknown.json()["error"]
        no_env = client.post("/api/play/sessions", json={"env_id": "nope/No-v0", "split": "test"})
        assert no_env.status_code == 422 and "unknown_env" in no_env.json()["error"]


def test_without_an_env_url_the_page_is_told_how_to_start_one(view: View, tmp_path: Path) -> None:
    with view([tmp_path]) as url:
        listed = httpx.get(f"{url}/api/play/envs").json()
        assert listed == {"env_url": None, "envs": [], "setup": NO_ENV_URL}
        assert "palaestra serve" in NO_ENV_URL and "--env-url" in NO_ENV_URL
        created = httpx.post(
            f"{url}/api/play/sessions", json={"env_id": "palaestra/Maze-v0", "split": "test"}
        )
        assert created.status_code == 503 and created.json()["error"] == NO_ENV_URL


def test_a_dead_env_server_and_a_wrong_token_are_named(
    serve: Serve, view: View, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with view([tmp_path], env_url=dead) as url:
        reply = httpx.get(f"{url}/api/play/envs")
        assert reply.status_code == 502
        assert f"cannot reach the env server at {dead}" in reply.json()["error"]
        assert "palaestra serve" in reply.json()["error"]
    with serve(ENVS, token=TOKEN) as env_url:
        for token in ("wrong", None):
            with view([tmp_path], env_url=env_url, env_token=token) as url:
                reply = httpx.get(f"{url}/api/play/envs")
                assert reply.status_code == 502
                error = reply.json()["error"]
                assert "refused the viewer's token" in error and "--env-token" in error
                assert TOKEN not in error


def test_a_session_the_env_server_reaped_says_so(serve: Serve, view: View, tmp_path: Path) -> None:
    with (
        serve(ENVS, session_ttl=0.3) as env_url,
        view([tmp_path], env_url=env_url) as url,
        httpx.Client(base_url=url) as client,
    ):
        session = client.post(
            "/api/play/sessions", json={"env_id": "palaestra/Maze-v0", "split": "test"}
        ).json()["session"]
        deadline = time.monotonic() + 10
        while env_sessions(env_url) and time.monotonic() < deadline:
            time.sleep(0.1)
        reply = client.get(f"/api/play/sessions/{session}/expert")
        assert reply.status_code == 410
        assert "no longer has session" in reply.json()["error"]
        assert "--session-ttl" in reply.json()["error"]
        # The viewer forgets it: asked again, it is a session it does not hold.
        again = client.post(f"/api/play/sessions/{session}/step", json={"action": "move up"})
        assert again.status_code == 404
        assert client.delete(f"/api/play/sessions/{session}").status_code == 204


def test_the_viewer_closes_its_sessions_when_it_stops(
    serve: Serve, view: View, tmp_path: Path
) -> None:
    with serve(ENVS, token=TOKEN) as env_url:
        with view([tmp_path], env_url=env_url, env_token=TOKEN) as url:
            for env_id in ENVS:
                created = httpx.post(
                    f"{url}/api/play/sessions", json={"env_id": env_id, "split": "test"}
                )
                assert created.status_code == 200
            assert env_sessions(env_url) == 2
        assert env_sessions(env_url) == 0


def test_the_viewer_keeps_a_bounded_number_of_games_open(
    serve: Serve, view: View, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(play_api, "MAX_SESSIONS", 2)
    with (
        serve(ENVS) as env_url,
        view([tmp_path], env_url=env_url) as url,
        httpx.Client(base_url=url) as client,
    ):
        ids = [
            client.post(
                "/api/play/sessions", json={"env_id": "palaestra/Maze-v0", "split": "test"}
            ).json()["session"]
            for _ in range(3)
        ]
        assert env_sessions(env_url) == 2
        oldest = client.get(f"/api/play/sessions/{ids[0]}/expert")
        assert oldest.status_code == 404 and "more than 2 games open" in oldest.json()["error"]
        for session in ids[1:]:
            assert client.get(f"/api/play/sessions/{session}/expert").status_code == 200


def test_play_a_maze_episode_to_the_goal_in_the_browser(
    serve: Serve, view: View, page: Any, tmp_path: Path
) -> None:
    maze = env_class("palaestra/Maze-v0")
    task_id = list(maze.splits["test"])[7]
    expected_actions, expected_info = expert_episode("palaestra/Maze-v0", task_id)
    with (
        serve(ENVS, token=TOKEN) as env_url,
        view([tmp_path], env_url=env_url, env_token=TOKEN) as url,
    ):
        open_route(page, url, "play")
        page.select_option("#play-env", "palaestra/Maze-v0")
        page.select_option("#play-split", "test")
        page.fill("#play-task", str(task_id))
        page.click("#play-start")
        page.wait_for_selector("#play-transcript .msg.user")
        assert "env=palaestra%2FMaze-v0" in page.url and f"task={task_id}" in page.url
        assert page.locator(".play-choice").count() >= 1  # Maze lists its moves
        assert env_sessions(env_url) == 1

        # One wrong move first: it is marked invalid and costs a step.
        page.fill("#play-action", "fly away")
        page.click("#play-send")
        page.wait_for_selector("#play-transcript .msg.assistant.invalid .badge.invalid")

        for n, action in enumerate(expected_actions, start=2):
            page.click("#play-expert")
            page.wait_for_selector(f"#play-expert-hint[data-action='{action}']")
            assert page.input_value("#play-action") == action
            if n == 2 + len(expected_actions) // 2:
                screenshot(page, "play")  # mid-episode: the chat, the hint, the move buttons
            page.click("#play-send")
            page.wait_for_selector(f"#play-transcript .msg.assistant[data-step='{n}']")
            # The hint was for the state just left: it must not answer for the next one.
            hint = "document.querySelector('#play-expert-hint')?.dataset.action ?? null"
            assert page.evaluate(hint) is None

        banner = page.wait_for_selector("#play-end")
        assert banner.get_attribute("data-outcome") == "success"
        assert expected_info["success"] is True
        steps = len(expected_actions) + 1
        assert banner.get_attribute("data-steps") == str(steps)
        assert float(banner.get_attribute("data-score")) == expected_info["score"]
        assert f"after {steps} steps" in banner.inner_text()
        assert page.locator("#play-transcript .msg.assistant").count() == steps
        assert page.locator("#play-transcript .msg.user").count() == steps + 1
        assert page.locator("#play-steps").inner_text() == f"step {steps} / {maze.max_steps}"
        assert page.locator("#play-form").count() == 0

        # New task closes this session and opens another; leaving the page closes that.
        page.click("#play-new")
        page.wait_for_function("document.querySelectorAll('#play-transcript .msg').length == 1")
        assert env_sessions(env_url) == 1
        page.click("#nav a[data-page='runs']")
        page.wait_for_selector("body[data-ready='runs']")
        deadline = time.monotonic() + 10
        while env_sessions(env_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert env_sessions(env_url) == 0


def test_the_page_says_how_to_start_an_env_server_or_that_it_is_down(
    view: View, page: Any, tmp_path: Path
) -> None:
    with view([tmp_path]) as url:
        open_route(page, url, "play")
        assert page.inner_text("#play-setup") == NO_ENV_URL
    dead = f"http://127.0.0.1:{free_port()}"
    with view([tmp_path], env_url=dead) as url:
        open_route(page, url, "play")
        assert f"cannot reach the env server at {dead}" in page.inner_text("#page .error")


def test_the_page_says_when_the_env_server_has_reaped_the_game(
    serve: Serve, view: View, page: Any, tmp_path: Path
) -> None:
    with (
        serve(ENVS, session_ttl=0.5) as env_url,
        view([tmp_path], env_url=env_url) as url,
    ):
        open_route(page, url, "play?env=palaestra/Wordle-v0&split=train")
        assert page.input_value("#play-env") == "palaestra/Wordle-v0"
        assert page.input_value("#play-split") == "train"
        page.click("#play-random")
        page.wait_for_selector("#play-transcript .msg.user")
        assert page.locator(".play-choice").count() == 0  # Wordle lists no moves
        deadline = time.monotonic() + 10
        while env_sessions(env_url) and time.monotonic() < deadline:
            time.sleep(0.1)
        page.fill("#play-action", "guess crane")
        page.click("#play-send")
        error = page.wait_for_selector("#play-step-error .error")
        assert "no longer has session" in error.inner_text()
        page.click("#play-restart")  # the same task again, in a new session
        page.wait_for_function("document.querySelectorAll('#play-transcript .msg').length == 1")
        assert page.locator("#play-step-error .error").count() == 0
