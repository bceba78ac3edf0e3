"""Prometheus metrics of one server (its own registry, so apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """The counters, gauge and histogram that ``GET /metrics`` exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.steps = Counter("palaestra_steps", "Env steps served.", ["env"], registry=registry)
        self.created = Counter(
            "palaestra_sessions_created",
            "Sessions opened (incl. forks).",
            ["env"],
            registry=registry,
        )
        self.active = Gauge("palaestra_sessions_active", "Open sessions.", registry=registry)
        self.errors = Counter(
            "palaestra_errors", "Error answers by code.", ["error"], registry=registry
        )
        self.step_seconds = Histogram(
            "palaestra_step_seconds",
            "Time inside the server per step (env call incl. thread hop).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=registry,
        )
