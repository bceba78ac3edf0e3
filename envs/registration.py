"""Registering text envs in gymnasium's registry, and finding third-party ones.

Envs are registered in gymnasium's own registry, so ``gymnasium.make(id)``
works. Third-party packages plug in through the entry-point group
``palaestra.envs``: an entry point named like an env id that points at a
``TextEnv`` subclass registers that class under that id; an entry point that
points at any other callable is called once, and registers what it likes
(through :func:`register`).

The registered entry point is a small factory: without ``base_url`` it builds the
env in-process; with ``base_url`` it asks the remote-env factory that
``palaestra.servers`` installs at import (``envs`` never imports ``servers``).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import gymnasium

from palaestra.envs.core import TextEnv

__all__ = [
    "ENTRY_POINT_GROUP",
    "EnvInfo",
    "env_class",
    "list_envs",
    "load_plugins",
    "register",
    "set_remote_factory",
]

ENTRY_POINT_GROUP = "palaestra.envs"

RemoteFactory = Callable[..., gymnasium.Env]
_remote_factory: RemoteFactory | None = None
_plugins_loaded = False


def set_remote_factory(factory: RemoteFactory) -> None:
    """Install the callable that builds a remote env: ``factory(env_id, base_url, **kwargs)``."""
    global _remote_factory
    _remote_factory = factory


class _Factory:
    """The gymnasium entry point of a text env: local class, or remote with ``base_url``."""

    def __init__(self, env_id: str, target: type[TextEnv] | str) -> None:
        self.env_id = env_id
        self.target = target

    def load(self) -> type[TextEnv]:
        """Import (once) and return the env class."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module_name), attr)
        if not (inspect.isclass(self.target) and issubclass(self.target, TextEnv)):
            raise TypeError(f"{self.env_id}: entry point {self.target!r} is not a TextEnv subclass")
        return self.target

    def __call__(self, base_url: str | None = None, **kwargs: Any) -> gymnasium.Env:
        if base_url is not None:
            if _remote_factory is None:
                raise RuntimeError("remote envs need palaestra.servers; import palaestra first")
            return _remote_factory(self.env_id, base_url, **kwargs)
        return self.load()(**kwargs)


def register(env_id: str, entry_point: type[TextEnv] | str, **kwargs: Any) -> None:
    """Register a ``TextEnv`` under ``env_id`` in gymnasium's registry.

    Args:
        env_id: ``namespace/Name-vN``, e.g. ``"acme/Cards-v0"``.
        entry_point: The env class, or ``"module:Class"`` (imported on first use).
        **kwargs: Default keyword arguments of the env's constructor.
    """
    if env_id in gymnasium.registry:
        existing = gymnasium.registry[env_id].entry_point
        if isinstance(existing, _Factory) and existing.target in (entry_point,):
            return
        # gymnasium warns and overrides; keep its behaviour, quietly for our own re-imports.
    gymnasium.register(
        id=env_id,
        entry_point=_Factory(env_id, entry_point),
        kwargs=kwargs,
        disable_env_checker=True,
        order_enforce=False,
    )


def env_class(env_id: str) -> type[TextEnv]:
    """The ``TextEnv`` class registered as ``env_id``.

    Raises:
        KeyError: ``env_id`` is not a registered palaestra env; the message names them.
    """
    load_plugins()
    spec = gymnasium.registry.get(env_id)
    if spec is None or not isinstance(spec.entry_point, _Factory):
        known = ", ".join(info.id for info in list_envs()) or "none"
        raise KeyError(f"unknown env {env_id!r}; registered palaestra envs: {known}")
    return spec.entry_point.load()


@dataclass(frozen=True)
class EnvInfo:
    """What ``palaestra envs`` shows of one registered env."""

    id: str
    cls: type[TextEnv]
    split_sizes: dict[str, int]
    max_steps: int
    capabilities: frozenset[str]
    unavailable: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of this entry."""
        return {
            "id": self.id,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "splits": self.split_sizes,
            "max_steps": self.max_steps,
            "capabilities": sorted(self.capabilities),
            "unavailable": self.unavailable,
            "tools": list(getattr(self.cls, "tools", ())) or None,
        }


def list_envs() -> list[EnvInfo]:
    """Every registered palaestra env (built-in and third-party), sorted by id."""
    load_plugins()
    found = []
    # A copy: loading an env class may import a package (minigrid) that registers more.
    for env_id, spec in list(gymnasium.registry.items()):
        if not isinstance(spec.entry_point, _Factory):
            continue
        try:
            cls = spec.entry_point.load()
        except Exception as error:  # a broken plugin must not hide the others
            warnings.warn(f"cannot load env {env_id}: {error}", stacklevel=2)
            continue
        found.append(
            EnvInfo(
                id=env_id,
                cls=cls,
                split_sizes={name: len(ids) for name, ids in cls.splits.items()},
                max_steps=cls.max_steps,
                capabilities=cls.capabilities(),
                unavailable=cls.unavailable_reason(),
            )
        )
    return sorted(found, key=lambda info: info.id)


def load_plugins() -> None:
    """Load (once) the envs that installed packages declare under ``palaestra.envs``."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
        except Exception as error:
            warnings.warn(f"palaestra plugin {entry.name!r} failed to load: {error}", stacklevel=2)
            continue
        if inspect.isclass(target) and issubclass(target, TextEnv):
            register(entry.name, target)
        elif callable(target):
            target()
        else:
            warnings.warn(
                f"palaestra plugin {entry.name!r} points at {target!r}, "
                "which is neither a TextEnv subclass nor a callable",
                stacklevel=2,
            )
