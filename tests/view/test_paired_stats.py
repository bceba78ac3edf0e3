"""The paired statistics of the Compare page: McNemar's exact test and the paired bootstrap."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from palaestra.view import paired_stats
from palaestra.view.paired_stats import binomial_cdf_half, mcnemar_exact, paired_bootstrap


def reference_p(b: int, c: int) -> float:
    """The definition, in exact fractions with math.comb: min(1, 2 P(X <= min(b, c)))."""
    n = b + c
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),  # no discordant pair: no evidence
        (1, 0, 1.0),  # 2 * 1/2
        (5, 0, 0.0625),  # 2 * 1/32
        (0, 6, 0.03125),  # 2 * 1/64
        (3, 7, 0.34375),  # 2 * (1 + 10 + 45 + 120) / 1024
        (7, 3, 0.34375),  # symmetric
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
        (5, 5, 1.0),  # 2 * P(X <= 5) > 1, capped
        (10, 0, 2 / 1024),
    ],
)
def test_mcnemar_matches_hand_computed_values(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-15)


@pytest.mark.parametrize(("b", "c"), [(15, 13), (40, 22), (1, 30), (100, 130), (0, 1074)])
def test_mcnemar_matches_the_definition_in_exact_fractions(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(reference_p(b, c), rel=1e-12)


def test_mcnemar_matches_scipy_where_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 7), (15, 13), (40, 22), (0, 9), (250, 300)]:
        expected = stats.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_the_float_tail_agrees_with_the_exact_one_past_the_switch() -> None:
    # Above EXACT_LIMIT the tail is summed in logs: both ways must agree where both run.
    n = paired_stats.EXACT_LIMIT + 1
    for k in (n // 2 - 400, n // 2 - 50, n // 2, n // 2 + 70):
        exact = paired_stats._cdf_exact(k, n)
        assert paired_stats._cdf_float(k, n) == pytest.approx(exact, rel=1e-9), k
    assert binomial_cdf_half(n // 2 - 400, n) == pytest.approx(
        paired_stats._cdf_exact(n // 2 - 400, n), rel=1e-9
    )


def test_mcnemar_on_many_pairs_is_close_to_the_normal_approximation() -> None:
    b, c = 5_150, 4_850  # 10,000 discordant pairs: the float path
    z = (abs(b - c) - 1) / math.sqrt(b + c)  # with the continuity correction
    assert mcnemar_exact(b, c) == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.02)
    assert mcnemar_exact(60_000, 40_000) < 1e-100  # far out in the tail, no overflow


def test_binomial_cdf_edges_and_errors() -> None:
    assert binomial_cdf_half(-1, 5) == 0.0
    assert binomial_cdf_half(5, 5) == 1.0
    assert binomial_cdf_half(0, 0) == 1.0
    assert binomial_cdf_half(2, 4) == pytest.approx(11 / 16)
    with pytest.raises(ValueError, match="n must be"):
        binomial_cdf_half(1, -1)
    with pytest.raises(ValueError, match="counts must be"):
        mcnemar_exact(-1, 3)


def test_the_bootstrap_of_a_run_against_itself_is_zero() -> None:
    scores = np.random.default_rng(1).random(50)
    found = paired_bootstrap(scores, scores, resamples=500)
    assert (found.diff, found.low, found.high) == (0.0, 0.0, 0.0)


def test_the_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(80), rng.random(80)
    first = paired_bootstrap(a, b, seed=7, resamples=2_000)
    assert paired_bootstrap(a, b, seed=7, resamples=2_000) == first
    assert paired_bootstrap(a, b, seed=8, resamples=2_000) != first
    assert first.diff == pytest.approx(float(np.mean(b) - np.mean(a)))
    assert first.low < first.diff < first.high


def test_the_bootstrap_matches_the_normal_interval_on_a_large_sample() -> None:
    rng = np.random.default_rng(3)
    n = 4_000
    a = rng.random(n)
    b = np.clip(a + rng.normal(0.03, 0.2, n), 0, 1)  # correlated pairs, as two policies give
    found = paired_bootstrap(a, b, seed=0)  # 10,000 resamples
    d = b - a
    half = 1.959964 * d.std(ddof=1) / math.sqrt(n)
    assert found.resamples == 10_000 and found.level == 0.95
    assert found.low == pytest.approx(d.mean() - half, abs=0.05 * half)
    assert found.high == pytest.approx(d.mean() + half, abs=0.05 * half)
    # Pairing matters: the unpaired interval (independent samples) is far wider here.
    unpaired_half = 1.959964 * math.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
    assert found.high - found.low < 0.75 * 2 * unpaired_half


def test_the_bootstrap_resamples_a_tasks_samples_together() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(200), rng.random(200)
    single = paired_bootstrap(a, b, seed=5, resamples=3_000)
    # Each task played twice with the same outcomes: twice the episodes, no new evidence.
    tasks = [f"t{i}" for i in range(200)] * 2
    clustered = paired_bootstrap(
        np.tile(a, 2), np.tile(b, 2), clusters=tasks, seed=5, resamples=3_000
    )
    assert clustered.diff == pytest.approx(single.diff)
    assert clustered.low == pytest.approx(single.low, abs=1e-12)
    assert clustered.high == pytest.approx(single.high, abs=1e-12)
    naive = paired_bootstrap(np.tile(a, 2), np.tile(b, 2), seed=5, resamples=3_000)
    assert naive.high - naive.low < 0.8 * (single.high - single.low)  # falsely sure


def test_the_bootstrap_runs_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    a, b = rng.random(300), rng.random(300)
    whole = paired_bootstrap(a, b, seed=1, resamples=1_000)
    monkeypatch.setattr(paired_stats, "CHUNK_CELLS", 300 * 7)  # 7 resamples a chunk
    assert paired_bootstrap(a, b, seed=1, resamples=1_000) == whole


def test_the_bootstrap_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1.0], [1.0], resamples=0)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap([1.0], [1.0], level=1.0)
    with pytest.raises(ValueError, match="clusters"):
        paired_bootstrap([1.0, 0.0], [1.0, 1.0], clusters=["x"])
    empty = paired_bootstrap([], [])
    assert math.isnan(empty.diff) and math.isnan(empty.low)
