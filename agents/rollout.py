"""The rollout engine: many episodes at once, one batched policy call per turn.

Each episode is a coroutine: open the env, then loop {build the prompt, ask the
policy, parse the reply, step the env}. Model policies do not answer episodes
one by one: a batcher collects the prompts of every episode waiting for a reply
(it waits until all running episodes are waiting, or ``batch_wait_s``) and makes
one ``policy.generate`` call for all of them; while that call runs, episodes
whose replies came back step their envs, so the model and the envs overlap.

Context: the prompt is the system prompt (env instruction + format rules) and
the conversation so far. When it would not leave ``max_tokens`` free in the
model's context (or holds more than ``history`` past turns), the oldest turns
are dropped and the first kept observation says how many were left out. If
even the latest observation does not fit, the episode ends with
``end="context"`` - never a silent overflow.

Unparsable replies are counted and reach the env as the empty action, which
every env rejects as invalid; the next observation starts with the parse error.

The format decides the messages a turn adds (:meth:`Format.reply_message`,
:meth:`Format.observation_messages`): a reply and its observation, two messages
per turn in every format. Under a format that ``uses_tools`` (``tools``), each
episode's policy call carries its env's tool definitions
(``generate(..., tools=[...])``), and the trajectory records them in ``tools``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import palaestra
from palaestra.agents.baselines import EnvPolicy
from palaestra.agents.env_pool import EnvPool, EnvSpecInfo
from palaestra.agents.formats import Format, check_format, get_format
from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.trajectory import Trajectory, episode_key
from palaestra.envs import TaskId
from palaestra.errors import ReplicaLostError
from palaestra.settings import NOT_IDENTITY, identity

__all__ = ["EpisodeSpec", "RolloutConfig", "RolloutEngine", "RolloutStats", "prompt_window"]


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to play.

    Attributes:
        env_id: The env.
        task_id: The task.
        split: The split the task comes from (recorded).
        sample: Index among several episodes of one task.
        seed: The env's reset seed; policy sampling is derived from it too.
    """

    env_id: str
    task_id: TaskId
    split: str | None = None
    sample: int = 0
    seed: int = 0

    @property
    def key(self) -> str:
        """See :func:`palaestra.agents.trajectory.episode_key`."""
        return episode_key(self.env_id, self.split, self.task_id, self.sample)


@dataclass(frozen=True)
class RolloutConfig:
    """How episodes are played.

    Attributes:
        format: Reply format name (``"react"``, ``"json"`` or ``"tools"``, which
            needs envs that declare tools).
        temperature: Sampling temperature (0 = greedy).
        max_tokens: Longest reply, in tokens.
        max_turns: Cap on turns (the env's ``max_steps`` applies anyway).
        history: Past turns kept in the prompt (``None``: as many as fit).
        system_prompt: Send the system prompt (the env's instruction and the
            format's rules). Trajectories record it either way; a small model
            trained from scratch on one env gains nothing from reading it, and
            it is most of every prompt's tokens.
        seed: Seeds the policy's sampling (and, in an evaluation, the first env
            seed: see :class:`~palaestra.agents.evaluate.EvalConfig`).
        batch_wait_s: How long the batcher waits for stragglers before a call
            (speed only: not part of a run's identity).

    Every config that plays episodes embeds one (``EvalConfig.rollout``,
    ``AgentEvolConfig.rollout``), and stages derive theirs with
    ``dataclasses.replace(config.rollout, temperature=..., seed=...)``.
    """

    format: str = "react"
    temperature: float = 0.0
    max_tokens: int = 128
    max_turns: int | None = None
    history: int | None = None
    system_prompt: bool = True
    seed: int = 0
    batch_wait_s: float = field(default=0.02, metadata=NOT_IDENTITY)

    def sampling(self) -> dict[str, Any]:
        """The sampling settings, for provenance (the fields that define episodes)."""
        return identity(self)


@dataclass
class RolloutStats:
    """Where the time went in a run.

    Attributes:
        wall_s: The run's wall time.
        policy_s: Time the policy was busy generating (model policies), or
            answering (env policies); the rest is env, client and framework.
        calls: Policy calls made.
        rows: Prompts answered (``rows / calls`` is the mean batch size).
        episodes: Episodes finished.
        errors: Episodes lost to an error.
        steps: Env steps taken (of finished episodes).
        restarted: Episodes played again from the start because their server died
            mid-episode (:class:`~palaestra.errors.ReplicaLostError`); each restart
            counts once, and the restarted episode's trajectory is the one a healthy
            server would have given (the same task, seed and policy seeds).
    """

    wall_s: float = 0.0
    policy_s: float = 0.0
    calls: int = 0
    rows: int = 0
    episodes: int = 0
    errors: int = 0
    steps: int = 0
    restarted: int = 0
    error_messages: list[str] = field(default_factory=list)

    @property
    def outside_policy(self) -> float:
        """Fraction of wall time not spent in the policy."""
        return 1.0 - self.policy_s / self.wall_s if self.wall_s > 0 else 0.0


OMITTED_NOTE = "(earlier turns omitted)"
"""Starts the first kept message when turns were dropped. It gives no count on
purpose: a count would make every prompt of a long episode differ by its turn
number, a spurious feature that small models trained on one turn per example
latch on to."""


def prompt_window(
    messages: Sequence[Message], keep: int, *, system_prompt: bool = True
) -> list[Message]:
    """The prompt for the next reply when only the newest ``keep`` past turns are kept.

    ``messages`` is an episode so far: the system prompt, the first observation,
    then (reply, observation) pairs, ending on an observation. The result holds the
    system prompt, the last ``keep`` turns and the newest observation; when turns
    were dropped, the first kept message starts with :data:`OMITTED_NOTE`. Only
    ``role``, ``content`` and the tool-call fields (``tool_calls``,
    ``tool_call_id``) are kept; ``loss`` is dropped. A ``tool`` message whose call
    was dropped becomes a ``user`` message: a tool result must follow its call (the
    OpenAI API refuses it otherwise, and chat templates render it as an answer to
    nothing). Training examples are cut with this same
    function (:func:`palaestra.evol.examples.turn_examples`), so a model is trained
    on exactly the prompts it is later sampled on.

    Args:
        messages: The episode so far, ending on a user message.
        keep: How many past turns to keep (clipped to those there are).
        system_prompt: Keep the system message (else the prompt starts with a user one).

    Returns:
        The prompt messages.
    """
    system, body = messages[0], messages[1:]
    turns_before = (len(body) - 1) // 2
    keep = max(0, min(keep, turns_before))
    prompt: list[Message] = []
    if system_prompt:
        prompt.append({"role": system["role"], "content": system["content"]})
    for i, message in enumerate(body[len(body) - 1 - 2 * keep :]):
        kept = {k: message[k] for k in _PROMPT_KEYS if k in message}
        if i == 0 and keep < turns_before:
            kept["content"] = f"{OMITTED_NOTE}\n{kept['content']}"
        if i == 0 and kept["role"] == "tool":
            kept = {"role": "user", "content": kept["content"]}
        prompt.append(kept)
    return prompt


_PROMPT_KEYS = ("role", "content", "tool_calls", "tool_call_id")
"""The message fields a prompt keeps (``loss`` and any other annotation are dropped)."""


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from ints and strings, stable across runs and processes."""
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(
        np.random.SeedSequence([w & 0xFFFFFFFF for w in words]).generate_state(2, np.uint64)[0] >> 1
    )


@dataclass
class _Pending:
    """A prompt waiting in the batcher for ``n`` replies (``order``: its episode's index)."""

    prompt: list[Message]
    n: int
    future: asyncio.Future[list[Completion]]
    tools: Tools | None = None
    order: int = 0


class _Batcher:
    """Collects prompts from concurrent episodes into batched ``generate`` calls."""

    def __init__(
        self,
        policy: Policy,
        config: RolloutConfig,
        stop: Sequence[str],
        stats: RolloutStats,
        *,
        lockstep: bool = False,
    ) -> None:
        self.policy, self.config, self.stop, self.stats = policy, config, tuple(stop), stats
        # Lockstep: every call waits for all running episodes and orders them by index.
        self.lockstep = lockstep
        # Only a tools format passes ``tools``: policies written before tool calling
        # (and text formats) keep the call they always had.
        self.uses_tools = get_format(config.format).uses_tools
        self.active = 0  # episodes running (each either waiting here or stepping its env)
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def submit(
        self, prompt: list[Message], tools: Tools | None = None, order: int = 0
    ) -> Completion:
        [reply] = await self.submit_n(prompt, 1, tools, order)
        return reply

    async def submit_n(
        self, prompt: list[Message], n: int, tools: Tools | None = None, order: int = 0
    ) -> list[Completion]:
        """``n`` replies to ``prompt`` (tree search asks several); batched with the others.

        ``tools``: the tool definitions this conversation may call (tools format only).
        ``order``: the episode's index (lockstep calls list their prompts in this order).
        """
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve())
        future: asyncio.Future[list[Completion]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(prompt, n, future, tools, order))
        self._wake.set()
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self.lockstep:
                if len(self._pending) < self.active:
                    self._wake.clear()
                    continue
                self._pending.sort(key=lambda p: p.order)
            deadline = loop.time() + self.config.batch_wait_s
            while len(self._pending) < self.active and loop.time() < deadline:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
                except TimeoutError:
                    break
            pending, self._pending = self._pending, []
            self._wake.clear()
            # One call per ``n`` asked (rollouts ask 1; tree search asks k to expand).
            for n in sorted({p.n for p in pending}):
                await self._call(n, [p for p in pending if p.n == n])

    async def _call(self, n: int, batch: list[_Pending]) -> None:
        seed = derive_seed(self.config.seed, "call", self.stats.calls)
        started = time.perf_counter()
        extra = {"tools": [p.tools for p in batch]} if self.uses_tools else {}
        try:
            replies = await self.policy.generate(
                [p.prompt for p in batch],
                n=n,
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                stop=self.stop,
                seed=seed,
                **extra,
            )
        except Exception as error:  # every waiting episode learns of it
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(error)
            return
        finally:
            self.stats.policy_s += time.perf_counter() - started
            self.stats.calls += 1
            self.stats.rows += len(batch)
        for p, replies_n in zip(batch, replies, strict=True):
            if not p.future.done():
                p.future.set_result(replies_n)

    def finished(self) -> None:
        """An episode ended: the batch may already be complete without it."""
        self.active -= 1
        if self._pending:
            self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


class RolloutEngine:
    """Plays episodes of ``policy`` in ``envs`` concurrently.

    Args:
        policy: A model policy (batched ``generate``) or an env policy
            (:class:`~palaestra.agents.baselines.ExpertPolicy`, ``RandomPolicy``).
        envs: Where the envs run (:class:`~palaestra.agents.env_pool.LocalEnvs` or
            ``RemoteEnvs``).
        config: Format, sampling and limits.
        concurrency: Episodes running at once.
        max_restarts: How many times one episode is played again from the start
            after its server died under it (a :class:`~palaestra.errors.ReplicaLostError`
            from the env pool, e.g. ``RemoteEnvs`` over Ray replicas); beyond that
            it is lost like any failed episode.
        lockstep: Every policy call waits for all running episodes and lists their
            prompts in the order of the specs, so a seeded sampled run plays the same
            episodes however fast the envs answer (in-process or on a server). It
            needs ``concurrency`` at least the number of episodes of a ``run``.
            Online RL plays its groups this way.

    An episode is replayed from its start, never resumed: the dead server took its
    state along, and a replay with the same task, env seed and policy seeds (env
    policies derive theirs from the episode and the turn; greedy model policies
    need none) gives exactly the trajectory a healthy server would have given.

    Example::

        engine = RolloutEngine(TransformersPolicy("tiny"), LocalEnvs(), RolloutConfig())
        trajectories = await engine.run([EpisodeSpec("palaestra/Maze-v0", 3000, "test")])
    """

    def __init__(
        self,
        policy: Policy | EnvPolicy,
        envs: EnvPool,
        config: RolloutConfig | None = None,
        *,
        concurrency: int = 8,
        max_restarts: int = 3,
        lockstep: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, not {max_restarts}")
        self.max_restarts = max_restarts
        self.lockstep = lockstep
        self.policy = policy
        self.envs = envs
        self.config = config or RolloutConfig()
        self.format: Format = get_format(self.config.format)
        self.concurrency = concurrency
        self.stats = RolloutStats()

    async def run(
        self,
        specs: Sequence[EpisodeSpec],
        *,
        on_trajectory: Callable[[Trajectory], None] | None = None,
        on_error: Callable[[EpisodeSpec, str], None] | None = None,
    ) -> list[Trajectory]:
        """Play ``specs``; returns the finished trajectories in the order of ``specs``.

        Args:
            specs: The episodes.
            on_trajectory: Called with each trajectory as soon as it finishes (the
                evaluator writes it to disk here).
            on_error: Called for an episode lost to an error (env, server or
                policy failure); the run goes on with the others.
        """
        gate = asyncio.Semaphore(self.concurrency)
        if self.lockstep and len(specs) > self.concurrency:
            raise ValueError(
                f"lockstep plays every episode at once: {len(specs)} episodes need "
                f"concurrency >= {len(specs)}, not {self.concurrency}"
            )
        batcher = (
            _Batcher(self.policy, self.config, self.format.stop, self.stats, lockstep=self.lockstep)
            if isinstance(self.policy, Policy)
            else None
        )
        if batcher is not None and self.lockstep:
            # Every episode counts from the start (even while it opens its env), so no
            # call goes out before each running episode has asked for its reply.
            batcher.active = len(specs)
        results: dict[int, Trajectory] = {}
        started = time.perf_counter()

        async def one(index: int, spec: EpisodeSpec) -> None:
            async with gate:
                try:
                    await play(index, spec)
                finally:
                    if batcher is not None and self.lockstep:
                        batcher.finished()  # counted from the start (see above)

        async def play(index: int, spec: EpisodeSpec) -> None:
            restarts = 0
            while True:
                try:
                    trajectory = await self._episode(spec, index, batcher)
                    break
                except ReplicaLostError as error:
                    if restarts >= self.max_restarts:
                        failure: Exception = error
                    else:
                        # From the start, on another server (the pool moved off it).
                        restarts += 1
                        self.stats.restarted += 1
                        continue
                except Exception as error:
                    failure = error
                self.stats.errors += 1
                message = f"{type(failure).__name__}: {failure}"
                self.stats.error_messages.append(f"{spec.key}: {message}")
                if on_error is not None:
                    on_error(spec, message)
                return
            results[index] = trajectory
            self.stats.episodes += 1
            self.stats.steps += trajectory.turns
            if on_trajectory is not None:
                on_trajectory(trajectory)

        try:
            await asyncio.gather(*(one(i, spec) for i, spec in enumerate(specs)))
        finally:
            if batcher is not None:
                await batcher.aclose()
            self.stats.wall_s += time.perf_counter() - started
        return [results[i] for i in sorted(results)]

    # -- one episode ----------------------------------------------------------------------

    async def _episode(self, spec: EpisodeSpec, index: int, batcher: _Batcher | None) -> Trajectory:
        started = time.perf_counter()
        info = await self.envs.spec(spec.env_id)
        fmt = self.format
        check_format(fmt, spec.env_id, info.tools)
        tools = list(info.tools) if fmt.uses_tools and info.tools else None
        t = Trajectory(
            env_id=spec.env_id,
            task_id=spec.task_id,
            split=spec.split,
            sample=spec.sample,
            seed=spec.seed,
            model=self.policy.name,
            env_version=f"{spec.env_id} (palaestra {palaestra.__version__})",
            tools=tools,
        )
        t.messages = [
            {
                "role": "system",
                "content": fmt.system_prompt(info.instruction, info.tools),
                "loss": False,
            }
        ]
        env_s = policy_s = 0.0
        clock = time.perf_counter()
        env = await self.envs.open(spec.env_id, spec.task_id, spec.seed, index)
        env_s += time.perf_counter() - clock
        if batcher is not None and not self.lockstep:
            batcher.active += 1
        try:
            t.messages.append(
                {"role": "user", "content": fmt.observation_message(env.observation), "loss": False}
            )
            max_turns = min(self.config.max_turns or info.max_steps, info.max_steps)
            while True:
                if t.turns >= max_turns:
                    t.end = "max_turns"
                    break
                clock = time.perf_counter()
                trained = True
                if batcher is None:
                    assert isinstance(self.policy, EnvPolicy)
                    seed = derive_seed(self.config.seed, spec.key, spec.seed, t.turns)
                    chosen = await self.policy.act(env, seed)
                    trained = getattr(chosen, "trained", True)
                    reply: str = fmt.render(chosen)
                else:
                    prompt = self._fit(t, info)
                    if prompt is None:
                        t.end = "context"
                        break
                    reply = await batcher.submit(prompt, tools, index)
                    tokens = getattr(reply, "tokens", None)
                    if tokens is not None:
                        t.tokens = [*(t.tokens or []), tokens.to_json()]
                    t.prompt_tokens += getattr(reply, "prompt_tokens", 0)
                    t.completion_tokens += getattr(reply, "completion_tokens", 0)
                policy_s += time.perf_counter() - clock
                parsed = fmt.parse(reply)
                turn = t.turns
                t.messages.append(fmt.reply_message(reply, parsed, turn, loss=trained))
                action = parsed.action if parsed.action is not None else ""
                t.format_errors += parsed.action is None
                clock = time.perf_counter()
                step = await env.step(action)
                env_s += time.perf_counter() - clock
                t.turns += 1
                t.actions.append(action)
                t.rewards.append(step.reward)
                t.invalid_actions += bool(step.info.get("invalid_action")) or parsed.action is None
                if step.terminated or step.truncated:
                    t.end = "terminated" if step.terminated else "truncated"
                    t.success = bool(step.info.get("success", False))
                    t.score = float(step.info.get("score", 0.0))
                    break
                t.messages += fmt.observation_messages(step.observation, parsed, turn)
        finally:
            if batcher is not None and not self.lockstep:
                batcher.finished()
            await env.close()
        t.timings = {
            "total": time.perf_counter() - started,
            "policy": policy_s,
            "env": env_s,
        }
        return t

    def _fit(self, t: Trajectory, info: EnvSpecInfo) -> list[Message] | None:
        """The prompt for the next reply: the newest turns that fit (see the module doc)."""
        assert isinstance(self.policy, Policy)
        turns_before = (len(t.messages) - 2) // 2  # each past turn = a reply and its observation
        keep = (
            turns_before if self.config.history is None else min(turns_before, self.config.history)
        )
        limit = self.policy.context_length
        while keep >= 0:
            prompt = prompt_window(t.messages, keep, system_prompt=self.config.system_prompt)
            if limit is None or self._tokens(prompt, t.tools) + self.config.max_tokens <= limit:
                if keep < turns_before and (
                    self.config.history is None or keep < self.config.history
                ):
                    t.context_truncations += 1
                return prompt
            keep -= 1
        return None

    def _tokens(self, prompt: list[Message], tools: list[dict[str, Any]] | None) -> int:
        """The prompt's tokens; the tool definitions count too (the template renders them)."""
        assert isinstance(self.policy, Policy)
        if tools:
            return self.policy.count_tokens(prompt, tools=tools)  # type: ignore[call-arg]
        return self.policy.count_tokens(prompt)  # policies without tools keep their call
