"""``palaestra serve --ray``: run replicas until interrupted, printing them as they come up."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType

import ray

from palaestra.scale.replicas import NAMESPACE, ReplicaInfo, ServerReplicas
from palaestra.servers.limits import ConnectionLimits
from palaestra.servers.sessions import Settings

__all__ = ["serve_replicas"]

# How often the registry is read for replicas that came up or moved.
POLL_SECONDS = 0.5
# How long before a replica still not up is reported as waiting for room.
PATIENCE_SECONDS = 30.0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_replicas(
    env_ids: Sequence[str],
    replicas: int,
    *,
    address: str | None = None,
    name: str = "palaestra",
    replica_cpus: float = 1.0,
    settings: Settings | None = None,
    insecure: bool = False,
    limits: ConnectionLimits | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Start ``replicas`` server actors on the cluster and keep them until Ctrl-C or SIGTERM.

    Each replica that comes up (or comes back on a new URL after its actor
    died) is printed as one line. On exit the replicas and their registry are
    killed; so they are if this process is killed, as their owner.

    Args:
        env_ids: The envs every replica serves.
        replicas: How many replicas.
        address: The Ray cluster; None: ``RAY_ADDRESS``, else a cluster started on
            this machine, else a new local one (``ray.init()``).
        name: The set's name, by which clients discover it.
        replica_cpus: CPUs each replica reserves at least.
        settings: Server settings (a token is generated when it has none, unless
            ``insecure``).
        insecure: Serve without a token.
        limits: Connection limits of each replica.
        say: Where the lines go.

    Returns:
        0 once stopped.
    """
    servers = ServerReplicas(
        env_ids,
        replicas,
        name=name,
        replica_cpus=replica_cpus,
        settings=settings,
        insecure=insecure,
        limits=limits,
    )
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, namespace=NAMESPACE, include_dashboard=False)
    # ray.init replaces the SIGTERM handler: ours stops the replicas like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with servers:
            if servers.settings.token is None:
                token = "no token"
            elif settings is None or settings.token is None:
                token = "a generated token required: clients that discover them get it"
            else:
                token = "token required"
            say(
                f"palaestra serving {', '.join(servers.env_ids)} as {replicas} Ray replicas "
                f"named {name!r} (each asks for {servers.options}; {token}); clients: "
                f"palaestra.scale.remote_envs({name!r}); Ctrl-C stops them"
            )
            _watch(servers, say)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if started_ray:
            ray.shutdown()
    say(f"stopped the replicas named {name!r}")
    return 0


def _watch(servers: ServerReplicas, say: Callable[[str], None]) -> None:
    """Print each replica as it comes up or moves; returns only by an exception."""
    seen: dict[int, ReplicaInfo] = {}
    started, warned = time.monotonic(), False
    while True:
        for info in servers.describe():
            before = seen.get(info.index)
            if before is None or before.url != info.url:
                again = "" if before is None else f" again (restart {info.restarts})"
                say(
                    f"replica {info.index} up{again} at {info.url} "
                    f"(node {info.node_id[:12]}, pid {info.pid})"
                )
                seen[info.index] = info
        if not warned and len(seen) < servers.replicas:
            if time.monotonic() - started > PATIENCE_SECONDS:
                say(
                    f"{servers.replicas - len(seen)} replicas still waiting for room on the "
                    f"cluster (each asks for {servers.options})"
                )
                warned = True
        time.sleep(POLL_SECONDS)
