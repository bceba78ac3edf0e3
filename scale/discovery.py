"""Finding the replicas of ``palaestra serve --ray`` from any driver on the cluster.

:func:`discover` asks the registry actor of a set of replicas for their current
URLs and token; :func:`remote_envs` makes a
:class:`~palaestra.agents.RemoteEnvs` that asks it again whenever a replica
dies, so episodes move to the replica's replacement as soon as it is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import ray

from palaestra.agents.env_pool import RemoteEnvs
from palaestra.scale.replicas import NAMESPACE, ReplicaInfo, registry_name

__all__ = ["Discovered", "connect", "discover", "remote_envs"]


@dataclass(frozen=True)
class Discovered:
    """A set of replicas as its registry describes it now.

    Attributes:
        name: The set's name (``palaestra serve --ray --name``).
        env_ids: The envs every replica serves.
        token: The bearer token the replicas require (None: open).
        expected: How many replicas the set runs when all are up.
        replicas: Those registered, by index, with their current URLs (a replica
            that just died keeps its old URL until its replacement registers).
    """

    name: str
    env_ids: tuple[str, ...]
    token: str | None
    expected: int
    replicas: tuple[ReplicaInfo, ...]

    @property
    def urls(self) -> list[str]:
        """The replicas' current base URLs, by index."""
        return [replica.url for replica in self.replicas]


def connect(address: str | None = None) -> None:
    """Connect this process to a running Ray cluster, unless it already is.

    Args:
        address: The cluster (``"host:6379"``, ``"ray://host:10001"``); None: the
            ``RAY_ADDRESS`` variable, else the cluster started on this machine
            (``ray start``).

    Raises:
        ConnectionError: No cluster there.
    """
    if not ray.is_initialized():
        ray.init(
            address=address or "auto",
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )


def discover(
    name: str = "palaestra", *, address: str | None = None, timeout: float = 30.0
) -> Discovered:
    """What the registry of the replicas called ``name`` knows now.

    Args:
        name: The set's name.
        address: The cluster, when this process is not connected yet (see :func:`connect`).
        timeout: Seconds to wait for the registry's answer.

    Raises:
        LookupError: No replicas of that name run on the cluster.
    """
    connect(address)
    try:
        registry = ray.get_actor(registry_name(name), namespace=NAMESPACE)
    except ValueError:
        raise LookupError(
            f"no replicas named {name!r} on this Ray cluster; start them with "
            f"`palaestra serve --ray --name {name} ENV...`"
        ) from None
    data = ray.get(registry.describe.remote(), timeout=timeout)
    return Discovered(
        name, tuple(data["env_ids"]), data["token"], data["expected"], tuple(data["replicas"])
    )


def remote_envs(
    name: str = "palaestra",
    *,
    address: str | None = None,
    transport: Literal["http", "websocket"] = "websocket",
    fork: Literal["auto", "replay"] = "auto",
    failover_timeout: float = 120.0,
) -> RemoteEnvs:
    """A :class:`~palaestra.agents.RemoteEnvs` over the replicas called ``name``.

    Sessions spread over the replicas by load; an episode whose replica dies is
    played again from the start on another one, and the pool asks the registry
    again until the dead replica's replacement is listed (see ``RemoteEnvs``).

    Args:
        name: The set's name.
        address: The cluster, when this process is not connected yet.
        transport: ``"websocket"`` or ``"http"``.
        fork: See ``RemoteEnvs``.
        failover_timeout: Seconds an episode waits for a live replica when none is.

    Raises:
        LookupError: No replicas of that name run on the cluster.

    Example::

        envs = remote_envs("palaestra", address="auto")
        engine = RolloutEngine(make_policy("expert:0.3"), envs, RolloutConfig())
    """
    found = discover(name, address=address)

    def urls() -> Sequence[str]:
        return discover(name).urls

    return RemoteEnvs(
        found.urls,
        token=found.token,
        transport=transport,
        fork=fork,
        discover=urls,
        failover_timeout=failover_timeout,
    )
