"""What a server replica asks of Ray: CPUs and memory from the envs it serves.

Each env declares what one server process needs to host it
(:attr:`~palaestra.envs.TextEnv.resources`: ScienceWorld's JVM pool, WebShop's
search index). The declaration lives on the env class, not in a table here, for
the reason ``capacity`` does: the env knows its own needs, a third-party env
declares its own without touching palaestra, and a descriptor can follow the
env's settings (ScienceWorld's pool size and heap come from variables).

This module does not import Ray: the CLI checks the options before connecting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from palaestra.envs import env_class

__all__ = ["replica_options"]


def replica_options(env_ids: Sequence[str], cpus: float = 1.0) -> dict[str, Any]:
    """The Ray actor options of one replica serving ``env_ids``.

    CPUs: the most any env declares, at least ``cpus`` (the envs share the one
    server process, whose event loop and thread pool use them). Memory: the sum of
    the envs' declarations (each env's state lives in the process at once); left
    out when none declares any. Ray's ``memory`` is a reservation for placement,
    not a limit: a replica is placed on a node with that much unreserved.

    Args:
        env_ids: The envs the replica serves.
        cpus: The CPUs a replica reserves at least (``--replica-cpus``).

    Raises:
        ValueError: ``cpus`` is negative, or an env declares a resource other than
            ``num_cpus`` and ``memory``.
    """
    if cpus < 0:
        raise ValueError(f"--replica-cpus must be >= 0, not {cpus}")
    num_cpus, memory = float(cpus), 0.0
    for env_id in env_ids:
        declared = dict(env_class(env_id).resources)
        unknown = sorted(set(declared) - {"num_cpus", "memory"})
        if unknown:
            raise ValueError(f"{env_id} declares resources Ray placement does not use: {unknown}")
        num_cpus = max(num_cpus, float(declared.get("num_cpus", 0.0)))
        memory += float(declared.get("memory", 0.0))
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if memory > 0:
        options["memory"] = int(memory)
    return options
