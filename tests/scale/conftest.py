"""The module-scoped 3-node cluster of the tests of ``palaestra.scale``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ray_cluster import simulated_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A 3-node cluster for the module."""
    with simulated_cluster(3) as cluster:
        yield cluster
