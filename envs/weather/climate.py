"""The climate model of Weather-v0: daily records as a function of (city, date).

Real daily records for 325 cities over ten years cannot ship in a small package,
so they are computed, deterministically, from each city's real latitude,
longitude and elevation:

1. :func:`climate_of` classifies the city into a regime (arid, Mediterranean,
   monsoon, equatorial, savanna, humid subtropical, temperate, subarctic) by
   latitude/longitude boxes drawn from the Koppen map, and derives its normals:
   annual mean temperature (falling with latitude, -6.5 C per km of elevation,
   colder inland at high latitude), the annual half-range (growing with latitude
   and continentality), the coldest day (mid-January in the north, mid-July in
   the south; later on the coasts), the diurnal range (wide in deserts and on
   highlands, narrow in the humid tropics and on the coasts), annual
   precipitation, the share of wet days and its seasonal cycle (winter rain
   around the Mediterranean, summer monsoons...), humidity and wind.
2. :func:`year_records` draws the days of one (city, year) from those normals
   with a generator seeded by both: temperature anomalies are AR(1) (weather
   lasts a few days), wet days a two-state Markov chain, amounts exponential,
   snow the part of the precipitation that fell below about 1 C (1 mm of water
   = 1 cm of snow), humidity and wind follow the season and the rain.

Only Python's ``random.Random.random`` is used (its stream is stable across
Python versions for an integer seed), so every record is the same on every
machine. Values are rounded as shown to the agent: temperatures, precipitation,
snow and wind to 0.1, humidity to a whole percent; answers are computed from
these shown values.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from functools import lru_cache

from palaestra.envs.weather.cities import City, city

__all__ = [
    "FIELDS",
    "FIRST_DAY",
    "LAST_DAY",
    "Climate",
    "Record",
    "climate_of",
    "record",
    "year_records",
]

FIRST_DAY = dt.date(2015, 1, 1)
LAST_DAY = dt.date(2024, 12, 31)

FIELDS = ("tmax_c", "tmin_c", "precip_mm", "snow_cm", "wind_max_kmh", "humidity_pct")
"""The measured fields of a day, in the order of :class:`Record`'s values."""

Record = tuple[float, float, float, float, float, int]
"""One day: max and min temperature (C), precipitation (mm), snowfall (cm), max wind (km/h),
mean relative humidity (%)."""

_YEAR = 365.25
_TWO_PI = 2 * math.pi


@dataclass(frozen=True)
class Climate:
    """A city's normals, the parameters of its daily weather.

    Attributes:
        regime: The climate regime (``arid``, ``mediterranean``, ``monsoon``,
            ``equatorial``, ``savanna``, ``subtropical``, ``temperate``, ``subarctic``).
        continentality: 0 (oceanic) to 1 (deep inland).
        t_mean: Annual mean temperature (C).
        t_amp: Half the difference between the warmest and coldest season (C).
        cold_day: Day of the year of the coldest weather (0 = 1 January).
        dtr: Mean diurnal range, max minus min (C).
        t_sd: Standard deviation of daily temperature anomalies (C).
        precip: Expected annual precipitation (mm).
        wet_frac: Mean share of days with precipitation.
        wet_peak: Day of the year of the wettest season.
        wet_strength: 0 (rain evenly through the year) to 0.95 (all in one season).
        rh: Mean relative humidity (%).
        wind: Typical daily max wind (km/h).
    """

    regime: str
    continentality: float
    t_mean: float
    t_amp: float
    cold_day: float
    dtr: float
    t_sd: float
    precip: float
    wet_frac: float
    wet_peak: float
    wet_strength: float
    rh: float
    wind: float


def _in(lat: float, lon: float, box: tuple[float, float, float, float]) -> bool:
    lat_lo, lat_hi, lon_lo, lon_hi = box
    return lat_lo <= lat < lat_hi and lon_lo <= lon < lon_hi


# (lat_lo, lat_hi, lon_lo, lon_hi, annual mm, wet season: "summer" | "winter")
_ARID = (
    ((15, 30, -17, 20), 70, "summer"),  # western Sahara, Sahel's edge
    ((15, 31.5, 20, 44), 25, "winter"),  # eastern Sahara, Nile valley, Red Sea
    ((15, 33.5, 44, 62), 100, "winter"),  # Arabia, the Gulf, Mesopotamia
    ((33.5, 38.5, 44, 70), 260, "winter"),  # Iranian plateau, Turkmenistan, Kabul
    ((23, 37.5, -116.9, -103), 220, "summer"),  # Sonoran and Mojave deserts
    ((23, 30, 62, 71.5), 200, "summer"),  # Sindh, the Thar
    ((-30, -19, 118, 148), 280, "summer"),  # the Australian interior
    ((-30, -17, 12, 22), 360, "summer"),  # Namib, Kalahari
    ((38, 50, 80, 112), 260, "summer"),  # Gobi, Mongolia, Xinjiang
)
_ATACAMA = (-30, -5, -82, -69)  # coastal desert (below 1,000 m)
_MEDITERRANEAN = (
    ((30, 44, -10, 12), 620),
    ((30, 42, 12, 40), 620),
    ((32, 42, -125, -116.9), 420),  # California
    ((-40, -30, -75, -69), 350),  # central Chile
    ((-36, -30, 114, 140), 620),  # south-west and south Australia
    ((-35, -32, 17, 21), 520),  # the Cape
)
_MONSOON = (
    ((5, 36, 67, 100), "south_asia"),
    ((8, 25, 95, 110), "southeast_asia"),
    ((22, 46, 100, 146), "east_asia"),
    ((-20, -10, 120, 150), "north_australia"),
)


def _hash01(city_id: int, salt: int) -> float:
    """A fixed pseudo-random number in [0, 1) per city (varies normals between neighbours)."""
    return random.Random(city_id * 7919 + salt).random()


def _continentality(c: City) -> float:
    """0 (oceanic) to 1 (deep inland), from the longitude bands of the northern continents."""
    lat, lon, a = c.lat, c.lon, abs(c.lat)
    if lat < -10:
        return 0.05 if a >= 40 else 0.25  # the southern continents are narrow
    if -170 <= lon < -30:  # North America
        if lon < -120:
            return 0.45 if lat >= 55 else 0.1  # the Pacific coast; Alaska's interior
        if lon < -90:
            return 0.9
        return min(0.85, 0.55 + 0.3 * max(0.0, (lat - 38) / 9))
    if c.cc in ("IS", "IE", "GB") or (c.cc == "NO" and (lon < 8 or lat > 65)):
        return 0.08  # the Gulf Stream's coasts
    if -30 <= lon < 60:  # Europe, Africa, Middle East: inland eastward
        return min(1.0, max(0.05, 0.1 + (lon + 10) * 0.009))
    return min(1.0, 0.1 + (lon + 10) * 0.009)


def climate_of(c: City) -> Climate:
    """The normals of city ``c`` (see the module docstring)."""
    lat, lon, a = c.lat, c.lon, abs(c.lat)
    north = lat >= 0
    summer = 190.0 if north else 10.0
    winter = (summer + 182.6) % _YEAR
    cont = _continentality(c)
    regime = ""
    precip, wet_frac, peak, strength, rh, arid_bonus = 800.0, 0.35, summer, 0.2, 72.0, 0.0

    for box, mm, season in _ARID:
        if _in(lat, lon, box):
            regime, precip, wet_frac, rh, arid_bonus = "arid", mm, 0.04 + mm / 5000, 32.0, 1.0
            peak, strength = (summer if season == "summer" else winter), 0.8
            cont = max(cont, 0.9)
            break
    if not regime and _in(lat, lon, _ATACAMA) and c.elev < 1000:
        regime, precip, wet_frac, rh, arid_bonus = "arid", 15.0, 0.05, 76.0, 0.3
        peak, strength, cont = winter, 0.7, 0.1
    if not regime:
        for box, mm in _MEDITERRANEAN:
            if _in(lat, lon, box):
                regime, precip, wet_frac, rh = "mediterranean", mm, 0.22, 64.0
                peak, strength = winter, 0.85
                cont = 0.1 if lon < -100 else min(0.7, cont + 0.3 * min(1.0, c.elev / 700))
                break
    if not regime:
        for box, area in _MONSOON:
            if _in(lat, lon, box):
                regime, peak, strength, wet_frac, rh = "monsoon", summer + 20, 0.9, 0.32, 70.0
                if area == "south_asia":
                    cont = 0.9 * min(1.0, max(0.0, (a - 12) / 16))
                    precip = 2200.0 if lon < 74 and lat < 20 else 1800.0 if lon > 85 else 900.0
                    if lon < 77 and lat > 23:
                        precip = 650.0
                    if c.elev > 3000:
                        precip = 450.0  # the Tibetan plateau, in the rain shadow
                    if 79 < lon < 81.5 and lat < 16:
                        peak = 310.0  # the Coromandel coast's north-east monsoon
                elif area == "southeast_asia":
                    cont, precip = 0.2, 1700.0
                elif area == "east_asia":
                    japan_korea = c.cc in ("JP", "KR", "KP")
                    cont = (
                        (0.55 if lon > 129 else 0.85)
                        if japan_korea
                        else 0.45 + 0.55 * min(1.0, max(0.0, (a - 24) / 14))
                    )
                    if lat > 42:
                        cont = max(cont, 0.7)
                    precip = (
                        1500.0 if japan_korea else 1700.0 if a < 28 else 1200.0 if a < 34 else 600.0
                    )
                    strength = 0.4 if c.cc == "JP" or a < 30 else 0.9  # dry Korean winters
                    wet_frac = 0.33
                else:
                    cont, precip, peak = 0.3, 1700.0, 20.0
                break
    if not regime and a < 7:
        regime, precip, wet_frac, rh, cont = "equatorial", 2000.0, 0.45, 80.0, 0.05
        peak, strength = summer, 0.3
        if 32 < lon < 52:
            precip, wet_frac, strength = 800.0, 0.28, 0.5  # dry East African coast and highlands
        elif c.elev > 1500:
            precip *= 0.5  # the Andean basins
    if not regime and a < 23:
        regime, peak, strength, rh, cont = "savanna", summer + 30, 0.85, 66.0, 0.3
        precip = max(450.0, 1500.0 - 90.0 * (a - 8))
        wet_frac = 0.28
    if not regime and a < (37 if -170 <= lon < -30 else 40):
        regime, precip, wet_frac, peak, strength, rh = "subtropical", 1150.0, 0.3, summer, 0.3, 72.0
        if -170 <= lon < -30 and lon < -96:
            precip = 850.0  # drier toward the Great Plains
        if not north and 15 < lon < 40:
            precip, strength = 750.0, 0.85  # the highveld's summer storms
        if not north and lon > 100:
            precip, strength = 1100.0, 0.3
    if not regime:
        regime = "subarctic" if a >= 60 else "temperate"
        if -170 <= lon < -30:
            if lon < -120:
                precip, wet_frac, peak, strength, rh = 1000.0, 0.42, winter, 0.75, 78.0
            elif lon < -90:
                precip, wet_frac, peak, strength, rh = 480.0, 0.27, summer - 15, 0.6, 66.0
            else:
                precip, wet_frac, peak, strength, rh = 1050.0, 0.33, summer, 0.05, 70.0
        elif not north:
            precip, wet_frac, peak, strength, rh = 800.0, 0.45, winter, 0.15, 78.0
        elif cont < 0.3:
            precip, wet_frac, peak, strength, rh = 820.0, 0.46, 320.0, 0.2, 80.0
        elif cont < 0.55:
            precip, wet_frac, peak, strength, rh = 620.0, 0.4, summer, 0.3, 76.0
        else:
            precip = max(250.0, 620.0 - 3.5 * max(0.0, lon - 40))
            wet_frac, peak, strength, rh = 0.33, summer, 0.5, 70.0
            if lat < 45 and lon < 80:
                peak, rh = 90.0, 58.0  # Central Asia's spring rains
        if a >= 60:
            precip *= 0.85
        if lat > 60 and -60 < lon < -40:
            cont = 0.35  # Greenland's coast is cold for its latitude

    # Neighbours differ: +-20 % precipitation, +-1 C, per city.
    precip *= 0.8 + 0.4 * _hash01(c.id, 1)
    elev_km = c.elev / 1000.0
    base = 27.0 - 0.5 * max(0.0, a - 20.0)
    # Inland is colder on the year's average at high latitude, the coast milder.
    inland = -(14.0 if cont > 0.3 else 5.0) * (cont - 0.3) * max(0.0, (a - 25.0) / 35.0)
    if -170 <= lon < -50 and lat > 38 and lon > -120:
        inland -= 3.0 * min(1.0, (lat - 38) / 10)  # North American winters reach far south
    if not north:
        inland -= 2.0 * min(1.0, max(0.0, (a - 25.0) / 10.0))  # the cool southern oceans
    t_mean = base + inland + 2.0 * arid_bonus - 4.7 * elev_km + 2.0 * (_hash01(c.id, 2) - 0.5)
    t_amp = 0.5 + (a / 90.0) ** 1.2 * (8.0 + 28.0 * cont)
    if regime == "mediterranean" and lon > -60:
        t_amp += 2.0  # hot Mediterranean summers (California and Chile have cold currents)
    if regime == "monsoon" and c.cc in ("CN", "HK", "TW", "KP", "KR") and a > 20:
        t_mean, t_amp = t_mean - 2.0, t_amp + 3.0  # the Siberian high's winters
    if regime == "arid" and rh > 70:  # a foggy coastal desert on a cold current
        t_mean, t_amp = t_mean - 7.0, 0.5 + (a / 90.0) ** 1.2 * 8.0
    cold_day = (15.0 + 20.0 * (1.0 - cont) + (0.0 if north else 182.6)) % _YEAR
    dtr = 8.5 + 5.0 * arid_bonus + 3.0 * cont + 4.0 * min(1.0, elev_km / 2.0)
    if regime in ("equatorial", "monsoon") and arid_bonus == 0:
        dtr -= 0.5
    t_sd = 0.7 + 3.5 * min(1.2, a / 60.0) ** 1.5 * (0.5 + 0.7 * cont)
    wind = 11.0 + 10.0 * min(1.0, a / 60.0) + 5.0 * (1.0 - cont) * (a > 40) - 3.0 * (elev_km > 1)
    wind *= 0.85 + 0.3 * _hash01(c.id, 3)
    return Climate(
        regime=regime,
        continentality=round(cont, 3),
        t_mean=t_mean,
        t_amp=t_amp,
        cold_day=cold_day,
        dtr=dtr,
        t_sd=t_sd,
        precip=precip,
        wet_frac=min(0.6, wet_frac),
        wet_peak=peak % _YEAR,
        wet_strength=strength,
        rh=rh,
        wind=wind,
    )


@lru_cache(maxsize=64)
def _climate(city_id: int) -> Climate:
    found = city(city_id)
    if found is None:
        raise KeyError(f"no city {city_id}")
    return climate_of(found)


def _season(day: float, peak: float) -> float:
    """The cosine of the angle between ``day`` and ``peak`` on the year's circle: 1 at the peak."""
    return math.cos(_TWO_PI * (day - peak) / _YEAR)


@lru_cache(maxsize=128)
def _seasons(city_id: int, days: int) -> tuple[tuple[float, ...], ...]:
    """What does not change from year to year, per day of a year of ``days`` days.

    The climate's mean temperature, winterness (1 in deep winter), wet-day
    probability, mean wet-day amount, dry-day diurnal range, and wetness.
    """
    cl = _climate(city_id)
    wetness = [max(0.02, 1.0 + cl.wet_strength * _season(d, cl.wet_peak)) for d in range(days)]
    wet_prob = [min(0.9, cl.wet_frac * w) for w in wetness]
    # The mean amount of a wet day, so that the expected annual sum is the normal.
    m0 = cl.precip / sum(p * math.sqrt(w) for p, w in zip(wet_prob, wetness, strict=True))
    warmest = (cl.cold_day + 182.6) % _YEAR
    winterness = [-_season(d, warmest) for d in range(days)]  # 1 in deep winter
    return (
        tuple(cl.t_mean - cl.t_amp * _season(d, cl.cold_day) for d in range(days)),
        tuple(winterness),
        tuple(wet_prob),
        tuple(m0 * math.sqrt(w) for w in wetness),
        tuple(cl.dtr * (1.0 - 0.15 * w) for w in winterness),
        tuple(wetness),
    )


@lru_cache(maxsize=2048)
def year_records(city_id: int, year: int) -> tuple[Record, ...]:
    """Every day of ``year`` in city ``city_id``, 1 January first.

    Raises:
        KeyError: No such city.
    """
    cl = _climate(city_id)
    uniform = random.Random(city_id * 10_000 + year).random
    spare: list[float] = []

    def normal() -> float:
        # Box-Muller from random() alone (its stream is stable across Python versions),
        # both values of each pair used.
        if spare:
            return spare.pop()
        radius = math.sqrt(-2.0 * math.log(1.0 - uniform()))
        angle = _TWO_PI * uniform()
        spare.append(radius * math.sin(angle))
        return radius * math.cos(angle)

    days = 366 if year % 4 == 0 else 365
    climate, winterness, wet_prob, scale, dry_dtr, wetness = _seasons(city_id, days)
    persistence, carry, shock = 0.3, 0.75, math.sqrt(1 - 0.75**2)
    anomaly = normal() * cl.t_sd
    wet = uniform() < cl.wet_frac
    out: list[Record] = []
    for d in range(days):
        winter = winterness[d]
        anomaly = carry * anomaly + shock * cl.t_sd * (1.0 + 0.3 * winter) * normal()
        mean = climate[d] + anomaly
        p = wet_prob[d]
        wet = uniform() < (p + persistence * (1 - p) if wet else p * (1 - persistence))
        amount = scale[d] * -math.log(1.0 - uniform())
        precip = round(max(0.1, amount), 1) if wet else 0.0
        dtr = max(1.0, dry_dtr[d] * (0.6 if wet else 1.0) + 0.8 * normal())
        tmax = round(mean + dtr / 2 - (0.8 if wet else 0.0) + 0.4 * normal(), 1)
        tmin = round(min(mean - dtr / 2 + 0.4 * normal(), tmax - 0.5), 1)
        t_day = (tmax + tmin) / 2
        snow_share = 1.0 if t_day <= -1.0 else 0.0 if t_day >= 2.0 else (2.0 - t_day) / 3.0
        snow = round(precip * snow_share, 1)
        wind = cl.wind * (1.0 + 0.12 * winter) * math.exp(0.25 * normal())
        wind = round(min(130.0, wind * (1.2 if wet else 1.0)), 1)
        rh = cl.rh + 8.0 * (wetness[d] - 1.0) + (12.0 if wet else 0.0) + 5.0 * normal()
        out.append((tmax, tmin, precip, snow, wind, round(min(100.0, max(8.0, rh)))))
    return tuple(out)


def record(city_id: int, day: dt.date) -> Record:
    """The record of city ``city_id`` on ``day``.

    Raises:
        KeyError: No such city.
        ValueError: ``day`` is outside 2015-2024.
    """
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"no records for {day.isoformat()}: they cover 2015-01-01 to 2024-12-31")
    return year_records(city_id, day.year)[day.timetuple().tm_yday - 1]
