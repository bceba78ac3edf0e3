"""Minecraft's crafting recipes as a :class:`RecipeBook`: items, base items, depths, matching.

Read once per process from ``recipes.json`` (made by ``tools/make_textcraft_recipes.py``
from ``minecraft_data``'s Minecraft 1.19 data; see ``LICENSE.txt``). Item names are
the game's ids with spaces for underscores (``oak_planks`` -> ``oak planks``).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATA_PATH", "Recipe", "RecipeBook", "book"]

DATA_PATH = Path(__file__).with_name("recipes.json")


@dataclass(frozen=True)
class Recipe:
    """One crafting recipe: ``needs`` make ``count`` of ``output``.

    Attributes:
        output: The item made.
        count: How many one craft makes.
        needs: ``(item, n)`` pairs, sorted by item: the grid's cells per ingredient.
    """

    output: str
    count: int
    needs: tuple[tuple[str, int], ...]

    def command(self, times: int = 1) -> str:
        """The action that crafts this recipe ``times`` at once.

        ``craft 4 oak planks using 1 oak log``; with ``times=2``:
        ``craft 8 oak planks using 2 oak log``.
        """
        ingredients = ", ".join(f"{n * times} {item}" for item, n in self.needs)
        return f"craft {self.count * times} {self.output} using {ingredients}"


class RecipeBook:
    """Every crafting recipe, the base items, and each item's crafting depth.

    Args:
        recipes: The recipes.
        base: The items the agent may ``get`` (none of them needs crafting).

    Attributes:
        recipes: All recipes, in a fixed order.
        base: Items obtained with ``get`` (crafting depth 0).
        items: Every item some recipe makes or needs.
        by_output: The recipes of each craftable item.
        depth: Each item's crafting depth: 0 for a base item, else the fewest
            levels of crafting from base items (1 + the deepest ingredient of its
            shallowest recipe).
    """

    def __init__(self, recipes: list[Recipe], base: frozenset[str]) -> None:
        self.recipes = tuple(recipes)
        self.base = base
        self.items = frozenset(
            {r.output for r in recipes} | {item for r in recipes for item, _ in r.needs}
        )
        by_output: dict[str, list[Recipe]] = {}
        for recipe in self.recipes:
            by_output.setdefault(recipe.output, []).append(recipe)
        self.by_output: Mapping[str, tuple[Recipe, ...]] = {
            k: tuple(v) for k, v in by_output.items()
        }
        self.depth = self._depths()

    def _depths(self) -> dict[str, int]:
        # Level by level: an item first reached at level d has depth d (no shallower recipe).
        depth = dict.fromkeys(self.base, 0)
        level = 0
        while True:
            level += 1
            reached = {
                r.output
                for r in self.recipes
                if r.output not in depth and all(depth.get(i, level) < level for i, _ in r.needs)
            }
            if not reached:
                break
            depth.update(dict.fromkeys(reached, level))
        missing = self.items - depth.keys()
        if missing:
            raise ValueError(f"items no base item grounds: {sorted(missing)[:5]}")
        return depth

    def recipe_depth(self, recipe: Recipe, depth: Mapping[str, int] | None = None) -> int:
        """1 + the crafting depth of the recipe's deepest ingredient."""
        depth = self.depth if depth is None else depth
        return 1 + max(depth[item] for item, _ in recipe.needs)

    def lookup(self, text: str) -> str | None:
        """The item ``text`` names, or ``None``.

        Case, ``minecraft:``, underscores and repeated spaces are ignored, and a
        plural or singular stands for the item (``sticks``, ``oak log``/``oak logs``).
        """
        name = " ".join(text.lower().replace("minecraft:", "").replace("_", " ").split())
        if name in self.items:
            return name
        for other in (name + "s", name + "es", name[:-1], name[:-2]):
            if other and other in self.items:
                return other
        return None

    def suggest(self, text: str, limit: int = 5) -> list[str]:
        """Items whose names hold every word of ``text`` (for an unknown-item message)."""
        words = [w.rstrip("s") for w in text.lower().replace("_", " ").split() if w]
        if not words:
            return []
        found = sorted(i for i in self.items if all(w in i for w in words))
        return found[:limit]

    def match(self, output: str, count: int, needs: Mapping[str, int]) -> tuple[Recipe, int] | None:
        """The recipe of ``output`` that ``needs`` make ``count`` of, and how many times.

        Args:
            output: The item to craft.
            count: How many to make: a multiple of the recipe's ``count``.
            needs: The ingredients given, each times the same multiple.

        Returns:
            ``(recipe, times)``, or ``None`` when no recipe fits.
        """
        given = Counter({k: v for k, v in needs.items() if v})
        for recipe in self.by_output.get(output, ()):
            if count % recipe.count:
                continue
            times = count // recipe.count
            if times and given == Counter({item: n * times for item, n in recipe.needs}):
                return recipe, times
        return None


@functools.cache
def book() -> RecipeBook:
    """The recipe book of the shipped data (read once per process)."""
    data = json.loads(DATA_PATH.read_text(encoding="ascii"))
    recipes = [
        Recipe(_name(out), int(count), tuple(sorted((_name(i), int(n)) for i, n in needs)))
        for out, count, needs in data["recipes"]
    ]
    return RecipeBook(recipes, frozenset(_name(i) for i in data["base"]))


def _name(game_id: str) -> str:
    return game_id.replace("_", " ")
