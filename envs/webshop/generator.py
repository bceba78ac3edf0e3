"""The generated shop of ``palaestra/WebShop-v0``: products and shopping goals.

No product data can be downloaded, so the catalogue is generated from a seeded
attribute grammar shaped like WebShop's scraped Amazon data (Yao et al. 2022):
five top-level categories, each with product types; a type has its own pool of
attributes ("machine wash", "gluten free", ...), its option kinds (size, colour,
flavor, ...) with their values, and a price range. A product is a brand, a type,
three to five attributes, a few values of each option kind, a price, a rating,
a title, feature bullets and a description, all drawn from
``random.Random(f"{CATALOGUE_SEED}:{index}")``, so product ``i`` is the same on
every machine and does not depend on any other product.

A goal (one task) picks a product and asks for one to three of its attributes,
one value of each of its option kinds and a price bound above its price, in the
way WebShop made its instructions: the bound is the larger of two of the four
multiples of ten above the price.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass

__all__ = [
    "CATALOGUE_SEED",
    "CATALOGUE_SIZE",
    "COLOURS",
    "GOAL_SEED",
    "Goal",
    "Product",
    "ProductType",
    "asin_index",
    "catalogue",
    "goal_for_task",
    "product_types",
]

CATALOGUE_SEED = 20261204
CATALOGUE_SIZE = 12_000
GOAL_SEED = 20261205

# -- the grammar ---------------------------------------------------------------------

COLOURS: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "gray",
    "navy",
    "blue",
    "red",
    "green",
    "pink",
    "purple",
    "beige",
    "brown",
    "khaki",
    "olive",
    "teal",
    "yellow",
    "orange",
    "silver",
    "gold",
    "ivory",
    "burgundy",
    "charcoal",
)
"""Base colours, in the order option values are normalised to them (first one found)."""

_CLOTHING_COLOURS = (
    "black",
    "white",
    "heather grey",
    "navy blue",
    "burgundy",
    "olive green",
    "khaki",
    "charcoal",
    "light pink",
    "royal blue",
)
_HOME_COLOURS = ("beige", "ivory", "grey", "navy", "teal", "mustard yellow", "sage green", "white")
_GADGET_COLOURS = ("black", "white", "silver", "rose gold", "midnight blue", "red")
_CLOTHING_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")
_SHOE_SIZES = ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12")
_PACKS = ("pack of 1", "pack of 2", "pack of 3", "pack of 6", "pack of 12")
_VOLUMES = ("2 fl oz", "8 fl oz", "12 fl oz", "16 fl oz", "32 fl oz")
_WEIGHTS = ("4 ounce", "8 ounce", "12 ounce", "16 ounce", "2 pound")
_FLAVORS = (
    "original",
    "vanilla",
    "chocolate",
    "sea salt",
    "strawberry",
    "peanut butter",
    "honey",
    "mango",
    "cinnamon",
    "lemon",
)
_SCENTS = ("lavender", "unscented", "eucalyptus", "coconut", "citrus", "rose", "sandalwood")
_BED_SIZES = ("twin", "full", "queen", "king", "california king")
_PILLOW_SIZES = ("16 x 16 inch", "18 x 18 inch", "20 x 20 inch", "24 x 24 inch")
_RUG_SIZES = ("2 x 3 ft", "3 x 5 ft", "4 x 6 ft", "5 x 7 ft", "8 x 10 ft")
_LENGTHS = ("3 ft", "6 ft", "10 ft", "15 ft")
_PHONES = ("iphone 15", "iphone 15 pro", "galaxy s24", "pixel 8", "iphone 14")

_CLOTHING = ("machine wash", "hand wash", "slim fit", "relaxed fit", "cotton spandex")
_FOOD = ("gluten free", "non gmo", "usda organic", "low sugar", "sugar free", "dairy free")
_BEAUTY = ("paraben free", "cruelty free", "sulfate free", "long lasting", "natural ingredients")
_HOME = ("easy clean", "living room", "bedroom", "super soft", "machine washable")
_GADGETS = ("easy install", "high speed", "fast charging", "water resistant", "plug and play")


@dataclass(frozen=True)
class ProductType:
    """A kind of product in the grammar.

    Attributes:
        name: What the product is, e.g. ``"running shoes"``: its search query in
            WebShop's terms and the nouns its title is judged by.
        path: The category path, top-level category first, the type's own last.
        attributes: The attributes its products draw from.
        options: Option kinds and their possible values, e.g. ``("size", (...))``.
        price: The price range in dollars.
        audience: Words a title may add after the type ("for women", ...).
    """

    name: str
    path: tuple[str, ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: tuple[float, float]
    audience: tuple[str, ...] = ("",)


def _types() -> tuple[ProductType, ...]:
    fashion, food, beauty = "Clothing, Shoes & Jewelry", "Grocery & Gourmet Food", "Beauty"
    home, tech = "Home & Kitchen", "Electronics"
    wear = ("for women", "for men", "")
    return (
        ProductType(
            "t-shirt",
            (fashion, "Tops", "T-Shirts"),
            (*_CLOTHING, "short sleeve", "crew neck", "moisture wicking"),
            (("color", _CLOTHING_COLOURS), ("size", _CLOTHING_SIZES)),
            (9, 35),
            wear,
        ),
        ProductType(
            "hoodie",
            (fashion, "Tops", "Hoodies"),
            (*_CLOTHING, "long sleeve", "drawstring closure", "fleece lined"),
            (("color", _CLOTHING_COLOURS), ("size", _CLOTHING_SIZES)),
            (19, 70),
            wear,
        ),
        ProductType(
            "jeans",
            (fashion, "Bottoms", "Jeans"),
            (*_CLOTHING, "button closure", "high waist", "straight leg"),
            (("color", _CLOTHING_COLOURS), ("size", _CLOTHING_SIZES)),
            (20, 90),
            wear,
        ),
        ProductType(
            "leggings",
            (fashion, "Bottoms", "Leggings"),
            (*_CLOTHING, "elastic waistband", "high waist", "tummy control"),
            (("color", _CLOTHING_COLOURS), ("size", _CLOTHING_SIZES)),
            (12, 45),
            ("for women", "for girls", ""),
        ),
        ProductType(
            "running shoes",
            (fashion, "Shoes", "Athletic Shoes"),
            ("rubber sole", "non slip", "lace up", "arch support", "memory foam", "breathable"),
            (("color", _CLOTHING_COLOURS), ("size", _SHOE_SIZES)),
            (30, 140),
            wear,
        ),
        ProductType(
            "slippers",
            (fashion, "Shoes", "Slippers"),
            ("rubber sole", "non slip", "memory foam", "faux fur", "machine washable"),
            (("color", _CLOTHING_COLOURS), ("size", _SHOE_SIZES)),
            (12, 50),
            wear,
        ),
        ProductType(
            "socks",
            (fashion, "Accessories", "Socks"),
            (*_CLOTHING, "moisture wicking", "arch support", "cushioned"),
            (("color", _CLOTHING_COLOURS), ("size", _PACKS)),
            (8, 30),
            wear,
        ),
        ProductType(
            "protein bars",
            (food, "Snacks", "Protein Bars"),
            (*_FOOD, "high protein", "keto friendly", "low carb"),
            (("flavor", _FLAVORS), ("size", _PACKS)),
            (10, 45),
        ),
        ProductType(
            "green tea",
            (food, "Beverages", "Tea"),
            (*_FOOD, "caffeine free", "individually wrapped", "decaffeinated"),
            (("flavor", ("original", "jasmine", "mint", "lemon", "ginger", "honey")),),
            (5, 30),
        ),
        ProductType(
            "coffee beans",
            (food, "Beverages", "Coffee"),
            (*_FOOD, "dark roast", "medium roast", "fair trade"),
            (("flavor", ("original", "vanilla", "hazelnut", "caramel", "mocha")),),
            (9, 40),
        ),
        ProductType(
            "trail mix",
            (food, "Snacks", "Nuts & Seeds"),
            (*_FOOD, "high protein", "resealable bag", "ready to eat"),
            (("flavor", _FLAVORS), ("size", _WEIGHTS)),
            (6, 35),
        ),
        ProductType(
            "beef jerky",
            (food, "Snacks", "Jerky"),
            (*_FOOD, "high protein", "low carb", "grass fed"),
            (("flavor", ("original", "teriyaki", "peppered", "sweet & spicy", "barbecue")),),
            (8, 40),
        ),
        ProductType(
            "almond butter",
            (food, "Pantry", "Nut Butters"),
            (*_FOOD, "keto friendly", "no added salt", "plant based"),
            (("flavor", ("original", "honey", "cinnamon", "chocolate")), ("size", _WEIGHTS)),
            (7, 30),
        ),
        ProductType(
            "shampoo",
            (beauty, "Hair Care", "Shampoo"),
            (*_BEAUTY, "dry hair", "color treated", "hair growth"),
            (("scent", _SCENTS), ("size", _VOLUMES)),
            (6, 40),
        ),
        ProductType(
            "face moisturizer",
            (beauty, "Skin Care", "Moisturizers"),
            (*_BEAUTY, "sensitive skin", "dry skin", "hyaluronic acid"),
            (("scent", _SCENTS), ("size", _VOLUMES)),
            (10, 60),
        ),
        ProductType(
            "body wash",
            (beauty, "Bath & Body", "Body Wash"),
            (*_BEAUTY, "sensitive skin", "dry skin", "tea tree"),
            (("scent", _SCENTS), ("size", _VOLUMES)),
            (5, 25),
        ),
        ProductType(
            "lip balm",
            (beauty, "Skin Care", "Lip Care"),
            (*_BEAUTY, "dry skin", "travel size", "spf protection"),
            (("flavor", ("original", "mint", "vanilla", "honey", "strawberry")), ("size", _PACKS)),
            (3, 18),
        ),
        ProductType(
            "hair dryer",
            (beauty, "Hair Care", "Styling Tools"),
            ("fast drying", "ionic technology", "low noise", "travel size", "easy carry"),
            (("color", _GADGET_COLOURS),),
            (20, 120),
        ),
        ProductType(
            "throw pillow covers",
            (home, "Home Decor", "Pillow Covers"),
            (*_HOME, "hidden zipper", "double sided", "farmhouse style"),
            (("color", _HOME_COLOURS), ("size", _PILLOW_SIZES)),
            (9, 35),
        ),
        ProductType(
            "bed sheet set",
            (home, "Bedding", "Sheets"),
            (*_HOME, "deep pocket", "wrinkle free", "breathable"),
            (("color", _HOME_COLOURS), ("size", _BED_SIZES)),
            (20, 90),
        ),
        ProductType(
            "area rug",
            (home, "Home Decor", "Rugs"),
            (*_HOME, "non slip", "stain resistant", "low pile"),
            (("color", _HOME_COLOURS), ("size", _RUG_SIZES)),
            (25, 200),
        ),
        ProductType(
            "coffee table",
            (home, "Furniture", "Tables"),
            ("easy assemble", "living room", "wood finish", "storage space", "metal legs"),
            (("color", ("walnut brown", "black", "white", "natural oak", "grey")),),
            (45, 300),
        ),
        ProductType(
            "office chair",
            (home, "Furniture", "Chairs"),
            ("easy assemble", "lumbar support", "adjustable height", "high back", "swivel"),
            (("color", ("black", "grey", "white", "navy blue", "pink")),),
            (60, 350),
        ),
        ProductType(
            "water bottle",
            (home, "Kitchen & Dining", "Drinkware"),
            ("bpa free", "stainless steel", "leak proof", "dishwasher safe", "double wall"),
            (("color", _GADGET_COLOURS), ("size", ("12 oz", "18 oz", "24 oz", "32 oz", "40 oz"))),
            (10, 45),
        ),
        ProductType(
            "bluetooth headphones",
            (tech, "Audio", "Headphones"),
            (*_GADGETS, "noise cancelling", "long battery life", "over ear"),
            (("color", _GADGET_COLOURS),),
            (20, 250),
        ),
        ProductType(
            "usb c cable",
            (tech, "Accessories", "Cables"),
            (*_GADGETS, "braided nylon", "data transfer"),
            (("color", _GADGET_COLOURS), ("size", _LENGTHS)),
            (6, 25),
        ),
        ProductType(
            "phone case",
            (tech, "Cell Phones", "Cases"),
            ("shockproof", "wireless charging", "slim fit", "easy install", "raised edges"),
            (("color", _GADGET_COLOURS), ("style", _PHONES)),
            (8, 40),
        ),
        ProductType(
            "portable speaker",
            (tech, "Audio", "Speakers"),
            (*_GADGETS, "long battery life", "built in microphone"),
            (("color", _GADGET_COLOURS),),
            (20, 150),
        ),
        ProductType(
            "wireless charger",
            (tech, "Accessories", "Chargers"),
            (*_GADGETS, "led indicator", "non slip"),
            (("color", _GADGET_COLOURS),),
            (10, 50),
        ),
    )


@functools.cache
def product_types() -> tuple[ProductType, ...]:
    """Every product type of the grammar, in a fixed order."""
    return _types()


_SYLLABLES = (
    "al ba co da el fi go ha in jo ka lu mi no or pa qui ra so ta ul ve wo xa yo zu "
    "bri cla dre fro gra kle pro stra tri vo ne lo ri sa mo"
).split()
_TEXTURES = ("premium", "durable", "lightweight", "classic", "everyday", "soft", "sturdy")
_PRAISE = (
    "Designed for daily use and built to last.",
    "A customer favourite for comfort and value.",
    "Thoughtfully made with quality materials.",
    "Backed by our satisfaction guarantee.",
    "Makes a great gift for family and friends.",
)
_FEATURE_LINES = (
    "{A}: a {texture} {type} made with {a} in mind.",
    "{A} - built around {a}; checked before it ships.",
    "{A}: customers chose {brand} for its {a}.",
    "{A}: designed with {a} as a priority, wear after wear.",
    "{A} - {a}, as on every {brand} {type}.",
    "{A}: tested in our lab for {a}.",
)
_USES = {
    "Clothing, Shoes & Jewelry": ("the gym", "work", "weekends", "travel", "running errands"),
    "Grocery & Gourmet Food": ("breakfast", "road trips", "the office", "after workouts"),
    "Beauty": ("daily routines", "the gym bag", "travel", "sensitive mornings"),
    "Home & Kitchen": ("the family room", "a first apartment", "guest rooms", "the office"),
    "Electronics": ("commutes", "the desk", "travel", "home offices"),
}
_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Product:
    """One product of the catalogue (WebShop's scraped fields, generated).

    Attributes:
        index: Its position in :func:`catalogue`.
        asin: Its 10-character id, e.g. ``"B07XK3JQ2M"``; clicked as ``click[b07xk3jq2m]``.
        type: Its :class:`ProductType` (``type.name`` is its query, ``type.path`` its category).
        brand: The brand name, a word of its title.
        title: The title shown in results and on its page.
        attributes: Its attributes, from its type's pool.
        options: Option kinds and the values this product offers.
        price: Dollars.
        rating: Stars out of 5.
        features: Feature bullets.
        description: A paragraph.
    """

    index: int
    asin: str
    type: ProductType
    brand: str
    title: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: float
    rating: float
    features: tuple[str, ...]
    description: str

    @property
    def nouns(self) -> frozenset[str]:
        """The nouns of its name: the brand and the type's words (WebShop's title match)."""
        return frozenset((self.brand.lower(), *self.type.name.split()))

    def text(self) -> str:
        """Everything the search engine indexes: title, features and description."""
        return " ".join((self.title, *self.features, self.description))


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _make_product(index: int) -> Product:
    rng = random.Random(f"{CATALOGUE_SEED}:{index}")
    kind = rng.choice(product_types())
    brand = _brand(rng)
    attributes = tuple(rng.sample(kind.attributes, rng.randint(3, min(5, len(kind.attributes)))))
    options = []
    for name, values in kind.options:
        count = rng.randint(2, min(6, len(values)))
        chosen = set(rng.sample(values, count))
        options.append((name, tuple(v for v in values if v in chosen)))  # the grammar's order
    low, high = kind.price
    price = round(rng.uniform(low, high)) - 0.01
    rating = round(rng.uniform(3.0, 5.0), 1)
    audience = rng.choice(kind.audience)
    texture = rng.choice(_TEXTURES)
    name = " ".join(part for part in (kind.name, audience) if part).title()
    title = f"{brand} {texture.title()} {name} - " + ", ".join(a.title() for a in attributes[:2])
    features = tuple(
        rng.choice(_FEATURE_LINES).format(
            A=attribute.upper(),
            a=attribute,
            texture=rng.choice(_TEXTURES),
            type=kind.name,
            brand=brand,
        )
        for attribute in attributes
    )
    description = (
        f"The {brand} {kind.name} is a {texture} pick in {kind.path[1].lower()}, "
        f"ready for {rng.choice(_USES[kind.path[0]])}. {rng.choice(_PRAISE)} Available in "
        + "; ".join(f"{len(values)} {name} options" for name, values in options)
        + "."
    )
    asin = "B0" + "".join(rng.choice(_ID_CHARS) for _ in range(8))
    return Product(
        index=index,
        asin=asin,
        type=kind,
        brand=brand,
        title=title,
        attributes=attributes,
        options=tuple(options),
        price=float(price),
        rating=rating,
        features=features,
        description=description,
    )


@functools.cache
def catalogue() -> tuple[Product, ...]:
    """All :data:`CATALOGUE_SIZE` products, made once per process and shared read-only.

    Ids are unique: a product whose drawn id is taken draws again from a generator
    seeded by its index, so the catalogue stays the same on every machine.
    """
    products = []
    seen: set[str] = set()
    for index in range(CATALOGUE_SIZE):
        product = _make_product(index)
        if product.asin in seen:
            rng = random.Random(f"{CATALOGUE_SEED}:{index}:asin")
            asin = product.asin
            while asin in seen:
                asin = "B0" + "".join(rng.choice(_ID_CHARS) for _ in range(8))
            product = dataclasses.replace(product, asin=asin)
        seen.add(product.asin)
        products.append(product)
    return tuple(products)


@functools.cache
def asin_index() -> dict[str, int]:
    """Lowercase id -> catalogue index."""
    return {product.asin.lower(): product.index for product in catalogue()}


# -- goals ---------------------------------------------------------------------------

_OPENERS = ("i need", "i am looking for", "find me", "i want to buy", "get me", "i'd like")
_PRICE_STEPS = tuple(10.0 * i for i in range(1, 100))


@dataclass(frozen=True)
class Goal:
    """What one task asks for (WebShop's goal fields).

    Attributes:
        product: The product the goal was made from (one product that matches it fully).
        attributes: The attributes asked for.
        options: One wanted value per option kind of the product, as ``(kind, value)``.
        price_upper: The price bound in dollars.
        text: The instruction shown to the agent.
    """

    product: Product
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_upper: float
    text: str

    @property
    def query(self) -> str:
        """The words a shopper would search with: the text without the price clause."""
        return self.text.split(", and price lower than")[0]


def goal_for_task(task_id: int) -> Goal:
    """The goal of task ``task_id``, drawn from ``random.Random(f"{GOAL_SEED}:{task_id}")``."""
    rng = random.Random(f"{GOAL_SEED}:{task_id}")
    products = catalogue()
    product = products[rng.randrange(len(products))]
    attributes = tuple(rng.sample(product.attributes, rng.randint(1, 3)))
    options = tuple((name, rng.choice(values)) for name, values in product.options)
    above = [p for p in _PRICE_STEPS if p > product.price][:4]
    price_upper = max(rng.sample(above, 2)) if len(above) >= 2 else 1000.0
    wanted = " and ".join(attributes)
    article = "an" if wanted[0] in "aeiou" else "a"
    text = f"{rng.choice(_OPENERS)} {article} {wanted} {product.type.name}"
    if options:
        text += " with " + ", and ".join(f"{name}: {value}" for name, value in options)
    text += f", and price lower than {price_upper:.2f} dollars"
    return Goal(product, attributes, options, price_upper, text)
