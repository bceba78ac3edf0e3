"""SQL-v0's read-only sandbox: hostile statements are refused or cut, the file never changes.

Each statement is tried in-process, with each lock of the sandbox on its own where
one can be taken away, and over HTTP against a real ``palaestra serve`` process
that must stay up and keep serving other sessions.
"""

import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest

import palaestra
from palaestra.envs.sql import SQLEnv, database_file
from palaestra.envs.sql import sandbox as sandbox_module
from palaestra.envs.sql.sandbox import MAX_VALUE_BYTES, Refused, Sandbox
from palaestra.servers.local import start_server_process

ENV_ID = "palaestra/SQL-v0"
TASK = 0  # a retail question
TEN_MB = 10 * 1024 * 1024

ENDLESS_CTE = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT MAX(x) FROM n"
# A 10 MB result two ways: one value, and 10,000 rows of 1,000 characters.
TEN_MB_VALUE = f"SELECT randomblob({TEN_MB})"
TEN_MB_ROWS = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000) "
    "SELECT x, hex(randomblob(500)) FROM n"
)

# statement -> what the answer must say
HOSTILE = {
    "DROP TABLE customers": "Refused: DROP is not a query",
    "UPDATE customers SET city = 'Nowhere'": "Refused: UPDATE is not a query",
    "INSERT INTO customers VALUES (9999, 'a', 'b', 'c', 'd', 'e', 'f')": "Refused: INSERT is not",
    "ATTACH DATABASE '/tmp/palaestra-sql-attack.db' AS evil": "Refused: ATTACH is not a query",
    "PRAGMA writable_schema = ON": "Refused: PRAGMA writable_schema is not allowed",
    "SELECT load_extension('/tmp/palaestra-sql-attack.so')": "the function load_extension()",
    ENDLESS_CTE: "Stopped: the query ran longer than 1 s",
    TEN_MB_VALUE: f"Refused: a value longer than {MAX_VALUE_BYTES:,} bytes",
    # Writes behind a WITH pass the first-word gate; the authorizer stops them.
    "WITH x AS (SELECT 1) DELETE FROM orders": "Refused: DELETE (orders) is not allowed",
    "WITH x AS (SELECT 1) UPDATE orders SET status = 'x'": "Refused: UPDATE (orders) is not",
    "VACUUM INTO '/tmp/palaestra-sql-attack.db'": "Refused: VACUUM is not a query",
    "SELECT 1; DROP TABLE orders": "You can only execute one statement at a time",
    # A row read whole before the character cap sees it: 150 values of 99,999 bytes.
    "SELECT " + ", ".join(["zeroblob(99999)"] * 150): "Refused: more than 100 columns",
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def path() -> Path:
    return database_file(TASK)


@pytest.mark.parametrize("sql", list(HOSTILE))
def test_hostile_statements_are_refused_with_a_clear_message(path, sql):
    before = digest(path)
    sandbox = Sandbox(path)
    with pytest.raises(Refused, match=HOSTILE[sql].replace("(", r"\(").replace(")", r"\)")):
        sandbox.run(sql, max_rows=20, max_chars=2000)
    assert sandbox.run("SELECT COUNT(*) FROM customers", max_rows=1, max_chars=99).rows == (
        (1200,),
    )
    sandbox.close()
    assert digest(path) == before
    assert not Path("/tmp/palaestra-sql-attack.db").exists()


def test_a_ten_megabyte_result_is_cut_to_the_caps(path):
    sandbox = Sandbox(path)
    result = sandbox.run(TEN_MB_ROWS, max_rows=20, max_chars=2000)
    assert result.more and len(result.rows) == 1  # one row of 1,005 characters fits in 2,000
    result = sandbox.run(TEN_MB_ROWS, max_rows=10_000, max_chars=1_000_000)
    assert result.more and sum(len(r[1]) for r in result.rows) <= 1_000_000


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP TABLE customers", "Refused: schema changes (CREATE, DROP, ALTER) are not"),
        ("UPDATE customers SET city = 'x'", "Refused: UPDATE (customers) is not allowed"),
        ("INSERT INTO orders VALUES (1, 1, '2024-01-01', 'x')", "Refused: INSERT (orders)"),
        ("ATTACH DATABASE '/tmp/palaestra-sql-attack.db' AS e", "Refused: ATTACH"),
        ("CREATE TEMP TABLE t (x)", "Refused: schema changes (CREATE, DROP, ALTER)"),
        ("CREATE INDEX i ON orders (status)", "Refused: schema changes (CREATE, DROP, ALTER)"),
        ("BEGIN IMMEDIATE", "Refused: TRANSACTION (BEGIN)"),
    ],
)
def test_the_authorizer_alone_refuses_writes(path, monkeypatch, sql, expected):
    monkeypatch.setattr(sandbox_module, "_READ_STATEMENTS", _Everything())
    sandbox = Sandbox(path)
    with pytest.raises(Refused, match=expected.replace("(", r"\(").replace(")", r"\)")):
        sandbox.run(sql, max_rows=1, max_chars=99)


def test_the_read_only_open_alone_refuses_writes(path, monkeypatch):
    monkeypatch.setattr(sandbox_module, "_READ_STATEMENTS", _Everything())
    before = digest(path)
    sandbox = Sandbox(path)
    sandbox._connection.set_authorizer(None)  # take the authorizer away
    with pytest.raises(Refused, match="the database is read-only"):
        sandbox.run("DELETE FROM orders", max_rows=1, max_chars=99)
    assert digest(path) == before


def test_the_env_answers_each_hostile_query_and_goes_on(path):
    before = digest(path)
    env = SQLEnv()
    env.reset(seed=0, options={"task_id": TASK})
    for sql, expected in HOSTILE.items():
        obs, _, terminated, _, info = env.step(f"query {sql}")
        assert expected in obs and not terminated and not info["invalid_action"], obs
        if env.steps >= 8:
            env.reset(seed=0, options={"task_id": TASK})
    obs, *_ = env.step(f"query {TEN_MB_ROWS}")
    assert "more rows were cut" in obs and len(obs) < 3000
    _, reward, *_ = env.step(env.expert_action())
    assert reward == 1.0
    assert digest(path) == before


def test_over_http_a_real_server_refuses_them_and_stays_up(path):
    before = digest(path)
    process, url = start_server_process([ENV_ID])
    try:
        attacker = palaestra.make(ENV_ID, base_url=url)
        bystander = palaestra.make(ENV_ID, base_url=url)
        attacker.reset(seed=0, options={"task_id": TASK})
        bystander.reset(seed=0, options={"task_id": TASK})
        for sql, expected in HOSTILE.items():
            obs, _, terminated, _, _ = attacker.step(f"query {sql}")
            assert expected in obs and not terminated, obs
            attacker.reset(seed=0, options={"task_id": TASK})
        obs, *_ = attacker.step(f"query {TEN_MB_ROWS}")
        assert "more rows were cut" in obs

        # While an endless query runs, the server answers others at once.
        endless = threading.Thread(target=attacker.step, args=(f"query {ENDLESS_CTE}",))
        endless.start()
        time.sleep(0.2)
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        obs, *_ = bystander.step("query SELECT COUNT(*) FROM customers")
        assert "1200" in obs
        endless.join()

        _, reward, terminated, _, _ = bystander.step(bystander.unwrapped.expert_action())
        assert (reward, terminated) == (1.0, True)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert digest(path) == before
