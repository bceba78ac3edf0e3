"""A bounded pool of ScienceWorld JVMs, shared by every ``SciWorldEnv`` of a process.

ScienceWorld is a Scala simulator; its Python package starts one JVM (0.8-1.3 s,
100-500 MB) per env. Here a process holds at most ``max_jvms`` JVMs, each hosting
up to ``games_per_jvm`` games: one ScienceWorld ``PythonInterface`` object per
game, all on the JVM's single py4j gateway. A new env takes a free game slot on
the least-loaded JVM (an idle JVM first, then a new JVM while fewer than
``max_jvms`` run, then the JVM with the fewest games); when every slot is taken
it waits up to ``wait`` seconds for one and then raises :class:`PoolExhaustedError`.
A slot is given back by ``env.close()`` (or when the env is garbage-collected),
and its ``PythonInterface`` is reused by the next game on that JVM.

Games on one JVM share its global state, which ScienceWorld mutates: the
``scala.util.Random`` singleton (seeded by the variation on every load, then
drawn by wandering animals, pollinating bees, growing plants...) and the
object-id counter. Calls into one JVM therefore run one at a time (a lock per
JVM; JVMs run in parallel), and when the JVM switches games the pool saves the
previous game's random state and counter and puts the next game's back, so every
game sees exactly the stream it would see alone in its own JVM.

Two more things would make a world depend on what its JVM ran before, and are
pinned down here. Java's identity hash codes order ScienceWorld's object sets
(its objects define ``equals`` by id but no ``hashCode``): ``-XX:hashCode=2``
makes them constant, so sets keep insertion order. This costs ~1.5x per step
(7.3 vs 4.7 ms on average) and merges the rare objects that share an id within
one set; measured on grow-fruit's 126 variations, the gold path fails on 4
instead of 2. And the gold agent memoises room-to-room paths across tasks: the
memo is cleared before each gold path is generated. ScienceWorld's own printing
(~40 kB per step, far more per load) is sent to a null stream inside the JVM.

A JVM that dies (killed, or out of memory: ``-XX:+ExitOnOutOfMemoryError``)
makes each call of its games raise :class:`JvmDiedError` at once; the pool drops
it and starts a replacement when a slot is next needed. Other JVMs go on.
Starting a JVM runs in the caller's thread, outside the pool's lock.

Settings come from :class:`PoolSettings`, by default read from environment
variables when the shared pool is first used:

- ``PALAESTRA_SCIWORLD_JVMS``: most JVMs at once (default 2).
- ``PALAESTRA_SCIWORLD_GAMES``: most games per JVM (default 8).
- ``PALAESTRA_SCIWORLD_HEAP``: each JVM's heap cap, ``-Xmx`` (default ``512m``).
- ``PALAESTRA_SCIWORLD_WAIT``: seconds a new env waits for a free slot (default 20).

Memory budget: ``max_jvms * (heap + 192 MiB)`` for the JVMs (see
:attr:`PoolSettings.memory_budget`); non-heap memory is capped by
``-XX:MaxMetaspaceSize=128m`` and ``-XX:ReservedCodeCacheSize=64m``, and a JVM
measured here used heap + ~90-150 MiB.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from palaestra.errors import EnvBusyError, EnvError

__all__ = [
    "ENV_GAMES",
    "ENV_HEAP",
    "ENV_JVMS",
    "ENV_WAIT",
    "MIN_HEAP",
    "NON_HEAP_BUDGET",
    "Game",
    "Jvm",
    "JvmDiedError",
    "JvmPool",
    "PoolExhaustedError",
    "PoolSettings",
    "default_capacity",
    "default_pool",
    "find_java",
    "jar_path",
]

log = logging.getLogger("palaestra.envs.sciworld")
T = TypeVar("T")

ENV_JVMS = "PALAESTRA_SCIWORLD_JVMS"
ENV_GAMES = "PALAESTRA_SCIWORLD_GAMES"
ENV_HEAP = "PALAESTRA_SCIWORLD_HEAP"
ENV_WAIT = "PALAESTRA_SCIWORLD_WAIT"

NON_HEAP_BUDGET = 192 * 2**20
"""Bytes a JVM may use beside its heap in :attr:`PoolSettings.memory_budget`."""

MIN_HEAP = 128 * 2**20
"""The smallest heap cap accepted: a JVM holds ~85 MB of live heap, plus ~2-5 MB a game."""

_HEAP = re.compile(r"^(\d+)([kKmMgG]?)$")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
# py4j names with a '$' are not Python identifiers: reached with getattr.
_MODULE = "MODULE$"
_RANDOM_MULTIPLIER = 0x5DEECE66D  # java.util.Random's; setSeed xors it in
_OUT_OF_MEMORY = 3  # the exit code of -XX:+ExitOnOutOfMemoryError


class JvmDiedError(EnvError):
    """The JVM that hosted this env's game died; reset the env to move it to a fresh JVM."""


class PoolExhaustedError(EnvBusyError):
    """Every game slot of the JVM pool stayed taken for the whole wait."""


@dataclass(frozen=True)
class PoolSettings:
    """Limits of a :class:`JvmPool`.

    Attributes:
        max_jvms: Most JVMs running at once.
        games_per_jvm: Most games (envs) one JVM hosts at once.
        heap: Heap cap of each JVM, as ``-Xmx`` takes it (``"512m"``, ``"1g"``).
        wait: Seconds a new env waits for a free game slot before
            :class:`PoolExhaustedError`.
        call_timeout: Seconds one call into a JVM may take (py4j's read timeout; a
            gold path takes up to ~10 s to generate).
    """

    max_jvms: int = 2
    games_per_jvm: int = 8
    heap: str = "512m"
    wait: float = 20.0
    call_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.max_jvms < 1 or self.games_per_jvm < 1:
            raise ValueError("max_jvms and games_per_jvm must be at least 1")
        if not _HEAP.match(self.heap):
            raise ValueError(f"heap must look like '512m' or '2g', not {self.heap!r}")
        if self.heap_bytes < MIN_HEAP:
            raise ValueError(f"heap {self.heap!r} is below ScienceWorld's minimum of 128m")
        if self.wait < 0 or self.call_timeout <= 0:
            raise ValueError("wait must be >= 0 and call_timeout > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PoolSettings:
        """Settings from the ``PALAESTRA_SCIWORLD_*`` variables, defaults for the rest.

        Raises:
            ValueError: A variable is set to something unusable (the message names it).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field, kind in (
            (ENV_JVMS, "max_jvms", int),
            (ENV_GAMES, "games_per_jvm", int),
            (ENV_HEAP, "heap", str),
            (ENV_WAIT, "wait", float),
        ):
            raw = environ.get(name, "").strip()
            if raw:
                try:
                    values[field] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"bad PALAESTRA_SCIWORLD_* setting: {error}") from None

    @property
    def heap_bytes(self) -> int:
        """The heap cap in bytes."""
        match = _HEAP.match(self.heap)
        assert match is not None  # checked in __post_init__
        return int(match.group(1)) * _UNITS[match.group(2).lower()]

    @property
    def memory_budget(self) -> int:
        """Bytes the pool's JVMs may hold at most: ``max_jvms * (heap + NON_HEAP_BUDGET)``."""
        return self.max_jvms * (self.heap_bytes + NON_HEAP_BUDGET)

    def java_options(self) -> list[str]:
        """The JVM's command-line options."""
        return [
            f"-Xmx{self.heap}",
            f"-Xms{min(32 * 2**20, self.heap_bytes) // 1024}k",
            # One GC thread and little bookkeeping: small heaps, two-core machines.
            "-XX:+UseSerialGC",
            "-XX:MaxMetaspaceSize=128m",
            "-XX:ReservedCodeCacheSize=64m",
            # Out of memory -> the JVM exits -> its envs raise JvmDiedError, and the
            # pool replaces it; never a half-broken simulator.
            "-XX:+ExitOnOutOfMemoryError",
            # Constant identity hash codes: ScienceWorld's object sets iterate in
            # insertion order, so worlds do not depend on the JVM's history.
            "-XX:+UnlockExperimentalVMOptions",
            "-XX:hashCode=2",
            # Lets the pool read and write java.util.Random's state (see Jvm._switch).
            "--add-opens=java.base/java.util=ALL-UNNAMED",
            "-Djava.awt.headless=true",
        ]


def find_java() -> str | None:
    """The ``java`` executable: ``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def jar_path() -> Path | None:
    """The ``scienceworld.jar`` of the installed ``scienceworld`` package, if any."""
    spec = importlib.util.find_spec("scienceworld")
    if spec is None or spec.origin is None:
        return None
    jar = Path(spec.origin).with_name("scienceworld.jar")
    return jar if jar.is_file() else None


class _Py4jRootNoise(logging.Filter):
    """Drops the tracebacks py4j logs on the *root* logger when a call's JVM dies."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "py4j" in Path(record.pathname).parts)


_root_filter = _Py4jRootNoise()


def _quiet_py4j() -> None:
    # py4j logs each refused connection and broken call of a dead JVM with a
    # traceback; the pool reports those as JvmDiedError instead. Its own logger is
    # quieted only where nobody configured it.
    py4j_log = logging.getLogger("py4j")
    if py4j_log.level == logging.NOTSET:
        py4j_log.setLevel(logging.CRITICAL)
    root = logging.getLogger()
    if _root_filter not in root.filters:
        root.addFilter(_root_filter)


class Game:
    """One game slot: a ScienceWorld ``PythonInterface`` in a JVM of the pool.

    Attributes:
        jvm: The JVM hosting it.
        interface: The py4j proxy of its ``PythonInterface``.
        released: True once given back to the pool.
    """

    def __init__(self, jvm: Jvm, interface: Any) -> None:
        self.jvm = jvm
        self.interface = interface
        self.released = False
        # The JVM-global state this game last left behind (see Jvm._switch).
        self.random_state: int | None = None
        self.object_count = 0

    def run(self, fn: Callable[[Any], T]) -> T:
        """Call ``fn(interface)`` with this game's state loaded, alone on its JVM.

        Raises:
            JvmDiedError: The JVM is dead (at once, without waiting on it).
            EnvError: ScienceWorld raised, or the call timed out.
        """
        return self.jvm.call(self, fn)

    @property
    def alive(self) -> bool:
        """True while the slot is held and its JVM runs."""
        return not self.released and self.jvm.alive()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Game on JVM {self.jvm.pid} ({state})>"


class Jvm:
    """One JVM of a pool: its process, py4j gateway, call lock and game slots.

    Attributes:
        settings: The pool's settings.
        games: The games it hosts (guarded by the pool's lock).
        reserved: Slots promised to envs being set up (guarded by the pool's lock).
        start_seconds: How long the start took (``None`` until started).
    """

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.games: set[Game] = set()
        self.reserved = 0
        self.start_seconds: float | None = None
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._gateway: Any = None
        self._lock = threading.Lock()
        self._spare: list[Any] = []  # PythonInterfaces of released games, for reuse
        self._current: Game | None = None  # whose state the JVM's globals hold
        self._died = False
        self._stderr: deque[str] = deque(maxlen=40)
        self._random: Any = None  # the java.util.Random inside scala.util.Random
        self._random_seed: Any = None  # its private field `seed` (py4j reads it as an int)
        self._object_ids: Any = None  # util.UniqueIdentifier$ (the object-id counter)
        self._scratch: Any = None  # a PythonInterface for generating gold paths
        self._gold_paths_cache: Any = None  # the gold agent's memo of room-to-room paths

    # -- lifecycle --------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The java process id (``None`` before the start)."""
        return self.process.pid if self.process is not None else None

    @property
    def load(self) -> int:
        """Games hosted plus slots reserved."""
        return len(self.games) + self.reserved

    @property
    def starting(self) -> bool:
        """True until the start finished (well or not)."""
        return not self.ready.is_set()

    def alive(self) -> bool:
        """True while the process runs (and while it is starting)."""
        if self.starting:
            return True
        if self._died or self.failure is not None or self.process is None:
            return False
        if self.process.poll() is not None:
            self._died = True
            return False
        return True

    def start(self) -> None:
        """Launch the JVM and connect (runs in the caller's thread; ~0.8-1.3 s).

        Raises:
            EnvError: Java or the jar is missing, or the JVM did not come up (with
                the JVM's last stderr lines).
        """
        from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway

        started = time.perf_counter()
        try:
            java, jar = find_java(), jar_path()
            if java is None or jar is None:
                raise EnvError("ScienceWorld needs `java` and the scienceworld package")
            try:
                port, process = launch_gateway(
                    classpath=str(jar),
                    javaopts=self.settings.java_options(),
                    die_on_exit=True,  # the JVM exits with this Python process
                    cwd=str(jar.parent),
                    java_path=java,
                    return_proc=True,
                    redirect_stderr=self._stderr,
                )
            except (OSError, ValueError) as error:
                raise EnvError(f"java failed: {error}") from None
            self.process = process
            if self._died:  # the pool was shut down while this JVM was launching
                raise EnvError("the ScienceWorld JVM pool was shut down")
            self._gateway = JavaGateway(
                gateway_parameters=GatewayParameters(
                    port=port, read_timeout=self.settings.call_timeout
                ),
                java_process=process,
            )
            jvm = self._gateway.jvm
            # ScienceWorld prints ~40 kB per step and far more per load; py4j would
            # pump it all through a Python thread into /dev/null. Drop it at the source
            # (before Scala's Console captures System.out).
            jvm.java.lang.System.setOut(
                jvm.java.io.PrintStream(jvm.java.io.OutputStream.nullOutputStream())
            )
            scala_random = getattr(getattr(jvm.scala.util, "Random$"), _MODULE)
            field = jvm.java.lang.Class.forName("java.util.Random").getDeclaredField("seed")
            field.setAccessible(True)
            self._random = scala_random.self()
            self._random_seed = field
            self._object_ids = getattr(getattr(jvm.util, "UniqueIdentifier$"), _MODULE)
            path_finder = getattr(getattr(jvm.scienceworld.goldagent, "PathFinder$"), _MODULE)
            self._gold_paths_cache = path_finder.precomputedExhaustivePaths()
            # The first PythonInterface loads most classes (~0.7 s): pay it here.
            self._spare.append(jvm.scienceworld.runtime.pythonapi.PythonInterface())
        except BaseException as error:
            self.failure = error
            self.close()
            self.ready.set()
            if not isinstance(error, Exception):
                raise
            lines = self.stderr_tail()
            message = str(error) if isinstance(error, EnvError) else f"{error!r}"
            if lines:
                message += f"; the JVM's stderr ends:\n{lines}"
            self.failure = EnvError(f"the ScienceWorld JVM did not start: {message}")
            raise self.failure from error
        self.start_seconds = time.perf_counter() - started
        self.ready.set()
        log.info("started ScienceWorld JVM %s in %.2fs", self.pid, self.start_seconds)

    def stderr_tail(self, lines: int = 40) -> str:
        """The JVM's last lines on stderr (it prints little: errors, crashes)."""
        tail = list(self._stderr)[-lines:]
        return "\n".join(
            (x.decode(errors="replace") if isinstance(x, bytes) else str(x)).rstrip() for x in tail
        )

    def wait_ready(self, timeout: float) -> None:
        """Wait for a start running in another thread.

        Raises:
            EnvError: The start failed.
            PoolExhaustedError: It did not finish within ``timeout`` seconds.
        """
        if not self.ready.wait(max(0.0, timeout)):
            raise PoolExhaustedError(f"no ScienceWorld JVM came up within {timeout:.1f}s")
        if self.failure is not None:
            raise EnvError(str(self.failure))

    def close(self) -> None:
        """Stop the process (if running) and drop the gateway; no call into the JVM."""
        self._died = True
        if self._gateway is not None:
            with contextlib.suppress(Exception):
                self._gateway.close(keep_callback_server=False)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.wait(timeout=10)
        self._spare.clear()
        self._scratch = None

    # -- games ------------------------------------------------------------------------

    def open_game(self) -> Game:
        """A new game on this JVM, on a reused ``PythonInterface`` when one is spare."""
        try:
            interface = self._spare.pop()
        except IndexError:
            # The constructor builds ScienceWorld objects: alone on the JVM, like a call.
            interface = self.call(None, lambda _: self._new_interface())
        return Game(self, interface)

    def recycle(self, game: Game) -> None:
        """Keep a released game's ``PythonInterface`` for the next game (pool lock held)."""
        if self.alive() and game.interface is not None:
            self._spare.append(game.interface)
        game.interface = None
        if self._current is game:
            self._current = None

    def _new_interface(self) -> Any:
        return self._gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()

    def gold_path(self, task: str, variation: int) -> list[str]:
        """Generate the gold action sequence of ``(task, variation)`` on a scratch game."""

        def generate(_: Any) -> list[str]:
            if self._scratch is None:
                self._scratch = self._new_interface()
            # The gold agent memoises room-to-room paths across tasks, so the paths it
            # plans would depend on what the JVM ran before: start it from scratch.
            self._gold_paths_cache.clear()
            error = self._scratch.load(task, variation, "", True)
            if error:
                raise EnvError(f"ScienceWorld could not load {task!r} {variation}: {error}")
            return [str(action) for action in self._scratch.getGoldActionSequence()]

        return self.call(None, generate)

    def call(self, game: Game | None, fn: Callable[[Any], T]) -> T:
        """Run ``fn(game.interface)`` alone on this JVM with ``game``'s state loaded.

        ``game=None`` runs ``fn(None)`` with no game's state (the current game's
        state is saved first): for work that touches the globals but is no game's.
        """
        if not self._lock.acquire(timeout=self.settings.call_timeout):
            raise EnvError(
                f"the ScienceWorld JVM {self.pid} stayed busy for {self.settings.call_timeout:g}s"
            )
        try:
            self._check_alive()
            try:
                self._switch(game)
                return fn(game.interface if game is not None else None)
            except EnvError:
                raise
            except Exception as error:
                raise self._failed(error) from error
        finally:
            self._lock.release()

    def _switch(self, game: Game | None) -> None:
        """Save the current game's globals (random state, object ids), load ``game``'s."""
        previous = self._current
        if previous is game:
            return
        self._current = None
        if previous is not None and not previous.released:
            previous.random_state = int(self._random_seed.get(self._random))
            previous.object_count = int(self._object_ids.count())
        if game is not None and game.random_state is not None:
            # setSeed(s) sets the state to s ^ multiplier: this puts the saved state back.
            self._random.setSeed(game.random_state ^ _RANDOM_MULTIPLIER)
            getattr(self._object_ids, "count_$eq")(game.object_count)
        # A game that never loaded gets its globals from its first load.
        self._current = game

    def _check_alive(self) -> None:
        if not self.alive():
            code = self.process.poll() if self.process is not None else None
            raise JvmDiedError(
                f"the ScienceWorld JVM (pid {self.pid}) is dead (exit code {code}); "
                "this game is lost: reset the env to continue on a fresh JVM"
            )

    def _failed(self, error: Exception) -> EnvError:
        """The error to raise for a failed call; marks the JVM dead if it died."""
        from py4j.protocol import Py4JJavaError

        self._current = None  # the globals may hold a half-done call's state
        if isinstance(error, Py4JJavaError):
            return EnvError(f"ScienceWorld raised {error.java_exception}")
        # A network error: the JVM died, or a call outran the read timeout.
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
        if self.process is None or self.process.poll() is not None:
            self._died = True
            code = self.process.poll() if self.process is not None else None
            tail = self.stderr_tail(3).replace("\n", " ")
            if code == _OUT_OF_MEMORY:
                tail = f"out of memory, raise {ENV_HEAP} or lower {ENV_GAMES}; {tail}"
            return JvmDiedError(
                f"the ScienceWorld JVM (pid {self.pid}) died (exit code {code})"
                + (f": {tail}" if tail else "")
                + "; reset the env to continue on a fresh JVM"
            )
        return EnvError(f"a call into the ScienceWorld JVM {self.pid} failed: {error}")

    def __repr__(self) -> str:
        state = "starting" if self.starting else "alive" if self.alive() else "dead"
        return f"<Jvm pid={self.pid} {state} games={len(self.games)}>"


class JvmPool:
    """At most ``max_jvms`` ScienceWorld JVMs, each hosting at most ``games_per_jvm`` games.

    Args:
        settings: The limits; defaults to :meth:`PoolSettings.from_env`.
    """

    def __init__(self, settings: PoolSettings | None = None) -> None:
        self.settings = settings if settings is not None else PoolSettings.from_env()
        # Reentrant: a game released by a garbage-collected env may land here in a
        # thread that already holds the lock.
        self._cond = threading.Condition(threading.RLock())
        self._jvms: list[Jvm] = []
        self._closed = False
        self.started = 0
        """JVMs started by this pool so far (replacements included)."""
        _quiet_py4j()

    def __deepcopy__(self, memo: dict[int, Any]) -> JvmPool:
        # A pool is a shared resource, never copied (gymnasium.make deep-copies kwargs).
        return self

    @property
    def jvms(self) -> list[Jvm]:
        """The pool's JVMs that are running or starting."""
        with self._cond:
            self._prune()
            return list(self._jvms)

    def acquire(self) -> Game:
        """A game slot: on an idle JVM, else a new JVM, else the least-loaded JVM.

        Waits up to ``settings.wait`` seconds while every slot is taken.

        Raises:
            PoolExhaustedError: No slot freed up in time.
            EnvError: A JVM needed for it failed to start.
        """
        deadline = time.monotonic() + self.settings.wait
        try:
            return self._acquire(deadline)
        except JvmDiedError:
            # The chosen JVM died before the game opened: once more, on another.
            return self._acquire(deadline)

    def _acquire(self, deadline: float) -> Game:
        with self._cond:
            while True:
                if self._closed:
                    raise EnvError("the ScienceWorld JVM pool is shut down")
                self._prune()
                jvm, new = self._choose()
                if jvm is not None:
                    jvm.reserved += 1
                    if new:
                        self._jvms.append(jvm)
                        self.started += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolExhaustedError(self._exhausted_message())
                self._cond.wait(remaining)
        try:
            if new:
                jvm.start()
            else:
                jvm.wait_ready(deadline - time.monotonic())
            game = jvm.open_game()
        except BaseException:
            with self._cond:
                jvm.reserved -= 1
                self._prune()
                self._cond.notify_all()
            raise
        with self._cond:
            jvm.reserved -= 1
            jvm.games.add(game)
        return game

    def release(self, game: Game) -> None:
        """Give ``game``'s slot back (idempotent; never calls into the JVM)."""
        with self._cond:
            if game.released:
                return
            game.released = True
            game.jvm.games.discard(game)
            game.jvm.recycle(game)
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """Pool state for logs and tests: settings, and per JVM its pid and games."""
        with self._cond:
            self._prune()
            return {
                "max_jvms": self.settings.max_jvms,
                "games_per_jvm": self.settings.games_per_jvm,
                "heap": self.settings.heap,
                "started": self.started,
                "jvms": [
                    {"pid": j.pid, "games": len(j.games), "starting": j.starting}
                    for j in self._jvms
                ],
            }

    def shutdown(self) -> None:
        """Stop every JVM; their games raise :class:`JvmDiedError` from now on."""
        with self._cond:
            self._closed = True
            jvms, self._jvms = self._jvms, []
            self._cond.notify_all()
        for jvm in jvms:
            jvm.close()

    # -- bookkeeping (pool lock held) ----------------------------------------------------

    def _prune(self) -> None:
        for jvm in [j for j in self._jvms if not j.alive()]:
            self._jvms.remove(jvm)
            if jvm.failure is None:  # a failed start has already raised
                log.warning("ScienceWorld JVM %s died; %d games lost", jvm.pid, len(jvm.games))
            jvm.close()
            self._cond.notify_all()

    def _choose(self) -> tuple[Jvm | None, bool]:
        limit = self.settings.games_per_jvm
        free = [j for j in self._jvms if j.load < limit]
        idle = [j for j in free if j.load == 0]
        if idle:
            return idle[0], False
        if len(self._jvms) < self.settings.max_jvms:
            return Jvm(self.settings), True
        if free:
            return min(free, key=lambda j: j.load), False
        return None, False

    def _exhausted_message(self) -> str:
        s = self.settings
        return (
            f"all {s.max_jvms * s.games_per_jvm} ScienceWorld game slots ({s.max_jvms} JVMs x "
            f"{s.games_per_jvm} games) stayed taken for {s.wait:g}s; close envs you no longer "
            f"use, or raise {ENV_JVMS} / {ENV_GAMES}"
        )


_default: JvmPool | None = None
_default_pid: int | None = None
_default_lock = threading.Lock()
_forked: list[JvmPool] = []


def default_pool() -> JvmPool:
    """The process-wide pool every ``SciWorldEnv`` uses unless given one.

    Made on first use from the ``PALAESTRA_SCIWORLD_*`` variables; stopped at exit.
    """
    global _default, _default_pid
    with _default_lock:
        if _default is not None and _default_pid != os.getpid():
            # A forked child must not touch its parent's JVMs (nor let their py4j
            # proxies be collected over the parent's sockets): keep them, unused.
            _forked.append(_default)
            _default = None
        if _default is None:
            _default = JvmPool()
            _default_pid = os.getpid()
            atexit.register(_default.shutdown)
        return _default


def default_capacity() -> int:
    """Game slots of the process-wide pool: from its settings once made, else from the variables.

    Raises:
        ValueError: A ``PALAESTRA_SCIWORLD_*`` variable is malformed.
    """
    with _default_lock:
        pool = _default if _default_pid == os.getpid() else None
    settings = pool.settings if pool is not None else PoolSettings.from_env()
    return settings.max_jvms * settings.games_per_jvm
