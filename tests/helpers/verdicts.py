"""Verdicts straight from per-seed differences, vectorised: what the simulated studies in the tests need.

The report itself decides from its Differences (`report.verdict.verdicts_from_differences`); these give the
same Δ, standard error and df for paired seeds (a test checks `paired_stats` against report.stats.paired).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from pileablate.report.stats import ALPHA
from pileablate.report.verdict import DEFAULT_MARGIN, SequentialDesign, Verdict, verdicts_from_stats


def paired_stats(diffs: np.ndarray, n: np.ndarray):
    """(Δ, standard error, df) of the first n[...] per-seed differences along the last axis (NaN df
    below two seeds)."""
    diffs, n = np.asarray(diffs, dtype=float), np.asarray(n)
    use = np.arange(diffs.shape[-1]) < n[..., None]
    count = np.maximum(n, 1)
    mean = np.where(use, diffs, 0.0).sum(-1) / count
    var = np.where(use, (diffs - mean[..., None]) ** 2, 0.0).sum(-1) / np.maximum(n - 1, 1)
    se = np.sqrt(var / count)
    df = np.where(n >= 2, n - 1.0, np.nan)
    return mean, se, df


def verdicts_from_diffs(diffs: Sequence[Sequence[float]], margin: float = DEFAULT_MARGIN,
                        design: Optional[SequentialDesign] = None) -> list[Verdict]:
    """Verdicts of one family of paired comparisons, each given as its per-seed differences."""
    from scipy import stats

    n = np.array([len(d) for d in diffs])
    padded = np.full((len(diffs), max(n, default=0) or 1), np.nan)
    for i, d in enumerate(diffs):
        padded[i, :len(d)] = d
    delta, se, df = paired_stats(np.nan_to_num(padded), n)
    delta = np.where(n >= 1, delta, np.nan)
    cis = []
    for i in range(len(diffs)):
        half = float(stats.t.ppf(1 - ALPHA / 2, df[i]) * se[i]) if n[i] >= 2 else None
        cis.append(None if half is None else (float(delta[i]) - half, float(delta[i]) + half))
    return verdicts_from_stats(delta, se, df, n, cis, margin, design)
