"""The questions of ``palaestra/SQL-v0``: templates over the data, each with its gold SQL.

Each database has a dozen templates at four difficulties: ``simple`` (one table,
a filter), ``aggregate`` (counts, sums, averages, GROUP BY), ``join`` (two or
three tables) and ``nested`` (subqueries, NOT IN, HAVING over joins, top-k).
A template draws its parameters (a city, a year, a price bound...) from the
database itself with a seeded ``random.Random``, so every question is about
values that exist. Questions are made round-robin over a database's templates
and kept only when their gold result has 1 to :data:`MAX_GOLD_ROWS` rows (not a
lone NULL or 0), their SQL is new, and, where the question asks for an order, no
two rows tie on it (nor at a top-k cut), until the database has :data:`PER_DATABASE` of them.

Question ``i`` of a database is a test question when ``i % 5 == 4``, else a
training one; task ids list the training questions first, interleaved over the
databases (see :func:`locate`). The questions are written once, next to the
databases, as ``questions.json``.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from palaestra.envs.sql.databases import DATABASES, SEED, database_path

__all__ = [
    "DIFFICULTIES",
    "MAX_GOLD_ROWS",
    "PER_DATABASE",
    "QUESTIONS_FILE",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Question",
    "load_questions",
    "locate",
    "make_questions",
    "write_questions",
]

QUESTIONS_FILE = "questions.json"
PER_DATABASE = 300
MAX_GOLD_ROWS = 60
DIFFICULTIES = ("simple", "aggregate", "join", "nested")

_TEST_EVERY = 5
_TRAIN_PER_DATABASE = PER_DATABASE - PER_DATABASE // _TEST_EVERY
TRAIN_TASKS = range(0, _TRAIN_PER_DATABASE * len(DATABASES))
TEST_TASKS = range(TRAIN_TASKS.stop, PER_DATABASE * len(DATABASES))


@dataclass(frozen=True)
class Question:
    """One task: a question about a database and the SQL that answers it.

    Attributes:
        database: The database name (one of ``DATABASES``).
        question: The question, in English, naming the columns wanted in order.
        sql: The gold query.
        difficulty: One of :data:`DIFFICULTIES`.
        ordered: Whether the answer's row order matters (the gold query sorts).
    """

    database: str
    question: str
    sql: str
    difficulty: str
    ordered: bool


def locate(task_id: int) -> tuple[str, int]:
    """The database and question index (within that database) of ``task_id``."""
    if task_id in TRAIN_TASKS:
        database, nth = DATABASES[task_id % len(DATABASES)], task_id // len(DATABASES)
        return database, nth + nth // (_TEST_EVERY - 1)  # skip the test slots
    if task_id in TEST_TASKS:
        k = task_id - TEST_TASKS.start
        database, nth = DATABASES[k % len(DATABASES)], k // len(DATABASES)
        return database, nth * _TEST_EVERY + _TEST_EVERY - 1
    raise KeyError(f"task {task_id!r} is in no split (train: 0..{TRAIN_TASKS.stop - 1}, "
                   f"test: {TEST_TASKS.start}..{TEST_TASKS.stop - 1})")  # fmt: skip


# -- templates -----------------------------------------------------------------------


def q(text: object) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


class _Values:
    """Distinct values of a database, drawn with the template's generator."""

    def __init__(self, connection: sqlite3.Connection, rng: random.Random) -> None:
        self.connection = connection
        self.rng = rng
        self._cache: dict[str, list] = {}

    def pick(self, sql: str) -> object:
        if sql not in self._cache:
            self._cache[sql] = sorted(r[0] for r in self.connection.execute(sql))
        return self.rng.choice(self._cache[sql])

    def row(self, sql: str) -> tuple:
        if sql not in self._cache:
            # Sorted: the order SQLite returns rows in may change with its query plan.
            self._cache[sql] = sorted(self.connection.execute(sql))
        return self.rng.choice(self._cache[sql])


MONTHS = ("January February March April May June July August September October November "
          "December").split()  # fmt: skip

Template = tuple[str, tuple[int, ...], Callable[[_Values], tuple[str, str]]]
"""(difficulty, sort key, make): the sort key is the result columns whose order the
question asks for (empty: rows in any order); make draws (question, gold SQL)."""


def _retail() -> list[Template]:
    category = "SELECT DISTINCT category FROM products ORDER BY 1"
    city = "SELECT DISTINCT city FROM customers ORDER BY 1"
    status = "SELECT DISTINCT status FROM orders ORDER BY 1"

    def t1(v: _Values) -> tuple[str, str]:
        c, p = v.pick(category), v.rng.choice((10, 20, 25, 30, 40, 50, 75, 100, 150, 200))
        return (
            f"List the names and prices of the {c} products that cost more than ${p}.",
            f"SELECT name, price FROM products WHERE category = {q(c)} AND price > {p}",
        )

    def t2(v: _Values) -> tuple[str, str]:
        c, y = v.pick(city), v.rng.randrange(2019, 2024)
        return (
            f"How many customers from {c} signed up in {y}?",
            f"SELECT COUNT(*) FROM customers WHERE city = {q(c)} "
            f"AND strftime('%Y', signup_date) = '{y}'",
        )

    def t3(v: _Values) -> tuple[str, str]:
        s, y, m = v.pick(status), v.rng.randrange(2019, 2025), v.rng.randrange(1, 13)
        return (
            f"List the ids and dates of the orders with status '{s}' placed in "
            f"{MONTHS[m - 1]} {y}.",
            f"SELECT order_id, order_date FROM orders WHERE status = {q(s)} "
            f"AND strftime('%Y-%m', order_date) = '{y}-{m:02d}'",
        )

    def t4(v: _Values) -> tuple[str, str]:
        p = v.rng.randrange(10, 300, 5)
        return (
            f"For each product category, give the category and the number of products "
            f"priced under ${p}.",
            f"SELECT category, COUNT(*) FROM products WHERE price < {p} GROUP BY category",
        )

    def t5(v: _Values) -> tuple[str, str]:
        c, y = v.pick(category), v.rng.randrange(2019, 2025)
        return (
            f"What is the average unit price of the {c} items sold in orders placed in "
            f"{y}, rounded to 2 decimals?",
            f"SELECT ROUND(AVG(oi.unit_price), 2) FROM order_items oi "
            f"JOIN products p ON p.product_id = oi.product_id "
            f"JOIN orders o ON o.order_id = oi.order_id "
            f"WHERE p.category = {q(c)} AND strftime('%Y', o.order_date) = '{y}'",
        )

    def t6(v: _Values) -> tuple[str, str]:
        y = v.rng.randrange(2019, 2025)
        return (
            f"For each order status, give the status and the number of orders placed in {y}.",
            f"SELECT status, COUNT(*) FROM orders WHERE strftime('%Y', order_date) = '{y}' "
            f"GROUP BY status",
        )

    def t7(v: _Values) -> tuple[str, str]:
        cid, first, last = v.row(
            "SELECT customer_id, first_name, last_name FROM customers "
            "WHERE customer_id IN (SELECT customer_id FROM orders)"
        )
        return (
            f"List the ids and dates of the orders placed by customer number {cid} "
            f"({first} {last}), earliest first.",
            f"SELECT order_id, order_date FROM orders WHERE customer_id = {cid} "
            f"ORDER BY order_date, order_id",
        )

    def t8(v: _Values) -> tuple[str, str]:
        c, y = v.pick(category), v.rng.randrange(2019, 2025)
        return (
            f"What is the total quantity of {c} products sold in orders placed in {y} "
            f"that were not cancelled?",
            f"SELECT SUM(oi.quantity) FROM order_items oi "
            f"JOIN products p ON p.product_id = oi.product_id "
            f"JOIN orders o ON o.order_id = oi.order_id WHERE p.category = {q(c)} "
            f"AND strftime('%Y', o.order_date) = '{y}' AND o.status != 'cancelled'",
        )

    def t9(v: _Values) -> tuple[str, str]:
        c, y, m = v.pick(city), v.rng.randrange(2019, 2025), v.rng.randrange(1, 13)
        return (
            f"List the distinct names of the products bought by customers from {c} in "
            f"{MONTHS[m - 1]} {y}.",
            f"SELECT DISTINCT p.name FROM products p "
            f"JOIN order_items oi ON oi.product_id = p.product_id "
            f"JOIN orders o ON o.order_id = oi.order_id "
            f"JOIN customers c ON c.customer_id = o.customer_id WHERE c.city = {q(c)} "
            f"AND strftime('%Y-%m', o.order_date) = '{y}-{m:02d}'",
        )

    def t10(v: _Values) -> tuple[str, str]:
        c = v.pick(category)
        return (
            f"List the names of the {c} products that cost more than the average price "
            f"of all {c} products.",
            f"SELECT name FROM products WHERE category = {q(c)} AND price > "
            f"(SELECT AVG(price) FROM products WHERE category = {q(c)})",
        )

    def t11(v: _Values) -> tuple[str, str]:
        k, y = v.rng.randrange(3, 11), v.rng.randrange(2019, 2025)
        return (
            f"Which {k} customers spent the most in {y} (sum of quantity times unit price "
            f"over their orders that were not cancelled)? Give customer id, first name, "
            f"last name and the total rounded to 2 decimals, highest total first.",
            f"SELECT c.customer_id, c.first_name, c.last_name, "
            f"ROUND(SUM(oi.quantity * oi.unit_price), 2) AS total FROM customers c "
            f"JOIN orders o ON o.customer_id = c.customer_id "
            f"JOIN order_items oi ON oi.order_id = o.order_id "
            f"WHERE o.status != 'cancelled' AND strftime('%Y', o.order_date) = '{y}' "
            f"GROUP BY c.customer_id ORDER BY total DESC, c.customer_id LIMIT {k}",
        )

    def t12(v: _Values) -> tuple[str, str]:
        c, y = v.pick(category), v.rng.randrange(2019, 2025)
        return (
            f"List the names of the {c} products that were never ordered in {y}.",
            f"SELECT name FROM products WHERE category = {q(c)} AND product_id NOT IN "
            f"(SELECT oi.product_id FROM order_items oi JOIN orders o "
            f"ON o.order_id = oi.order_id WHERE strftime('%Y', o.order_date) = '{y}')",
        )

    def t13(v: _Values) -> tuple[str, str]:
        c, n = v.pick(city), v.rng.randrange(4, 9)
        return (
            f"List the customer ids, first and last names of the customers from {c} who "
            f"placed at least {n} orders.",
            f"SELECT c.customer_id, c.first_name, c.last_name FROM customers c "
            f"JOIN orders o ON o.customer_id = c.customer_id WHERE c.city = {q(c)} "
            f"GROUP BY c.customer_id HAVING COUNT(*) >= {n}",
        )

    return [("simple", (), t1), ("simple", (), t2), ("simple", (), t3),
            ("aggregate", (), t4), ("join", (), t5), ("aggregate", (), t6),
            ("join", (1,), t7), ("join", (), t8), ("nested", (), t9),
            ("nested", (), t10), ("nested", (3,), t11), ("nested", (), t12),
            ("join", (), t13)]  # fmt: skip


def _university() -> list[Template]:
    dept = "SELECT dept_id, name FROM departments ORDER BY 1"
    state = "SELECT DISTINCT home_state FROM students ORDER BY 1"
    rank = "SELECT DISTINCT rank FROM instructors ORDER BY 1"
    term = "SELECT DISTINCT term FROM enrollments ORDER BY 1"

    def t1(v: _Values) -> tuple[str, str]:
        r, s = v.pick(rank), v.rng.randrange(60, 170, 5) * 1000
        return (
            f"List the first and last names of the instructors with rank '{r}' earning "
            f"more than {s}.",
            f"SELECT first_name, last_name FROM instructors WHERE rank = {q(r)} AND salary > {s}",
        )

    def t2(v: _Values) -> tuple[str, str]:
        s, y = v.pick(state), v.rng.randrange(2018, 2024)
        return (
            f"How many students from the state {s} enrolled in {y}?",
            f"SELECT COUNT(*) FROM students WHERE home_state = {q(s)} AND enrollment_year = {y}",
        )

    def t3(v: _Values) -> tuple[str, str]:
        c = v.rng.randrange(2, 6)
        d = v.row(dept)
        return (
            f"List the codes and titles of the courses of the {d[1]} department worth {c} credits.",
            f"SELECT code, title FROM courses WHERE dept_id = {d[0]} AND credits = {c}",
        )

    def t4(v: _Values) -> tuple[str, str]:
        y = v.rng.randrange(1988, 2020)
        return (
            f"For each rank, give the rank and the average salary (rounded to the nearest "
            f"whole number) of the instructors hired in {y} or later.",
            f"SELECT rank, ROUND(AVG(salary)) FROM instructors WHERE hire_year >= {y} "
            f"GROUP BY rank",
        )

    def t5(v: _Values) -> tuple[str, str]:
        t = v.pick(term)
        return (
            f"For each grade, give the grade and the number of enrollments in {t} that "
            f"received it.",
            f"SELECT grade, COUNT(*) FROM enrollments WHERE term = {q(t)} GROUP BY grade",
        )

    def t6(v: _Values) -> tuple[str, str]:
        d, t = v.row(dept), v.pick(term)
        return (
            f"How many students were enrolled in courses of the {d[1]} department in {t}? "
            f"Count each enrollment.",
            f"SELECT COUNT(*) FROM enrollments e JOIN courses c ON c.course_id = e.course_id "
            f"WHERE c.dept_id = {d[0]} AND e.term = {q(t)}",
        )

    def t7(v: _Values) -> tuple[str, str]:
        sid, first, last = v.row("SELECT student_id, first_name, last_name FROM students")
        return (
            f"List the course codes and grades of student number {sid} ({first} {last}), "
            f"ordered by course code.",
            f"SELECT c.code, e.grade FROM enrollments e "
            f"JOIN courses c ON c.course_id = e.course_id WHERE e.student_id = {sid} "
            f"ORDER BY c.code, e.grade",
        )

    def t8(v: _Values) -> tuple[str, str]:
        d = v.row(dept)
        return (
            f"For each course taught by an instructor of the {d[1]} department, give the "
            f"course code and the instructor's last name.",
            f"SELECT c.code, i.last_name FROM courses c "
            f"JOIN instructors i ON i.instructor_id = c.instructor_id "
            f"WHERE i.dept_id = {d[0]}",
        )

    def t9(v: _Values) -> tuple[str, str]:
        d, g = v.row(dept), v.rng.choice((2.5, 2.8, 3.0, 3.2, 3.4))
        return (
            f"List the student ids, first and last names of the students majoring in "
            f"{d[1]} whose average grade points are above {g}.",
            f"SELECT s.student_id, s.first_name, s.last_name FROM students s "
            f"JOIN enrollments e ON e.student_id = s.student_id "
            f"WHERE s.major_dept_id = {d[0]} GROUP BY s.student_id "
            f"HAVING AVG(e.grade_points) > {g}",
        )

    def t10(v: _Values) -> tuple[str, str]:
        d = v.row(dept)
        return (
            f"List the first and last names of the instructors of the {d[1]} department "
            f"who earn more than the average salary of all instructors.",
            f"SELECT first_name, last_name FROM instructors WHERE dept_id = {d[0]} "
            f"AND salary > (SELECT AVG(salary) FROM instructors)",
        )

    def t11(v: _Values) -> tuple[str, str]:
        k, t = v.rng.randrange(3, 8), v.pick(term)
        return (
            f"Which {k} courses had the most enrollments in {t}? Give the course code and "
            f"the number of enrollments, most first.",
            f"SELECT c.code, COUNT(*) AS n FROM enrollments e "
            f"JOIN courses c ON c.course_id = e.course_id WHERE e.term = {q(t)} "
            f"GROUP BY c.course_id ORDER BY n DESC, c.code LIMIT {k}",
        )

    def t12(v: _Values) -> tuple[str, str]:
        d, y = v.row(dept), v.rng.randrange(2018, 2024)
        return (
            f"How many students majoring in {d[1]} who enrolled in {y} never received an F?",
            f"SELECT COUNT(*) FROM students WHERE major_dept_id = {d[0]} "
            f"AND enrollment_year = {y} AND student_id NOT IN "
            f"(SELECT student_id FROM enrollments WHERE grade = 'F')",
        )

    def t13(v: _Values) -> tuple[str, str]:
        b = v.pick("SELECT DISTINCT building FROM departments ORDER BY 1")
        return (
            f"List the distinct titles of the courses taught by departments housed in "
            f"{b} that at least one student failed (grade F).",
            f"SELECT DISTINCT c.title FROM courses c "
            f"JOIN departments d ON d.dept_id = c.dept_id "
            f"JOIN enrollments e ON e.course_id = c.course_id "
            f"WHERE d.building = {q(b)} AND e.grade = 'F'",
        )

    return [("simple", (), t1), ("simple", (), t2), ("simple", (), t3),
            ("aggregate", (), t4), ("aggregate", (), t5), ("join", (), t6),
            ("join", (0,), t7), ("join", (), t8), ("nested", (), t9),
            ("nested", (), t10), ("nested", (1,), t11), ("nested", (), t12),
            ("nested", (), t13)]  # fmt: skip


def _flights() -> list[Template]:
    airport = "SELECT code, city FROM airports ORDER BY 1"
    airline = "SELECT airline_id, name FROM airlines ORDER BY 1"
    nationality = "SELECT DISTINCT nationality FROM passengers ORDER BY 1"
    seat = "SELECT DISTINCT seat_class FROM bookings ORDER BY 1"

    def t1(v: _Values) -> tuple[str, str]:
        a, m = v.row(airport), v.rng.randrange(1, 13)
        return (
            f"List the flight numbers and departure times of the flights leaving {a[0]} "
            f"({a[1]}) in {MONTHS[m - 1]} 2024.",
            f"SELECT flight_number, departure FROM flights WHERE origin = {q(a[0])} "
            f"AND strftime('%m', departure) = '{m:02d}'",
        )

    def t2(v: _Values) -> tuple[str, str]:
        n, y = v.pick(nationality), v.rng.randrange(1940, 2000, 5)
        return (
            f"How many passengers of nationality {n} were born before {y}?",
            f"SELECT COUNT(*) FROM passengers WHERE nationality = {q(n)} AND birth_year < {y}",
        )

    def t3(v: _Values) -> tuple[str, str]:
        a, d = v.row(airline), v.rng.randrange(60, 290, 10)
        return (
            f"List the flight numbers and delays in minutes of the {a[1]} flights delayed "
            f"by more than {d} minutes.",
            f"SELECT flight_number, delay_minutes FROM flights WHERE airline_id = {a[0]} "
            f"AND delay_minutes > {d}",
        )

    def t4(v: _Values) -> tuple[str, str]:
        m = v.rng.randrange(1, 13)
        return (
            f"For each flight status, give the status and the number of flights departing "
            f"in {MONTHS[m - 1]} 2024.",
            f"SELECT status, COUNT(*) FROM flights WHERE strftime('%m', departure) = "
            f"'{m:02d}' GROUP BY status",
        )

    def t5(v: _Values) -> tuple[str, str]:
        a = v.row(airport)
        return (
            f"For each seat class, give the class and the average fare (rounded to 2 "
            f"decimals) of the bookings on flights arriving at {a[0]}.",
            f"SELECT b.seat_class, ROUND(AVG(b.fare), 2) FROM bookings b "
            f"JOIN flights f ON f.flight_id = b.flight_id "
            f"WHERE f.destination = {q(a[0])} GROUP BY b.seat_class",
        )

    def t6(v: _Values) -> tuple[str, str]:
        a, s = v.row(airline), v.pick(seat)
        return (
            f"How many {s} bookings were made on {a[1]} flights?",
            f"SELECT COUNT(*) FROM bookings b JOIN flights f ON f.flight_id = b.flight_id "
            f"WHERE f.airline_id = {a[0]} AND b.seat_class = {q(s)}",
        )

    def t7(v: _Values) -> tuple[str, str]:
        pid, first, last = v.row(
            "SELECT passenger_id, first_name, last_name FROM passengers "
            "WHERE passenger_id IN (SELECT passenger_id FROM bookings)"
        )
        return (
            f"List the departure times, flight numbers, origins and destinations of the flights "
            f"booked by passenger number {pid} ({first} {last}), earliest first.",
            f"SELECT f.departure, f.flight_number, f.origin, f.destination FROM bookings b "
            f"JOIN flights f ON f.flight_id = b.flight_id WHERE b.passenger_id = {pid} "
            f"ORDER BY f.departure, f.flight_id",
        )

    def t8(v: _Values) -> tuple[str, str]:
        c = v.pick("SELECT DISTINCT country FROM airports ORDER BY 1")
        return (
            f"List the distinct names of the airlines that fly to airports in {c}.",
            f"SELECT DISTINCT al.name FROM airlines al "
            f"JOIN flights f ON f.airline_id = al.airline_id "
            f"JOIN airports ap ON ap.code = f.destination WHERE ap.country = {q(c)}",
        )

    def t9(v: _Values) -> tuple[str, str]:
        n, a = v.pick(nationality), v.row(airline)
        return (
            f"List the distinct passenger ids, first and last names of the passengers of "
            f"nationality {n} who flew business or first class with {a[1]}.",
            f"SELECT DISTINCT p.passenger_id, p.first_name, p.last_name FROM passengers p "
            f"JOIN bookings b ON b.passenger_id = p.passenger_id "
            f"JOIN flights f ON f.flight_id = b.flight_id WHERE p.nationality = {q(n)} "
            f"AND f.airline_id = {a[0]} AND b.seat_class IN ('business', 'first')",
        )

    def t10(v: _Values) -> tuple[str, str]:
        a = v.row(airline)
        return (
            f"List the flight numbers and durations of the {a[1]} flights that are longer "
            f"than the average duration of all flights, without repeats.",
            f"SELECT DISTINCT flight_number, duration_minutes FROM flights "
            f"WHERE airline_id = {a[0]} "
            f"AND duration_minutes > (SELECT AVG(duration_minutes) FROM flights)",
        )

    def t11(v: _Values) -> tuple[str, str]:
        k, m = v.rng.randrange(3, 8), v.rng.randrange(1, 13)
        return (
            f"Which {k} departure airports had the most flights in {MONTHS[m - 1]} 2024? "
            f"Give the airport code and the number of flights, most first.",
            f"SELECT origin, COUNT(*) AS n FROM flights WHERE strftime('%m', departure) = "
            f"'{m:02d}' GROUP BY origin ORDER BY n DESC, origin LIMIT {k}",
        )

    def t12(v: _Values) -> tuple[str, str]:
        a = v.row(airport)
        return (
            f"List the names of the airlines that never fly out of {a[0]} ({a[1]}).",
            f"SELECT name FROM airlines WHERE airline_id NOT IN "
            f"(SELECT airline_id FROM flights WHERE origin = {q(a[0])})",
        )

    def t13(v: _Values) -> tuple[str, str]:
        a, n = v.row(airline), v.rng.randrange(2, 5)
        return (
            f"List the ids, first and last names of the passengers who booked at least "
            f"{n} flights with {a[1]}.",
            f"SELECT p.passenger_id, p.first_name, p.last_name FROM passengers p "
            f"JOIN bookings b ON b.passenger_id = p.passenger_id "
            f"JOIN flights f ON f.flight_id = b.flight_id WHERE f.airline_id = {a[0]} "
            f"GROUP BY p.passenger_id HAVING COUNT(*) >= {n}",
        )

    return [("simple", (), t1), ("simple", (), t2), ("simple", (), t3),
            ("aggregate", (), t4), ("join", (), t5), ("join", (), t6),
            ("join", (0,), t7), ("join", (), t8), ("nested", (), t9),
            ("nested", (), t10), ("aggregate", (1,), t11), ("nested", (), t12),
            ("nested", (), t13)]  # fmt: skip


def _hospital() -> list[Template]:
    specialty = "SELECT DISTINCT specialty FROM doctors ORDER BY 1"
    ward = "SELECT DISTINCT ward FROM admissions ORDER BY 1"
    diagnosis = "SELECT DISTINCT diagnosis FROM admissions ORDER BY 1"
    city = "SELECT DISTINCT city FROM patients ORDER BY 1"
    drug = "SELECT DISTINCT drug FROM prescriptions ORDER BY 1"

    def t1(v: _Values) -> tuple[str, str]:
        c, b = v.pick(city), v.pick("SELECT DISTINCT blood_type FROM patients ORDER BY 1")
        return (
            f"List the first and last names and birth dates of the patients from {c} "
            f"with blood type {b}.",
            f"SELECT first_name, last_name, birth_date FROM patients WHERE city = {q(c)} "
            f"AND blood_type = {q(b)}",
        )

    def t2(v: _Values) -> tuple[str, str]:
        d, y = v.pick(diagnosis), v.rng.randrange(2021, 2025)
        return (
            f"How many admissions for {d} were there in {y}?",
            f"SELECT COUNT(*) FROM admissions WHERE diagnosis = {q(d)} "
            f"AND strftime('%Y', admit_date) = '{y}'",
        )

    def t3(v: _Values) -> tuple[str, str]:
        s, y = v.pick(specialty), v.rng.randrange(1990, 2020)
        return (
            f"List the first and last names of the {s} doctors hired after {y}.",
            f"SELECT first_name, last_name FROM doctors WHERE specialty = {q(s)} "
            f"AND hire_year > {y}",
        )

    def t4(v: _Values) -> tuple[str, str]:
        y = v.rng.randrange(2021, 2025)
        return (
            f"For each ward, give the ward and the total cost (rounded to 2 decimals) of "
            f"the admissions of {y}.",
            f"SELECT ward, ROUND(SUM(cost), 2) FROM admissions "
            f"WHERE strftime('%Y', admit_date) = '{y}' GROUP BY ward",
        )

    def t5(v: _Values) -> tuple[str, str]:
        w = v.pick(ward)
        return (
            f"What is the average length of stay in days (discharge date minus admit date, "
            f"rounded to 2 decimals) of the admissions to the {w} ward?",
            f"SELECT ROUND(AVG(julianday(discharge_date) - julianday(admit_date)), 2) "
            f"FROM admissions WHERE ward = {q(w)}",
        )

    def t6(v: _Values) -> tuple[str, str]:
        d, c = v.pick(drug), v.pick(city)
        return (
            f"How many prescriptions of {d} were written for patients from {c}?",
            f"SELECT COUNT(*) FROM prescriptions pr "
            f"JOIN admissions a ON a.admission_id = pr.admission_id "
            f"JOIN patients p ON p.patient_id = a.patient_id "
            f"WHERE pr.drug = {q(d)} AND p.city = {q(c)}",
        )

    def t7(v: _Values) -> tuple[str, str]:
        pid, first, last = v.row(
            "SELECT patient_id, first_name, last_name FROM patients "
            "WHERE patient_id IN (SELECT patient_id FROM admissions)"
        )
        return (
            f"List the admit dates and diagnoses of the admissions of patient number {pid} "
            f"({first} {last}), earliest first.",
            f"SELECT admit_date, diagnosis FROM admissions WHERE patient_id = {pid} "
            f"ORDER BY admit_date, admission_id",
        )

    def t8(v: _Values) -> tuple[str, str]:
        s, y, m = v.pick(specialty), v.rng.randrange(2021, 2025), v.rng.randrange(1, 13)
        return (
            f"List the admission ids and the doctors' last names of the admissions to "
            f"{s} doctors in {MONTHS[m - 1]} {y}.",
            f"SELECT a.admission_id, d.last_name FROM admissions a "
            f"JOIN doctors d ON d.doctor_id = a.doctor_id WHERE d.specialty = {q(s)} "
            f"AND strftime('%Y-%m', a.admit_date) = '{y}-{m:02d}'",
        )

    def t9(v: _Values) -> tuple[str, str]:
        s, n = v.pick(specialty), v.rng.randrange(80, 130)
        return (
            f"List the ids, first and last names of the {s} doctors with more than {n} admissions.",
            f"SELECT d.doctor_id, d.first_name, d.last_name FROM doctors d "
            f"JOIN admissions a ON a.doctor_id = d.doctor_id WHERE d.specialty = {q(s)} "
            f"GROUP BY d.doctor_id HAVING COUNT(*) > {n}",
        )

    def t10(v: _Values) -> tuple[str, str]:
        w, y = v.pick(ward), v.rng.randrange(2021, 2025)
        return (
            f"How many admissions to the {w} ward in {y} cost more than the average cost "
            f"of all admissions?",
            f"SELECT COUNT(*) FROM admissions WHERE ward = {q(w)} "
            f"AND strftime('%Y', admit_date) = '{y}' "
            f"AND cost > (SELECT AVG(cost) FROM admissions)",
        )

    def t11(v: _Values) -> tuple[str, str]:
        k, c = v.rng.randrange(3, 8), v.pick(city)
        return (
            f"Which {k} patients from {c} had the highest total admission cost? Give the "
            f"patient id, last name and the total rounded to 2 decimals, highest first.",
            f"SELECT p.patient_id, p.last_name, ROUND(SUM(a.cost), 2) AS total "
            f"FROM patients p JOIN admissions a ON a.patient_id = p.patient_id "
            f"WHERE p.city = {q(c)} GROUP BY p.patient_id "
            f"ORDER BY total DESC, p.patient_id LIMIT {k}",
        )

    def t12(v: _Values) -> tuple[str, str]:
        c, y = v.pick(city), v.rng.randrange(1935, 2010, 5)
        return (
            f"How many patients from {c} born in {y} or later were never admitted?",
            f"SELECT COUNT(*) FROM patients WHERE city = {q(c)} "
            f"AND strftime('%Y', birth_date) >= '{y}' "
            f"AND patient_id NOT IN (SELECT patient_id FROM admissions)",
        )

    def t13(v: _Values) -> tuple[str, str]:
        d, dose = v.pick(drug), v.rng.choice((10, 20, 50, 100, 250, 500))
        return (
            f"List the distinct diagnoses of the admissions with a prescription of {d} at "
            f"a dose of at least {dose} mg.",
            f"SELECT DISTINCT a.diagnosis FROM admissions a "
            f"JOIN prescriptions pr ON pr.admission_id = a.admission_id "
            f"WHERE pr.drug = {q(d)} AND pr.dose_mg >= {dose}",
        )

    return [("simple", (), t1), ("simple", (), t2), ("simple", (), t3),
            ("aggregate", (), t4), ("aggregate", (), t5), ("join", (), t6),
            ("join", (0,), t7), ("join", (), t8), ("nested", (), t9),
            ("nested", (), t10), ("nested", (2,), t11), ("nested", (), t12),
            ("join", (), t13)]  # fmt: skip


_TEMPLATES: dict[str, Callable[[], list[Template]]] = {
    "retail": _retail,
    "university": _university,
    "flights": _flights,
    "hospital": _hospital,
}

_LIMIT = re.compile(r" LIMIT (\d+)$")
_MAX_MISSES = 60
"""Draws in a row that give no new valid question before a template is dropped."""


def _ties(connection: sqlite3.Connection, sql: str, rows: list, key: tuple[int, ...]) -> bool:
    """Whether a sorted answer has ties on the order the question states.

    The gold breaks them by a column the question does not name (an id), so an agent
    sorting as asked could list tied rows in another order; and at a top-k cut, a row
    tied with the k-th could be left out or in. Such questions are not asked.
    """
    keys = [tuple(row[i] for i in key) for row in rows]
    if len(set(keys)) < len(keys):
        return True
    limit = _LIMIT.search(sql)
    if limit is None:
        return False
    wider = connection.execute(_LIMIT.sub(f" LIMIT {int(limit.group(1)) + 1}", sql)).fetchall()
    return len(wider) > len(rows) and tuple(wider[-1][i] for i in key) == keys[-1]


def make_questions(database: str, path: Path) -> list[Question]:
    """The :data:`PER_DATABASE` questions of ``database``, whose file is ``path``.

    Raises:
        RuntimeError: The templates ran dry before enough questions were made.
    """
    rng = random.Random(SEED * 7 + DATABASES.index(database))
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        values = _Values(connection, rng)
        templates = _TEMPLATES[database]()
        misses = [0] * len(templates)
        seen: set[str] = set()
        questions: list[Question] = []
        k = 0
        while len(questions) < PER_DATABASE:
            live = [i for i, m in enumerate(misses) if m < _MAX_MISSES]
            if not live:
                raise RuntimeError(f"{database}: only {len(questions)} questions could be made")
            index = live[k % len(live)]
            k += 1
            difficulty, key, template = templates[index]
            text, sql = template(values)
            rows = connection.execute(sql).fetchall() if sql not in seen else []
            # Empty, huge, NULL or zero answers make weak tasks (a wrong query matches them).
            weak = not 1 <= len(rows) <= MAX_GOLD_ROWS or rows[0] in ((None,), (0,))
            if weak or (key and _ties(connection, sql, rows, key)):
                misses[index] += 1
                k -= 1  # the same template draws again
                continue
            misses[index] = 0
            seen.add(sql)
            questions.append(Question(database, text, sql, difficulty, bool(key)))
        return questions
    finally:
        connection.close()


def write_questions(directory: Path) -> None:
    """Make every database's questions from the databases in ``directory``; write the file."""
    data = {
        name: [
            asdict(question) for question in make_questions(name, database_path(name, directory))
        ]
        for name in DATABASES
    }
    (directory / QUESTIONS_FILE).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_questions(directory: Path) -> dict[str, list[Question]]:
    """The questions written by :func:`write_questions`, per database."""
    data = json.loads((directory / QUESTIONS_FILE).read_text())
    return {name: [Question(**item) for item in data[name]] for name in DATABASES}
