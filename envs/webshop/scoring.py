"""WebShop's published reward for a purchase (Yao et al. 2022, section 3.1 and appendix).

For a goal with attributes ``U_att``, options ``U_opt`` and a price bound:

    r = r_type * (|U_att ∩ Y_att| + |U_opt ∩ Y_opt| + 1[price <= bound])
               / (|U_att| + |U_opt| + 1)

* an attribute matches when a fuzzy token-set similarity with one of the bought
  product's attributes is over 85, or when it appears in the product's title,
  features or description;
* an option matches when, after reducing both to their first base colour (for
  colours), their fuzzy token-set similarity is over 85 (so ``large`` matches
  ``x-large``, as in WebShop);
* ``r_type`` judges the product type: the share of the goal product's name
  nouns that the bought product's name has (``title_score``), and whether the two
  share a query or two levels of category; 1.0 when they match, 0.5 when only the
  nouns barely do, 0.1 when fewer than 10% of nouns match, 0.0 when none do.

WebShop computes the similarity with ``thefuzz`` (rapidfuzz underneath, scores
rounded to integers) and finds nouns with spaCy; here rapidfuzz is called
directly with the same preprocessing and rounding, and the nouns of a generated
title are known from the grammar (its brand and type words).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz, utils

from palaestra.envs.webshop.generator import COLOURS, Goal, Product

__all__ = ["FUZZY_THRESHOLD", "Reward", "fuzzy_match", "normalise_option", "reward"]

FUZZY_THRESHOLD = 85
"""Similarity (0-100) above which two attribute or option strings are the same."""


@dataclass(frozen=True)
class Reward:
    """A purchase's reward and its parts.

    Attributes:
        total: The reward in [0, 1]; 1.0 is a full match (success).
        r_type: The product-type factor (1.0, 0.5, 0.1 or 0.0).
        attributes: Goal attributes matched.
        options: Goal options matched.
        price: Whether the price is within the bound.
        title_score: Share of the goal name's nouns in the bought product's name.
    """

    total: float
    r_type: float
    attributes: int
    options: int
    price: bool
    title_score: float


def fuzzy_match(a: str, b: str) -> bool:
    """WebShop's fuzzy sameness: rounded token-set similarity over :data:`FUZZY_THRESHOLD`."""
    score = fuzz.token_set_ratio(a, b, processor=utils.default_process)
    return round(score) > FUZZY_THRESHOLD


def normalise_option(value: str) -> str:
    """The first base colour that ``value`` contains, else ``value`` itself."""
    for colour in COLOURS:
        if colour in value:
            return colour
    return value


def _type_factor(bought: Product, goal: Goal) -> tuple[float, float]:
    wanted = goal.product.nouns
    title_score = len(bought.nouns & wanted) / len(wanted)
    query_match = bought.type.name == goal.product.type.name
    category_match = len(set(bought.type.path) & set(goal.product.type.path)) >= 2
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, title_score


def _attribute_matches(bought: Product, wanted: Iterable[str]) -> int:
    text = " ".join((bought.title, *bought.features, bought.description)).lower()
    return sum(
        any(fuzzy_match(have, attribute) for have in bought.attributes) or attribute in text
        for attribute in wanted
    )


def _option_matches(chosen: Iterable[str], wanted: Iterable[str]) -> int:
    have = [normalise_option(value) for value in chosen]
    return sum(any(fuzzy_match(value, normalise_option(goal)) for value in have) for goal in wanted)


def reward(bought: Product, chosen: Mapping[str, str], goal: Goal) -> Reward:
    """The reward of buying ``bought`` with options ``chosen`` (kind -> value) for ``goal``."""
    r_type, title_score = _type_factor(bought, goal)
    attributes = _attribute_matches(bought, goal.attributes)
    options = _option_matches(chosen.values(), (value for _, value in goal.options))
    price = bought.price <= goal.price_upper
    parts = len(goal.attributes) + len(goal.options) + 1
    total = r_type * (attributes + options + int(price)) / parts
    return Reward(total, r_type, attributes, options, price, title_score)
