"""palaestra: a gym for LLM agents.

The public API::

    import palaestra
    env = palaestra.make("palaestra/Maze-v0")                       # in-process
    env = palaestra.make("palaestra/Maze-v0", base_url="http://127.0.0.1:8000")  # remote
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium

from palaestra import errors
from palaestra.envs import (
    EnvInfo,
    EnvSnapshot,
    Outcome,
    TaskId,
    TextEnv,
    env_class,
    list_envs,
    load_plugins,
    register,
    set_remote_factory,
)

if TYPE_CHECKING:
    from palaestra.servers import AsyncEnvClient, RemoteEnv, Settings, create_app

__all__ = [
    "AsyncEnvClient",
    "EnvInfo",
    "EnvSnapshot",
    "Outcome",
    "RemoteEnv",
    "Settings",
    "TaskId",
    "TextEnv",
    "__version__",
    "create_app",
    "env_class",
    "errors",
    "list_envs",
    "make",
    "register",
]

__version__ = "0.1.0"


def make(env_id: str, base_url: str | None = None, **kwargs: Any) -> gymnasium.Env:
    """Build a registered env: in-process, or served at ``base_url``.

    Args:
        env_id: A registered id, e.g. ``"palaestra/Maze-v0"``.
        base_url: A palaestra server; when given, the env is a :class:`RemoteEnv`.
        **kwargs: Passed to the env's constructor (or to ``RemoteEnv``).

    Returns:
        The env. Both kinds give the same episodes for the same task, seed and actions.
    """
    env_class(env_id)  # a clear KeyError naming the registered envs, and plugins loaded
    if base_url is not None:
        return _remote_env(env_id, base_url, **kwargs)
    return gymnasium.make(env_id, **kwargs).unwrapped


# The server stack (FastAPI, uvicorn, aiohttp, httpx) loads on first use of one of
# its names, not with `import palaestra` (nor with `import palaestra.envs`, which
# imports this package first): an env author or an in-process run never pays it.
_SERVER_NAMES = frozenset({"AsyncEnvClient", "RemoteEnv", "Settings", "create_app"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        value = getattr(importlib.import_module("palaestra.servers"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'palaestra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SERVER_NAMES)


def _remote_env(env_id: str, base_url: str, **kwargs: Any) -> gymnasium.Env:
    from palaestra.servers.remote_env import RemoteEnv

    return RemoteEnv(env_id, base_url, **kwargs)


# `gymnasium.make(env_id, base_url=...)` builds a RemoteEnv, loading the client then.
set_remote_factory(_remote_env)
load_plugins()
