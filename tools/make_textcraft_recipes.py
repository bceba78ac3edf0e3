"""Build the recipe data of ``palaestra/TextCraft-v0`` (run once; the outputs are committed).

The env reads only the files this script writes into ``envs/textcraft/``:

``recipes.json``
    Minecraft Java Edition 1.19's crafting-table recipes, as ``minecraft-data``
    ships them (``data/pc/1.19/recipes.json`` with ``items.json`` for the names):
    one row ``[result, count, [[ingredient, n], ...]]`` per distinct recipe, the
    shape dropped (a shaped recipe needs each ingredient as many times as it fills
    a cell of the grid), tag recipes as ``minecraft-data`` expands them (one row
    per wood, colour, ...). Plus ``base``: the items the agent may ``get``.
``LICENSE.txt``
    The MIT licence of ``minecraft_data`` (the Python package, Vito Gamberini and
    contributors) and the attribution of the data it bundles (PrismarineJS's
    ``minecraft-data``, MIT).

Base items are the items no crafting recipe makes (logs, cobblestone, string,
...), and one item of each crafting cycle that nothing else grounds: iron ingots
are made from nuggets or a block of iron, both made from ingots, so one of them
has to come from outside the crafting table (in the game, a furnace). The cycle
is broken at a unit (an item some recipe makes 9 of from one item, such as an
ingot from a block), the one most used by the recipes not yet grounded; ties by
name. This gives iron, gold and copper ingots, redstone, diamond, emerald, lapis
lazuli, coal, wheat, slime balls, dried kelp, raw metals and honey blocks.

Sources and licences:

* ``minecraft_data`` 3.20.0 on PyPI (https://github.com/SpockBotMC/python-minecraft-data),
  MIT; it bundles PrismarineJS's ``minecraft-data`` (MIT), whose recipes are
  read from the game's own data. Only recipe facts (which items make which) are
  kept.

Usage (``minecraft_data`` goes into a throwaway venv, not the project's)::

    python3 -m venv /tmp/mcd && /tmp/mcd/bin/pip install minecraft_data==3.20.0
    /tmp/mcd/bin/python tools/make_textcraft_recipes.py
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from collections import Counter
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "envs" / "textcraft"
VERSION = "1.19"
PACKAGE = "minecraft_data 3.20.0"

Recipe = tuple[str, int, tuple[tuple[str, int], ...]]

ATTRIBUTION = f"""\
palaestra/TextCraft-v0's recipes.json is made by tools/make_textcraft_recipes.py
from the Minecraft Java Edition {VERSION} recipe data bundled in the Python package
{PACKAGE} (https://github.com/SpockBotMC/python-minecraft-data), which wraps
PrismarineJS's minecraft-data (https://github.com/PrismarineJS/minecraft-data,
MIT licence). Minecraft is a trademark of Mojang Synergies AB; palaestra is not
affiliated with Mojang or Microsoft. The licence of minecraft_data follows.

"""


def data_dir() -> Path:
    """The installed ``minecraft_data`` package's folder of per-version JSON."""
    import minecraft_data  # only this script needs it

    return Path(minecraft_data.__file__).parent / "data" / "data"


def _ingredient(cell: Any) -> int | None:
    """An item id from one cell of a recipe (an id, ``{"id": ...}``, or ``None``)."""
    if cell is None or isinstance(cell, int):
        return cell
    if isinstance(cell, dict):
        return int(cell["id"])
    raise ValueError(f"unexpected recipe cell {cell!r}")


def read_recipes(root: Path) -> list[Recipe]:
    """Every distinct crafting recipe of the version, shapes dropped, sorted."""
    version = root / "pc" / VERSION
    names = {i["id"]: i["name"] for i in json.loads((version / "items.json").read_text())}
    raw = json.loads((version / "recipes.json").read_text())
    recipes: set[Recipe] = set()
    for variants in raw.values():
        for variant in variants:
            cells = (
                [c for row in variant["inShape"] for c in row]
                if "inShape" in variant
                else variant["ingredients"]
            )
            needed = Counter(names[i] for i in map(_ingredient, cells) if i is not None)
            result = variant["result"]
            recipes.add((names[result["id"]], int(result["count"]), tuple(sorted(needed.items()))))
    return sorted(recipes)


def base_items(recipes: list[Recipe]) -> list[str]:
    """The items no recipe makes, plus one breaker per ungrounded crafting cycle."""
    made = {out for out, _, _ in recipes}
    items = made | {name for _, _, needs in recipes for name, _ in needs}
    base = items - made
    while True:
        grounded = _grounded(recipes, base)
        loose = [r for r in recipes if r[0] not in grounded]
        if not loose:
            return sorted(base)
        uses = Counter(name for _, _, needs in loose for name, _ in needs if name not in grounded)
        units = {out for out, count, needs in recipes if count == 9 and needs[0][1] == 1}
        pool = sorted(set(uses) & units) or sorted(uses)
        base.add(max(pool, key=lambda name: uses[name]))


def _grounded(recipes: list[Recipe], base: set[str]) -> set[str]:
    """The items that base items make, directly or through other grounded items."""
    grounded = set(base)
    while True:
        more = {
            out
            for out, _, needs in recipes
            if out not in grounded and all(name in grounded for name, _ in needs)
        }
        if not more:
            return grounded
        grounded |= more


def main() -> None:
    """Write ``recipes.json`` and ``LICENSE.txt`` (``--out``, default ``envs/textcraft/``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args()
    root = data_dir()
    recipes = read_recipes(root)
    base = base_items(recipes)
    data = {
        "source": f"{PACKAGE}, Minecraft Java Edition {VERSION} (data/pc/{VERSION})",
        "licence": "MIT (minecraft_data; PrismarineJS minecraft-data); see LICENSE.txt",
        "base": base,
        "recipes": [[out, count, [list(n) for n in needs]] for out, count, needs in recipes],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, separators=(",", ":"))
    # One recipe a line: reviewable diffs when the data is rebuilt.
    text = text.replace(',"recipes":[', ',"recipes":[\n').replace("]]],", "]]],\n")
    (args.out / "recipes.json").write_text(text + "\n", encoding="ascii")
    licence = importlib.metadata.distribution("minecraft_data").read_text("licenses/LICENSE")
    (args.out / "LICENSE.txt").write_text(ATTRIBUTION + licence, encoding="utf-8")
    print(f"recipes.json: {len(recipes)} recipes, {len(base)} base items")


if __name__ == "__main__":
    main()
