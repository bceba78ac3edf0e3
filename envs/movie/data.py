"""The film database of ``palaestra/Movie-v0``: loading, indices, searches and lookups.

The database is ``movies.json.gz`` in this package, written by
``tools/make_movie_data.py`` (see there how it is made): 2,000 films, 4,399
people, 15,942 cast and 13,144 crew credits, all fictional, ASCII. It is read
once per process (:func:`database`).
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "DATA_FILE",
    "DEPARTMENTS",
    "SEARCH_LIMIT",
    "Database",
    "database",
    "normalize",
]

DATA_FILE = "movies.json.gz"
SEARCH_LIMIT = 10
"""A search shows at most this many matches (best first)."""
DEPARTMENTS = {
    "Director": "Directing",
    "Screenplay": "Writing",
    "Original Music Composer": "Sound",
    "Director of Photography": "Camera",
    "Editor": "Editing",
    "Producer": "Production",
}
"""Each crew job and its department."""

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> str:
    """``text`` lower-cased with punctuation dropped and spaces collapsed (for matching).

    Apostrophes vanish (``Ballad's`` -> ``ballads``); other punctuation separates words.
    """
    return " ".join(_NOT_WORD.sub(" ", text.lower().replace("'", "")).split())


@dataclass(frozen=True)
class CastCredit:
    """One role: a person in a film, as a character, at a billing position (0 = top)."""

    movie_id: int
    person_id: int
    character: str
    order: int


@dataclass(frozen=True)
class CrewCredit:
    """One crew job of a person on a film."""

    movie_id: int
    person_id: int
    job: str


class Database:
    """The films, people and credits, indexed by id, with TMDB-like views.

    Attributes:
        movies: Film records by id (dicts as stored: title, release_date, runtime,
            genres, language, company, budget, revenue, vote_average, vote_count).
        people: Person records by id (name, gender, birthday, deathday,
            place_of_birth, known_for_department).
        cast_of_movie: Cast credits by film id, in billing order.
        cast_of_person: Cast credits by person id, oldest film first.
        crew_of_movie: Crew credits by film id, in job order.
        crew_of_person: Crew credits by person id, oldest film first.
        movie_ids: Every film id, ascending.
        person_ids: Every person id, ascending.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.movies: dict[int, dict[str, Any]] = {m["id"]: m for m in data["movies"]}
        self.people: dict[int, dict[str, Any]] = {p["id"]: p for p in data["people"]}
        self.cast_of_movie: dict[int, list[CastCredit]] = {m: [] for m in self.movies}
        self.cast_of_person: dict[int, list[CastCredit]] = {p: [] for p in self.people}
        self.crew_of_movie: dict[int, list[CrewCredit]] = {m: [] for m in self.movies}
        self.crew_of_person: dict[int, list[CrewCredit]] = {p: [] for p in self.people}
        for movie_id, person_id, character, order in data["cast"]:
            credit = CastCredit(movie_id, person_id, character, order)
            self.cast_of_movie[movie_id].append(credit)
            self.cast_of_person[person_id].append(credit)
        for movie_id, person_id, job in data["crew"]:
            crew = CrewCredit(movie_id, person_id, job)
            self.crew_of_movie[movie_id].append(crew)
            self.crew_of_person[person_id].append(crew)
        jobs = list(DEPARTMENTS)
        for credits in self.cast_of_movie.values():
            credits.sort(key=lambda c: c.order)
        for crews in self.crew_of_movie.values():
            crews.sort(key=lambda c: jobs.index(c.job))
        for person_credits in (self.cast_of_person, self.crew_of_person):
            for credits in person_credits.values():  # type: ignore[attr-defined]
                credits.sort(key=lambda c: (self.movies[c.movie_id]["release_date"], c.movie_id))
        self._newest_first = {
            k: -int(m["release_date"].replace("-", "")) for k, m in self.movies.items()
        }
        self.movie_ids = sorted(self.movies)
        self.person_ids = sorted(self.people)
        self._titles = {m["id"]: normalize(m["title"]) for m in data["movies"]}
        self._names = {p["id"]: normalize(p["name"]) for p in data["people"]}
        self._title_index = self._index(list((t, k) for k, t in self._titles.items()))
        self._name_index = self._index(list((n, k) for k, n in self._names.items()))

    # -- searches ----------------------------------------------------------------------

    @staticmethod
    def _index(entries: list[tuple[str, int]]) -> dict[str, set[int]]:
        """Each prefix of each word of each normalised text -> the ids holding it."""
        index: dict[str, set[int]] = {}
        for text, key in entries:
            for word in text.split():
                for end in range(1, len(word) + 1):
                    index.setdefault(word[:end], set()).add(key)
        return index

    @staticmethod
    def _search(
        texts: dict[int, str], index: dict[str, set[int]], query: str
    ) -> list[tuple[int, str, int]]:
        """(rank, text, id) of the entries in which every word of ``query`` starts a word.

        Rank 0 is an exact match, 1 a match at the start, 2 any other.
        """
        words = normalize(query).split()
        if not words:
            return []
        keys = set.intersection(*(index.get(w, set()) for w in words))
        wanted = " ".join(words)
        found = []
        for key in keys:
            text = texts[key]
            rank = 0 if text == wanted else 1 if text.startswith(wanted) else 2
            found.append((rank, text, key))
        return found

    def search_movies(self, query: str) -> list[int]:
        """Ids of the films whose title matches ``query``, best first.

        Every word of the query must start a word of the title (case and
        punctuation ignored); exact titles come first, then titles that start with
        the query, then the rest, alphabetically; equal titles (remakes) newest first.
        """
        found = self._search(self._titles, self._title_index, query)
        found.sort(key=lambda f: (f[0], f[1], self._newest_first[f[2]]))
        return [key for _, _, key in found]

    def search_people(self, query: str) -> list[int]:
        """Ids of the people whose name matches ``query``, best first (as :meth:`search_movies`)."""
        found = self._search(self._names, self._name_index, query)
        found.sort()
        return [key for _, _, key in found]

    # -- the views the tools show --------------------------------------------------------

    def movie_summary(self, movie_id: int) -> dict[str, Any]:
        """Id, title and release date of a film (a search hit)."""
        movie = self.movies[movie_id]
        return {"id": movie_id, "title": movie["title"], "release_date": movie["release_date"]}

    def movie_details(self, movie_id: int) -> dict[str, Any]:
        """A film's record, TMDB-style."""
        m = self.movies[movie_id]
        return {
            "id": movie_id,
            "title": m["title"],
            "release_date": m["release_date"],
            "runtime": m["runtime"],
            "genres": m["genres"],
            "original_language": m["language"],
            "production_company": m["company"],
            "budget": m["budget"],
            "revenue": m["revenue"],
            "vote_average": m["vote_average"],
            "vote_count": m["vote_count"],
        }

    def movie_cast(self, movie_id: int) -> dict[str, Any]:
        """A film's cast in billing order."""
        return {
            "id": movie_id,
            "title": self.movies[movie_id]["title"],
            "cast": [
                {
                    "id": c.person_id,
                    "name": self.people[c.person_id]["name"],
                    "character": c.character,
                    "order": c.order,
                }
                for c in self.cast_of_movie[movie_id]
            ],
        }

    def movie_crew(self, movie_id: int) -> dict[str, Any]:
        """A film's crew: director(s), writers, composer, cinematographer, editor, producers."""
        return {
            "id": movie_id,
            "title": self.movies[movie_id]["title"],
            "crew": [
                {
                    "id": c.person_id,
                    "name": self.people[c.person_id]["name"],
                    "job": c.job,
                    "department": DEPARTMENTS[c.job],
                }
                for c in self.crew_of_movie[movie_id]
            ],
        }

    def person_summary(self, person_id: int) -> dict[str, Any]:
        """Id, name and department of a person (a search hit)."""
        p = self.people[person_id]
        return {
            "id": person_id,
            "name": p["name"],
            "known_for_department": p["known_for_department"],
        }

    def person_details(self, person_id: int) -> dict[str, Any]:
        """A person's record, TMDB-style."""
        p = self.people[person_id]
        return {
            "id": person_id,
            "name": p["name"],
            "gender": p["gender"],
            "birthday": p["birthday"],
            "deathday": p["deathday"],
            "place_of_birth": p["place_of_birth"],
            "known_for_department": p["known_for_department"],
        }

    def person_cast(self, person_id: int) -> dict[str, Any]:
        """A person's acting credits, oldest film first."""
        return {
            "id": person_id,
            "name": self.people[person_id]["name"],
            "cast": [
                {**self.movie_summary(c.movie_id), "character": c.character}
                for c in self.cast_of_person[person_id]
            ],
        }

    def person_crew(self, person_id: int) -> dict[str, Any]:
        """A person's crew credits (one entry per film and job), oldest film first."""
        return {
            "id": person_id,
            "name": self.people[person_id]["name"],
            "crew": [
                {**self.movie_summary(c.movie_id), "job": c.job}
                for c in self.crew_of_person[person_id]
            ],
        }

    # -- joins the task templates use ------------------------------------------------------

    def crew_ids(self, movie_id: int, job: str) -> list[int]:
        """The people who did ``job`` on a film."""
        return [c.person_id for c in self.crew_of_movie[movie_id] if c.job == job]

    def films_as(self, person_id: int, job: str) -> list[int]:
        """The films (ids, oldest first, no repeats) where a person did ``job``."""
        return list(
            dict.fromkeys(c.movie_id for c in self.crew_of_person[person_id] if c.job == job)
        )

    def year(self, movie_id: int) -> int:
        """A film's release year."""
        return int(self.movies[movie_id]["release_date"][:4])


@functools.cache
def database() -> Database:
    """The shipped database, loaded once per process."""
    raw = resources.files(__package__).joinpath(DATA_FILE).read_bytes()
    return Database(json.loads(gzip.decompress(raw)))
