"""palaestra/Weather-v0: the city data, the climate model, the questions, the tools, the expert."""

import datetime as dt
import json
import statistics
from collections import Counter

import numpy as np
import pytest

import palaestra
from palaestra.envs import tool_call_action
from palaestra.envs.checker import check
from palaestra.envs.weather import (
    FIRST_DAY,
    LAST_DAY,
    MAX_STEPS,
    TEMPLATES,
    TEST_TASKS,
    TRAIN_TASKS,
    CalcError,
    WeatherEnv,
    check_answer,
    cities,
    city,
    climate_of,
    evaluate,
    make_task,
    record,
    search,
    year_records,
)

ENV_ID = "palaestra/Weather-v0"
OSLO, SYDNEY, CAIRO, SINGAPORE, YAKUTSK, MUMBAI = (
    3143244,
    2147714,
    360630,
    1880252,
    2013159,
    1275339,
)


def new_env(task_id: int = TEST_TASKS[0]) -> WeatherEnv:
    env = WeatherEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


def call(env: WeatherEnv, name: str, **arguments):
    return env.step(tool_call_action(name, arguments))


def result(env: WeatherEnv, name: str, **arguments):
    observation, *_, info = call(env, name, **arguments)
    assert not info["invalid_action"], observation
    return json.loads(observation)


def task_with(template: str, split=TEST_TASKS) -> int:
    return next(t for t in split if make_task(t).template == template)


# -- the cities ---------------------------------------------------------------------


def test_the_cities_are_real_unique_and_ascii():
    every = cities()
    assert 250 <= len(every) <= 330
    assert len({c.id for c in every}) == len(every)
    assert len({(c.name, c.country) for c in every}) == len(every)
    for c in every:
        assert c.name.isascii() and c.country.isascii() and c.name.strip() == c.name
        assert -90 <= c.lat <= 90 and -180 <= c.lon <= 180 and c.population > 0
    oslo = city(OSLO)
    assert (oslo.name, oslo.country, oslo.lat, oslo.lon) == ("Oslo", "Norway", 59.91, 10.75)
    assert len({c.cc for c in every}) > 120  # every inhabited continent, many countries


def test_search_finds_by_part_of_a_name_and_narrows_by_country():
    assert [c.id for c in search("oslo")] == [OSLO]
    assert [c.id for c in search("  OSLO , norway")] == [OSLO]
    both = {c.country for c in search("San Jose")}
    assert both == {"Costa Rica", "United States"}
    assert [c.country for c in search("san jose, costa rica")] == ["Costa Rica"]
    assert [c.country for c in search("San Jose, US")] == ["United States"]
    assert search("Atlantis") == [] and search(", Norway") == []
    assert [c.name for c in search("S\u00e3o Paulo")] == ["Sao Paulo"]  # accents folded
    assert search("Santiago")[0].name == "Santiago"  # the exact name before longer ones
    assert len(search("a")) == 10


# -- the climate model --------------------------------------------------------------


def _mean_over_years(city_id: int, days: slice, index: int) -> float:
    values = []
    for year in range(2015, 2025):
        values += [r[index] for r in year_records(city_id, year)[days]]
    return statistics.mean(values)


def test_the_climate_reads_as_real():
    jan, jul = slice(0, 31), slice(181, 212)
    assert _mean_over_years(OSLO, jan, 0) < 2 < 14 < _mean_over_years(OSLO, jul, 0)
    assert _mean_over_years(SYDNEY, jan, 0) > _mean_over_years(SYDNEY, jul, 0) + 6
    assert _mean_over_years(YAKUTSK, jan, 1) < -25
    cairo_rain = statistics.mean(
        sum(r[2] for r in year_records(CAIRO, y)) for y in range(2015, 2025)
    )
    assert cairo_rain < 80
    mumbai = year_records(MUMBAI, 2020)
    assert sum(r[2] for r in mumbai[181:212]) > 5 * sum(r[2] for r in mumbai[0:31])
    singapore = [r for y in (2016, 2021) for r in year_records(SINGAPORE, y)]
    assert all(24 <= r[0] <= 36 for r in singapore)
    assert not any(r[3] for r in singapore)  # no snow in the tropics
    assert climate_of(city(CAIRO)).regime == "arid"
    assert climate_of(city(SINGAPORE)).regime == "equatorial"


def test_every_record_is_consistent():
    for c in cities()[::15]:
        for r in year_records(c.id, 2019):
            tmax, tmin, precip, snow, wind, humidity = r
            assert tmin < tmax
            assert 0 <= snow <= precip
            assert not snow or tmin < 3
            assert 0 <= wind <= 130 and 8 <= humidity <= 100
            assert all(round(v, 1) == v for v in r)


def test_records_are_deterministic_and_pinned():
    assert len(year_records(OSLO, 2020)) == 366 and len(year_records(OSLO, 2021)) == 365
    first = year_records(OSLO, 2020)
    year_records.cache_clear()
    assert year_records(OSLO, 2020) == first
    assert record(OSLO, dt.date(2020, 1, 15)) == first[14]
    assert record(OSLO, dt.date(2020, 1, 15)) == (-3.3, -6.7, 3.3, 3.3, 41.5, 97)
    with pytest.raises(ValueError, match="2015-01-01 to 2024-12-31"):
        record(OSLO, dt.date(2014, 12, 31))


# -- the questions ------------------------------------------------------------------


def test_splits_are_disjoint_and_cover_every_template():
    assert len(TRAIN_TASKS) == 2000 and len(TEST_TASKS) == 260
    assert not set(TRAIN_TASKS) & set(TEST_TASKS)
    assert WeatherEnv.tasks("test") == TEST_TASKS
    counts = Counter(make_task(t).template for t in TEST_TASKS)
    assert counts == {name: 20 for name in TEMPLATES}


def test_a_known_task_is_pinned():
    task = make_task(2000)
    assert task.template == "diurnal_range"
    assert task.question == (
        "What was the average daily temperature range (maximum minus minimum) in Birmingham, "
        "United Kingdom over the 7 days from 2016-04-22 to 2016-04-28 (inclusive)? Answer in "
        "degrees C, rounded to 1 decimal."
    )
    assert task.answer == "7.8"
    make_task.cache_clear()
    assert make_task(2000) == task


def test_answers_are_checked_loosely_but_not_too_loosely():
    mean = make_task(2000)  # exact 7.8286...
    for right in ("7.8", "7.8 C", " 7.83 ", "The average range was 7.8 degrees.", "+7.85"):
        assert check_answer(mean, right), right
    for wrong in ("7.9", "8", "7.7", "", "eight", "2016-04-22", "7.88"):
        assert not check_answer(mean, wrong), wrong
    date_task = make_task(task_with("hottest_day"))
    assert check_answer(date_task, f"It was {date_task.answer}.")
    assert not check_answer(date_task, "2015-02-30") and not check_answer(date_task, "yesterday")
    count_task = make_task(task_with("rainy_days"))
    assert check_answer(count_task, f"{count_task.answer} days")
    assert not check_answer(count_task, str(int(count_task.answer) + 1))
    city_task = make_task(task_with("wetter_month"))
    winner = next(city(i) for i in city_task.cities if city(i).name == city_task.answer)
    loser = next(city(i) for i in city_task.cities if city(i).name != city_task.answer)
    assert check_answer(city_task, winner.name.upper())
    assert check_answer(city_task, f"{winner.name}, {winner.country}")
    assert not check_answer(city_task, loser.name)


def test_numeric_answers_are_exact_values_of_the_shown_records():
    for task_id in TEST_TASKS:
        task = make_task(task_id)
        if task.kind == "decimal":
            assert abs(float(task.answer) - float(task.exact)) <= 0.05 + 1e-9
            # The expert's arithmetic on the shown values gives the same value.
            (expression,) = task.expressions
            assert abs(evaluate(expression) - float(task.exact)) < 1e-6, task_id


# -- the tools ----------------------------------------------------------------------


def test_search_and_get_city():
    env = new_env()
    found = result(env, "search_cities", query="Oslo")
    assert found == {
        "matches": [
            {
                "id": OSLO,
                "name": "Oslo",
                "country": "Norway",
                "lat": 59.91,
                "lon": 10.75,
                "population": 1082575,
            }
        ]
    }
    assert result(env, "search_cities", query="Atlantis")["matches"] == []
    details = result(env, "get_city", city_id=OSLO)
    assert details["records"] == "2015-01-01 to 2024-12-31"
    assert details["fields"][0] == "tmax_c"


def test_get_weather_and_get_weather_range_show_the_records():
    env = new_env()
    day = result(env, "get_weather", city_id=OSLO, date="2020-01-15")
    assert day == {
        "city": "Oslo, Norway",
        "date": "2020-01-15",
        "tmax_c": -3.3,
        "tmin_c": -6.7,
        "precip_mm": 3.3,
        "snow_cm": 3.3,
        "wind_max_kmh": 41.5,
        "humidity_pct": 97,
    }
    month = result(env, "get_weather_range", city_id=OSLO, start_date="2020-01-01",
                   end_date="2020-01-31")  # fmt: skip
    assert month["columns"][0] == "date" and len(month["rows"]) == 31
    assert month["rows"][14] == ["2020-01-15", *record(OSLO, dt.date(2020, 1, 15))]
    edge = result(env, "get_weather_range", city_id=OSLO, start_date="2024-12-31",
                  end_date="2024-12-31")  # fmt: skip
    assert len(edge["rows"]) == 1
    assert sorted(env.world["seen"][str(OSLO)]) == [
        *range(dt.date(2020, 1, 1).toordinal(), dt.date(2020, 2, 1).toordinal()),
        dt.date(2024, 12, 31).toordinal(),
    ]


def test_calculate_does_arithmetic_only():
    env = new_env()
    assert result(env, "calculate", expression="mean([1.5, 2.5, 3.5])")["result"] == 2.5
    assert result(env, "calculate", expression="round(10 / 3, 1)")["result"] == 3.3
    assert result(env, "calculate", expression="sum(1, 2) - max([4, 9])")["result"] == -6
    assert evaluate("(3 + 4) * 2 ** 3 % 5") == 1
    for bad in ("__import__('os')", "x + 1", "1/0", "'a' * 3", "9 ** 9 ** 9", "[1, 2]", "1 +"):
        with pytest.raises(CalcError):
            evaluate(bad)


def test_finish_scores_the_answer_and_ends_the_episode():
    env = new_env(2000)
    task = env.task
    while True:
        action = env.expert_action()
        if '"finish"' in action:
            break
        env.step(action)
    observation, reward, terminated, _, info = call(env, "finish", answer="99.9")
    assert terminated and reward == 0.0 and not info["success"]
    assert "wrong" in observation and task.answer in observation
    assert info["score"] == pytest.approx(1 / 2)  # the week was looked up, the answer is wrong
    env = new_env(2000)
    while not env.over:
        *_, info = env.step(env.expert_action())
    assert info["success"] and info["score"] == 1.0


# -- malformed and out-of-world calls -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("teleport", {}, "no tool 'teleport'"),
        ("get_weather", {"city_id": OSLO}, "'date' is a required property"),
        ("get_weather", {"city_id": OSLO, "date": "15/01/2020"}, "does not match"),
        ("get_weather", {"city_id": OSLO, "date": "2020-02-30"}, "is not a date"),
        ("get_weather", {"city_id": OSLO, "date": "2014-12-31"}, "outside the records"),
        ("get_weather", {"city_id": OSLO, "date": "2025-01-01"}, "outside the records"),
        ("get_weather", {"city_id": 1, "date": "2020-01-01"}, "no city has id 1"),
        ("get_weather", {"city_id": "Oslo", "date": "2020-01-01"}, "is not of type 'integer'"),
        ("get_city", {"city_id": 42}, "use search_cities"),
        (
            "get_weather_range",
            {"city_id": OSLO, "start_date": "2020-01-01", "end_date": "2020-02-01"},
            "32 days",
        ),
        (
            "get_weather_range",
            {"city_id": OSLO, "start_date": "2020-01-05", "end_date": "2020-01-01"},
            "before start_date",
        ),
        ("calculate", {"expression": "open('/etc/passwd')"}, "unknown function"),
        ("search_cities", {"query": ""}, "should be non-empty"),
        ("finish", {"answer": "1", "extra": 2}, "Additional properties"),
    ],
)
def test_bad_calls_are_invalid_say_why_and_change_nothing(name, arguments, says):
    env = new_env()
    result(env, "get_weather", city_id=OSLO, date="2016-04-22")
    before = env.snapshot()
    observation, reward, terminated, truncated, info = env.step(tool_call_action(name, arguments))
    assert info["invalid_action"] and observation.startswith("Error: ")
    assert says in observation, observation
    assert reward == 0.0 and not terminated and not truncated
    assert env.get_state() == before.state


def test_observations_stay_printable_ascii_whatever_the_arguments():
    env = new_env(2000)
    for name, arguments in [
        ("get_weather", {"city_id": OSLO, "date": "20\u00e90-01-01"}),  # a schema error
        ("get_weather", {"city_id": OSLO, "date": "\uff12\uff10\uff12\uff10-01-01"}),
        ("calculate", {"expression": "1 + \u00e9"}),
        ("search_cities", {"query": "Z\u00fcrich \u2603"}),
    ]:
        observation, *_ = call(env, name, **arguments)
        assert observation.isascii() and env.observation_space.contains(observation), observation
    while not env.over:
        action = env.expert_action()
        if '"finish"' in action:
            action = tool_call_action("finish", {"answer": f"{env.task.answer}\u00b0C"})
        observation, *_, info = env.step(action)
    assert info["success"] and observation == "Your answer '7.8?C' is correct."


def test_an_action_that_is_not_a_tool_call_is_invalid():
    env = new_env()
    observation, *_, info = env.step("get_weather Oslo 2020-01-01")
    assert info["invalid_action"] and "tool call" in observation


# -- the score, snapshots, the expert, random play ----------------------------------


def test_a_half_solved_task_scores_strictly_between_zero_and_one():
    task_id = task_with("wetter_month")
    env = new_env(task_id)
    first = env.task.spans[0]
    result(env, "get_weather_range", city_id=first.city_id, start_date=first.start.isoformat(),
           end_date=first.end.isoformat())  # fmt: skip
    assert env.subgoals() == [True, False, False]
    *_, terminated, _, info = call(env, "finish", answer="Atlantis")
    assert terminated and not info["success"]
    assert 0 < info["score"] < 1 and info["score"] == pytest.approx(1 / 3)
    # The right answer without the second city's month is not a success either.
    env = new_env(task_id)
    result(env, "get_weather_range", city_id=first.city_id, start_date=first.start.isoformat(),
           end_date=first.end.isoformat())  # fmt: skip
    *_, info = call(env, "finish", answer=env.task.answer)
    assert not info["success"] and info["score"] == pytest.approx(2 / 3)


def test_snapshot_and_restore_mid_episode():
    env = new_env(task_with("coldest_of_three"))
    env.step(env.expert_action())
    env.step(env.expert_action())
    snap = env.snapshot()
    rest = []
    while not env.over:
        action = env.expert_action()
        rest.append((action, env.step(action)))
    other = WeatherEnv()
    other.reset(seed=0, options={"task_id": TRAIN_TASKS[5]})
    other.restore(snap)
    assert other.task == make_task(snap.task_id)
    for action, outcome in rest:
        assert other.expert_action() == action
        assert other.step(action) == outcome


def test_the_expert_solves_every_test_task():
    env = WeatherEnv()
    steps = []
    for task_id in TEST_TASKS:
        env.reset(seed=0, options={"task_id": task_id})
        while not env.over:
            *_, info = env.step(env.expert_action())
            assert not info["invalid_action"]
        assert info["success"] and info["score"] == 1.0, task_id
        steps.append(env.steps)
    assert 3 <= statistics.mean(steps) <= 8 and max(steps) <= MAX_STEPS // 2


def test_random_play_is_mostly_valid_and_mostly_fails():
    env = WeatherEnv()
    wins, scores, invalid, steps = 0, [], 0, 0
    for index, task_id in enumerate(TEST_TASKS):
        env.reset(seed=0, options={"task_id": task_id})
        rng = np.random.default_rng(index)
        while not env.over:
            *_, info = env.step(env.random_action(rng))
            invalid += info["invalid_action"]
            steps += 1
        wins += info["success"]
        scores.append(info["score"])
    assert wins / len(TEST_TASKS) <= 0.03
    assert statistics.mean(scores) < 0.2
    assert invalid / steps < 0.2


def test_the_env_passes_palaestra_check_in_process():
    results = check(ENV_ID, episodes=2)
    failures = [f"{r.name}: {r.detail}" for r in results if r.failed]
    assert not failures, failures
    assert "tools" in palaestra.make(ENV_ID).capabilities()


def test_the_records_cover_ten_years():
    assert (FIRST_DAY, LAST_DAY) == (dt.date(2015, 1, 1), dt.date(2024, 12, 31))
