import asyncio
import os
import subprocess
import sys
from dataclasses import replace

import gymnasium
import numpy as np
import pytest

import palaestra.envs  # noqa: F401  (registers the env ids)
from palaestra.envs.webshop import (
    CATALOGUE_SIZE,
    MAX_RESULTS,
    PAGE_SIZE,
    TEST_TASKS,
    TRAIN_TASKS,
    Product,
    WebShopEnv,
    catalogue,
    goal_for_task,
    index,
    product_types,
    reward,
)
from palaestra.envs.webshop import search as search_module
from palaestra.envs.webshop.env import _fits
from palaestra.envs.webshop.generator import _make_product
from palaestra.envs.webshop.scoring import fuzzy_match, normalise_option


def new_env(task_id: int = TEST_TASKS[0]) -> WebShopEnv:
    env = WebShopEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


def play_expert(env: WebShopEnv) -> tuple[list[str], dict]:
    actions = []
    while True:
        actions.append(env.expert_action())
        _, _, terminated, truncated, info = env.step(actions[-1])
        if terminated or truncated:
            return actions, info


def open_results(env: WebShopEnv, query: str = "running shoes") -> str:
    observation, *_ = env.step(f"search[{query}]")
    return observation


# -- catalogue and goals --------------------------------------------------------------


def test_the_catalogue_has_over_ten_thousand_distinct_products_from_a_seeded_grammar():
    products = catalogue()
    assert len(products) == CATALOGUE_SIZE >= 10_000
    assert len({p.asin for p in products}) == len(products)
    assert len({p.type.path[0] for p in products}) >= 5
    assert {p.type for p in products} == set(product_types())
    # Product i depends only on the seed and i: the same on every machine and run.
    assert _make_product(4321) == products[4321]
    for product in products[:500]:
        values = [v for _, vs in product.options for v in vs]
        assert len(values) == len(set(values)), product  # every option value clicks one thing
        assert product.title.isascii() and product.description.isascii()
        assert 3 <= len(product.attributes) <= 5
        assert product.price > 0


def test_a_goal_asks_for_attributes_options_and_a_price_bound_its_product_meets():
    for task_id in [*TRAIN_TASKS[:100], *TEST_TASKS[:100]]:
        goal = goal_for_task(task_id)
        assert goal == goal_for_task(task_id)
        assert set(goal.attributes) <= set(goal.product.attributes)
        assert all(attribute in goal.text for attribute in goal.attributes)
        assert all(f"{kind}: {value}" in goal.text for kind, value in goal.options)
        assert goal.product.price < goal.price_upper
        assert goal.text.endswith(f"price lower than {goal.price_upper:.2f} dollars")
        assert reward(goal.product, dict(goal.options), goal).total == 1.0


# -- scoring --------------------------------------------------------------------------


def test_the_reward_counts_attributes_options_and_price_over_their_number():
    goal = next(g for g in map(goal_for_task, TRAIN_TASKS) if len(g.options) == 2)
    product, first = goal.product, goal.options[0]
    full = reward(product, dict(goal.options), goal)
    assert (full.total, full.r_type, full.price) == (1.0, 1.0, True)
    parts = len(goal.attributes) + 2 + 1
    half = reward(product, {first[0]: first[1]}, goal)
    assert half.options == 1
    assert half.total == pytest.approx((parts - 1) / parts)
    dear = replace(product, price=goal.price_upper + 1)
    assert reward(dear, dict(goal.options), goal).total == pytest.approx((parts - 1) / parts)
    none = reward(product, {}, goal)
    assert none.total == pytest.approx((parts - 2) / parts)


def test_a_product_of_another_type_scores_zero_and_a_kindred_one_is_judged_by_its_nouns():
    goal = goal_for_task(0)
    other = next(p for p in catalogue() if not (p.nouns & goal.product.nouns))
    assert reward(other, dict(goal.options), goal).total == 0.0
    same_type = next(
        p for p in catalogue() if p.type == goal.product.type and p.brand != goal.product.brand
    )
    result = reward(same_type, dict(goal.options), goal)
    assert result.r_type == 1.0  # the type's words are most of the goal name's nouns
    assert result.title_score == pytest.approx(1 - 1 / len(goal.product.nouns))


def test_fuzzy_matching_is_webshops_token_set_rule_with_colours_reduced():
    assert fuzzy_match("machine wash", "Machine Wash")
    assert fuzzy_match("large", "x-large")  # a subset of tokens: a match, as in WebShop
    assert not fuzzy_match("gluten free", "sugar free")
    assert normalise_option("navy blue") == "navy"
    assert normalise_option("royal blue") == normalise_option("midnight blue") == "blue"
    assert normalise_option("16 x 16 inch") == "16 x 16 inch"


# -- search ---------------------------------------------------------------------------


def test_search_ranks_products_that_share_words_with_the_query():
    results = index().search("gluten free protein bars")
    assert 0 < len(results) <= MAX_RESULTS
    top = catalogue()[results[0]]
    assert top.type.name == "protein bars" and "gluten free" in top.attributes
    assert results == index().search("gluten free protein bars")
    assert index().search("zzzqqq") == []
    assert index().search("the and of") == []  # stop words only


def test_every_session_shares_one_index_and_no_env_keeps_a_copy():
    first, second = new_env(), new_env(TEST_TASKS[1])
    assert index() is index()
    for env in (first, second):
        open_results(env)
        assert not any(isinstance(v, search_module.SearchIndex) for v in vars(env).values())


def test_finding_the_shared_index_again_does_not_rehash_the_catalogue(monkeypatch):
    """Each search looked the index up by a digest of all 12,000 products: 10 ms a search."""
    first = index()
    monkeypatch.setattr(Product, "text", lambda self: pytest.fail("the catalogue was rehashed"))
    assert index() is first


def test_the_index_is_built_once_into_the_cache_then_loaded(tmp_path):
    env = {**os.environ, "PALAESTRA_CACHE": str(tmp_path)}
    code = (
        "import os, pathlib; from palaestra.envs.webshop import index; s = index().stats; "
        "print(s.built, s.path.is_relative_to(pathlib.Path(os.environ['PALAESTRA_CACHE'])))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.stdout.split() for r in runs] == [["True", "True"], ["False", "True"]], runs
    assert not [p for p in (tmp_path / "webshop").iterdir() if p.name.startswith(".")]


def test_an_unwritable_cache_leaves_the_index_in_memory_with_the_same_results(
    tmp_path, monkeypatch, caplog
):
    query = "gluten free protein bars"
    expected = index().search(query)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("PALAESTRA_CACHE", str(blocker))
    monkeypatch.setattr(search_module, "_INDEX", {})
    fallback = index()
    assert fallback.stats.built and fallback.stats.path is None
    assert "keeping it in memory" in caplog.text
    assert fallback.search(query) == expected


# -- the env --------------------------------------------------------------------------


def test_registered_with_gymnasium_and_passes_its_checker():
    env = gymnasium.make("palaestra/WebShop-v0").unwrapped
    assert isinstance(env, WebShopEnv)
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)


def test_the_expert_buys_a_full_match_on_every_test_task_within_nine_steps():
    env = WebShopEnv()
    for task_id in TEST_TASKS:
        env.reset(seed=0, options={"task_id": task_id})
        actions, info = play_expert(env)
        assert info["success"] and info["score"] == 1.0, (task_id, actions)
        assert len(actions) <= 9


def test_the_expert_falls_back_to_the_goal_products_title():
    env = new_env()
    env.step("search[zzzqqq]")  # nothing found: the expert goes back and searches again
    assert env.expert_action() == "click[Back to Search]"
    env.step("click[Back to Search]")
    env._searches.append(env._goal.query)  # as if the instruction's search found nothing
    assert env.expert_action() == f"search[{env._goal.product.title}]"
    _, info = play_expert(env)
    assert info["success"]


def test_results_pages_go_forward_and_back_and_list_their_buttons():
    env = new_env()
    observation = open_results(env)
    assert "page 1 of 5 (50 results)" in observation
    buttons = env.available_actions()
    assert "click[Next >]" in buttons and "click[< Prev]" not in buttons
    assert len([b for b in buttons if b.startswith("click[B0")]) == PAGE_SIZE
    first_page = env._page_results()
    env.step("click[next >]")  # case-insensitive
    assert env._page_results() != first_page and "click[< Prev]" in env.available_actions()
    for _ in range(3):
        env.step("click[Next >]")
    assert "click[Next >]" not in env.available_actions()
    _, _, _, _, info = env.step("click[Next >]")
    assert info["invalid_action"]
    for _ in range(4):
        env.step("click[< Prev]")
    assert env._page_results() == first_page


def test_a_product_page_shows_options_description_and_features_and_buys():
    env = new_env()
    open_results(env)
    product = catalogue()[env._page_results()[0]]
    observation, *_ = env.step(f"click[{product.asin.lower()}]")
    assert product.title in observation and f"${product.price:.2f}" in observation
    kind, values = product.options[0]
    observation, *_ = env.step(f"click[{values[-1]}]")
    assert f"(chosen: {values[-1]})" in observation
    observation, *_ = env.step("click[Description]")
    assert product.description in observation
    env.step("click[< Prev]")
    observation, *_ = env.step("click[Features]")
    assert product.features[0] in observation
    env.step("click[< Prev]")
    assert env._chosen == {kind: values[-1]}  # the choice survives the detour
    observation, rewarded, terminated, _, info = env.step("click[Buy Now]")
    expected = reward(product, {kind: values[-1]}, env._goal).total
    assert terminated and rewarded == info["score"] == expected
    assert info["success"] == (expected == 1.0) and info["purchased"] == product.asin
    assert "You bought" in observation


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        ([], "buy the shoes", "Invalid action"),
        ([], "click[Buy Now]", "no button 'Buy Now' on the search page"),
        ([], "search[   ]", "search query is empty"),
        (["search[running shoes]"], "search[hats]", "only on the search page"),
        (["search[running shoes]"], "click[B000000000]", "no button 'B000000000'"),
        (["search[running shoes]", "click[Next >]"], "jump[3]", "Invalid action"),
    ],
)
def test_an_invalid_action_says_why_lists_the_buttons_and_changes_nothing(setup, action, message):
    env = new_env()
    for step in setup:
        env.step(step)
    before = env.get_state()
    observation, rewarded, terminated, truncated, info = env.step(action)
    assert info["invalid_action"] and message in observation
    assert ("Buttons here: [Back to Search]" in observation) == bool(setup)
    assert "search[your query]" in observation
    assert (rewarded, terminated, truncated) == (0.0, False, False)
    assert env.get_state() == before


def test_snapshot_restore_continues_exactly_in_another_instance():
    env = new_env()
    env.step("search[running shoes]")
    env.step("click[Next >]")
    snap = env.snapshot()
    tail = ["click[< Prev]", env.available_actions()[-1], "click[Features]", "click[< Prev]"]
    expected = [env.step(a) for a in tail]
    other = new_env(TRAIN_TASKS[5])
    other.restore(snap)
    assert [other.step(a) for a in tail] == expected


def test_random_actions_are_valid_and_the_search_page_draws_instruction_words():
    env = new_env()
    rng = np.random.default_rng(0)
    action = env.random_action(rng)
    assert action.startswith("search[") and set(action[7:-1].split()) <= set(
        env._goal.query.split()
    )
    for _ in range(40):
        _, _, terminated, truncated, info = env.step(env.random_action(rng))
        assert not info["invalid_action"]
        if terminated or truncated:
            env.reset(options={"task_id": TEST_TASKS[2]})


def test_the_fits_check_wants_the_exact_option_values_on_offer():
    goal = next(g for g in map(goal_for_task, TRAIN_TASKS) if g.options)
    assert _fits(goal.product, goal)
    kind, value = goal.options[0]
    fewer = tuple(
        (k, tuple(v for v in vs if v != value)) if k == kind else (k, vs)
        for k, vs in goal.product.options
    )
    assert not _fits(replace(goal.product, options=fewer), goal)


# -- served ---------------------------------------------------------------------------


async def _expert_episodes_over_sockets(url: str, sessions: int) -> list[float]:
    from palaestra.servers import AsyncEnvClient

    async with AsyncEnvClient(url, transport="websocket", max_connections=sessions) as client:

        async def one(n: int) -> float:
            session = await client.create("palaestra/WebShop-v0", task_id=TEST_TASKS[n], seed=n)
            try:
                while True:
                    step = await session.step(await session.expert_action())
                    if step.terminated or step.truncated:
                        return step.info["score"]
            finally:
                await session.close()

        return await asyncio.gather(*(one(n) for n in range(sessions)))


def test_64_sessions_over_the_socket_route_buy_full_matches_from_one_index(serve):
    with serve(["palaestra/WebShop-v0"], max_sessions=64) as url:
        scores = asyncio.run(_expert_episodes_over_sockets(url, 64))
    assert scores == [1.0] * 64
    assert len(search_module._INDEX) == 1  # one index in the process, whatever the sessions
