"""palaestra on a Ray cluster: env servers as Ray actors, found by clients through Ray.

Needs the ``ray`` extra (``pip install 'palaestra[ray]'``); nothing else in
palaestra imports this package, so ``import palaestra`` never loads Ray.

- :class:`ServerReplicas` starts N palaestra servers as Ray actors across the
  cluster (``palaestra serve --ray``), each restarted by Ray when its process
  dies, and a registry actor that knows their current URLs and token.
- :func:`discover` reads the registry; :func:`remote_envs` makes the rollout
  engine's :class:`~palaestra.agents.RemoteEnvs` over the replicas, which spreads
  sessions by load and moves episodes off a replica that dies.
- :func:`replica_options`: the CPUs and memory a replica reserves, from the
  envs' declared :attr:`~palaestra.envs.TextEnv.resources`.
- :class:`RayEpisodes`: an eval's (or an AgentEvol stage's) episodes played by
  :class:`RolloutWorker` actors (``palaestra eval --ray``), on the replicas, on
  ``--url`` servers or on in-process envs; the driver writes the run folder.

Example::

    # on the cluster: palaestra serve --ray --replicas 3 palaestra/Maze-v0
    from palaestra.scale import remote_envs
    envs = remote_envs("palaestra", address="auto")
    engine = RolloutEngine(make_policy("expert:0.3"), envs, RolloutConfig())
"""

from palaestra.scale.discovery import Discovered, connect, discover, remote_envs
from palaestra.scale.replicas import (
    NAMESPACE,
    ReplicaInfo,
    ServerReplicas,
    registry_name,
    replica_name,
)
from palaestra.scale.resources import replica_options
from palaestra.scale.rollout_workers import RayEpisodes, RolloutWorker
from palaestra.scale.serve import serve_replicas

__all__ = [
    "NAMESPACE",
    "Discovered",
    "RayEpisodes",
    "ReplicaInfo",
    "RolloutWorker",
    "ServerReplicas",
    "connect",
    "discover",
    "registry_name",
    "remote_envs",
    "replica_name",
    "replica_options",
    "serve_replicas",
]
