"""Property-based fuzzing of the HTTP API: from its OpenAPI schema, and against in-process envs.

``test_every_operation_from_the_schema`` lets schemathesis generate requests for
every operation of the served OpenAPI schema (valid and invalid ones, plus its
coverage cases: undeclared methods, boundary values, bad syntax), against a real
server; a drawn flag swaps the generated session id for a live session's, so the
session routes are reached with real ids too. ``test_fuzzed_sessions_match_in_process``
plays hypothesis-drawn reset bodies and action texts (unicode, control characters)
on one session per env and checks every answer against the same calls in-process.

Both are deterministic (``derandomize``) and bounded in examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import toy_envs  # noqa: F401  (registers toy/Counter-v0)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

import palaestra
from palaestra.errors import UnknownTaskError
from palaestra.servers import Settings, create_app, serve_in_thread

ENVS = ["palaestra/Maze-v0", "toy/Counter-v0"]

# The schema as served (building an app starts nothing; the server is the fixture's).
schema = schemathesis.openapi.from_dict(create_app(ENVS).openapi())

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def counter_fails_on(action: object) -> bool:
    """Whether toy/Counter-v0 raises or stalls on ``action`` (on purpose: the env's fault)."""
    return isinstance(action, str) and action.startswith(("boom", "sleep"))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, httpx.Client]]:
    app = create_app(ENVS, Settings(step_timeout=2, max_sessions=256))
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield url, client
        assert client.get("/health").status_code == 200


def check_answer(status: int, headers: dict, text: str, env_may_fail: bool = False) -> None:
    """No 5xx (but the env errors of an env that raises); errors are JSON problems; no trace."""
    if status >= 500:
        assert env_may_fail, text
    if status >= 400:
        assert "Traceback" not in text and 'File "' not in text, text
        body = json.loads(text) if text else None  # HEAD answers have no body
        if body is not None:
            assert set(body) == {"status", "error", "detail"}, body
            assert body["status"] == status, body
            assert isinstance(body["error"], str) and isinstance(body["detail"], str), body
            if status >= 500:
                assert body["error"] in ("env_error", "step_timeout"), body
        content_type = headers.get("content-type", "")
        assert not text or content_type.startswith("application/json"), headers


@schema.parametrize()
@schema.given(live=st.sampled_from([None, *ENVS]))
@settings(FUZZ, max_examples=40)
def test_every_operation_from_the_schema(case, live, server):
    url, client = server
    sid = None
    if live is not None and "session_id" in (case.path_parameters or {}):
        sid = client.post("/v1/sessions", json={"env": live, "seed": 0}).json()["session_id"]
        case.path_parameters["session_id"] = sid
    body = case.body if isinstance(case.body, dict) else {}
    env_may_fail = live == "toy/Counter-v0" and counter_fails_on(body.get("action"))
    try:
        response = case.call(base_url=url, timeout=10)
        headers = {k.lower(): ", ".join(v) for k, v in response.headers.items()}
        check_answer(response.status_code, headers, response.text, env_may_fail)
        # schemathesis' own checks: documented status codes, content types and bodies,
        # invalid input refused, the Allow of a 405. Not "valid input accepted": any
        # string is an env id in the schema, but only the served ones are accepted.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
    finally:
        if sid is not None:
            client.delete(f"/v1/sessions/{sid}")


# -- differential: the server against the env in-process -----------------------------------

actions = st.one_of(
    st.sampled_from(["move up", "move down", "move left", "move right", "inc", " inc", "INC"]),
    st.text(max_size=30),  # any code point but surrogates: controls, RTL marks, emoji, NUL
    st.text(st.characters(codec="ascii"), max_size=12),
)
task_ids = st.one_of(
    st.none(),
    st.integers(-2, 3400),
    st.sampled_from([0, 9, 10, 11, 12, 2999, 3000, 3299, 3300, 2**63]),
    st.text(max_size=4),
)
reset_bodies = st.fixed_dictionaries(
    {}, optional={"task_id": task_ids, "seed": st.one_of(st.none(), st.integers(-3, 2**70))}
)


@pytest.fixture(scope="module")
def sessions(server) -> dict[str, str]:
    _, client = server
    return {
        env: client.post("/v1/sessions", json={"env": env}).json()["session_id"] for env in ENVS
    }


@given(
    env_id=st.sampled_from(ENVS),
    reset=reset_bodies,
    plays=st.lists(actions.filter(lambda a: not counter_fails_on(a)), max_size=8),
)
@settings(FUZZ, max_examples=120)
def test_fuzzed_sessions_match_in_process(server, sessions, env_id, reset, plays):
    _, client = server
    path = f"/v1/sessions/{sessions[env_id]}"
    answer = client.post(f"{path}/reset", json=reset)
    check_answer(answer.status_code, answer.headers, answer.text)
    local = palaestra.make(env_id)
    seed, task_id = reset.get("seed"), reset.get("task_id")
    if seed is not None and seed < 0:
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"
        return
    try:
        expected = local.reset(seed=seed, options=None if task_id is None else {"task_id": task_id})
    except UnknownTaskError:
        assert answer.status_code == 422 and answer.json()["error"] == "unknown_task", answer.text
        return
    assert answer.status_code == 200, answer.text
    if seed is None:  # each side drew its own randomness: replay the same draw on both
        task_id = answer.json()["info"]["task_id"]
        assert task_id == expected[1]["task_id"] or reset.get("task_id") is None
        answer = client.post(f"{path}/reset", json={"task_id": task_id, "seed": 0})
        expected = local.reset(seed=0, options={"task_id": task_id})
    assert (answer.json()["observation"], answer.json()["info"]) == expected
    for action in plays:
        answer = client.post(f"{path}/step", json={"action": action})
        check_answer(answer.status_code, answer.headers, answer.text)
        if local.over:
            assert answer.status_code == 409 and answer.json()["error"] == "episode_over"
            continue
        observation, reward, terminated, truncated, info = local.step(action)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "observation": observation,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "info": json.loads(json.dumps(info)),
        }, repr(action)
