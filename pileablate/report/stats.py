"""Seed statistics: mean, standard deviation, and when a difference to the baseline beats seed noise.

The rule (stated in every report): a configuration differs from the baseline significantly when
Welch's two-sided t-test over the seeds rejects equal means at the 5% level, i.e.
|mean_a - mean_b| > t(0.975, df) * sqrt(s_a^2/n_a + s_b^2/n_b) with the Welch-Satterthwaite df
(Welch, 1947). It needs at least two seeds on both sides; with one seed significance is unknown,
because one run per configuration says nothing about how much a different seed would move it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

SIGNIFICANCE_RULE = (
    "A difference to the baseline is marked significant (*) when Welch's two-sided t-test over seeds "
    "rejects equal means at the 5% level: |Δ| > t(0.975, df) × √(s²_a/n_a + s²_b/n_b), df by "
    "Welch–Satterthwaite. It needs ≥ 2 seeds on both sides; with one seed, significance is unknown (?)."
)

# Two-sided 95% critical values of Student's t (0.975 quantile) for df = 1..30; beyond 30 the normal
# value is within 4%. A fractional Welch df is rounded down: the larger critical value is the
# conservative choice.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_critical_975(df: float) -> float:
    if df < 1:
        return _T975[0]
    if df >= 120:
        return 1.980 if df < 1000 else 1.960
    if df > 30:
        return 2.042 if df < 40 else (2.021 if df < 60 else 2.000)
    return _T975[int(math.floor(df)) - 1]


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
    delta: float              # mean(a) - mean(b)
    stderr: Optional[float]   # sqrt(s_a^2/n_a + s_b^2/n_b); None with fewer than 2 seeds a side
    threshold: Optional[float]  # t * stderr: |delta| above it is significant
    significant: Optional[bool]  # None: unknown (one seed)

    @property
    def marker(self) -> str:
        return {True: "*", False: "", None: "?"}[self.significant]


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Difference]:
    """Difference of means of `a` over `b` and whether it exceeds seed-to-seed noise."""
    if not a or not b:
        return None
    delta = mean(a) - mean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(delta, None, None, None)
    va, vb = std(a) ** 2 / len(a), std(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        # Identical seeds on both sides: any difference is exact, none is noise.
        return Difference(delta, 0.0, 0.0, delta != 0.0)
    df = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1)) if va + vb > 0 else 1.0
    threshold = t_critical_975(df) * se
    return Difference(delta, se, threshold, abs(delta) > threshold)


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
