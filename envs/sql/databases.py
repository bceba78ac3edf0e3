"""The four SQLite databases of ``palaestra/SQL-v0``, generated from fixed seeds.

Each database (retail, university, flights, hospital) is made by a seeded
``random.Random`` from the small vocabularies below (names, cities, airports,
products, drugs...): thousands of rows of plausible values, no download. The
same seed and SQLite release give byte-identical files (a test builds twice and
compares SHA-256s).

Databases are built on first use (well under a second each) into a cache folder
and reused after:

* ``$PALAESTRA_CACHE/sql/<DATA_VERSION>/`` if that variable is set, else
* ``$XDG_CACHE_HOME/palaestra/sql/<DATA_VERSION>/``, else ``~/.cache/palaestra/sql/...``.

A build writes a private temporary folder and renames it into place, so
processes sharing a cache never see half a database; the last one to finish
simply loses the rename.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from palaestra.files import ROOT_CACHE_ENV, cache_root

__all__ = [
    "DATABASES",
    "DATA_VERSION",
    "ROOT_CACHE_ENV",
    "SEED",
    "build",
    "cache_dir",
    "database_path",
    "ensure_built",
]

DATA_VERSION = "v1"
"""Bumped whenever the schemas, the generators or the questions change."""

SEED = 20_261_204
DATABASES: tuple[str, ...] = ("retail", "university", "flights", "hospital")

Rows = list[tuple[Any, ...]]

# -- vocabularies ------------------------------------------------------------------

FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy "
    "Anthony Betty Mark Sandra Donald Ashley Steven Emily Andrew Michelle Joshua Amanda "
    "Kevin Melissa Brian Stephanie George Rebecca Timothy Laura Ryan Sharon Jacob Cynthia "
    "Nicholas Kathleen Eric Amy Jonathan Angela Justin Anna Samuel Olivia Noah Sophia "
    "Liam Emma Lucas Mia Ethan Chloe Mateo Aisha Wei Priya Hiroshi Fatima Carlos Elena"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell "
    "Carter Roberts Chen Patel Kim Singh Okafor Novak Schmidt Rossi Silva Tanaka Kowalski"
).split()
CITIES = (
    ("New York", "NY"), ("Los Angeles", "CA"), ("Chicago", "IL"), ("Houston", "TX"),
    ("Phoenix", "AZ"), ("Philadelphia", "PA"), ("San Antonio", "TX"), ("San Diego", "CA"),
    ("Dallas", "TX"), ("Austin", "TX"), ("Seattle", "WA"), ("Denver", "CO"),
    ("Boston", "MA"), ("Portland", "OR"), ("Atlanta", "GA"), ("Miami", "FL"),
    ("Minneapolis", "MN"), ("Detroit", "MI"), ("Nashville", "TN"), ("Baltimore", "MD"),
)  # fmt: skip
EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "proton.me")


def _date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


# -- retail ------------------------------------------------------------------------

RETAIL_SCHEMA = """
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    signup_date TEXT NOT NULL
);
CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL,
    stock INTEGER NOT NULL
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
    order_date TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE order_items (
    order_item_id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(order_id),
    product_id INTEGER NOT NULL REFERENCES products(product_id),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL
);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX items_order ON order_items(order_id);
CREATE INDEX items_product ON order_items(product_id);
"""

PRODUCT_CATALOGUE: dict[str, tuple[tuple[float, float], tuple[str, ...], tuple[str, ...]]] = {
    "Electronics": ((15, 1200), ("Wireless", "Smart", "Portable", "Noise-Cancelling", "4K"),
                    ("Headphones", "Speaker", "Monitor", "Keyboard", "Camera", "Tablet")),
    "Books": ((6, 60), ("Illustrated", "Complete", "Pocket", "Annotated", "Collected"),
              ("Cookbook", "Atlas", "Novel", "Field Guide", "Biography", "Poems")),
    "Home": ((8, 400), ("Ceramic", "Bamboo", "Linen", "Cast Iron", "Glass"),
             ("Vase", "Skillet", "Lamp", "Cutting Board", "Throw Blanket", "Mirror")),
    "Toys": ((5, 150), ("Wooden", "Plush", "Remote Control", "Magnetic", "Musical"),
             ("Train Set", "Puzzle", "Robot", "Building Blocks", "Doll House", "Kite")),
    "Sports": ((10, 600), ("Carbon", "Pro", "Lightweight", "Waterproof", "Adjustable"),
               ("Tennis Racket", "Yoga Mat", "Bicycle Helmet", "Running Shoes", "Dumbbells")),
    "Beauty": ((4, 120), ("Organic", "Hydrating", "Matte", "Vitamin C", "Unscented"),
               ("Face Cream", "Lipstick", "Shampoo", "Serum", "Sunscreen", "Body Lotion")),
    "Grocery": ((2, 45), ("Organic", "Roasted", "Wildflower", "Extra Virgin", "Dark"),
                ("Coffee Beans", "Honey", "Olive Oil", "Chocolate", "Green Tea", "Almonds")),
    "Clothing": ((9, 250), ("Merino", "Cotton", "Denim", "Fleece", "Linen"),
                 ("Jacket", "Sweater", "Jeans", "T-Shirt", "Scarf", "Socks")),
}  # fmt: skip
ORDER_STATUSES = (
    ("delivered", 0.68), ("shipped", 0.1), ("processing", 0.06),
    ("cancelled", 0.09), ("returned", 0.07),
)  # fmt: skip


def _retail(rng: random.Random) -> dict[str, Rows]:
    customers: Rows = []
    for cid in range(1, 1201):
        first, last = _name(rng)
        city, state = rng.choice(CITIES)
        email = f"{first.lower()}.{last.lower()}{cid}@{rng.choice(EMAIL_DOMAINS)}"
        signup = _date(rng, dt.date(2019, 1, 1), dt.date(2023, 12, 31))
        customers.append((cid, first, last, email, city, state, signup.isoformat()))
    products: Rows = []
    names: set[str] = set()
    while len(products) < 160:
        category = rng.choice(sorted(PRODUCT_CATALOGUE))
        (low, high), adjectives, nouns = PRODUCT_CATALOGUE[category]
        name = f"{rng.choice(adjectives)} {rng.choice(nouns)}"
        if name in names:
            name = f"{name} {rng.choice(('Mini', 'Plus', 'Max', 'Lite', 'II', 'Deluxe'))}"
        if name in names:
            continue
        names.add(name)
        price = round(low + (high - low) * rng.random() ** 2, 2)
        products.append((len(products) + 1, name, category, price, rng.randrange(0, 500)))
    orders: Rows = []
    items: Rows = []
    for oid in range(1, 5001):
        customer = rng.choice(customers)
        start = dt.date.fromisoformat(customer[6])
        day = _date(rng, start, dt.date(2024, 12, 31))
        orders.append((oid, customer[0], day.isoformat(), _weighted(rng, ORDER_STATUSES)))
        for product in rng.sample(products, rng.choice((1, 1, 2, 2, 3, 4))):
            discount = rng.choice((1.0, 1.0, 1.0, 0.9, 0.8))
            unit = round(product[3] * discount, 2)
            items.append((len(items) + 1, oid, product[0], rng.choice((1, 1, 1, 2, 3, 5)), unit))
    return {"customers": customers, "products": products, "orders": orders, "order_items": items}


# -- university --------------------------------------------------------------------

UNIVERSITY_SCHEMA = """
CREATE TABLE departments (
    dept_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    building TEXT NOT NULL,
    budget INTEGER NOT NULL
);
CREATE TABLE instructors (
    instructor_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    dept_id INTEGER NOT NULL REFERENCES departments(dept_id),
    rank TEXT NOT NULL,
    hire_year INTEGER NOT NULL,
    salary INTEGER NOT NULL
);
CREATE TABLE students (
    student_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    major_dept_id INTEGER NOT NULL REFERENCES departments(dept_id),
    enrollment_year INTEGER NOT NULL,
    home_state TEXT NOT NULL
);
CREATE TABLE courses (
    course_id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    title TEXT NOT NULL,
    dept_id INTEGER NOT NULL REFERENCES departments(dept_id),
    credits INTEGER NOT NULL,
    instructor_id INTEGER NOT NULL REFERENCES instructors(instructor_id)
);
CREATE TABLE enrollments (
    enrollment_id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES students(student_id),
    course_id INTEGER NOT NULL REFERENCES courses(course_id),
    term TEXT NOT NULL,
    grade TEXT NOT NULL,
    grade_points REAL NOT NULL
);
CREATE INDEX enrollments_student ON enrollments(student_id);
CREATE INDEX enrollments_course ON enrollments(course_id);
"""

DEPARTMENTS = (
    ("Computer Science", "CS", "Turing Hall"), ("Mathematics", "MATH", "Gauss Building"),
    ("Physics", "PHYS", "Curie Lab"), ("Chemistry", "CHEM", "Curie Lab"),
    ("Biology", "BIO", "Darwin Center"), ("History", "HIST", "Gibbon Hall"),
    ("Economics", "ECON", "Smith Hall"), ("Psychology", "PSYC", "James Hall"),
    ("English", "ENGL", "Austen Hall"), ("Philosophy", "PHIL", "Gibbon Hall"),
    ("Statistics", "STAT", "Gauss Building"), ("Music", "MUS", "Bach Auditorium"),
)  # fmt: skip
COURSE_TOPICS = (
    "Introduction to {d}", "Foundations of {d}", "Topics in {d}", "Advanced {d}",
    "{d} Research Seminar", "History of {d}", "Methods in {d}", "{d} Laboratory",
    "Applied {d}", "{d} and Society", "Honors {d}", "Quantitative {d}",
)  # fmt: skip
RANKS = (("Lecturer", 0.2), ("Assistant Professor", 0.3), ("Associate Professor", 0.25),
         ("Professor", 0.25))  # fmt: skip
GRADES = (("A", 4.0, 0.28), ("B", 3.0, 0.34), ("C", 2.0, 0.22), ("D", 1.0, 0.09),
          ("F", 0.0, 0.07))  # fmt: skip
TERMS = tuple(f"{season} {year}" for year in range(2019, 2025) for season in ("Spring", "Fall"))
STATES = sorted({state for _, state in CITIES})


def _university(rng: random.Random) -> dict[str, Rows]:
    departments: Rows = [
        (i, name, building, rng.randrange(400, 4000) * 1000)
        for i, (name, _, building) in enumerate(DEPARTMENTS, 1)
    ]
    instructors: Rows = []
    for iid in range(1, 141):
        first, last = _name(rng)
        rank = _weighted(rng, RANKS)
        base = {"Lecturer": 58, "Assistant Professor": 82, "Associate Professor": 101}.get(
            rank, 130
        )
        salary = (base + rng.randrange(0, 40)) * 1000
        dept = rng.randrange(1, len(DEPARTMENTS) + 1)
        instructors.append((iid, first, last, dept, rank, rng.randrange(1988, 2024), salary))
    students: Rows = []
    for sid in range(1, 2401):
        first, last = _name(rng)
        major = rng.randrange(1, len(DEPARTMENTS) + 1)
        students.append((sid, first, last, major, rng.randrange(2018, 2024), rng.choice(STATES)))
    courses: Rows = []
    for dept_id, (name, prefix, _) in enumerate(DEPARTMENTS, 1):
        staff = [i[0] for i in instructors if i[3] == dept_id] or [1]
        for k, topic in enumerate(rng.sample(COURSE_TOPICS, 9)):
            code = f"{prefix}{(k % 4 + 1) * 100 + rng.randrange(1, 99)}"
            title = topic.format(d=name)
            courses.append((len(courses) + 1, code, title, dept_id, rng.choice((2, 3, 3, 4, 4, 5)),
                            rng.choice(staff)))  # fmt: skip
    enrollments: Rows = []
    for student in students:
        terms = [t for t in TERMS if int(t[-4:]) >= student[4]]
        for course in rng.sample(courses, rng.randrange(2, 9)):
            grade = rng.choices(GRADES, weights=[g[2] for g in GRADES])[0]
            enrollments.append((len(enrollments) + 1, student[0], course[0], rng.choice(terms),
                                grade[0], grade[1]))  # fmt: skip
    return {
        "departments": departments,
        "instructors": instructors,
        "students": students,
        "courses": courses,
        "enrollments": enrollments,
    }


# -- flights -----------------------------------------------------------------------

FLIGHTS_SCHEMA = """
CREATE TABLE airports (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE TABLE airlines (
    airline_id INTEGER PRIMARY KEY,
    iata TEXT NOT NULL,
    name TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE TABLE flights (
    flight_id INTEGER PRIMARY KEY,
    airline_id INTEGER NOT NULL REFERENCES airlines(airline_id),
    flight_number TEXT NOT NULL,
    origin TEXT NOT NULL REFERENCES airports(code),
    destination TEXT NOT NULL REFERENCES airports(code),
    departure TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    status TEXT NOT NULL,
    delay_minutes INTEGER NOT NULL
);
CREATE TABLE passengers (
    passenger_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    nationality TEXT NOT NULL
);
CREATE TABLE bookings (
    booking_id INTEGER PRIMARY KEY,
    flight_id INTEGER NOT NULL REFERENCES flights(flight_id),
    passenger_id INTEGER NOT NULL REFERENCES passengers(passenger_id),
    seat_class TEXT NOT NULL,
    fare REAL NOT NULL
);
CREATE INDEX flights_origin ON flights(origin);
CREATE INDEX bookings_flight ON bookings(flight_id);
CREATE INDEX bookings_passenger ON bookings(passenger_id);
"""

AIRPORTS = (
    ("ATL", "Hartsfield-Jackson Atlanta International", "Atlanta", "United States"),
    ("LAX", "Los Angeles International", "Los Angeles", "United States"),
    ("ORD", "O'Hare International", "Chicago", "United States"),
    ("DFW", "Dallas/Fort Worth International", "Dallas", "United States"),
    ("DEN", "Denver International", "Denver", "United States"),
    ("JFK", "John F. Kennedy International", "New York", "United States"),
    ("SFO", "San Francisco International", "San Francisco", "United States"),
    ("SEA", "Seattle-Tacoma International", "Seattle", "United States"),
    ("MIA", "Miami International", "Miami", "United States"),
    ("BOS", "Logan International", "Boston", "United States"),
    ("YYZ", "Toronto Pearson International", "Toronto", "Canada"),
    ("YVR", "Vancouver International", "Vancouver", "Canada"),
    ("MEX", "Mexico City International", "Mexico City", "Mexico"),
    ("LHR", "Heathrow", "London", "United Kingdom"),
    ("CDG", "Charles de Gaulle", "Paris", "France"),
    ("FRA", "Frankfurt am Main", "Frankfurt", "Germany"),
    ("AMS", "Amsterdam Schiphol", "Amsterdam", "Netherlands"),
    ("MAD", "Adolfo Suarez Madrid-Barajas", "Madrid", "Spain"),
    ("FCO", "Leonardo da Vinci-Fiumicino", "Rome", "Italy"),
    ("DXB", "Dubai International", "Dubai", "United Arab Emirates"),
    ("HND", "Tokyo Haneda", "Tokyo", "Japan"),
    ("ICN", "Incheon International", "Seoul", "South Korea"),
    ("SIN", "Singapore Changi", "Singapore", "Singapore"),
    ("SYD", "Sydney Kingsford Smith", "Sydney", "Australia"),
    ("GRU", "Sao Paulo-Guarulhos International", "Sao Paulo", "Brazil"),
    ("JNB", "O. R. Tambo International", "Johannesburg", "South Africa"),
)
AIRLINES = (
    ("DL", "Delta Air Lines", "United States"), ("AA", "American Airlines", "United States"),
    ("UA", "United Airlines", "United States"), ("AC", "Air Canada", "Canada"),
    ("BA", "British Airways", "United Kingdom"), ("AF", "Air France", "France"),
    ("LH", "Lufthansa", "Germany"), ("KL", "KLM", "Netherlands"),
    ("EK", "Emirates", "United Arab Emirates"), ("NH", "All Nippon Airways", "Japan"),
    ("SQ", "Singapore Airlines", "Singapore"), ("QF", "Qantas", "Australia"),
)  # fmt: skip
NATIONALITIES = ("United States", "Canada", "Mexico", "United Kingdom", "France", "Germany",
                 "Spain", "Italy", "Japan", "South Korea", "India", "Brazil", "Australia",
                 "Nigeria", "China")  # fmt: skip
FLIGHT_STATUSES = (("on time", 0.72), ("delayed", 0.22), ("cancelled", 0.06))
SEAT_CLASSES = (("economy", 0.72, 1.0), ("premium economy", 0.12, 1.6),
                ("business", 0.12, 3.5), ("first", 0.04, 6.0))  # fmt: skip


def _flights(rng: random.Random) -> dict[str, Rows]:
    airlines: Rows = [(i, iata, name, c) for i, (iata, name, c) in enumerate(AIRLINES, 1)]
    # Routes: each airline flies a fixed set of airport pairs, each with its own length.
    codes = [a[0] for a in AIRPORTS]
    flights: Rows = []
    for airline in airlines:
        routes = set()
        while len(routes) < 14:
            origin, destination = rng.sample(codes, 2)
            routes.add((origin, destination))
        for origin, destination in sorted(routes):
            number = f"{airline[1]}{rng.randrange(10, 9999)}"
            duration = rng.randrange(55, 900)
            for _ in range(rng.randrange(12, 26)):
                day = _date(rng, dt.date(2024, 1, 1), dt.date(2024, 12, 31))
                clock = (
                    f"{rng.randrange(5, 24):02d}:{rng.choice((0, 10, 15, 25, 30, 40, 45, 55)):02d}"
                )
                status = _weighted(rng, FLIGHT_STATUSES)
                delay = rng.randrange(15, 300) if status == "delayed" else 0
                flights.append((0, airline[0], number, origin, destination,
                                f"{day.isoformat()} {clock}", duration, status, delay))  # fmt: skip
    flights.sort(key=lambda f: (f[5], f[2]))
    flights = [(i, *f[1:]) for i, f in enumerate(flights, 1)]
    passengers: Rows = []
    for pid in range(1, 3001):
        first, last = _name(rng)
        passengers.append((pid, first, last, rng.randrange(1940, 2010), rng.choice(NATIONALITIES)))
    bookings: Rows = []
    for flight in flights:
        base = 40 + flight[6] * rng.uniform(0.15, 0.3)
        for passenger in rng.sample(passengers, rng.randrange(0, 8)):
            seat = rng.choices(SEAT_CLASSES, weights=[s[1] for s in SEAT_CLASSES])[0]
            fare = round(base * seat[2] * rng.uniform(0.8, 1.3), 2)
            bookings.append((len(bookings) + 1, flight[0], passenger[0], seat[0], fare))
    return {
        "airports": list(AIRPORTS),
        "airlines": airlines,
        "flights": flights,
        "passengers": passengers,
        "bookings": bookings,
    }


# -- hospital ----------------------------------------------------------------------

HOSPITAL_SCHEMA = """
CREATE TABLE doctors (
    doctor_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    specialty TEXT NOT NULL,
    hire_year INTEGER NOT NULL
);
CREATE TABLE patients (
    patient_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    sex TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    city TEXT NOT NULL,
    blood_type TEXT NOT NULL
);
CREATE TABLE admissions (
    admission_id INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(patient_id),
    doctor_id INTEGER NOT NULL REFERENCES doctors(doctor_id),
    ward TEXT NOT NULL,
    diagnosis TEXT NOT NULL,
    admit_date TEXT NOT NULL,
    discharge_date TEXT NOT NULL,
    cost REAL NOT NULL
);
CREATE TABLE prescriptions (
    prescription_id INTEGER PRIMARY KEY,
    admission_id INTEGER NOT NULL REFERENCES admissions(admission_id),
    drug TEXT NOT NULL,
    dose_mg INTEGER NOT NULL,
    days INTEGER NOT NULL
);
CREATE INDEX admissions_patient ON admissions(patient_id);
CREATE INDEX prescriptions_admission ON prescriptions(admission_id);
"""

# specialty -> (ward, diagnoses, drugs with their usual doses in mg)
SPECIALTIES: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, tuple[int, ...]], ...]]] = {
    "Cardiology": ("Cardiac", ("Atrial fibrillation", "Heart failure", "Angina"),
                   (("Metoprolol", (25, 50, 100)), ("Atorvastatin", (10, 20, 40)),
                    ("Apixaban", (5, 10)))),
    "Pulmonology": ("Respiratory", ("Pneumonia", "COPD exacerbation", "Asthma attack"),
                    (("Prednisone", (10, 20, 40)), ("Azithromycin", (250, 500)),
                     ("Salbutamol", (2, 4)))),
    "Orthopedics": ("Surgical", ("Hip fracture", "Knee replacement", "Spinal stenosis"),
                    (("Ibuprofen", (200, 400, 600)), ("Oxycodone", (5, 10)),
                     ("Enoxaparin", (40, 80)))),
    "Neurology": ("Neuro", ("Stroke", "Epileptic seizure", "Migraine"),
                  (("Levetiracetam", (250, 500, 1000)), ("Aspirin", (75, 300)),
                   ("Sumatriptan", (50, 100)))),
    "Gastroenterology": ("General", ("Appendicitis", "Pancreatitis", "Gastric ulcer"),
                         (("Omeprazole", (20, 40)), ("Metronidazole", (250, 500)),
                          ("Ceftriaxone", (1000, 2000)))),
    "Endocrinology": ("General", ("Diabetic ketoacidosis", "Hypothyroidism crisis"),
                      (("Insulin glargine", (10, 20, 30)), ("Metformin", (500, 850, 1000)),
                       ("Levothyroxine", (50, 100)))),
}  # fmt: skip
BLOOD_TYPES = (("O+", 0.38), ("A+", 0.34), ("B+", 0.09), ("O-", 0.07), ("A-", 0.06),
               ("AB+", 0.03), ("B-", 0.02), ("AB-", 0.01))  # fmt: skip


def _hospital(rng: random.Random) -> dict[str, Rows]:
    specialties = sorted(SPECIALTIES)
    doctors: Rows = []
    for did in range(1, 73):
        first, last = _name(rng)
        doctors.append((did, first, last, specialties[did % len(specialties)],
                        rng.randrange(1990, 2024)))  # fmt: skip
    patients: Rows = []
    for pid in range(1, 3001):
        first, last = _name(rng)
        born = _date(rng, dt.date(1935, 1, 1), dt.date(2012, 12, 31))
        patients.append((pid, first, last, rng.choice("FM"), born.isoformat(),
                         rng.choice(CITIES)[0], _weighted(rng, BLOOD_TYPES)))  # fmt: skip
    admissions: Rows = []
    prescriptions: Rows = []
    for aid in range(1, 6001):
        patient = rng.choice(patients)
        doctor = rng.choice(doctors)
        ward, diagnoses, drugs = SPECIALTIES[doctor[3]]
        admitted = _date(rng, dt.date(2021, 1, 1), dt.date(2024, 11, 30))
        stay = rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 7, 10, 14))
        discharged = admitted + dt.timedelta(days=stay)
        cost = round(stay * rng.uniform(900, 3200) + rng.uniform(200, 5000), 2)
        admissions.append((aid, patient[0], doctor[0], ward, rng.choice(diagnoses),
                           admitted.isoformat(), discharged.isoformat(), cost))  # fmt: skip
        for drug, doses in rng.sample(drugs, rng.randrange(0, 3)):
            prescriptions.append((len(prescriptions) + 1, aid, drug, rng.choice(doses),
                                  rng.randrange(1, 31)))  # fmt: skip
    return {
        "doctors": doctors,
        "patients": patients,
        "admissions": admissions,
        "prescriptions": prescriptions,
    }


_GENERATORS: dict[str, tuple[str, Callable[[random.Random], dict[str, Rows]]]] = {
    "retail": (RETAIL_SCHEMA, _retail),
    "university": (UNIVERSITY_SCHEMA, _university),
    "flights": (FLIGHTS_SCHEMA, _flights),
    "hospital": (HOSPITAL_SCHEMA, _hospital),
}


# -- building and the cache --------------------------------------------------------


def cache_dir() -> Path:
    """The folder of this data version's databases (see the module docstring); not created."""
    return cache_root() / "sql" / DATA_VERSION


def database_path(name: str, directory: Path | None = None) -> Path:
    """The file of database ``name`` (one of :data:`DATABASES`) in ``directory`` or the cache."""
    if name not in _GENERATORS:
        raise KeyError(f"no database {name!r}; the databases: {', '.join(DATABASES)}")
    return (directory or cache_dir()) / f"{name}.sqlite"


def build(name: str, path: Path) -> None:
    """Generate database ``name`` into a new file ``path`` (byte-identical on every build)."""
    schema, generate = _GENERATORS[name]
    tables = generate(random.Random(SEED + DATABASES.index(name)))
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.executescript(schema)
        connection.execute("BEGIN")
        for table, rows in tables.items():
            marks = ", ".join("?" * len(rows[0]))
            connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        connection.execute("COMMIT")
        connection.execute("VACUUM")  # compact, and the same page layout every build
    finally:
        connection.close()


_build_lock = threading.Lock()


def ensure_built() -> Path:
    """Build the databases and their questions into the cache if absent; return its folder.

    Safe from several threads (a lock) and processes (a private folder renamed into
    place; a process that loses the rename uses the winner's identical copy).
    """
    from palaestra.envs.sql.questions import QUESTIONS_FILE, write_questions

    target = cache_dir()
    if (target / QUESTIONS_FILE).exists():
        return target
    with _build_lock:
        if (target / QUESTIONS_FILE).exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        work.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            for name in DATABASES:
                build(name, database_path(name, work))
            write_questions(work)  # last: its presence marks a complete folder
            try:
                os.replace(work, target)
            except OSError:
                if not (target / QUESTIONS_FILE).exists():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
