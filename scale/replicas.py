"""Env server replicas as Ray actors, and the registry that tells clients where they are.

Each replica is a Ray actor whose process runs a normal palaestra server
(:func:`~palaestra.servers.create_app` under uvicorn, on a background thread) on
its node's IP and a free port. The server lives and dies with the actor's
process, so Ray's restart policy (``max_restarts``) is the server's: a killed
replica is started again, on a new port and perhaps another node, and registers
its new URL. A subprocess server would instead outlive a killed actor.

The registry is one more named actor (no CPU, on the driver's node) in the
:data:`NAMESPACE` namespace, holding the token, the envs and each replica's current URL; clients
ask it (:func:`palaestra.scale.discover`). All of them are owned by the driver
that started them (``palaestra serve --ray``): they stop when it stops, even
when it is killed, instead of lingering as detached actors would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from palaestra.scale.resources import replica_options
from palaestra.servers.limits import ConnectionLimits
from palaestra.servers.sessions import Settings

__all__ = ["NAMESPACE", "ReplicaInfo", "ServerReplicas", "registry_name", "replica_name"]

NAMESPACE = "palaestra"
"""The Ray namespace of every replica and registry (named actors are per namespace)."""


def registry_name(name: str) -> str:
    """The registry actor's name for a set of replicas called ``name``."""
    return f"{name}:registry"


def replica_name(name: str, index: int) -> str:
    """Replica ``index``'s actor name, for ``ray.get_actor(..., namespace=NAMESPACE)``."""
    return f"{name}:replica-{index}"


@dataclass(frozen=True)
class ReplicaInfo:
    """Where one replica serves now.

    Attributes:
        index: Its number, 0 .. replicas - 1 (kept across restarts).
        url: Its base URL, on its node's IP.
        node_id: The Ray node it runs on.
        pid: Its process.
        restarts: How many times it came back after its actor died.
    """

    index: int
    url: str
    node_id: str
    pid: int
    restarts: int = 0


@ray.remote(num_cpus=0)
class _Registry:
    """The current URL of each replica, the token and the envs (one per set of replicas)."""

    def __init__(self, env_ids: list[str], token: str | None, replicas: int) -> None:
        self._env_ids, self._token, self._expected = env_ids, token, replicas
        self._replicas: dict[int, ReplicaInfo] = {}

    def register(self, info: ReplicaInfo) -> None:
        previous = self._replicas.get(info.index)
        restarts = 0 if previous is None else previous.restarts + 1
        self._replicas[info.index] = ReplicaInfo(
            info.index, info.url, info.node_id, info.pid, restarts
        )

    def describe(self) -> dict[str, Any]:
        return {
            "env_ids": list(self._env_ids),
            "token": self._token,
            "expected": self._expected,
            "replicas": [self._replicas[i] for i in sorted(self._replicas)],
        }


@ray.remote
class _Replica:
    """One palaestra server on this actor's node; registers its URL on every (re)start."""

    def __init__(
        self,
        index: int,
        env_ids: list[str],
        settings: Settings,
        limits: ConnectionLimits | None,
        registry: str,
    ) -> None:
        from palaestra.servers import create_app, serve_in_thread

        # The node's address: the server is reached from other nodes (hence the token).
        host = ray.util.get_node_ip_address()
        self._stack = contextlib.ExitStack()
        url = self._stack.enter_context(
            serve_in_thread(create_app(env_ids, settings), host, 0, "warning", limits)
        )
        self._info = ReplicaInfo(index, url, ray.get_runtime_context().get_node_id(), os.getpid())
        ray.get(ray.get_actor(registry, namespace=NAMESPACE).register.remote(self._info))

    def info(self) -> ReplicaInfo:
        return self._info

    def stop(self) -> None:
        self._stack.close()


class ServerReplicas:
    """N palaestra servers as Ray actors across the cluster, with their registry.

    Needs a connected Ray (``ray.init(...)``). Use as a context manager, or call
    :meth:`start` and :meth:`stop`.

    Args:
        env_ids: The envs every replica serves.
        replicas: How many.
        name: Names this set on the cluster (clients discover it by this name).
        replica_cpus: CPUs each replica reserves at least (see
            :func:`~palaestra.scale.resources.replica_options`).
        settings: Each replica's server settings. Its ``token`` is required on the
            replicas' routes; None generates one (the replicas bind the node's IP,
            reachable beyond loopback) unless ``insecure``.
        insecure: Serve without a token when ``settings.token`` is None.
        limits: Each replica's connection limits.
        max_restarts: Ray's restart policy for a replica's actor (-1: always).

    Example::

        ray.init(address="auto")
        with ServerReplicas(["palaestra/Maze-v0"], 3) as servers:
            servers.wait()
            envs = palaestra.scale.remote_envs()  # from any driver on the cluster
    """

    def __init__(
        self,
        env_ids: Sequence[str],
        replicas: int,
        *,
        name: str = "palaestra",
        replica_cpus: float = 1.0,
        settings: Settings | None = None,
        insecure: bool = False,
        limits: ConnectionLimits | None = None,
        max_restarts: int = -1,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"--replicas must be at least 1, not {replicas}")
        self.env_ids, self.replicas, self.name = list(env_ids), replicas, name
        self.options = replica_options(self.env_ids, replica_cpus)
        settings = settings or Settings()
        if settings.token is None and not insecure:
            settings = replace(settings, token=secrets.token_urlsafe(24))
        self.settings, self.limits, self.max_restarts = settings, limits, max_restarts
        self._registry: Any = None
        self._actors: list[Any] = []

    def start(self) -> None:
        """Create the registry and the replica actors (they come up in the background).

        Raises:
            ValueError: A set of this name already runs on the cluster.
        """
        try:
            self._registry = _Registry.options(
                name=registry_name(self.name),
                namespace=NAMESPACE,
                # On this driver's node: it goes only when its owner goes anyway, and a
                # registry lost with another node would forget every replica's URL.
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=False
                ),
            ).remote(self.env_ids, self.settings.token, self.replicas)
            ray.get(self._registry.describe.remote())
        except ValueError as error:
            raise ValueError(
                f"replicas named {self.name!r} already run on this cluster "
                f"(pick another --name): {error}"
            ) from None
        for index in range(self.replicas):
            actor = _Replica.options(
                name=replica_name(self.name, index),
                namespace=NAMESPACE,
                max_restarts=self.max_restarts,
                # Replicas on as many nodes as there are: one node lost costs one replica.
                scheduling_strategy="SPREAD",
                **self.options,
            ).remote(index, self.env_ids, self.settings, self.limits, registry_name(self.name))
            self._actors.append(actor)

    def describe(self) -> list[ReplicaInfo]:
        """The replicas registered so far, by index, with their current URLs."""
        return ray.get(self._registry.describe.remote())["replicas"]

    def wait(self, timeout: float = 120.0) -> list[ReplicaInfo]:
        """Block until every replica has registered; returns them.

        Raises:
            TimeoutError: Some did not within ``timeout`` seconds (the message says
                how many and what each asks for: the cluster may lack the resources).
        """
        deadline = time.monotonic() + timeout
        while True:
            up = self.describe()
            if len(up) == self.replicas:
                return up
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(up)} of {self.replicas} replicas up after {timeout:g}s; each "
                    f"asks for {self.options}: does the cluster have room for them?"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Kill the replicas (no restart) and the registry."""
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        if self._registry is not None:
            ray.kill(self._registry, no_restart=True)
        self._actors, self._registry = [], None

    def __enter__(self) -> ServerReplicas:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
