"""Paired tests for two runs on the same tasks: McNemar's exact test and a paired bootstrap.

Two policies played the same tasks, so each task gives a pair of outcomes. A
paired test uses that: tasks both policies solve (or both fail) say nothing
about which is better, and the noise of task difficulty cancels out of the
differences. That makes a paired test far sharper than comparing two success
rates with their separate intervals.

- :func:`mcnemar_exact`: on success. Only the discordant pairs count:
  ``b`` tasks A solved and B failed, ``c`` tasks B solved and A failed. If the
  policies were equally good, each discordant pair would be equally likely to
  go either way, so ``b ~ Binomial(b + c, 1/2)``; the two-sided exact p-value is
  ``min(1, 2 * P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``, and 1 when
  ``b + c = 0``.
- :func:`paired_bootstrap`: on any per-episode number (score, or success as
  0/1). The interval of ``mean(B) - mean(A)`` from resampling tasks with
  replacement (each keeps its pair together), the 2.5th and 97.5th percentiles
  of the resampled differences (the percentile interval). When a task was
  played several times (samples), its episodes are resampled together as one
  cluster, so repeated samples do not pass for independent evidence.

Pure Python and numpy (no scipy), seeded and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapInterval",
    "binomial_cdf_half",
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_bootstraps",
]

# Up to this many discordant pairs the binomial tail is summed in exact integers
# (correctly rounded); beyond it in floating point (relative error ~1e-12), which
# stays fast for millions of pairs.
EXACT_LIMIT = 20_000

# Resampled task indices held at once (the bootstrap runs in chunks to stay in bounded memory).
CHUNK_CELLS = 1 << 22


def binomial_cdf_half(k: int, n: int) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, 1/2)``.

    Args:
        k: The count (below 0 gives 0, at or above ``n`` gives 1).
        n: The number of trials (>= 0).

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"binomial_cdf_half: n must be >= 0, not {n}")
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n <= EXACT_LIMIT:
        return _cdf_exact(k, n)
    return _cdf_float(k, n)


def _cdf_exact(k: int, n: int) -> float:
    # sum_{i<=k} C(n, i) / 2^n in integers; int / int is correctly rounded in Python.
    term, total = 1, 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    return total / (1 << n)


def _cdf_float(k: int, n: int) -> float:
    # log C(n, i) by the running ratio C(n, i+1) / C(n, i) = (n - i) / (i + 1),
    # then a log-sum-exp: no overflow however large n is.
    i = np.arange(k, dtype=np.float64)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log((n - i) / (i + 1)))))
    top = log_terms.max()
    log_total = top + math.log(float(np.exp(log_terms - top).sum()))
    return min(1.0, math.exp(log_total - n * math.log(2.0)))


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test: the two-sided p-value of ``b`` vs ``c`` discordant pairs.

    Args:
        b: Pairs where A succeeded and B failed.
        c: Pairs where B succeeded and A failed.

    Returns:
        ``min(1, 2 * P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``; 1.0
        when ``b + c = 0`` (no discordant pair: no evidence either way).

    Raises:
        ValueError: A count is negative.
    """
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact: counts must be >= 0, not b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf_half(min(b, c), n))


@dataclass(frozen=True)
class BootstrapInterval:
    """A difference of means with its paired bootstrap interval.

    Attributes:
        diff: ``mean(B) - mean(A)`` on the data itself.
        low: The lower end of the interval (the ``(1 - level) / 2`` percentile).
        high: The upper end (the ``(1 + level) / 2`` percentile).
        level: The interval's coverage (0.95).
        resamples: How many resamples gave it.
    """

    diff: float
    low: float
    high: float
    level: float
    resamples: int

    def to_json(self) -> dict[str, float | int]:
        """A JSON-serialisable dict."""
        return {
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "resamples": self.resamples,
        }


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence[Hashable] | None = None,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapInterval:
    """The percentile bootstrap interval of ``mean(b) - mean(a)`` over paired episodes.

    Each resample draws as many tasks as there are, with replacement, keeping
    every task's pair (or pairs) together, and takes the difference of means
    over the episodes drawn; the interval is the percentiles of those
    differences.

    Args:
        a: Run A's value per episode (score, or success as 0/1).
        b: Run B's value on the same episodes, in the same order.
        clusters: The task of each episode (any hashable); episodes of one task
            (several samples) are resampled together. None: each episode is its own task.
        resamples: How many resamples (10,000 by default).
        seed: Seeds the resampling: the same inputs and seed give the same interval.
        level: Coverage of the interval (0.95: the 2.5th to 97.5th percentiles).

    Returns:
        The difference and its interval; an empty input gives NaNs.

    Raises:
        ValueError: ``a`` and ``b`` (or ``clusters``) differ in length, ``resamples``
            is below 1, or ``level`` is not in (0, 1).
    """
    return paired_bootstraps(
        [(a, b)], clusters=clusters, resamples=resamples, seed=seed, level=level
    )[0]


def paired_bootstraps(
    measures: Sequence[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    clusters: Sequence[Hashable] | None = None,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> list[BootstrapInterval]:
    """:func:`paired_bootstrap` of several measures of the same episodes, on the same resamples.

    Drawing the tasks once for all measures (score and success, say) costs one
    bootstrap instead of several, and keeps the intervals about the same resamples.
    The first measure's interval is the one :func:`paired_bootstrap` gives alone.

    Args:
        measures: ``(a, b)`` pairs of per-episode values, all of one length.
        clusters: As in :func:`paired_bootstrap`.
        resamples: As in :func:`paired_bootstrap`.
        seed: As in :func:`paired_bootstrap`.
        level: As in :func:`paired_bootstrap`.

    Raises:
        ValueError: As in :func:`paired_bootstrap`.
    """
    if resamples < 1:
        raise ValueError(f"paired_bootstrap: resamples must be >= 1, not {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"paired_bootstrap: level must be in (0, 1), not {level}")
    diffs_in: list[np.ndarray] = []
    for a, b in measures:
        x = np.asarray(a, dtype=np.float64)
        y = np.asarray(b, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"paired_bootstrap: a and b differ in shape: {x.shape} vs {y.shape}")
        diffs_in.append(y - x)
    size = diffs_in[0].size if diffs_in else 0
    if any(d.size != size for d in diffs_in):
        raise ValueError("paired_bootstrap: the measures differ in length")
    if size == 0:
        nan = float("nan")
        return [BootstrapInterval(nan, nan, nan, level, resamples) for _ in diffs_in]
    if clusters is None:
        inverse = np.arange(size)
    else:
        if len(clusters) != size:
            raise ValueError(
                f"paired_bootstrap: {len(clusters)} clusters for {size} pairs (one per pair)"
            )
        # Tasks are numbered in order of first appearance, so one sample per task
        # resamples exactly as with no clusters given.
        numbers: dict[object, int] = {}
        inverse = np.fromiter(
            (numbers.setdefault(c, len(numbers)) for c in clusters), dtype=np.int64, count=size
        )
    # Each task's summed difference per measure, and its episode count: a resample draws tasks.
    sums = np.stack([np.bincount(inverse, weights=d) for d in diffs_in])
    counts = np.bincount(inverse).astype(np.float64)
    k = counts.size
    rng = np.random.default_rng(seed)
    found = np.empty((len(diffs_in), resamples), dtype=np.float64)
    step = max(1, CHUNK_CELLS // k)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        draw = rng.integers(0, k, size=(stop - start, k))
        drawn = counts[draw].sum(axis=1)
        for m in range(len(diffs_in)):
            found[m, start:stop] = sums[m][draw].sum(axis=1) / drawn
    tail = (1.0 - level) / 2.0
    out = []
    for d, diffs in zip(diffs_in, found, strict=True):
        low, high = np.quantile(diffs, [tail, 1.0 - tail])
        out.append(BootstrapInterval(float(d.mean()), float(low), float(high), level, resamples))
    return out
