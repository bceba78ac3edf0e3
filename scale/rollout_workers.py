"""Rollout workers: a run's episodes played by Ray actors across a cluster.

``palaestra eval --ray [ADDRESS] --ray-workers N`` (and the rollout stages of
``palaestra evolve agentevol --ray``) hand :func:`~palaestra.agents.evaluate.run_eval`
a :class:`RayEpisodes` runner. The driver still plans the episodes, writes every
trajectory to ``trajectories.jsonl`` as it comes back, and makes the table and
``run.json``, so a Ray run's folder is an ordinary run folder and ``--resume``
works the same. Only the playing moves:

- Each worker is a :class:`RolloutWorker` actor running the ordinary
  :class:`~palaestra.agents.rollout.RolloutEngine` with its own policy, built in
  the worker from the ``--policy`` string (the string travels, not the model: an
  ``openai:URL`` endpoint such as vLLM's server or ``palaestra serve-policy`` that
  every worker shares, or a ``TransformersPolicy`` per worker on CPU), against
  the env server replicas of ``palaestra serve --ray`` (``--ray-servers NAME``,
  found through Ray, episodes moved off a replica that dies: see
  :func:`palaestra.scale.remote_envs`), the servers of ``--url``, or in-process
  envs when neither is given.
- The driver deals the episodes out in chunks that shrink as the queue empties
  (guided self-scheduling: big chunks keep a worker's batches full, small ones at
  the end keep every worker busy until the last episode), one chunk in flight
  per worker, so a worker plays ``concurrency`` episodes at once in one batcher
  (``prefetch=2`` overlaps a chunk's tail with the next chunk, at up to twice
  the episodes and two smaller batches). A worker streams each trajectory back
  as it finishes (a Ray generator), not at the chunk's end.
- A worker that dies (killed, its node gone) is restarted by Ray (``max_restarts``)
  where there is room; the episodes it had not sent back go back to the queue and
  are played by whichever worker is free. Episodes it did send back were already
  written by the driver and are never played again. An episode lost with its
  worker ``max_attempts`` times is reported as lost (``errors.jsonl``; ``--resume``
  plays it), as are the episodes left when no worker is left.

On a real cluster every node needs palaestra (the same version) installed, as
the workers import it there; a model folder named in ``--policy`` must be at
the same path on every node (or serve the model once, ``--policy openai:URL``).

Episodes are reproducible wherever they run, since everything random in one
derives from its spec (env seed) and the run's seed: a seeded env policy
(``expert:0.3``, ``random``) or a greedy model gives the same trajectory on any
worker, after any retry. Sampled model policies draw one seed per batched call
(:class:`~palaestra.agents.rollout.RolloutEngine`), so their episodes depend on
which episodes shared a batch, with or without Ray.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorDiedError, RayError

from palaestra.agents.env_pool import EnvPool, LocalEnvs, RemoteEnvs
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine, RolloutStats
from palaestra.agents.trajectory import Trajectory, episode_key
from palaestra.servers.protocol import TOKEN_ENV

if TYPE_CHECKING:
    from palaestra.agents.evaluate import EvalConfig

__all__ = ["RayEpisodes", "RolloutWorker", "connect"]


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` unless this process already has.

    Args:
        address: ``HOST:PORT`` of a cluster's head, ``"auto"`` (a cluster running on
            this machine), or ``None``: ``$RAY_ADDRESS``, else the cluster last started
            here, else a new local one (Ray's own rule).

    Returns:
        Whether this call connected (so the caller disconnects when it is done).
    """
    if ray.is_initialized():
        return False
    # Worker output stays in the cluster's logs: the driver prints the progress and
    # the table, and a worker's death reaches it as an exception anyway.
    ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    return True


class RolloutWorker:
    """A rollout worker: the policy of a ``--policy`` string and a pool of envs.

    Used as a Ray actor (:class:`RayEpisodes` makes it one); plain methods so it is
    also an ordinary object.

    Args:
        policy: The ``--policy`` string, built here with
            :func:`~palaestra.agents.policy_spec.make_policy`.
        policy_options: Keyword arguments of ``make_policy`` (device, batch size, threads).
        urls: palaestra servers to play on (empty: envs in this process).
        token: Bearer token for ``urls``.
        rollout: How episodes are played.
        concurrency: Episodes at once per :meth:`play` call.
        cwd: The driver's working folder: relative paths (a model folder in
            ``policy``) mean there what they mean on the driver, where it exists
            (one machine, or a cluster with a shared filesystem).
        servers: The name of env server replicas on the cluster to play on
            (instead of ``urls``).
    """

    def __init__(
        self,
        policy: str,
        policy_options: dict[str, Any],
        urls: Sequence[str],
        token: str | None,
        rollout: RolloutConfig,
        concurrency: int,
        cwd: str | None = None,
        servers: str | None = None,
    ) -> None:
        from palaestra.agents.policy_spec import make_policy

        if cwd is not None and os.path.isdir(cwd):
            os.chdir(cwd)  # this process is the worker's own: nothing else shares its cwd
        self.policy = make_policy(policy, **policy_options)
        self.urls = tuple(urls)
        self.token = token
        self.rollout = rollout
        self.concurrency = concurrency
        self.servers = servers
        self._pool: EnvPool | None = None

    def _envs(self) -> EnvPool:
        # Made on first use, on the actor's event loop (the env clients bind to it).
        if self._pool is None:
            if self.servers is not None:
                from palaestra.scale.discovery import remote_envs

                self._pool = remote_envs(self.servers)
            elif self.urls:
                self._pool = RemoteEnvs(self.urls, token=self.token)
            else:
                self._pool = LocalEnvs()
        return self._pool

    async def ready(self) -> bool:
        """True (answered once the worker is up, e.g. after a restart)."""
        return True

    async def check(self, env_ids: Sequence[str]) -> dict[str, Any]:
        """The policy's name and provenance, why it cannot play some env, and where this runs."""
        from palaestra.agents.baselines import EnvPolicy

        unsupported: dict[str, str | None] = {}
        for env_id in env_ids:
            if isinstance(self.policy, EnvPolicy):
                spec = await self._envs().spec(env_id)
                unsupported[env_id] = self.policy.unsupported(env_id, spec.capabilities)
            else:
                unsupported[env_id] = None
        return {
            "name": self.policy.name,
            "describe": self.policy.describe(),
            "unsupported": unsupported,
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    async def play(self, specs: Sequence[EpisodeSpec]) -> AsyncIterator[tuple[Any, ...]]:
        """Play ``specs``; yield each as it ends, then this call's stats.

        Yields:
            ``("trajectory", json)``, ``("error", key, message)`` per episode, then
            ``("stats", dict)`` (a :class:`RolloutStats` without its messages).
        """
        engine = RolloutEngine(
            self.policy, self._envs(), self.rollout, concurrency=self.concurrency
        )
        ended: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
        task = asyncio.create_task(
            engine.run(
                specs,
                on_trajectory=lambda t: ended.put_nowait(("trajectory", t.to_json())),
                on_error=lambda s, message: ended.put_nowait(("error", s.key, message)),
            )
        )
        task.add_done_callback(lambda _: ended.put_nowait(None))
        while (item := await ended.get()) is not None:
            yield item
        await task  # the engine's own failure (not an episode's) is the caller's to see
        stats = asdict(engine.stats)
        stats.pop("error_messages")
        yield ("stats", stats)


class RayEpisodes:
    """An :class:`~palaestra.agents.evaluate.EpisodeRunner` that plays on Ray workers.

    Args:
        policy: The ``--policy`` string every worker builds its policy from (the
            run's ``EvalConfig.policy`` is only recorded: AgentEvol names a stage's
            model ``iter-1`` there).
        address: The Ray cluster (see :func:`connect`); ignored when this process is
            already connected.
        workers: Rollout workers (default: one per alive node with CPUs).
        worker_cpus: CPUs Ray reserves for each worker.
        policy_options: Keyword arguments of ``make_policy`` in the workers.
        token: Bearer token of the run's ``--url`` servers (default ``$PALAESTRA_TOKEN``).
        servers: Play on the env server replicas of this name (``palaestra serve
            --ray --name NAME``), found through Ray, instead of the run's ``urls``.
        max_restarts: Times Ray restarts a worker that died.
        max_attempts: Times an episode may be lost with its worker before it is
            reported lost.
        prefetch: Chunks in flight per worker (each a ``RolloutEngine`` run of
            ``concurrency`` episodes at once).
        start_timeout: Seconds to wait for the workers to come up (Ray keeps a
            worker waiting while the cluster has no room for it); those still
            waiting then are stopped and the run goes on with the others.

    Example::

        runner = RayEpisodes("expert:0.3", address="10.0.0.1:6379", workers=3)
        run_eval(EvalConfig("expert:0.3", ("palaestra/Maze-v0",)), "runs/x", runner=runner)
    """

    def __init__(
        self,
        policy: str,
        *,
        address: str | None = None,
        workers: int | None = None,
        worker_cpus: float = 1.0,
        policy_options: dict[str, Any] | None = None,
        token: str | None = None,
        servers: str | None = None,
        max_restarts: int = 2,
        max_attempts: int = 3,
        prefetch: int = 1,
        start_timeout: float = 300.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        if max_attempts < 1 or prefetch < 1:
            raise ValueError("max_attempts and prefetch must be >= 1")
        self.policy = policy
        self.name = policy
        self.address = address
        self.requested_workers = workers
        self.worker_cpus = worker_cpus
        self.policy_options = dict(policy_options or {})
        self.token = token
        self.servers = servers
        self.max_restarts = max_restarts
        self.max_attempts = max_attempts
        self.prefetch = prefetch
        self.start_timeout = start_timeout
        self.stats = RolloutStats()
        self.workers: list[Any] = []
        self.placement: list[dict[str, Any]] = []
        self._info: dict[str, Any] = {}
        self._connected = False
        self._retried = 0
        self._failures = 0
        self._played: Counter[int] = Counter()

    # -- EpisodeRunner ------------------------------------------------------------------

    async def open(self, config: EvalConfig) -> None:
        """Connect, start the workers (each builds the policy) and wait until they are up.

        Raises:
            ValueError: The workers ask more CPUs than the cluster has, a worker
                could not start (a bad ``--policy``, say: the worker's own error is
                in the message), or none came up within ``start_timeout``.
        """
        self._connected = connect(self.address)
        count = self.requested_workers or _alive_nodes()
        cpus = ray.cluster_resources().get("CPU", 0)
        if count * self.worker_cpus > cpus:
            raise ValueError(
                f"{count} rollout workers of {self.worker_cpus:g} CPUs each need "
                f"{count * self.worker_cpus:g} CPUs; the Ray cluster has {cpus:g} "
                "(lower --ray-workers or --ray-worker-cpus)"
            )
        token = self.token if self.token is not None else os.environ.get(TOKEN_ENV)
        actor = ray.remote(RolloutWorker).options(
            num_cpus=self.worker_cpus,
            max_restarts=self.max_restarts,
            max_task_retries=0,  # the driver re-deals a dead worker's episodes itself
            scheduling_strategy="SPREAD",
        )
        workers = [
            actor.remote(
                self.policy,
                self.policy_options,
                config.urls,
                token,
                config.rollout,
                config.concurrency,
                os.getcwd(),
                self.servers,
            )
            for _ in range(count)
        ]
        self.workers = workers  # aclose stops them whatever happens next
        checks = [asyncio.ensure_future(w.check.remote(config.envs)) for w in workers]
        await asyncio.wait(checks, timeout=self.start_timeout, return_when=asyncio.FIRST_EXCEPTION)
        for check in checks:
            failed = check.exception() if check.done() else None
            if failed is not None:
                for pending in checks:
                    pending.cancel()
                raise ValueError(f"the rollout workers could not start: {_cause(failed)}")
        up = [i for i, check in enumerate(checks) if check.done()]
        for i, check in enumerate(checks):
            if not check.done():  # no room on the cluster: go on without it
                check.cancel()
                ray.kill(workers[i], no_restart=True)
        if not up:
            raise ValueError(
                f"no rollout worker came up within {self.start_timeout:g} s "
                "(is the cluster busy? see `ray status`)"
            )
        self.workers = [workers[i] for i in up]
        self.placement = [checks[i].result() for i in up]
        self._info = self.placement[0]
        self.name = self._info["name"]

    def describe(self) -> dict[str, Any]:
        """The policy's provenance, from the first worker."""
        return dict(self._info["describe"])

    def unsupported(self, env_id: str) -> str | None:
        """Why the policy cannot play ``env_id`` (an env policy without rules for it), or None."""
        return self._info["unsupported"].get(env_id)

    def report(self) -> dict[str, Any]:
        """Workers, their nodes, episodes per worker, retried episodes and worker failures."""
        return {
            "backend": "ray",
            "workers": len(self.workers),
            "nodes": len({p["node"] for p in self.placement}),
            "episodes_per_worker": [self._played[i] for i in range(len(self.workers))],
            "retried_episodes": self._retried,
            "worker_failures": self._failures,
        }

    async def run(
        self,
        specs: Sequence[EpisodeSpec],
        *,
        on_trajectory: Callable[[Trajectory], None],
        on_error: Callable[[EpisodeSpec, str], None],
    ) -> None:
        """Play ``specs`` on the workers; each ends in one ``on_trajectory`` or ``on_error``."""
        started = time.perf_counter()
        run = _Dealer(self, specs, on_trajectory, on_error)
        try:
            await run.play()
        finally:
            self.stats.wall_s += time.perf_counter() - started

    async def aclose(self) -> None:
        """Stop the workers, and leave the cluster if :meth:`open` joined it."""
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        if self._connected:
            ray.shutdown()
            self._connected = False

    # -- used by _Dealer ----------------------------------------------------------------

    def _add_stats(self, stats: dict[str, Any]) -> None:
        for f in fields(RolloutStats):
            if f.name in stats and f.name != "wall_s":
                setattr(self.stats, f.name, getattr(self.stats, f.name) + stats[f.name])


class _Dealer:
    """One :meth:`RayEpisodes.run`: deals chunks to the workers and takes back what ends."""

    def __init__(
        self,
        runner: RayEpisodes,
        specs: Sequence[EpisodeSpec],
        on_trajectory: Callable[[Trajectory], None],
        on_error: Callable[[EpisodeSpec, str], None],
    ) -> None:
        self.runner = runner
        self.queue: deque[EpisodeSpec] = deque(specs)
        self.open = len(specs)  # episodes not yet ended (written or lost)
        self.attempts: Counter[str] = Counter()
        self.on_trajectory = on_trajectory
        self.on_error = on_error
        self.changed = asyncio.Event()  # episodes came back to the queue, or none is left
        self.finished = asyncio.Event()  # none is left
        self.lanes = len(runner.workers) * runner.prefetch

    async def play(self) -> None:
        if not self.queue:
            return
        # Every worker's first lane takes a chunk before any second lane does.
        lanes = [
            asyncio.create_task(self._lane(index, worker))
            for _ in range(self.runner.prefetch)
            for index, worker in enumerate(self.runner.workers)
        ]
        try:
            # A lane ends when no episode is left, or when its worker is gone for good.
            await asyncio.gather(*lanes)
        finally:
            for lane in lanes:  # only on an error: stop the other lanes with it
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
        while self.queue:  # no worker is left
            self._end_lost(self.queue.popleft(), "no rollout worker left to play it")

    def _take(self) -> list[EpisodeSpec]:
        size = max(1, math.ceil(len(self.queue) / (2 * self.lanes)))
        return [self.queue.popleft() for _ in range(min(size, len(self.queue)))]

    async def _lane(self, index: int, worker: Any) -> None:
        """Keep one chunk in flight on ``worker`` until the run ends or the worker is gone."""
        while self.open > 0:
            if not self.queue:
                self.changed.clear()
                await self.changed.wait()
                continue
            chunk = self._take()
            pending = {spec.key: spec for spec in chunk}
            try:
                async for ref in worker.play.remote(chunk):
                    item = await ref
                    if item[0] == "stats":
                        self.runner._add_stats(item[1])
                        continue
                    spec = pending.pop(_key(item))
                    self.runner._played[index] += 1
                    self._end(spec, item)
            except RayError as error:
                self._requeue(list(pending.values()), error)
                if isinstance(error, ActorDiedError):
                    return  # gone for good: its restarts are spent
                if not await self._wait_ready(worker):
                    return

    def _end(self, spec: EpisodeSpec, item: tuple[Any, ...]) -> None:
        self.open -= 1
        if item[0] == "trajectory":
            self.on_trajectory(Trajectory.from_json(item[1]))
        else:
            self.on_error(spec, item[2])
        if self.open == 0:
            self.finished.set()
            self.changed.set()

    def _end_lost(self, spec: EpisodeSpec, message: str) -> None:
        self.open -= 1
        self.on_error(spec, message)
        if self.open == 0:
            self.finished.set()
            self.changed.set()

    def _requeue(self, specs: list[EpisodeSpec], error: RayError) -> None:
        """Put a dead chunk's unfinished episodes back at the front of the queue."""
        self.runner._failures += 1
        again = []
        for spec in specs:
            self.attempts[spec.key] += 1
            if self.attempts[spec.key] >= self.runner.max_attempts:
                self._end_lost(
                    spec,
                    f"lost with its rollout worker {self.attempts[spec.key]} times "
                    f"(last: {type(error).__name__}: {_cause(error)})",
                )
            else:
                again.append(spec)
        self.runner._retried += len(again)
        self.queue.extendleft(reversed(again))
        self.changed.set()

    async def _wait_ready(self, worker: Any) -> bool:
        """Wait until a restarting worker answers again; False if it is gone or the run ended."""
        delay = 0.2
        while self.open > 0:
            ping = asyncio.ensure_future(worker.ready.remote())
            ended = asyncio.ensure_future(self.finished.wait())
            await asyncio.wait([ping, ended], return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            if not ping.done():  # the run ended while the worker was still away
                ping.cancel()
                return False
            try:
                ping.result()
                return True
            except ActorDiedError:
                return False
            except RayError:  # still restarting (or waiting for room to restart)
                try:
                    await asyncio.wait_for(self.finished.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 5.0)
        return False


def _key(item: tuple[Any, ...]) -> str:
    """The episode key of a worker's ``("trajectory", json)`` or ``("error", key, message)``."""
    if item[0] == "trajectory":
        t = item[1]
        return episode_key(t["env_id"], t["split"], t["task_id"], t["sample"])
    return str(item[1])


def _cause(error: BaseException) -> str:
    """The last line of a Ray error (the worker's own exception, when it raised one)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def _alive_nodes() -> int:
    """Alive nodes of the cluster that offer CPUs (at least 1)."""
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    return max(1, len(nodes))
