"""The questions of Weather-v0: 13 templates, made per task id from a fixed seed.

Task ``t`` uses template ``TEMPLATES[t % 13]`` and draws its cities, dates and
thresholds from ``random.Random(f"palaestra-weather-{t}")``, so a task is the
same on every machine and needs nothing but its id. Each task knows the spans
of records its answer needs (a city and a run of days) and the exact answer,
computed from the records as the tools show them (rounded to 0.1).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache

from palaestra.envs.weather.cities import City, cities, city
from palaestra.envs.weather.climate import FIRST_DAY, LAST_DAY, Record, climate_of, record

__all__ = [
    "TEMPLATES",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Span",
    "Task",
    "check_answer",
    "make_task",
]

TRAIN_TASKS = range(0, 2000)
TEST_TASKS = range(2000, 2260)
MONTHS = (
    "January February March April May June July August September October November December"
).split()


@dataclass(frozen=True)
class Span:
    """Days of one city's records that a question needs (``start`` to ``end``, inclusive)."""

    city_id: int
    start: dt.date
    end: dt.date

    @property
    def days(self) -> list[dt.date]:
        """Every day of the span."""
        return [self.start + dt.timedelta(days=k) for k in range((self.end - self.start).days + 1)]


@dataclass(frozen=True)
class Task:
    """One question.

    Attributes:
        task_id: Its id.
        template: The template's name.
        question: The question, which says the answer's form.
        answer: The canonical answer (what the expert says).
        kind: How answers are checked: ``decimal`` (a number within 0.05 of the exact
            value), ``count`` (a whole number), ``date`` (YYYY-MM-DD) or ``city`` (a name).
        exact: The exact value, for ``decimal`` answers.
        spans: The records the answer needs; each is a sub-goal.
        cities: The ids of the cities the question names, in order.
        expressions: The arithmetic the expert does with ``calculate`` on the shown values.
    """

    task_id: int
    template: str
    question: str
    answer: str
    kind: str
    spans: tuple[Span, ...]
    cities: tuple[int, ...]
    exact: Fraction | None = None
    expressions: tuple[str, ...] = ()


# -- answer checking ---------------------------------------------------------------

_NUMBER = re.compile(r"[-+\u2212]?\d+(?:\.\d+)?")
_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")


def _letters(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def check_answer(task: Task, answer: str) -> bool:
    """Whether ``answer`` is right: numbers within the asked rounding, names and dates loosely.

    ``decimal``: the first number in the answer is within 0.05 of the exact value
    (so either rounding of a half is right, and units or words around it are
    ignored). ``count``: the first number equals the count. ``date``: the first
    YYYY-MM-DD date is the day. ``city``: the answer, ignoring case, spaces and
    punctuation, is the city's name, or its name and country.
    """
    text = answer.strip()
    if task.kind in ("decimal", "count"):
        if _DATE.search(text):
            return False
        match = _NUMBER.search(text.replace(",", ""))
        if match is None:
            return False
        value = Fraction(match.group(0).replace("\u2212", "-"))
        if task.kind == "count":
            return value == int(task.answer)
        assert task.exact is not None
        return abs(value - task.exact) <= Fraction(1, 20)
    if task.kind == "date":
        match = _DATE.search(text)
        if match is None:
            return False
        try:
            day = dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            return False
        return day.isoformat() == task.answer
    target = next(c for c in map(city, task.cities) if c is not None and c.name == task.answer)
    said = _letters(text)
    return said in (_letters(target.name), _letters(target.name + target.country))


# -- helpers for the templates -----------------------------------------------------

FIELD_INDEX = {"tmax": 0, "tmin": 1, "precip": 2, "snow": 3, "wind": 4, "humidity": 5}


def _values(span: Span, field: str) -> list[float]:
    index = FIELD_INDEX[field]
    return [record(span.city_id, day)[index] for day in span.days]


def _records(span: Span) -> list[Record]:
    return [record(span.city_id, day) for day in span.days]


def _tenths(value: float) -> int:
    return round(value * 10)


def _mean(values: list[float]) -> Fraction:
    """The exact mean of values shown with one decimal."""
    return Fraction(sum(_tenths(v) for v in values), 10 * len(values))


def _round1(value: Fraction) -> str:
    """``value`` rounded half away from zero to one decimal, as text."""
    tenths = abs(value) * 10
    rounded = math.floor(tenths + Fraction(1, 2))
    sign = "-" if value < 0 and rounded else ""
    return f"{sign}{rounded // 10}.{rounded % 10}"


def _num(value: float) -> str:
    return format(value, "g")


def _list(values: list[float]) -> str:
    return "[" + ", ".join(_num(v) for v in values) + "]"


def _day(rng: random.Random, length: int) -> dt.date:
    """A first day such that ``length`` days fit in the records."""
    return FIRST_DAY + dt.timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days - length + 2))


def _month(rng: random.Random) -> tuple[int, int]:
    return rng.randrange(FIRST_DAY.year, LAST_DAY.year + 1), rng.randrange(1, 13)


def _month_span(city_id: int, year: int, month: int) -> Span:
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return Span(city_id, dt.date(year, month, 1), nxt - dt.timedelta(days=1))


def _pick(rng: random.Random, count: int = 1) -> list[City]:
    """``count`` different cities, with different names (so that a name is an answer)."""
    while True:
        chosen = rng.sample(cities(), count)
        if len({c.name for c in chosen}) == count:
            return chosen


def _long(day: dt.date) -> str:
    return day.isoformat()


def _arg_extreme(span: Span, field: str, highest: bool) -> dt.date | None:
    """The day of the unique highest (lowest) value, or ``None`` on a tie."""
    values = _values(span, field)
    best = max(values) if highest else min(values)
    if values.count(best) != 1:
        return None
    return span.days[values.index(best)]


@cache
def _cold_cities() -> tuple[City, ...]:
    """Cities whose coldest weeks average below about 1 C: snow falls there most winters."""
    return tuple(c for c in cities() if (cl := climate_of(c)).t_mean - cl.t_amp < 1.0)


_Made = Task | None
_Template = Callable[[int, random.Random], _Made]


# -- the templates ---------------------------------------------------------------


def _mean_week(task_id: int, rng: random.Random) -> _Made:
    (c,) = _pick(rng)
    field = rng.choice(("tmax", "tmin"))
    start = _day(rng, 7)
    span = Span(c.id, start, start + dt.timedelta(days=6))
    values = _values(span, field)
    exact = _mean(values)
    word = "maximum" if field == "tmax" else "minimum"
    return Task(
        task_id,
        "mean_week",
        f"What was the average daily {word} temperature in {c.label} over the 7 days from "
        f"{_long(span.start)} to {_long(span.end)} (inclusive)? Answer in degrees C, rounded "
        "to 1 decimal.",
        _round1(exact),
        "decimal",
        (span,),
        (c.id,),
        exact,
        (f"mean({_list(values)})",),
    )


def _diff_cities_day(task_id: int, rng: random.Random) -> _Made:
    a, b = _pick(rng, 2)
    day = _day(rng, 1)
    spans = (Span(a.id, day, day), Span(b.id, day, day))
    va, vb = (record(s.city_id, day)[0] for s in spans)
    exact = Fraction(_tenths(va) - _tenths(vb), 10)
    return Task(
        task_id,
        "diff_cities_day",
        f"On {_long(day)}, by how many degrees C was the daily maximum temperature in "
        f"{a.label} higher than in {b.label}? Answer with a negative number if it was lower, "
        "rounded to 1 decimal.",
        _round1(exact),
        "decimal",
        spans,
        (a.id, b.id),
        exact,
        (f"{_num(va)} - ({_num(vb)})",),
    )


def _extreme_day(field: str, highest: bool, name: str, words: str) -> _Template:
    def make(task_id: int, rng: random.Random) -> _Made:
        (c,) = _pick(rng)
        length = rng.randrange(8, 15)
        start = _day(rng, length)
        span = Span(c.id, start, start + dt.timedelta(days=length - 1))
        best = _arg_extreme(span, field, highest)
        if best is None:
            return None
        return Task(
            task_id,
            name,
            f"Which day from {_long(span.start)} to {_long(span.end)} (inclusive) had the "
            f"{words} in {c.label}? Answer with the date as YYYY-MM-DD.",
            best.isoformat(),
            "date",
            (span,),
            (c.id,),
        )

    return make


def _wetter_month(task_id: int, rng: random.Random) -> _Made:
    a, b = _pick(rng, 2)
    year, month = _month(rng)
    spans = (_month_span(a.id, year, month), _month_span(b.id, year, month))
    totals = [sum(_tenths(v) for v in _values(s, "precip")) for s in spans]
    if abs(totals[0] - totals[1]) < 20:  # closer than 2 mm: too close to call
        return None
    wetter = a if totals[0] > totals[1] else b
    return Task(
        task_id,
        "wetter_month",
        f"Which city had more total precipitation in {MONTHS[month - 1]} {year}: {a.label} or "
        f"{b.label}? Answer with the city name.",
        wetter.name,
        "city",
        spans,
        (a.id, b.id),
        None,
        tuple(f"sum({_list(_values(s, 'precip'))})" for s in spans),
    )


def _warm_days(task_id: int, rng: random.Random) -> _Made:
    (c,) = _pick(rng)
    year, month = _month(rng)
    span = _month_span(c.id, year, month)
    values = sorted(_values(span, "tmax"))
    threshold = math.floor(values[rng.randrange(len(values) // 3, 2 * len(values) // 3)])
    count = sum(v >= threshold for v in values)
    return Task(
        task_id,
        "warm_days",
        f"On how many days of {MONTHS[month - 1]} {year} did the daily maximum temperature in "
        f"{c.label} reach {threshold} C or more? Answer with a whole number.",
        str(count),
        "count",
        (span,),
        (c.id,),
    )


def _rain_total(task_id: int, rng: random.Random) -> _Made:
    (c,) = _pick(rng)
    length = rng.randrange(10, 21)
    start = _day(rng, length)
    span = Span(c.id, start, start + dt.timedelta(days=length - 1))
    values = _values(span, "precip")
    if not any(values) and rng.random() < 0.8:  # mostly ask about spans with some rain
        return None
    exact = Fraction(sum(_tenths(v) for v in values), 10)
    return Task(
        task_id,
        "rain_total",
        f"How much precipitation fell in {c.label} in total from {_long(span.start)} to "
        f"{_long(span.end)} (inclusive)? Answer in mm, rounded to 1 decimal.",
        _round1(exact),
        "decimal",
        (span,),
        (c.id,),
        exact,
        (f"sum({_list(values)})",),
    )


def _coldest_of_three(task_id: int, rng: random.Random) -> _Made:
    trio = _pick(rng, 3)
    day = _day(rng, 1)
    lows = [record(c.id, day)[1] for c in trio]
    if lows.count(min(lows)) != 1:
        return None
    coldest = trio[lows.index(min(lows))]
    return Task(
        task_id,
        "coldest_of_three",
        f"On {_long(day)}, which of {trio[0].label}, {trio[1].label} and {trio[2].label} had the "
        "lowest minimum temperature? Answer with the city name.",
        coldest.name,
        "city",
        tuple(Span(c.id, day, day) for c in trio),
        tuple(c.id for c in trio),
    )


def _year_change(task_id: int, rng: random.Random) -> _Made:
    (c,) = _pick(rng)
    first, second = sorted(rng.sample(range(FIRST_DAY.year, LAST_DAY.year + 1), 2))
    month = rng.choice([m for m in range(1, 13) if m != 2])  # no 29 February
    day = rng.randrange(1, 23)
    spans = tuple(
        Span(c.id, dt.date(y, month, day), dt.date(y, month, day) + dt.timedelta(days=6))
        for y in (first, second)
    )
    old, new = (_values(s, "tmax") for s in spans)
    exact = _mean(new) - _mean(old)
    period = f"{MONTHS[month - 1]} {day} to {MONTHS[month - 1]} {day + 6}"
    return Task(
        task_id,
        "year_change",
        f"How much higher was the average daily maximum temperature in {c.label} from {period} "
        f"{second} than over the same 7 days of {first}? Answer in degrees C with a negative "
        "number if it was lower, rounded to 1 decimal.",
        _round1(exact),
        "decimal",
        spans,
        (c.id,),
        exact,
        (f"mean({_list(new)}) - mean({_list(old)})",),
    )


def _snow_days(task_id: int, rng: random.Random) -> _Made:
    c = rng.choice(_cold_cities())
    year = rng.randrange(FIRST_DAY.year, LAST_DAY.year + 1)
    month = rng.choice((12, 1, 2, 3) if c.lat > 0 else (6, 7, 8, 9))
    span = _month_span(c.id, year, month)
    count = sum(v > 0 for v in _values(span, "snow"))
    if count == 0 and rng.random() < 0.8:
        return None
    return Task(
        task_id,
        "snow_days",
        f"On how many days of {MONTHS[month - 1]} {year} did snow fall in {c.label} (snowfall "
        "above 0 cm)? Answer with a whole number.",
        str(count),
        "count",
        (span,),
        (c.id,),
    )


def _rainy_days(task_id: int, rng: random.Random) -> _Made:
    (c,) = _pick(rng)
    year, month = _month(rng)
    span = _month_span(c.id, year, month)
    count = sum(v >= 1.0 for v in _values(span, "precip"))
    return Task(
        task_id,
        "rainy_days",
        f"On how many days of {MONTHS[month - 1]} {year} did {c.label} get at least 1.0 mm of "
        "precipitation? Answer with a whole number.",
        str(count),
        "count",
        (span,),
        (c.id,),
    )


def _diurnal_range(task_id: int, rng: random.Random) -> _Made:
    (c,) = _pick(rng)
    start = _day(rng, 7)
    span = Span(c.id, start, start + dt.timedelta(days=6))
    days = _records(span)
    exact = Fraction(sum(_tenths(r[0]) - _tenths(r[1]) for r in days), 70)
    return Task(
        task_id,
        "diurnal_range",
        f"What was the average daily temperature range (maximum minus minimum) in {c.label} "
        f"over the 7 days from {_long(span.start)} to {_long(span.end)} (inclusive)? Answer in "
        "degrees C, rounded to 1 decimal.",
        _round1(exact),
        "decimal",
        (span,),
        (c.id,),
        exact,
        ("mean([" + ", ".join(f"{_num(r[0])} - ({_num(r[1])})" for r in days) + "])",),
    )


TEMPLATES: dict[str, _Template] = {
    "mean_week": _mean_week,
    "diff_cities_day": _diff_cities_day,
    "hottest_day": _extreme_day("tmax", True, "hottest_day", "highest maximum temperature"),
    "coldest_night": _extreme_day("tmin", False, "coldest_night", "lowest minimum temperature"),
    "wetter_month": _wetter_month,
    "warm_days": _warm_days,
    "rain_total": _rain_total,
    "coldest_of_three": _coldest_of_three,
    "year_change": _year_change,
    "snow_days": _snow_days,
    "rainy_days": _rainy_days,
    "diurnal_range": _diurnal_range,
    "windiest_day": _extreme_day("wind", True, "windiest_day", "strongest maximum wind"),
}
"""The question templates, by name; task ``t`` uses the ``t % 13``-th."""


@lru_cache(maxsize=4096)
def make_task(task_id: int) -> Task:
    """Task ``task_id`` (any int; the splits hold 0-2259).

    Draws until the template accepts its draw (no ties, not too close to call).
    """
    make = list(TEMPLATES.values())[task_id % len(TEMPLATES)]
    rng = random.Random(f"palaestra-weather-{task_id}")
    for _ in range(200):
        task = make(task_id, rng)
        if task is not None:
            return task
    raise RuntimeError(f"task {task_id}: no acceptable draw")  # pragma: no cover
