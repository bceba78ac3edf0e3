import importlib.util
import json
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra
import palaestra.envs
from palaestra.envs.textcraft import (
    MAX_DEPTH,
    MAX_STEPS,
    TEST_TASKS,
    TRAIN_TASKS,
    Recipe,
    TextCraftEnv,
    book,
    plan,
    task_for,
)
from palaestra.envs.textcraft.recipes import DATA_PATH
from palaestra.envs.textcraft.tasks import MAX_DISTRACTORS
from palaestra.errors import UnknownTaskError

ENV_ID = "palaestra/TextCraft-v0"
ALL_TASKS = list(TRAIN_TASKS) + list(TEST_TASKS)
TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_textcraft_recipes.py"


def make(task_id: int = 0) -> tuple[TextCraftEnv, str]:
    env = TextCraftEnv()
    observation, _ = env.reset(options={"task_id": task_id})
    return env, observation


def play_expert(env: TextCraftEnv) -> tuple[list[str], dict]:
    actions, info = [], {}
    while not env.over:
        actions.append(env.expert_action())
        *_, info = env.step(actions[-1])
    return actions, info


def tool_module():
    spec = importlib.util.spec_from_file_location("make_textcraft_recipes", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def task_with(predicate) -> int:
    return next(t for t in ALL_TASKS if predicate(task_for(t)))


# -- the recipe data -------------------------------------------------------------------


def test_the_book_holds_minecraft_recipes():
    recipes = book()
    assert len(recipes.recipes) == 1405
    assert Recipe("oak planks", 4, (("oak log", 1),)) in recipes.by_output["oak planks"]
    assert Recipe("crafting table", 1, (("oak planks", 4),)) in recipes.by_output["crafting table"]
    assert Recipe("stick", 4, (("birch planks", 2),)) in recipes.by_output["stick"]
    assert Recipe("torch", 4, (("coal", 1), ("stick", 1))) in recipes.by_output["torch"]
    assert {"oak log", "string", "cobblestone", "iron ingot", "diamond"} <= recipes.base
    assert recipes.depth["oak planks"] == 1
    assert recipes.depth["stick"] == 1  # 2 bamboo make a stick
    assert recipes.depth["chest"] == 2
    assert recipes.depth["dark oak sign"] == 2
    assert all(recipes.depth[i] == 0 for i in recipes.base)
    assert all(recipes.depth[r.output] <= recipes.recipe_depth(r) for r in recipes.recipes)


def test_the_shipped_base_items_are_what_the_tool_derives_from_the_shipped_recipes():
    data = json.loads(DATA_PATH.read_text())
    recipes = [(out, n, tuple(map(tuple, needs))) for out, n, needs in data["recipes"]]
    assert tool_module().base_items(recipes) == data["base"]
    assert "minecraft_data" in data["source"] and "MIT" in data["licence"]
    assert "MIT" in (DATA_PATH.parent / "LICENSE.txt").read_text()


def test_the_tool_rebuilds_the_shipped_files_byte_for_byte(tmp_path):
    pytest.importorskip("minecraft_data")  # only where the tool's source is installed
    subprocess.run([sys.executable, str(TOOL), "--out", str(tmp_path)], check=True, timeout=120)
    for name in ("recipes.json", "LICENSE.txt"):
        assert (tmp_path / name).read_bytes() == (DATA_PATH.parent / name).read_bytes()


def test_the_tool_breaks_a_crafting_cycle_at_its_unit():
    # ingot <-> block <-> nugget: nothing grounds them; the ingot (9 from a block,
    # and the most used) becomes a base item, as iron ingots do in the real data.
    recipes = [
        ("block", 1, (("ingot", 9),)),
        ("ingot", 9, (("block", 1),)),
        ("ingot", 1, (("nugget", 9),)),
        ("nugget", 9, (("ingot", 1),)),
        ("sword", 1, (("ingot", 2), ("stick", 1))),
        ("stick", 4, (("plank", 2),)),
    ]
    assert tool_module().base_items(recipes) == ["ingot", "plank"]


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("oak planks", "oak planks"),
        ("Oak_Planks", "oak planks"),
        ("minecraft:oak_planks", "oak planks"),
        ("oak  plank", "oak planks"),
        ("sticks", "stick"),
        ("torches", "torch"),
        ("planks", None),
        ("", None),
    ],
)
def test_item_names_are_read_leniently(text, item):
    assert book().lookup(text) == item


def test_recipes_match_whole_multiples_only():
    recipes = book()
    planks = Recipe("oak planks", 4, (("oak log", 1),))
    assert recipes.match("oak planks", 4, {"oak log": 1}) == (planks, 1)
    assert recipes.match("oak planks", 12, {"oak log": 3}) == (planks, 3)
    assert recipes.match("oak planks", 4, {"oak log": 2}) is None
    assert recipes.match("oak planks", 3, {"oak log": 1}) is None
    assert recipes.match("oak planks", 0, {}) is None


# -- tasks and splits ------------------------------------------------------------------


def test_splits_are_disjoint_and_hold_every_depth():
    assert set(TRAIN_TASKS).isdisjoint(TEST_TASKS)
    assert (len(TRAIN_TASKS), len(TEST_TASKS)) == (490, 162)
    for split in (TRAIN_TASKS, TEST_TASKS):
        depths = Counter(task_for(t).depth for t in split)
        assert set(depths) == set(range(1, MAX_DEPTH + 1))
    assert Counter(task_for(t).depth for t in TEST_TASKS) == {1: 42, 2: 80, 3: 36, 4: 4}
    assert not {task_for(t).goal for t in TRAIN_TASKS} & {task_for(t).goal for t in TEST_TASKS}
    # The first tasks of a split mix the depths (the benchmark plays the first 100).
    assert len({task_for(t).depth for t in list(TEST_TASKS)[:20]}) >= 3


@pytest.mark.parametrize("task_id", ALL_TASKS[::7])
def test_a_task_shows_its_tree_plus_distractors(task_id):
    task = task_for(task_id)
    recipes = book()
    assert task.tree[0].output == task.goal
    assert set(task.tree) <= set(task.shown)
    assert len(task.shown) - len(task.tree) <= MAX_DISTRACTORS
    assert len(set(task.shown)) == len(task.shown)
    # One recipe per item of the tree, as deep as the goal and no deeper.
    assert len({r.output for r in task.tree}) == len(task.tree)

    def height(item: str) -> int:
        recipe = task.recipe_of.get(item)
        return 0 if recipe is None else 1 + max(height(i) for i, _ in recipe.needs)

    assert height(task.goal) == task.depth == recipes.depth[task.goal]
    leaves = {i for r in task.tree for i, _ in r.needs if i not in task.recipe_of}
    assert leaves <= recipes.base


def test_tasks_are_fixed_by_their_id():
    env, first = make(TEST_TASKS[3])
    again, _ = env.reset(seed=123, options={"task_id": TEST_TASKS[3]})
    assert first == again
    assert first.startswith("Crafting commands:\n")
    assert first.endswith(f"\n\nGoal: craft {task_for(TEST_TASKS[3]).goal}.")
    assert first.split("\n")[1:-2] == list(task_for(TEST_TASKS[3]).commands)


def test_unknown_tasks_are_refused():
    with pytest.raises(UnknownTaskError):
        TextCraftEnv().reset(options={"task_id": len(ALL_TASKS)})


# -- the expert ------------------------------------------------------------------------


def test_the_expert_solves_every_task():
    env = TextCraftEnv()
    lengths = []
    for task_id in ALL_TASKS:
        env.reset(options={"task_id": task_id})
        actions, info = play_expert(env)
        assert info["success"] and info["score"] == 1.0, (task_id, actions)
        assert actions == plan(task_for(task_id), {})
        lengths.append(len(actions))
    assert max(lengths) * 3 < MAX_STEPS


@pytest.mark.parametrize("task_id", ALL_TASKS[::23])
def test_the_expert_finishes_from_wherever_random_actions_left_it(task_id):
    env, _ = make(task_id)
    rng = np.random.default_rng(task_id)
    for _ in range(8):
        *_, terminated, truncated, _ = env.step(env.random_action(rng))
        if terminated or truncated:
            break
    if not env.over:
        remaining = len(plan(task_for(task_id), env.get_state()["inventory"]))
        actions, info = play_expert(env)
        assert info["success"] and len(actions) == remaining


def test_the_plan_counts_what_the_inventory_already_holds():
    task = task_for(task_with(lambda t: t.goal == "black bed"))
    planks = task.recipe_of["black bed"].needs[1][0]  # e.g. crimson planks
    full = plan(task, {})
    fewer = plan(task, {planks: 3, "string": 12})
    assert len(fewer) == len(full) - 3  # no log to get nor to craft into planks, no string
    assert not any(planks in a.split(" using ")[0] for a in fewer)
    assert plan(task, {"black bed": 1}) == []


# -- actions ---------------------------------------------------------------------------


def test_get_craft_and_inventory():
    env, _ = make(task_with(lambda t: "oak planks" in t.recipe_of))
    assert env.step("get 3 oak log")[0] == "Got 3 oak log."
    assert env.step("craft 8 oak planks using 2 oak log")[0] == "Crafted 8 oak planks."
    observation, reward, terminated, truncated, info = env.step("inventory")
    assert observation == "Inventory: [oak log] (1) [oak planks] (8)"
    assert (reward, terminated, truncated, info["invalid_action"]) == (0.0, False, False, False)


def test_a_craft_without_enough_ingredients_fails_validly_and_changes_nothing():
    env, _ = make(task_with(lambda t: "oak planks" in t.recipe_of))
    env.step("get 1 oak log")
    before = env.get_state()
    observation, *_, info = env.step("craft 8 oak planks using 2 oak log")
    assert observation == (
        "Could not find enough items to craft 8 oak planks: it needs 2 oak log (you have 1)."
    )
    assert info["invalid_action"] is False
    assert env.get_state() == before


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("", "Could not understand"),
        ("dance", "Could not understand"),
        ("get oak log", "Expected a count and an item"),
        ("get 2 planks", "Unknown item 'planks'. Did you mean: acacia planks"),
        ("get 1 oak planks", "You cannot get oak planks: it is crafted"),
        ("get 0 oak log", "The count must be 1 to 1000, not 0"),
        ("get 1001 oak log", "The count must be 1 to 1000, not 1001"),
        ("craft 4 oak planks", "Could not read a craft"),
        ("craft oak planks using 1 oak log", "Expected a count and an item"),
        ("craft 4 oak planks using oak log", "Expected a count and an item"),
        ("craft 4 oak planks using 1 unobtainium", "Unknown item 'unobtainium'"),
        ("craft 1 oak log using 1 oak planks", "oak log has no recipe: it is a base item"),
        ("craft 3 oak planks using 1 oak log", "No recipe makes 3 oak planks from 1 oak log"),
        ("craft 4 oak planks using 1 oak log, 1 stick", "No recipe makes 4 oak planks"),
    ],
)
def test_malformed_or_impossible_actions_are_invalid_and_change_nothing(action, says):
    env, _ = make(0)
    env.step("get 5 oak log")
    before = env.get_state()
    observation, reward, terminated, _, info = env.step(action)
    assert info["invalid_action"] is True
    assert says in observation
    assert "Actions: get N ITEM" in observation  # and says what is allowed
    assert (reward, terminated) == (0.0, False)
    assert env.get_state() == before


def test_a_wrong_recipe_is_answered_with_the_tasks_own_recipe_first():
    task_id = task_with(lambda t: t.goal == "black bed")
    env, _ = make(task_id)
    observation, *_ = env.step("craft 1 black bed using 1 stick")
    assert f"The recipes of black bed: {task_for(task_id).recipe_of['black bed'].command()};" in (
        observation
    )


def test_actions_read_leniently():
    env, _ = make(task_with(lambda t: "oak planks" in t.recipe_of))
    assert env.step("  GET 2 Oak_Logs. ")[0] == "Got 2 oak log."
    assert env.step("`craft 4 Oak Plank using 1 minecraft:oak_log`")[0] == "Crafted 4 oak planks."
    assert env.step("craft 4 oak planks using 1 oak log,")[0] == "Crafted 4 oak planks."
    env.step("craft 4 sticks using 2 oak planks")
    env.step("get 1 coal")
    assert env.step("craft 4 torches using 1 coal and 1 stick")[0] == "Crafted 4 torch."


def test_crafting_the_goal_wins_and_truncation_loses():
    env, _ = make(TEST_TASKS[0])
    _, info = play_expert(env)
    assert info == {
        "task_id": TEST_TASKS[0],
        "step": info["step"],
        "invalid_action": False,
        "success": True,
        "score": 1.0,
    }
    env.reset(options={"task_id": TEST_TASKS[0]})
    for _ in range(MAX_STEPS):
        *_, terminated, truncated, info = env.step("inventory")
    assert (terminated, truncated, info["success"], info["score"]) == (False, True, False, 0.0)


# -- capabilities ----------------------------------------------------------------------


def test_random_actions_are_valid_and_drawn_from_the_rng_only():
    env, _ = make(TEST_TASKS[5])
    seen = set()
    for seed in range(40):
        action = env.random_action(np.random.default_rng(seed))
        assert action == env.random_action(np.random.default_rng(seed))
        seen.add(action.split()[0])
        snapshot = env.snapshot()
        *_, info = env.step(action)
        assert info["invalid_action"] is False, action
        env.restore(snapshot)
    assert seen == {"get", "craft", "inventory"}


def test_a_restored_env_continues_identically():
    env, _ = make(TEST_TASKS[7])
    rng = np.random.default_rng(0)
    for _ in range(4):
        env.step(env.random_action(rng))
    snapshot = env.snapshot()
    tail = [env.random_action(rng) for _ in range(3)]
    tail += plan(task_for(TEST_TASKS[7]), env.get_state()["inventory"])
    expected = [env.step(a) for a in tail if not env.over]
    other, _ = make(TRAIN_TASKS[0])
    other.step("get 4 oak log")
    for target in (env, other):
        target.restore(snapshot)
        assert [target.step(a) for a in tail[: len(expected)]] == expected
    assert expected[-1][4]["success"]


def test_set_state_refuses_an_impossible_inventory():
    env, _ = make(0)
    with pytest.raises(ValueError, match="not an inventory entry"):
        env.set_state({"task_id": 0, "inventory": {"unobtainium": 1}})
    with pytest.raises(ValueError, match="not an inventory entry"):
        env.set_state({"task_id": 0, "inventory": {"oak log": 0}})


def test_registered_and_checked_by_gymnasium():
    assert palaestra.envs.env_class(ENV_ID) is TextCraftEnv
    env = gymnasium.make(ENV_ID)
    assert isinstance(env.unwrapped, TextCraftEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    assert TextCraftEnv.capabilities() == {"expert", "random_action", "snapshot"}
    assert TextCraftEnv.fast_calls


def test_the_instructions_examples_are_valid_actions():
    env, _ = make(task_with(lambda t: "oak planks" in t.recipe_of))
    examples = [
        "get 2 oak log",
        "craft 8 oak planks using 2 oak log",
        "craft 4 stick using 2 oak planks",
        "inventory",
    ]
    for action in examples:
        assert action in TextCraftEnv.instruction
        assert env.step(action)[4]["invalid_action"] is False
    assert env.step("inventory")[0] == "Inventory: [oak planks] (6) [stick] (4)"


def test_the_same_episode_in_process_and_over_http(serve):
    task_id = TEST_TASKS[11]
    with serve([ENV_ID]) as url:
        remote = palaestra.make(ENV_ID, base_url=url)
        local = palaestra.make(ENV_ID)
        try:
            assert remote.reset(seed=0, options={"task_id": task_id}) == local.reset(
                seed=0, options={"task_id": task_id}
            )
            for action in ["get 1 oak planks", "inventory", *plan(task_for(task_id), {})]:
                assert remote.step(action) == local.step(action)
        finally:
            remote.close()


def test_the_readme_row_is_true():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{ENV_ID}` |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == f"train {len(TRAIN_TASKS)}, test {len(TEST_TASKS)}"
    assert cells[3] == str(MAX_STEPS)
    lengths = [len(plan(task_for(t), {})) for t in ALL_TASKS]
    assert f"{min(lengths)}-{max(lengths)} actions" in cells[4]
