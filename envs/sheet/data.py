"""The six kinds of table the Sheet env's tasks start from, with their vocabularies.

Each :class:`Theme` names its columns (the first is a unique text key), draws
plausible rows from a ``random.Random`` (prices that end in .99, budgets in
round tens, grades between 38 and 100, ...), and lists the columns a task may
compute from them and the yes/no rules it may fill a column by. The word lists
(products, budget categories, office supplies, US cities, common given and
family names) are written out here; nothing is downloaded.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["THEMES", "Computed", "Rule", "Theme"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Computed:
    """A column computed from others in the same row.

    Attributes:
        header: The new column's header.
        phrase: What it is, for the goal (``"Units * Unit price"``).
        formula: The formula of row ``{r}`` with ``{Column name}`` standing for its letter.
        value: The value of a row (unrounded).
        digits: Decimals the goal asks to round to (``None``: no rounding asked).
    """

    header: str
    phrase: str
    formula: str
    value: Callable[[Row], float]
    digits: int | None = None


@dataclass(frozen=True)
class Rule:
    """A column filled with one of two words by a condition on the row.

    Attributes:
        header: The new column's header.
        phrase: The rule, for the goal.
        value: The word of a row.
    """

    header: str
    phrase: str
    value: Callable[[Row], str]


@dataclass(frozen=True)
class Theme:
    """One kind of table.

    Attributes:
        name: Short name (``sales``).
        titles: Sheet titles to pick from.
        key: The first column: a text label unique per row.
        columns: The other columns always present.
        optional: Columns a task may add (after ``columns``).
        categories: Text columns and their possible values (for conditions).
        numbers: Kind of each number column: ``int``, ``money`` or ``dec1``.
        rows: Draws ``n`` rows with every column, keys unique.
        computed: The computed columns possible with the given columns.
        rules: The rules possible with the given columns and rows.
    """

    name: str
    titles: Sequence[str]
    key: str
    columns: Sequence[str]
    optional: Sequence[str]
    categories: dict[str, Sequence[str]]
    numbers: dict[str, str]
    rows: Callable[[random.Random, int], list[Row]]
    computed: Callable[[Sequence[str]], list[Computed]]
    rules: Callable[[random.Random, Sequence[str], list[Row]], list[Rule]]


FIRST_NAMES = (
    "Aisha Alex Amir Ana Ben Carlos Chen Chloe Daniel Diego Elena Emma Ethan Fatima Grace "
    "Hannah Hiro Isaac Ivan Jade James Julia Kofi Lars Leah Liam Lucia Maria Mateo Maya Mei "
    "Nadia Noah Olivia Omar Priya Rafael Rosa Ryan Sara Sofia Tariq Tom Victor Yara Zoe"
).split()
LAST_NAMES = (
    "Adams Baker Bennett Brooks Campbell Chen Clarke Cruz Diaz Evans Fischer Foster Garcia "
    "Gomez Gray Hughes Ito Jensen Kim Kowalski Lee Lopez Martin Mendes Moore Murphy Nguyen "
    "Novak Okafor Ortiz Patel Perez Reed Reyes Rossi Russo Sato Schmidt Silva Singh Stone "
    "Sullivan Tanaka Torres Turner Walsh Ward Weber Young"
).split()

PRODUCTS = (
    ("Desk lamp", 19, 39),
    ("Office chair", 89, 249),
    ("Standing desk", 279, 549),
    ("Monitor arm", 39, 89),
    ("Wireless mouse", 14, 39),
    ("Mechanical keyboard", 59, 129),
    ("USB-C hub", 24, 59),
    ("Laptop stand", 22, 49),
    ("Webcam", 39, 99),
    ("Noise-cancelling headphones", 129, 299),
    ("Bluetooth speaker", 29, 99),
    ("Phone charger", 12, 29),
    ("Power bank", 19, 59),
    ("External SSD", 69, 159),
    ("Coffee grinder", 29, 89),
    ("Electric kettle", 24, 69),
    ("French press", 18, 45),
    ("Water bottle", 9, 29),
    ("Yoga mat", 19, 59),
    ("Resistance bands", 12, 34),
    ("Backpack", 39, 119),
    ("Umbrella", 12, 34),
    ("Notebook set", 8, 22),
    ("Fountain pen", 24, 79),
    ("Desk organizer", 14, 39),
    ("Air purifier", 89, 229),
    ("LED strip lights", 15, 39),
    ("Smart plug", 12, 29),
    ("Tablet case", 15, 45),
    ("Ring light", 25, 69),
)
REGIONS = ("North", "South", "East", "West", "Central")

BUDGET_LINES = (
    ("Rent", 1200, 2400),
    ("Groceries", 350, 750),
    ("Utilities", 120, 260),
    ("Internet", 50, 90),
    ("Phone", 40, 120),
    ("Transport", 80, 300),
    ("Car insurance", 90, 180),
    ("Health insurance", 200, 450),
    ("Dining out", 100, 350),
    ("Entertainment", 40, 160),
    ("Clothing", 50, 200),
    ("Gym", 25, 70),
    ("Streaming", 15, 45),
    ("Childcare", 400, 1200),
    ("Pet care", 40, 150),
    ("Gifts", 30, 150),
    ("Travel", 100, 600),
    ("Savings", 200, 800),
    ("Household supplies", 40, 120),
    ("Personal care", 30, 100),
    ("Education", 50, 300),
    ("Charity", 20, 150),
    ("Home maintenance", 50, 250),
)

SUPPLIES = (
    ("Printer paper (ream)", "Paper", 4, 9),
    ("Copy paper A3", "Paper", 9, 16),
    ("Notebooks A5", "Paper", 2, 6),
    ("Sticky notes", "Paper", 1, 4),
    ("File folders (100)", "Filing", 12, 25),
    ("Binder clips", "Filing", 2, 6),
    ("Ring binders", "Filing", 3, 8),
    ("Paper clips", "Filing", 1, 3),
    ("Ballpoint pens (12)", "Writing", 3, 9),
    ("Whiteboard markers", "Writing", 4, 11),
    ("Highlighters (4)", "Writing", 3, 7),
    ("Correction tape", "Writing", 1, 4),
    ("Toner cartridge", "Printing", 45, 120),
    ("Ink cartridge", "Printing", 18, 45),
    ("Label tape", "Printing", 8, 19),
    ("Envelopes (500)", "Mailing", 14, 32),
    ("Packing tape", "Mailing", 2, 6),
    ("Bubble mailers", "Mailing", 9, 21),
    ("Stapler", "Desk", 6, 18),
    ("Staples (5000)", "Desk", 2, 5),
    ("Scissors", "Desk", 3, 9),
    ("Desk tray", "Desk", 5, 14),
    ("USB drive 32GB", "Tech", 6, 14),
    ("Mouse pad", "Tech", 3, 12),
    ("HDMI cable", "Tech", 6, 15),
    ("AA batteries (24)", "Tech", 12, 24),
)

DEPARTMENTS = ("Sales", "Support", "Warehouse", "Finance", "IT", "Marketing")

CITIES = (
    ("Denver", "CO"),
    ("Portland", "OR"),
    ("Austin", "TX"),
    ("Dallas", "TX"),
    ("Houston", "TX"),
    ("Phoenix", "AZ"),
    ("Tucson", "AZ"),
    ("Seattle", "WA"),
    ("Spokane", "WA"),
    ("Boise", "ID"),
    ("Salt Lake City", "UT"),
    ("Albuquerque", "NM"),
    ("Omaha", "NE"),
    ("Kansas City", "MO"),
    ("St. Louis", "MO"),
    ("Chicago", "IL"),
    ("Madison", "WI"),
    ("Milwaukee", "WI"),
    ("Minneapolis", "MN"),
    ("Columbus", "OH"),
    ("Cleveland", "OH"),
    ("Pittsburgh", "PA"),
    ("Philadelphia", "PA"),
    ("Boston", "MA"),
    ("Providence", "RI"),
    ("Hartford", "CT"),
    ("Richmond", "VA"),
    ("Raleigh", "NC"),
    ("Charlotte", "NC"),
    ("Atlanta", "GA"),
    ("Nashville", "TN"),
    ("Memphis", "TN"),
    ("Orlando", "FL"),
    ("Tampa", "FL"),
    ("Miami", "FL"),
    ("San Diego", "CA"),
    ("Sacramento", "CA"),
    ("Fresno", "CA"),
)


def _people(rng: random.Random, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in names:
            names.append(name)
    return names


def _price(rng: random.Random, low: int, high: int) -> float:
    return rng.randint(low, high) + rng.choice((0.99, 0.49, 0.0, 0.95))


def _sales_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for name, low, high in rng.sample(PRODUCTS, n):
        price = _price(rng, low, high)
        units = rng.randint(8, 60) if price > 100 else rng.randint(20, 480)
        returns = rng.randint(0, max(1, units // 12))
        rows.append(
            {
                "Product": name,
                "Region": rng.choice(REGIONS),
                "Units": float(units),
                "Unit price": price,
                "Returns": float(returns),
            }
        )
    return rows


def _sales_computed(columns: Sequence[str]) -> list[Computed]:
    out = [
        Computed(
            "Revenue",
            "Units * Unit price",
            "={Units}{r}*{Unit price}{r}",
            lambda row: row["Units"] * row["Unit price"],
        )
    ]
    if "Returns" in columns:
        out.append(
            Computed(
                "Net units",
                "Units - Returns",
                "={Units}{r}-{Returns}{r}",
                lambda row: row["Units"] - row["Returns"],
            )
        )
    return out


def _sales_rules(rng: random.Random, columns: Sequence[str], rows: list[Row]) -> list[Rule]:
    cut = float(rng.choice((50, 100, 150, 200)))
    return [
        Rule(
            "Volume",
            f"High if Units is {cut:g} or more, otherwise Low",
            lambda row: "High" if row["Units"] >= cut else "Low",
        )
    ]


def _grade_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for name in _people(rng, n):
        skill = rng.uniform(50, 95)
        rows.append(
            {"Student": name}
            | {
                column: float(max(38, min(100, round(rng.gauss(skill, 8)))))
                for column in ("Homework", "Quiz", "Midterm", "Project", "Final")
            }
        )
    return rows


_SCORES = ("Homework", "Quiz", "Midterm", "Project", "Final")


def _grade_computed(columns: Sequence[str]) -> list[Computed]:
    scores = [c for c in columns if c in _SCORES]
    listed = ", ".join(scores[:-1]) + " and " + scores[-1]
    total = "+".join("{" + c + "}{r}" for c in scores)
    return [
        Computed(
            "Average",
            f"the average of {listed}",
            f"=ROUND(({total})/{len(scores)},2)",
            lambda row: sum(row[c] for c in scores) / len(scores),
            digits=2,
        ),
        Computed(
            "Total points",
            f"the sum of {listed}",
            f"={total}",
            lambda row: sum(row[c] for c in scores),
        ),
    ]


def _grade_rules(rng: random.Random, columns: Sequence[str], rows: list[Row]) -> list[Rule]:
    cut = float(rng.choice((60, 65, 70)))
    return [
        Rule(
            "Result",
            f"Pass if Final is {cut:g} or more, otherwise Fail",
            lambda row: "Pass" if row["Final"] >= cut else "Fail",
        )
    ]


def _budget_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for name, low, high in rng.sample(BUDGET_LINES, n):
        budget = float(round(rng.randint(low, high), -1))
        rows.append(
            {
                "Category": name,
                "Budget": budget,
                "Actual": round(budget * rng.uniform(0.72, 1.3), 2),
                "Last year": float(round(budget * rng.uniform(0.8, 1.1), -1)),
            }
        )
    return rows


def _budget_computed(columns: Sequence[str]) -> list[Computed]:
    out = [
        Computed(
            "Difference",
            "Budget - Actual",
            "={Budget}{r}-{Actual}{r}",
            lambda row: row["Budget"] - row["Actual"],
        ),
        Computed(
            "Pct used",
            "Actual / Budget * 100",
            "=ROUND({Actual}{r}/{Budget}{r}*100,1)",
            lambda row: row["Actual"] / row["Budget"] * 100,
            digits=1,
        ),
    ]
    if "Last year" in columns:
        out.append(
            Computed(
                "Change",
                "Budget - Last year",
                "={Budget}{r}-{Last year}{r}",
                lambda row: row["Budget"] - row["Last year"],
            )
        )
    return out


def _budget_rules(rng: random.Random, columns: Sequence[str], rows: list[Row]) -> list[Rule]:
    return [
        Rule(
            "Status",
            "Over if Actual is more than Budget, otherwise OK",
            lambda row: "Over" if row["Actual"] > row["Budget"] else "OK",
        )
    ]


def _inventory_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for name, category, low, high in rng.sample(SUPPLIES, n):
        level = float(rng.choice(range(10, 65, 5)))
        rows.append(
            {
                "Item": name,
                "Category": category,
                "Stock": float(max(0, round(level * rng.uniform(0.2, 3.0)))),
                "Reorder level": level,
                "Unit cost": rng.randint(low, high) + rng.choice((0.0, 0.25, 0.5, 0.75, 0.99)),
            }
        )
    return rows


def _inventory_computed(columns: Sequence[str]) -> list[Computed]:
    return [
        Computed(
            "Stock value",
            "Stock * Unit cost",
            "={Stock}{r}*{Unit cost}{r}",
            lambda row: row["Stock"] * row["Unit cost"],
        ),
        Computed(
            "Surplus",
            "Stock - Reorder level",
            "={Stock}{r}-{Reorder level}{r}",
            lambda row: row["Stock"] - row["Reorder level"],
        ),
    ]


def _inventory_rules(rng: random.Random, columns: Sequence[str], rows: list[Row]) -> list[Rule]:
    return [
        Rule(
            "Reorder",
            "Yes if Stock is below Reorder level, otherwise No",
            lambda row: "Yes" if row["Stock"] < row["Reorder level"] else "No",
        )
    ]


def _payroll_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for name in _people(rng, n):
        rows.append(
            {
                "Employee": name,
                "Department": rng.choice(DEPARTMENTS),
                "Hours": rng.randint(36, 104) / 2,
                "Hourly rate": rng.randint(62, 192) / 4,
            }
        )
    return rows


def _payroll_computed(columns: Sequence[str]) -> list[Computed]:
    return [
        Computed(
            "Pay",
            "Hours * Hourly rate",
            "={Hours}{r}*{Hourly rate}{r}",
            lambda row: row["Hours"] * row["Hourly rate"],
        ),
        Computed(
            "Overtime",
            "the hours above 40 (0 when Hours is 40 or less)",
            "=MAX(0,{Hours}{r}-40)",
            lambda row: max(0.0, row["Hours"] - 40),
        ),
    ]


def _payroll_rules(rng: random.Random, columns: Sequence[str], rows: list[Row]) -> list[Rule]:
    return [
        Rule(
            "Full time",
            "Yes if Hours is 35 or more, otherwise No",
            lambda row: "Yes" if row["Hours"] >= 35 else "No",
        )
    ]


def _store_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for city, state in rng.sample(CITIES, n):
        base = rng.uniform(120, 900)
        trend = rng.uniform(-0.06, 0.09)
        rows.append(
            {"Store": city, "State": state}
            | {
                f"Q{q}": round(base * (1 + trend) ** q * rng.uniform(0.93, 1.07), 1)
                for q in range(1, 5)
            }
        )
    return rows


def _store_computed(columns: Sequence[str]) -> list[Computed]:
    return [
        Computed(
            "Year total",
            "Q1 + Q2 + Q3 + Q4",
            "={Q1}{r}+{Q2}{r}+{Q3}{r}+{Q4}{r}",
            lambda row: row["Q1"] + row["Q2"] + row["Q3"] + row["Q4"],
        ),
        Computed(
            "Growth",
            "Q4 - Q1",
            "={Q4}{r}-{Q1}{r}",
            lambda row: row["Q4"] - row["Q1"],
        ),
    ]


def _store_rules(rng: random.Random, columns: Sequence[str], rows: list[Row]) -> list[Rule]:
    return [
        Rule(
            "Trend",
            "Up if Q4 is more than Q1, otherwise Down",
            lambda row: "Up" if row["Q4"] > row["Q1"] else "Down",
        )
    ]


THEMES: tuple[Theme, ...] = (
    Theme(
        "sales",
        ("Q3 product sales", "March sales", "Online store sales", "Spring promotion sales"),
        "Product",
        ("Region", "Units", "Unit price"),
        ("Returns",),
        {"Region": REGIONS},
        {"Units": "int", "Unit price": "money", "Returns": "int"},
        _sales_rows,
        _sales_computed,
        _sales_rules,
    ),
    Theme(
        "grades",
        (
            "Biology 101 grades",
            "Algebra II, period 3",
            "Intro to Economics",
            "Chemistry lab grades",
        ),
        "Student",
        ("Homework", "Midterm", "Final"),
        ("Quiz", "Project"),
        {},
        {c: "int" for c in _SCORES},
        _grade_rows,
        _grade_computed,
        _grade_rules,
    ),
    Theme(
        "budget",
        ("Household budget, May", "Monthly budget", "Family budget, October"),
        "Category",
        ("Budget", "Actual"),
        ("Last year",),
        {},
        {"Budget": "int", "Actual": "money", "Last year": "int"},
        _budget_rows,
        _budget_computed,
        _budget_rules,
    ),
    Theme(
        "inventory",
        ("Office supplies inventory", "Stock room count", "Supply cabinet, 2nd floor"),
        "Item",
        ("Stock", "Reorder level", "Unit cost"),
        ("Category",),
        {"Category": sorted({s[1] for s in SUPPLIES})},
        {"Stock": "int", "Reorder level": "int", "Unit cost": "money"},
        _inventory_rows,
        _inventory_computed,
        _inventory_rules,
    ),
    Theme(
        "payroll",
        ("Weekly timesheet", "Payroll, week 14", "Part-time staff hours"),
        "Employee",
        ("Department", "Hours", "Hourly rate"),
        (),
        {"Department": DEPARTMENTS},
        {"Hours": "dec1", "Hourly rate": "money"},
        _payroll_rows,
        _payroll_computed,
        _payroll_rules,
    ),
    Theme(
        "stores",
        ("Store revenue by quarter ($k)", "Regional stores, quarterly sales ($k)"),
        "Store",
        ("Q1", "Q2", "Q3", "Q4"),
        ("State",),
        {"State": sorted({c[1] for c in CITIES})},
        {"Q1": "dec1", "Q2": "dec1", "Q3": "dec1", "Q4": "dec1"},
        _store_rows,
        _store_computed,
        _store_rules,
    ),
)
