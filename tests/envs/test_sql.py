import hashlib
import sqlite3
import threading
from collections import Counter

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra
from palaestra.envs.sql import (
    DATABASES,
    MAX_STEPS,
    SHOWN_ROWS,
    TEST_TASKS,
    TRAIN_TASKS,
    SQLEnv,
    build,
    cache_dir,
    ensure_built,
    load_questions,
    locate,
    results_match,
)
from palaestra.envs.sql.questions import DIFFICULTIES, PER_DATABASE, _ties

ENV_ID = "palaestra/SQL-v0"


def new_env(task_id: int = TEST_TASKS[0]) -> SQLEnv:
    env = SQLEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


@pytest.fixture(scope="module")
def questions():
    return load_questions(ensure_built())


# -- data ---------------------------------------------------------------------------


def test_every_database_is_byte_identical_across_builds(tmp_path):
    for name in DATABASES:
        first, second = tmp_path / f"a-{name}.sqlite", tmp_path / f"b-{name}.sqlite"
        build(name, first)
        build(name, second)
        assert (
            hashlib.sha256(first.read_bytes()).digest()
            == hashlib.sha256(second.read_bytes()).digest()
        ), name


def test_databases_hold_thousands_of_rows_over_several_tables():
    for name in DATABASES:
        with sqlite3.connect(ensure_built() / f"{name}.sqlite") as connection:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master "
                                                       "WHERE type = 'table'")]  # fmt: skip
            rows = sum(
                connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables
            )
        assert len(tables) >= 4 and rows >= 10_000, (name, tables, rows)


def test_the_cache_root_follows_palaestra_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path))
    assert cache_dir().parent == tmp_path / "sql"


# -- questions ----------------------------------------------------------------------


def test_task_ids_map_one_to_one_onto_the_questions():
    places = [locate(t) for t in [*TRAIN_TASKS, *TEST_TASKS]]
    assert len(set(places)) == len(places) == PER_DATABASE * len(DATABASES)
    assert all(i % 5 == 4 for t in TEST_TASKS for _, i in [locate(t)])
    assert Counter(db for db, _ in (locate(t) for t in TEST_TASKS)) == dict.fromkeys(
        DATABASES, len(TEST_TASKS) // len(DATABASES)
    )
    with pytest.raises(KeyError):
        locate(TEST_TASKS.stop)


def test_questions_span_every_difficulty_in_both_splits(questions):
    for split in ("train", "test"):
        seen = Counter(
            questions[db][i].difficulty for db, i in (locate(t) for t in SQLEnv.tasks(split))
        )
        assert set(seen) == set(DIFFICULTIES), (split, seen)
    for name in DATABASES:
        sqls = [q.sql for q in questions[name]]
        assert len(set(sqls)) == len(sqls) == PER_DATABASE


def test_ordered_flag_is_set_exactly_when_the_gold_query_sorts(questions):
    for name in DATABASES:
        for question in questions[name]:
            assert question.ordered == (" ORDER BY " in question.sql), question.sql


def test_questions_whose_stated_order_ties_are_not_asked():
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (id INTEGER, n INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?, ?)", [(1, 5), (2, 4), (3, 4), (4, 1)])
    top = "SELECT id, n FROM t ORDER BY n DESC, id LIMIT {}"
    rows = connection.execute(top.format(2)).fetchall()  # 3 ties with 2 at the cut
    assert _ties(connection, top.format(2), rows, (1,))
    rows = connection.execute(top.format(1)).fetchall()
    assert not _ties(connection, top.format(1), rows, (1,))
    every = "SELECT id, n FROM t ORDER BY n DESC, id"
    assert _ties(connection, every, connection.execute(every).fetchall(), (1,))
    assert not _ties(connection, every, connection.execute(every).fetchall(), (0,))


# -- comparing results ---------------------------------------------------------------


def test_results_match_by_execution():
    gold = [(1, "a"), (2, "b"), (2, "b")]
    assert results_match([(2, "b"), (1, "a"), (2, "b")], gold, ordered=False)
    assert not results_match([(2, "b"), (1, "a"), (2, "b")], gold, ordered=True)
    assert not results_match([(1, "a"), (2, "b")], gold, ordered=False)  # duplicates count
    assert not results_match([("a", 1), ("b", 2), ("b", 2)], gold, ordered=False)  # columns
    assert results_match([(2.0,)], [(2,)], ordered=False)
    assert results_match([(0.1 + 0.2,)], [(0.3,)], ordered=False)
    assert not results_match([(0.3001,)], [(0.3,)], ordered=False)


# -- the env ------------------------------------------------------------------------


def test_registered_and_passes_gymnasium_check_env():
    env = gymnasium.make(ENV_ID)
    check_env(env.unwrapped, skip_render_check=True)
    assert isinstance(env.unwrapped, SQLEnv)


def test_first_observation_gives_schema_and_question(questions):
    env = SQLEnv()
    obs, info = env.reset(seed=0, options={"task_id": 0})
    database, index = locate(0)
    assert obs.startswith(f"Database: {database}\nTables:\n")
    assert "customers(customer_id INTEGER" in obs and "rows" in obs
    assert f"Question: {questions[database][index].question}" in obs
    assert info["task_id"] == 0


def test_expert_solves_every_test_task_in_one_step():
    env = SQLEnv()
    for task_id in TEST_TASKS:
        env.reset(seed=0, options={"task_id": task_id})
        _, reward, terminated, _, info = env.step(env.expert_action())
        assert (reward, terminated, info["success"], info["score"]) == (1.0, True, True, 1.0)
        assert info["difficulty"] in DIFFICULTIES
    env.close()


def test_query_shows_a_capped_result_and_costs_a_step():
    env = new_env(0)
    obs, reward, terminated, _, info = env.step("query SELECT * FROM customers")
    assert obs.splitlines()[0].startswith("customer_id | first_name")
    assert len(obs.splitlines()) == SHOWN_ROWS + 2
    assert f"the first {SHOWN_ROWS} rows shown; more rows were cut" in obs
    assert (reward, terminated, info["invalid_action"]) == (0.0, False, False)


def test_a_wrong_submission_ends_the_episode_with_score_zero():
    env = new_env(0)
    _, reward, terminated, _, info = env.step("submit SELECT COUNT(*) FROM products")
    assert (reward, terminated, info["success"], info["score"]) == (0.0, True, False, 0.0)


def test_a_submission_that_does_not_run_lets_the_agent_try_again():
    env = new_env(0)
    obs, _, terminated, _, info = env.step("submit SELECT nope FROM customers")
    assert not terminated and not info["invalid_action"]
    assert "did not run" in obs and "no such column: nope" in obs
    _, reward, terminated, _, _ = env.step(env.expert_action())
    assert (reward, terminated) == (1.0, True)


def test_sql_in_code_fences_with_a_semicolon_is_read():
    env = new_env(0)
    gold = env.expert_action().removeprefix("submit ")
    _, reward, _, _, _ = env.step(f"SUBMIT ```sql\n{gold};\n```")
    assert reward == 1.0


def _values_sql(rows: list[tuple]) -> str:
    """A ``VALUES`` statement that gives ``rows`` in this order."""

    def literal(value: object) -> str:
        return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)

    return "VALUES " + ", ".join("(" + ", ".join(map(literal, row)) + ")" for row in rows)


@pytest.mark.parametrize("ordered", [True, False])
def test_row_order_matters_only_when_the_gold_sorts(questions, ordered):
    """The gold's rows typed out as VALUES match; reversed, only an unsorted gold matches."""
    for task_id in TEST_TASKS:
        database, index = locate(task_id)
        question = questions[database][index]
        with sqlite3.connect(ensure_built() / f"{database}.sqlite") as connection:
            rows = connection.execute(question.sql).fetchall()
        if question.ordered == ordered and len(set(rows)) >= 2:
            break
    for sql, right in ((_values_sql(rows), True), (_values_sql(rows[::-1]), not ordered)):
        env = new_env(task_id)
        _, reward, terminated, _, _ = env.step(f"submit {sql}")
        assert terminated and reward == float(right), (question.sql, sql)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("select * from customers", "Invalid action"),
        ("query", "needs a SQL statement"),
        ("submit   ;", "needs a SQL statement"),
        ("schema no_such_table", "No table 'no_such_table'"),
        ("", "Invalid action"),
    ],
)
def test_invalid_actions_say_what_is_allowed(action, expected):
    env = new_env(0)
    obs, _, terminated, _, info = env.step(action)
    assert info["invalid_action"] and not terminated
    assert expected in obs


def test_schema_of_a_table_shows_its_columns_and_three_rows():
    env = new_env(0)
    obs, *_ = env.step("schema ORDERS")
    assert obs.startswith("orders(order_id INTEGER, customer_id INTEGER")
    assert "(3 rows)" in obs


def test_observations_stay_printable_whatever_the_query():
    env = new_env(0)
    obs, *_ = env.step("query SELECT 'caf\u00e9 \u2603'")
    assert "caf? ?" in obs
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("text", ["\x00", "\ud800"])
def test_unencodable_sql_is_an_error_message_not_a_crash(text):
    """A lone surrogate (JSON can carry one) raised UnicodeEncodeError out of step()."""
    env = new_env(0)
    obs, _, terminated, _, _ = env.step(f"query SELECT '{text}'")
    assert obs.startswith("SQL error:") and not terminated


def test_an_env_can_be_reset_after_close():
    env = new_env(0)
    env.close()
    env.reset(seed=0, options={"task_id": 4})  # the same database as task 0
    _, reward, *_ = env.step(env.expert_action())
    assert reward == 1.0


def test_truncated_after_max_steps():
    env = new_env(0)
    for _ in range(MAX_STEPS - 1):
        assert not env.step("schema")[3]
    _, _, terminated, truncated, info = env.step("schema")
    assert truncated and not terminated and info["score"] == 0.0


def test_snapshot_restore_across_databases():
    env = new_env(0)
    env.step("schema")
    snapshot = env.snapshot()
    env.reset(seed=0, options={"task_id": 1})  # another database
    env.restore(snapshot)
    assert env.steps == 1
    _, reward, *_ = env.step(env.expert_action())
    assert reward == 1.0


def test_random_actions_are_valid_and_repeatable():
    env = new_env(0)
    draws = [env.random_action(np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    for k in range(30):
        env = new_env(k % 8)
        _, _, _, _, info = env.step(env.random_action(np.random.default_rng(k)))
        assert not info["invalid_action"]


def test_one_env_may_be_stepped_from_different_threads():
    """The server runs a session's calls on its pool's threads, one at a time.

    sqlite3's default ``check_same_thread`` made the second thread's query fail.
    """
    env = new_env(0)
    results = []

    def step() -> None:
        results.append(env.step("query SELECT COUNT(*) FROM orders")[0])

    for _ in range(3):
        thread = threading.Thread(target=step)
        thread.start()
        thread.join()
    assert all(r.startswith("COUNT(*)\n") for r in results) and len(results) == 3


def test_sessions_query_at_once_from_many_threads():
    envs = [new_env(t) for t in range(8)]
    errors = []

    def play(env: SQLEnv) -> None:
        try:
            for _ in range(5):
                env.step("query SELECT COUNT(*) FROM sqlite_master")
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=play, args=(env,)) for env in envs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_make_over_the_registry():
    env = palaestra.make(ENV_ID)
    obs, _ = env.reset(options={"task_id": TEST_TASKS[0]})
    assert "Question:" in obs
    env.close()
