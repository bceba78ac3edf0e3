"""The questions of ``palaestra/Movie-v0``: eleven templates of joins over the database.

Each template picks an *anchor* (the film or person the question starts from)
and builds a :class:`Task`: the question (which states the answer's form), the
gold answer, the sub-goals (facts the answer needs, each a set of tool calls any
one of which shows it) and the expert's plan (the calls that solve it).

Task ``t`` uses template ``t % 11``. Anchors are split by id: those with
``id % 5 == 0`` are test anchors, the others training ones, so no test question
starts from a film or person that a training question starts from. Within a
split each template takes its anchors in one fixed shuffled order, so the tasks
of a split never repeat an anchor of the same template; the other choices (a
year, a genre, a role) are drawn from ``random.Random`` seeded by the task id.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from palaestra.envs.movie.data import Database, database, normalize
from palaestra.envs.tools import tool_call_action

__all__ = [
    "TEMPLATES",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Task",
    "answer_matches",
    "fact",
    "make_task",
    "warm",
]

TRAIN_TASKS = range(0, 1000)
TEST_TASKS = range(1000, 1200)
SEED = 15_2026


def fact(tool: str, key: int) -> str:
    """The name of a looked-up fact: a tool called on an id, e.g. ``get_movie_cast:42``."""
    return f"{tool}:{key}"


@dataclass(frozen=True)
class Task:
    """One question and how it is scored and solved.

    Attributes:
        template: The template's name.
        question: The question, stating the answer's form.
        answer: The gold answer, as the expert gives it.
        form: How answers are compared: ``"text"`` (names, titles), ``"place"``
            (a birthplace: the full place or its city), ``"number"``.
        value: For numbers, the exact value (answers may round it, see ``decimals``).
        decimals: For numbers, the decimals the question asks to round to.
        subgoals: The facts the answer needs; each a tuple of :func:`fact` names,
            any one of which shows it.
        plan: The expert's calls (canonical tool-call actions), ``finish`` excluded.
    """

    template: str
    question: str
    answer: str
    form: str
    subgoals: tuple[tuple[str, ...], ...]
    plan: tuple[str, ...]
    value: float | None = None
    decimals: int = 0


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


def answer_matches(task: Task, given: str) -> bool:
    """Whether ``given`` answers ``task``.

    Text ignores case, punctuation, spacing, quotes and a trailing ``(YEAR)``; a
    place may be the full place of birth or its city; a number is the first one in
    the answer (thousands separators allowed), equal to the gold value once
    rounded as the question asks (either rounding of a half counts).
    """
    if task.form == "number":
        match = _NUMBER.search(given)
        if match is None or task.value is None:
            return False
        try:
            number = float(match.group().replace(",", ""))
        except ValueError:
            return False
        return abs(number - task.value) <= 0.5 * 10.0**-task.decimals + 1e-9
    text = normalize(_YEAR_SUFFIX.sub("", given))
    if task.form == "place":
        return text in {normalize(task.answer), normalize(task.answer.split(",")[0])}
    return text == normalize(task.answer)


# -- templates ---------------------------------------------------------------------------
# Each template: (anchors, build). ``anchors(db)`` lists every anchor the template can
# use (sorted); ``build(db, anchor, rng)`` makes the task (and never fails on those).


def _film(db: Database, movie_id: int) -> str:
    return f"'{db.movies[movie_id]['title']}' ({db.year(movie_id)})"


def _search_movie(db: Database, movie_id: int) -> str:
    return tool_call_action("search_movie", {"query": db.movies[movie_id]["title"]})


def _search_person(db: Database, person_id: int) -> str:
    return tool_call_action("search_person", {"query": db.people[person_id]["name"]})


def _call(name: str, key: int) -> str:
    argument = "movie_id" if "movie" in name else "person_id"
    return tool_call_action(name, {argument: key})


def _goals(*facts: tuple[str, int] | list[tuple[str, int]]) -> tuple[tuple[str, ...], ...]:
    """Sub-goals from (tool, id) facts; a list of facts is one sub-goal with alternatives."""
    goals = []
    for item in facts:
        options = item if isinstance(item, list) else [item]
        goals.append(tuple(fact(tool, key) for tool, key in options))
    return tuple(goals)


def _one_director(db: Database, movie_id: int) -> int | None:
    directors = db.crew_ids(movie_id, "Director")
    return directors[0] if len(directors) == 1 else None


# 0. Who directed the film in which X played C?
def _role_anchors(db: Database) -> list[int]:
    out = []
    for person_id, credits in db.cast_of_person.items():
        characters = [c.character for c in credits]
        directed = [c for c in credits if _one_director(db, c.movie_id) is not None]
        if directed and len(set(characters)) == len(characters):
            out.append(person_id)
    return sorted(out)


def _role_build(db: Database, actor: int, rng: random.Random) -> Task:
    credits = [c for c in db.cast_of_person[actor] if _one_director(db, c.movie_id) is not None]
    credit = rng.choice(credits)
    director = _one_director(db, credit.movie_id)
    assert director is not None
    name = db.people[actor]["name"]
    return Task(
        template="director_of_role",
        question=(
            f"Who directed the film in which {name} played the character {credit.character}? "
            "Answer with the director's full name."
        ),
        answer=db.people[director]["name"],
        form="text",
        subgoals=_goals(
            [("get_person_cast", actor), ("get_movie_cast", credit.movie_id)],
            [("get_movie_crew", credit.movie_id), ("get_person_crew", director)],
        ),
        plan=(
            _search_person(db, actor),
            _call("get_person_cast", actor),
            _call("get_movie_crew", credit.movie_id),
        ),
    )


# 1. How many films did the director of T release before year Y?
def _director_films(db: Database, min_films: int, max_films: int) -> list[int]:
    out = []
    for movie_id in db.movies:
        director = _one_director(db, movie_id)
        if (
            director is not None
            and min_films <= len(db.films_as(director, "Director")) <= max_films
        ):
            out.append(movie_id)
    return sorted(out)


def _before_anchors(db: Database) -> list[int]:
    return [
        m
        for m in _director_films(db, 3, 30)
        if len({db.year(f) for f in db.films_as(_one_director(db, m) or 0, "Director")}) >= 2
    ]


def _before_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    director = _one_director(db, movie_id)
    assert director is not None
    years = sorted(db.year(f) for f in db.films_as(director, "Director"))
    cut = rng.choice(sorted(set(years[1:]) - {years[0]}))
    count = sum(y < cut for y in years)
    return Task(
        template="director_films_before",
        question=(
            f"How many films directed by the director of {_film(db, movie_id)} were "
            f"released before {cut}? Answer with a number."
        ),
        answer=str(count),
        form="number",
        value=count,
        subgoals=_goals(("get_movie_crew", movie_id), ("get_person_crew", director)),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_crew", movie_id),
            _call("get_person_crew", director),
        ),
    )


# 2. Who is the oldest of the first k billed cast members of T?
def _oldest_anchors(db: Database) -> list[int]:
    out = []
    for movie_id, cast in db.cast_of_movie.items():
        days = [db.people[c.person_id]["birthday"] for c in cast[:5]]
        if len(cast) >= 5 and len(set(days)) == len(days):
            out.append(movie_id)
    return sorted(out)


def _oldest_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    k = rng.choice([3, 4, 5])
    people = [c.person_id for c in db.cast_of_movie[movie_id][:k]]
    oldest = min(people, key=lambda p: db.people[p]["birthday"])
    return Task(
        template="oldest_of_cast",
        question=(
            f"Of the first {k} cast members of {_film(db, movie_id)} in billing order, who "
            "was born first (is the oldest)? Answer with the person's full name."
        ),
        answer=db.people[oldest]["name"],
        form="text",
        subgoals=_goals(("get_movie_cast", movie_id), *[("get_person_details", p) for p in people]),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_cast", movie_id),
            *[_call("get_person_details", p) for p in people],
        ),
    )


# 3. Total runtime of the G films directed by P.
def _runtime_anchors(db: Database) -> list[int]:
    return sorted(p for p in db.people if 2 <= len(db.films_as(p, "Director")) <= 6)


def _runtime_build(db: Database, director: int, rng: random.Random) -> Task:
    films = db.films_as(director, "Director")
    genres = sorted({g for f in films for g in db.movies[f]["genres"]})
    genre = rng.choice(genres)
    total = sum(db.movies[f]["runtime"] for f in films if genre in db.movies[f]["genres"])
    return Task(
        template="runtime_by_genre",
        question=(
            f"What is the total runtime, in minutes, of the films directed by "
            f"{db.people[director]['name']} that have the genre {genre}? Answer with a number."
        ),
        answer=str(total),
        form="number",
        value=total,
        subgoals=_goals(("get_person_crew", director), *[("get_movie_details", f) for f in films]),
        plan=(
            _search_person(db, director),
            _call("get_person_crew", director),
            *[_call("get_movie_details", f) for f in films],
        ),
    )


# 4. In what year was the composer of T born?
def _composer_anchors(db: Database) -> list[int]:
    return sorted(m for m in db.movies if len(db.crew_ids(m, "Original Music Composer")) == 1)


def _composer_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    composer = db.crew_ids(movie_id, "Original Music Composer")[0]
    year = int(db.people[composer]["birthday"][:4])
    return Task(
        template="composer_birth_year",
        question=(
            f"In what year was the composer of the original music of {_film(db, movie_id)} "
            "born? Answer with the four-digit year."
        ),
        answer=str(year),
        form="number",
        value=year,
        subgoals=_goals(("get_movie_crew", movie_id), ("get_person_details", composer)),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_crew", movie_id),
            _call("get_person_details", composer),
        ),
    )


# 5. How old was the director of T when T was released?
def _age_anchors(db: Database) -> list[int]:
    return _director_films(db, 1, 100)


def _age(born: str, on: str) -> int:
    by, bm, bd = (int(x) for x in born.split("-"))
    oy, om, od = (int(x) for x in on.split("-"))
    return oy - by - ((om, od) < (bm, bd))


def _age_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    director = _one_director(db, movie_id)
    assert director is not None
    age = _age(db.people[director]["birthday"], db.movies[movie_id]["release_date"])
    return Task(
        template="director_age_at_release",
        question=(
            f"How old was the director of {_film(db, movie_id)} on the film's release date? "
            "Answer with the age in whole years, as a number."
        ),
        answer=str(age),
        form="number",
        value=age,
        subgoals=_goals(("get_movie_crew", movie_id), ("get_person_details", director)),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_crew", movie_id),
            _call("get_person_details", director),
        ),
    )


# 6. Which film with X in its cast earned the most?
def _revenue_anchors(db: Database) -> list[int]:
    out = []
    for person_id, credits in db.cast_of_person.items():
        revenues = [db.movies[c.movie_id]["revenue"] for c in credits]
        if 2 <= len(credits) <= 6 and revenues.count(max(revenues)) == 1:
            out.append(person_id)
    return sorted(out)


def _revenue_build(db: Database, actor: int, rng: random.Random) -> Task:
    films = [c.movie_id for c in db.cast_of_person[actor]]
    best = max(films, key=lambda f: db.movies[f]["revenue"])
    return Task(
        template="top_revenue_of_actor",
        question=(
            f"Of the films in which {db.people[actor]['name']} appeared as a cast member, "
            "which one had the highest revenue? Answer with the film's title."
        ),
        answer=db.movies[best]["title"],
        form="text",
        subgoals=_goals(("get_person_cast", actor), *[("get_movie_details", f) for f in films]),
        plan=(
            _search_person(db, actor),
            _call("get_person_cast", actor),
            *[_call("get_movie_details", f) for f in films],
        ),
    )


# 7. Where was the top-billed actor of T born?
def _birthplace_anchors(db: Database) -> list[int]:
    return sorted(m for m, cast in db.cast_of_movie.items() if cast)


def _birthplace_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    lead = db.cast_of_movie[movie_id][0].person_id
    return Task(
        template="lead_birthplace",
        question=(
            f"Where was the top-billed cast member of {_film(db, movie_id)} born? Answer with "
            "the place of birth as the database gives it (the city alone is accepted)."
        ),
        answer=db.people[lead]["place_of_birth"],
        form="place",
        subgoals=_goals(("get_movie_cast", movie_id), ("get_person_details", lead)),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_cast", movie_id),
            _call("get_person_details", lead),
        ),
    )


# 8. Average rating of the films written by the screenwriter of T.
def _writer_anchors(db: Database) -> list[int]:
    out = []
    for movie_id in db.movies:
        writers = db.crew_ids(movie_id, "Screenplay")
        if len(writers) == 1 and 2 <= len(db.films_as(writers[0], "Screenplay")) <= 6:
            out.append(movie_id)
    return sorted(out)


def _writer_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    writer = db.crew_ids(movie_id, "Screenplay")[0]
    films = db.films_as(writer, "Screenplay")
    mean = sum(db.movies[f]["vote_average"] for f in films) / len(films)
    return Task(
        template="writer_mean_rating",
        question=(
            f"What is the average rating (vote average) of all the films whose screenplay was "
            f"written by the screenwriter of {_film(db, movie_id)}? Round to 2 decimals."
        ),
        answer=f"{mean:.2f}",
        form="number",
        value=mean,
        decimals=2,
        subgoals=_goals(
            ("get_movie_crew", movie_id),
            ("get_person_crew", writer),
            *[("get_movie_details", f) for f in films],
        ),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_crew", movie_id),
            _call("get_person_crew", writer),
            *[_call("get_movie_details", f) for f in films],
        ),
    )


# 9. Which actor appears in the cast of both T1 and T2?
@functools.cache
def _shared_pairs(db: Database) -> dict[int, list[tuple[int, int]]]:
    """For each film: (other film, the one actor they share) where exactly one is shared."""
    pairs: dict[int, list[tuple[int, int]]] = {}
    for movie_id, cast in db.cast_of_movie.items():
        counts: dict[int, list[int]] = {}
        for c in cast:
            for other in db.cast_of_person[c.person_id]:
                if other.movie_id != movie_id:
                    counts.setdefault(other.movie_id, []).append(c.person_id)
        found = [(m, people[0]) for m, people in sorted(counts.items()) if len(people) == 1]
        if found:
            pairs[movie_id] = found
    return pairs


def _shared_anchors(db: Database) -> list[int]:
    return sorted(_shared_pairs(db))


def _shared_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    other, actor = rng.choice(_shared_pairs(db)[movie_id])
    return Task(
        template="shared_cast_member",
        question=(
            f"Which actor is in the cast of both {_film(db, movie_id)} and {_film(db, other)}? "
            "Answer with the person's full name."
        ),
        answer=db.people[actor]["name"],
        form="text",
        subgoals=_goals(("get_movie_cast", movie_id), ("get_movie_cast", other)),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_cast", movie_id),
            _search_movie(db, other),
            _call("get_movie_cast", other),
        ),
    )


# 10. Combined budget of T and the film its director made just before it.
def _budget_anchors(db: Database) -> list[int]:
    out = []
    for movie_id in _director_films(db, 2, 100):
        films = db.films_as(_one_director(db, movie_id) or 0, "Director")
        earlier = [
            f for f in films if db.movies[f]["release_date"] < db.movies[movie_id]["release_date"]
        ]
        if earlier:
            dates = [db.movies[f]["release_date"] for f in earlier]
            if dates.count(max(dates)) == 1:
                out.append(movie_id)
    return sorted(out)


def _budget_build(db: Database, movie_id: int, rng: random.Random) -> Task:
    director = _one_director(db, movie_id)
    assert director is not None
    day = db.movies[movie_id]["release_date"]
    earlier = [f for f in db.films_as(director, "Director") if db.movies[f]["release_date"] < day]
    previous = max(earlier, key=lambda f: db.movies[f]["release_date"])
    total = (db.movies[movie_id]["budget"] + db.movies[previous]["budget"]) / 1e6
    return Task(
        template="budget_with_previous",
        question=(
            f"What was the combined budget of {_film(db, movie_id)} and the film its director "
            "released just before it, in millions of US dollars? Round to 1 decimal."
        ),
        answer=f"{total:.1f}",
        form="number",
        value=total,
        decimals=1,
        subgoals=_goals(
            ("get_movie_crew", movie_id),
            ("get_person_crew", director),
            ("get_movie_details", movie_id),
            ("get_movie_details", previous),
        ),
        plan=(
            _search_movie(db, movie_id),
            _call("get_movie_crew", movie_id),
            _call("get_person_crew", director),
            _call("get_movie_details", movie_id),
            _call("get_movie_details", previous),
        ),
    )


Build = Callable[[Database, int, random.Random], Task]
TEMPLATES: tuple[tuple[str, Callable[[Database], list[int]], Build], ...] = (
    ("director_of_role", _role_anchors, _role_build),
    ("director_films_before", _before_anchors, _before_build),
    ("oldest_of_cast", _oldest_anchors, _oldest_build),
    ("runtime_by_genre", _runtime_anchors, _runtime_build),
    ("composer_birth_year", _composer_anchors, _composer_build),
    ("director_age_at_release", _age_anchors, _age_build),
    ("top_revenue_of_actor", _revenue_anchors, _revenue_build),
    ("lead_birthplace", _birthplace_anchors, _birthplace_build),
    ("writer_mean_rating", _writer_anchors, _writer_build),
    ("shared_cast_member", _shared_anchors, _shared_build),
    ("budget_with_previous", _budget_anchors, _budget_build),
)
"""(name, anchors, build) of each template; task ``t`` uses ``TEMPLATES[t % 11]``."""


@functools.cache
def _anchors(template: int, test: bool) -> tuple[int, ...]:
    """The anchors of a template in one split, in the fixed order tasks take them."""
    name, anchors, _ = TEMPLATES[template]
    pool = [a for a in anchors(database()) if (a % 5 == 0) == test]
    random.Random(f"{SEED}-{name}").shuffle(pool)
    return tuple(pool)


def warm() -> None:
    """Load the database and list every template's anchors (~1 s once per process)."""
    for template in range(len(TEMPLATES)):
        for test in (False, True):
            _anchors(template, test)


@functools.cache
def make_task(task_id: int) -> Task:
    """The task ``task_id`` (of :data:`TRAIN_TASKS` or :data:`TEST_TASKS`).

    Raises:
        KeyError: ``task_id`` is in neither split.
    """
    if task_id in TRAIN_TASKS:
        test, first = False, TRAIN_TASKS.start
    elif task_id in TEST_TASKS:
        test, first = True, TEST_TASKS.start
    else:
        raise KeyError(f"no Movie task {task_id!r}")
    template = task_id % len(TEMPLATES)
    nth = (task_id - first) // len(TEMPLATES)
    pool = _anchors(template, test)
    if nth >= len(pool):
        raise RuntimeError(f"template {TEMPLATES[template][0]} has too few anchors")
    return TEMPLATES[template][2](database(), pool[nth], random.Random(SEED * 100_003 + task_id))
