"""A Ray cluster simulated on this machine, for the tests of ``palaestra.scale``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
"""One simulated node: one CPU, a small object store."""


@contextlib.contextmanager
def simulated_cluster(nodes: int = 3, **init: Any) -> Iterator[Any]:
    """``nodes`` Ray nodes on this machine, with this process connected (``ray.init(**init)``).

    On the way out, every process the cluster started is waited for (and killed
    after 30 s): a replica or worker left running holds CPU and ports that the
    next tests would meet (a restarting replica once took a port a later test
    had just picked).
    """
    import psutil  # Ray's own dependency
    import ray
    from ray.cluster_utils import Cluster

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    # Ray starts its workers at niceness 15: on a machine busy with anything else they
    # got no CPU, and a test waiting 20 s for a worker to come up failed. The raylets
    # read this variable when they start.
    niceness = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, **init)
        yield cluster
    finally:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        ray.shutdown()
        cluster.shutdown()
        _, alive = psutil.wait_procs(started, timeout=30)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        if niceness is None:
            os.environ.pop("RAY_worker_niceness", None)
        else:
            os.environ["RAY_worker_niceness"] = niceness
