"""Seed statistics: mean, standard deviation, the difference to the baseline with its 95% interval,
its t-test (paired over seeds where seeds pair, Welch otherwise) and the Holm correction.

The tests come from scipy.stats; tests/test_report_stats.py pins them against textbook values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

ALPHA = 0.05  # two-sided, family-wise (Holm) over the report's comparisons

SIGNIFICANCE_RULE = (
    "Δ is the mean over the configuration's counted seeds minus the baseline's. Where both have the same "
    "seeds (and so the same batches and validation windows) under the same budget, the test is a paired "
    "t-test on the per-seed differences; otherwise Welch's t-test. The 95% interval is that test's "
    "interval for Δ. A difference is marked significant (*) when its p-value, Holm–Bonferroni-adjusted "
    "over every comparison in the report, is below 5% (in a sequential study, below the per-look level its "
    "verdicts use). A test needs ≥ 2 seeds on both sides; with one "
    "seed, significance is unknown (?)."
)


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation (n - 1); None below two values."""
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) and what the seeds say about it."""

    delta: float
    why: str                                   # which test and why, e.g. "paired t-test over seeds 0,1,2"
    test: Optional[str] = None                 # "paired" | "welch" | None (too few seeds to test)
    stderr: Optional[float] = None
    df: Optional[float] = None
    t: Optional[float] = None
    p: Optional[float] = None                  # two-sided, uncorrected
    ci: Optional[tuple[float, float]] = None   # 95% interval for delta
    p_adjusted: Optional[float] = None         # Holm over the report's comparisons
    level: float = ALPHA                       # what p_adjusted must be below: a sequential study's per-look level

    @property
    def significant(self) -> Optional[bool]:
        """None: not testable (one seed). Judged on the Holm-adjusted p once it is set."""
        if self.p is None:
            return None
        return (self.p_adjusted if self.p_adjusted is not None else self.p) < self.level

    @property
    def marker(self) -> str:
        return {True: "*", False: "", None: "?"}[self.significant]


def _t_quantile(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - ALPHA / 2, df))


def _result(delta: float, why: str, test: str, se: float, df: float, p_of_t, values: Sequence[float]) -> Difference:
    rounding = 1e-12 * max(abs(v) for v in values)
    if se <= rounding:
        # Rounding noise, not seed noise: the seeds gave the same numbers (or the same differences).
        # Any difference is then exact, none of it is noise.
        return Difference(delta, why, test, 0.0, df, None, 1.0 if abs(delta) <= rounding else 0.0, (delta, delta))
    t = delta / se
    half = _t_quantile(df) * se
    return Difference(delta, why, test, se, df, t, p_of_t(), (delta - half, delta + half))


def untested(a: Sequence[float], b: Sequence[float], why: str) -> Optional[Difference]:
    """The difference without a test (too few seeds); None when a side has no value at all."""
    if not a or not b:
        return None
    return Difference(mean(a) - mean(b), why)


def paired(a: Sequence[float], b: Sequence[float], why: str = "paired t-test") -> Optional[Difference]:
    """Paired t-test on a[i] - b[i] (the same seed on both sides): df = n - 1."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError("paired samples need the same length")
    if len(a) < 2:
        return untested(a, b, "one seed: significance unknown")
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    se = std(diffs) / math.sqrt(n)
    return _result(mean(diffs), why, "paired", se, n - 1, lambda: float(stats.ttest_rel(a, b).pvalue), [*a, *b])


def welch(a: Sequence[float], b: Sequence[float], why: str = "Welch's t-test") -> Optional[Difference]:
    """Welch's unequal-variance t-test of mean(a) - mean(b), Welch–Satterthwaite df."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return untested(a, b, "one seed: significance unknown")
    va, vb = std(a) ** 2 / len(a), std(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    return _result(mean(a) - mean(b), why, "welch", se, df,
                   lambda: float(stats.ttest_ind(a, b, equal_var=False).pvalue), [*a, *b])


def holm(pvalues: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm–Bonferroni adjusted p-values (Holm 1979), in the given order; None entries (untested)
    are left out of the family and stay None."""
    import numpy as np

    adjusted = holm_adjust(np.array([np.nan if p is None else p for p in pvalues], dtype=float))
    return [None if p is None else float(q) for p, q in zip(pvalues, adjusted)]


def holm_adjust(p):
    """Holm-adjusted p-values along the last axis of an array (vectorised over the others, e.g. simulated
    studies); NaN (untested) stays NaN and is outside the family. The i-th smallest of m is multiplied
    by m - i (i from 0), then made non-decreasing and capped at 1."""
    import numpy as np

    p = np.asarray(p, dtype=float)
    order = np.argsort(np.where(np.isnan(p), np.inf, p), axis=-1)
    sorted_p = np.take_along_axis(p, order, axis=-1)
    m = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    rank = np.arange(p.shape[-1])
    scaled = np.minimum(1.0, (m - rank) * np.where(np.isnan(sorted_p), 0.0, sorted_p))
    running = np.maximum.accumulate(scaled, axis=-1)
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.where(np.isnan(sorted_p), np.nan, running), axis=-1)
    return adjusted


def with_holm(differences: Sequence[Optional[Difference]]) -> list[Optional[Difference]]:
    """The differences with `p_adjusted` set by Holm over those that were tested."""
    adjusted = holm([d.p if d is not None else None for d in differences])
    return [d if d is None or q is None else replace(d, p_adjusted=q) for d, q in zip(differences, adjusted)]


def smooth(values: Sequence[float], span: Optional[int] = None) -> list[float]:
    """Debiased exponential moving average (as TensorBoard draws it); span ~ 10% of the points."""
    if not values:
        return []
    span = span or max(1, len(values) // 10)
    beta = 1.0 - 2.0 / (span + 1)
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = beta * avg + (1.0 - beta) * v
        out.append(avg / (1.0 - beta**i) if beta > 0 else v)
    return out
