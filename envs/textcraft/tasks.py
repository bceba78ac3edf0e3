"""TextCraft's tasks: a goal item per task id, its crafting tree, and the commands shown.

Every craftable item of crafting depth 1 to :data:`MAX_DEPTH` is the goal of one
task. Per depth, a quarter of the goals (shuffled by :data:`TASK_SEED`) are test
tasks and the rest train tasks, so both splits hold every depth; ids ``0 ..
len(train) - 1`` are train tasks, the rest test tasks, each split in a seeded
order that mixes the depths.

A task's crafting tree picks one recipe for each item to craft, from the goal
down: a recipe as shallow as the item's place in the tree allows (so the tree is
exactly as deep as the goal), preferring recipes whose ingredients the tree
already uses (sticks from the oak planks a sign needs anyway), then shallower
ones, the rest drawn by the task's own seed. The commands shown are those
recipes plus up to :data:`MAX_DISTRACTORS` distractors (as in ADaPT's TextCraft):
other recipes that make or use an item of the tree (another way to make one of its
items, or a use of one), at most one per item made.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from palaestra.envs.textcraft.recipes import Recipe, RecipeBook, book

__all__ = [
    "MAX_DEPTH",
    "MAX_DISTRACTORS",
    "TASK_SEED",
    "TEST_SHARE",
    "Task",
    "goals",
    "plan",
    "splits",
    "task_for",
]

TASK_SEED = 20_261_204
"""Seeds the split of the goals and each task's choices (``TASK_SEED * 10_000 + task_id``)."""

MAX_DEPTH = 4
TEST_SHARE = 0.25
MAX_DISTRACTORS = 10


@dataclass(frozen=True)
class Task:
    """One task: craft ``goal``, with the recipes of its tree and the commands shown.

    Attributes:
        task_id: The task id.
        goal: The item to craft.
        depth: The goal's crafting depth (1-4): the levels of crafting from base items.
        tree: The recipe chosen for each item to craft, the goal first.
        shown: The recipes shown: the tree's and the distractors', shuffled.
    """

    task_id: int
    goal: str
    depth: int
    tree: tuple[Recipe, ...]
    shown: tuple[Recipe, ...]

    @functools.cached_property
    def commands(self) -> tuple[str, ...]:
        """The crafting commands shown, one per recipe of :attr:`shown`."""
        return tuple(r.command() for r in self.shown)

    @functools.cached_property
    def recipe_of(self) -> Mapping[str, Recipe]:
        """The tree's recipe per item crafted."""
        return {r.output: r for r in self.tree}

    @functools.cached_property
    def gets(self) -> tuple[str, ...]:
        """``get N ITEM`` for each base item and amount in a shown recipe, sorted."""
        base = book().base
        found = {f"get {n} {item}" for r in self.shown for item, n in r.needs if item in base}
        return tuple(sorted(found))


@functools.cache
def goals() -> tuple[tuple[tuple[str, int], ...], int]:
    """Every task's ``(goal, depth)`` by task id, and the number of train tasks (the first ones)."""
    recipes = book()
    rng = random.Random(TASK_SEED)
    train: list[tuple[str, int]] = []
    test: list[tuple[str, int]] = []
    for depth in range(1, MAX_DEPTH + 1):
        items = sorted(item for item, d in recipes.depth.items() if d == depth)
        rng.shuffle(items)
        cut = round(len(items) * TEST_SHARE)
        test += [(item, depth) for item in items[:cut]]
        train += [(item, depth) for item in items[cut:]]
    rng.shuffle(train)
    rng.shuffle(test)
    return tuple(train + test), len(train)


def splits() -> dict[str, range]:
    """``{"train": range(...), "test": range(...)}``."""
    table, n_train = goals()
    return {"train": range(0, n_train), "test": range(n_train, len(table))}


@functools.cache
def task_for(task_id: int) -> Task:
    """Task ``task_id``'s goal, tree and commands (made once per process).

    Raises:
        IndexError: No such task.
    """
    table, _ = goals()
    if not 0 <= task_id < len(table):
        raise IndexError(f"no TextCraft task {task_id} (ids 0..{len(table) - 1})")
    goal, depth = table[task_id]
    recipes = book()
    rng = random.Random(TASK_SEED * 10_000 + task_id)
    tree = _tree(recipes, goal, rng)
    distractors = _distractors(recipes, tree, rng)
    shown = tree + distractors
    rng.shuffle(shown)
    return Task(task_id, goal, depth, tuple(tree), tuple(shown))


def plan(task: Task, inventory: Mapping[str, int]) -> list[str]:
    """The fewest actions that craft ``task.goal`` from ``inventory`` by the tree's recipes.

    What the goal needs is added up top-down over the tree (the goal, then each
    item once all that use it are counted), less what the inventory holds; then
    one ``get`` per base item short, deepest items first, and one ``craft`` per
    item short, as many times at once as needed, from the bottom up. Each craft
    finds its ingredients made or got before it, so the plan works from any
    inventory, and re-planning after each of its actions gives the rest of it.

    Args:
        task: The task.
        inventory: Item counts held now.

    Returns:
        The actions, ``[]`` when the goal is already held.
    """
    if inventory.get(task.goal, 0) >= 1:
        return []
    order = _top_down(task)
    need = dict.fromkeys(order, 0)
    need[task.goal] = 1
    crafts: list[tuple[Recipe, int]] = []
    gets: list[tuple[str, int]] = []
    for item in order:
        short = need[item] - inventory.get(item, 0)
        if short <= 0:
            continue
        recipe = task.recipe_of.get(item)
        if recipe is None:
            gets.append((item, short))
            continue
        times = math.ceil(short / recipe.count)
        crafts.append((recipe, times))
        for ingredient, n in recipe.needs:
            need[ingredient] += n * times
    actions = [f"get {n} {item}" for item, n in reversed(gets)]
    return actions + [recipe.command(times) for recipe, times in reversed(crafts)]


def _top_down(task: Task) -> list[str]:
    """The tree's items, each after every item whose recipe uses it (a topological order)."""
    seen: set[str] = set()
    post: list[str] = []

    def visit(item: str) -> None:
        if item in seen:
            return
        seen.add(item)
        recipe = task.recipe_of.get(item)
        for ingredient, _ in recipe.needs if recipe else ():
            visit(ingredient)
        post.append(item)

    visit(task.goal)
    return post[::-1]


def _tree(recipes: RecipeBook, goal: str, rng: random.Random) -> list[Recipe]:
    """One recipe per item to craft, from ``goal`` down (see the module docstring)."""
    chosen: dict[str, Recipe] = {}
    used: set[str] = {goal}

    def visit(item: str, budget: int) -> None:
        if item in recipes.base:
            return
        current = chosen.get(item)
        if current is not None and recipes.recipe_depth(current) <= budget:
            return
        # A shallower place than before: re-choose (the depth limit only falls, so this ends).
        options = [r for r in recipes.by_output[item] if recipes.recipe_depth(r) <= budget]
        reuse = {r: sum(i in used for i, _ in r.needs) for r in options}
        options = [r for r in options if reuse[r] == max(reuse.values())]
        shallowest = min(recipes.recipe_depth(r) for r in options)
        options = [r for r in options if recipes.recipe_depth(r) == shallowest]
        recipe = options[rng.randrange(len(options))]
        chosen[item] = recipe
        used.update(i for i, _ in recipe.needs)
        for ingredient, _ in recipe.needs:
            visit(ingredient, recipes.recipe_depth(recipe) - 1)

    visit(goal, recipes.depth[goal])
    # Keep what the goal still reaches: a re-chosen recipe may have orphaned the old one's.
    tree: list[Recipe] = []
    stack, reached = [goal], set()
    while stack:
        item = stack.pop(0)
        if item in reached or item not in chosen:
            continue
        reached.add(item)
        tree.append(chosen[item])
        stack += [i for i, _ in chosen[item].needs]
    return tree


def _distractors(recipes: RecipeBook, tree: list[Recipe], rng: random.Random) -> list[Recipe]:
    """Up to :data:`MAX_DISTRACTORS` recipes, one per item, that make or use an item of the tree."""
    shown = set(tree)
    items = {r.output for r in tree} | {i for r in tree for i, _ in r.needs}
    by_output: dict[str, list[Recipe]] = {}
    for recipe in recipes.recipes:
        if recipe in shown:
            continue
        if recipe.output in items or any(i in items for i, _ in recipe.needs):
            by_output.setdefault(recipe.output, []).append(recipe)
    picked = rng.sample(sorted(by_output), min(MAX_DISTRACTORS, len(by_output)))
    return [by_output[item][rng.randrange(len(by_output[item]))] for item in picked]
