"""``palaestra/WebShop-v0``: a text web shop of 12,000 generated products (Yao et al. 2022).

The catalogue is generated from a seeded attribute grammar (no product data is
downloaded), searched with BM25 (``bm25s``) over one index built once, cached on
disk and shared read-only by every session of a process, and purchases are
scored by WebShop's published reward.
"""

from palaestra.envs.webshop.env import MAX_STEPS, PAGE_SIZE, TEST_TASKS, TRAIN_TASKS, WebShopEnv
from palaestra.envs.webshop.generator import (
    CATALOGUE_SIZE,
    Goal,
    Product,
    ProductType,
    catalogue,
    goal_for_task,
    product_types,
)
from palaestra.envs.webshop.scoring import Reward, reward
from palaestra.envs.webshop.search import MAX_RESULTS, SearchIndex, index

__all__ = [
    "CATALOGUE_SIZE",
    "MAX_RESULTS",
    "MAX_STEPS",
    "PAGE_SIZE",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Goal",
    "Product",
    "ProductType",
    "Reward",
    "SearchIndex",
    "WebShopEnv",
    "catalogue",
    "goal_for_task",
    "index",
    "product_types",
    "reward",
]
