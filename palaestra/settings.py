"""What defines a run: the identity of a settings dataclass, for resuming and refusing.

A run folder (an evaluation, a training, an evolution) may be continued only with
the settings that made it. Which settings those are is said once, on the
dataclass field: a field that changes how fast a run goes or where it runs, not
what it plays or trains, carries ``metadata=NOT_IDENTITY``; every other field is
part of the identity, nested settings dataclasses included::

    @dataclass(frozen=True)
    class EvalConfig:
        policy: str
        rollout: RolloutConfig = field(default_factory=RolloutConfig)
        concurrency: int = field(default=8, metadata=NOT_IDENTITY)

    identity(config)  # {"policy": ..., "rollout": {"format": ..., ...}}

This module imports nothing from the rest of palaestra, so every layer can use it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = ["NOT_IDENTITY", "identity", "identity_differences"]

NOT_IDENTITY: dict[str, Any] = {"identity": False}
"""Field metadata of a setting that does not define a run (concurrency, threads, urls...)."""


def identity(config: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that define a run, as plain JSON values.

    Nested dataclasses become nested dicts, filtered the same way; tuples become
    lists (as they read back from JSON).

    Args:
        config: A dataclass instance.

    Returns:
        ``{field: value}`` without the fields marked :data:`NOT_IDENTITY`.
    """
    return json.loads(json.dumps(_plain(config)))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("identity", True)
        }
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def identity_differences(
    saved: dict[str, Any], current: dict[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """Where a saved run's settings differ from :func:`identity` of the current ones.

    Only the keys of ``current`` are compared (a saved record may hold more, e.g. the
    whole config); nested settings are compared field by field.

    Args:
        saved: The settings a run folder recorded.
        current: ``identity(config)`` of the settings asked for now.
        prefix: Prepended to the names (for nested settings).

    Returns:
        ``(dotted name, then, now)`` for each differing setting, in field order.
    """
    found = []
    for key, now in current.items():
        then = saved.get(key) if isinstance(saved, dict) else None
        name = f"{prefix}{key}"
        if isinstance(now, dict) and isinstance(then, dict) and now and _is_settings(now):
            found += identity_differences(then, now, f"{name}.")
        elif then != now:
            found.append((name, then, now))
    return found


def _is_settings(value: dict[str, Any]) -> bool:
    # A nested settings dataclass has identifier keys; a data dict (e.g. task ids per
    # env id, "palaestra/Maze-v0") is compared whole.
    return all(isinstance(k, str) and k.isidentifier() for k in value)
