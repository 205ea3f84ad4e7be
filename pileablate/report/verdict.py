"""Verdicts: each comparison against the baseline is `helps`, `hurts`, `no effect` or `undecided`.

- helps / hurts: the t-test of "no difference" is rejected, Holm-corrected over the report's
  comparisons (loss is lower-is-better: a negative Δ helps);
- no effect: an equivalence test (TOST: two one-sided t-tests against -margin and +margin) shows the
  difference lies within ±margin, Holm-corrected the same way;
- undecided: neither; with the seeds a paired test would need at 80% power at the observed seed spread,
  and the smallest effect the design as run detects with 80% power (its minimum detectable effect);
- untested: fewer than two seeds on a side.

With a sequential design (`ablate --seeds auto`: seeds added round by round while a comparison is
undecided) the family-wise level is split evenly over the planned looks (Bonferroni over looks): every
look tests at alpha / looks. Why that is valid whatever the order of looks: a false helps/hurts at any
look means that some comparison without a true difference had, at one of its looks, a p-value below
(alpha / looks) / (comparisons without a difference) (Holm's argument); the union over at most `looks`
looks and those comparisons is at most alpha. tests/test_report_verdict.py simulates whole studies.

The decision is one vectorised function of (Δ, standard error, degrees of freedom) per comparison,
`judge`. For paired seeds those are functions of the per-seed differences alone (report.stats.paired;
the tests' simulated studies compute them vectorised, in tests/helpers/verdicts.py); the report and the
simulated studies both decide through `judge`. With Welch (seeds that do not pair) the same rule runs on Welch's standard error and df, and the
power figures treat the two sides' spreads as adding up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from pileablate.errors import UserError
from pileablate.report.stats import ALPHA, holm_adjust

# A fifth of a typical published SwiGLU gain: Shazeer (2020), "GLU Variants Improve Transformer",
# reports ≈0.04-0.05 lower log-perplexity than ReLU/GELU feed-forward layers (docs/report.md).
DEFAULT_MARGIN = 0.01  # nats/token
POWER = 0.8
SEEDS_CAP = 50  # above this, seeds_needed is None: more seeds than any ablation here would spend
WORDS = ("helps", "hurts", "no effect", "undecided", "untested")
# A standard error this small is rounding, not seed noise (the seeds gave the same numbers).
_ROUNDING = 1e-12


def check_margin(margin: float, source: str = "--margin") -> float:
    """The margin, or a one-line error for a non-positive or non-finite one (`source` says where it came from)."""
    if isinstance(margin, bool) or not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise UserError(f"{source} must be a positive, finite number of nats/token (got {margin!r}); "
                        f"the default is {DEFAULT_MARGIN}")
    return float(margin)


@dataclass(frozen=True)
class SequentialDesign:
    """`ablate --seeds auto`: `first` seeds per configuration, then `step` more per round for the
    configurations still undecided, up to `max_seeds`."""

    first: int = 3
    max_seeds: int = 10
    step: int = 2

    def __post_init__(self):
        if self.first < 2 or self.max_seeds < self.first or self.step < 1:
            raise UserError(f"a sequential design needs first ≥ 2, max_seeds ≥ first and step ≥ 1 "
                            f"(got first {self.first}, max_seeds {self.max_seeds}, step {self.step})")

    def looks(self) -> list[int]:
        """Seed counts at which the study looks: [3, 5, 7, 9, 10] for the defaults."""
        return sorted({*range(self.first, self.max_seeds, self.step), self.max_seeds})

    def describe(self) -> str:
        looks = self.looks()
        return (f"Sequential design: seeds are added round by round ({', '.join(map(str, looks))} per "
                f"configuration) while a comparison is undecided; to keep the chance of any false "
                f"helps/hurts at or below {ALPHA:.0%} despite looking after every round, each of the "
                f"{len(looks)} planned looks tests at {ALPHA:.0%}/{len(looks)} = {ALPHA / len(looks):.2%} "
                f"(alpha split evenly over the looks), Holm-corrected over the comparisons.")

    @staticmethod
    def from_json(data: Optional[dict]) -> Optional["SequentialDesign"]:
        if not data:
            return None
        return SequentialDesign(**{k: int(data[k]) for k in ("first", "max_seeds", "step") if k in data})


def _digits(*values: float) -> int:
    """Two decimals for sizes of a tenth or more, three below, or when two decimals would show an interval
    as one number."""
    two = [f"{v:.2f}" for v in values]
    return 2 if min(map(abs, values)) >= 0.095 and len(set(two[1:])) == len(two[1:]) else 3


@dataclass(frozen=True)
class Verdict:
    word: str                                # one of WORDS
    delta: Optional[float]
    ci: Optional[tuple[float, float]]
    margin: float
    seeds: int                               # seeds compared (pairs)
    seeds_needed: Optional[int] = None       # undecided only; None when above SEEDS_CAP
    mde: Optional[float] = None              # minimum detectable effect of the design as run

    def sentence(self, label: str) -> str:
        """'rope helps by 0.11 [0.09, 0.13]', 'rmsnorm: no effect beyond ±0.01',
        'warmup: undecided, about 6 seeds would decide'."""
        if self.word in ("helps", "hurts"):
            size, ci = abs(self.delta), self.ci
            if ci is not None:
                low, high = sorted((abs(ci[0]), abs(ci[1]))) if ci[0] * ci[1] > 0 else (0.0, max(map(abs, ci)))
                k = _digits(size, low, high)
                return f"{label} {self.word} by {size:.{k}f} [{low:.{k}f}, {high:.{k}f}]"
            return f"{label} {self.word} by {size:.{_digits(size)}f}"
        if self.word == "no effect":
            return f"{label}: no effect beyond ±{self.margin:g}"
        if self.word == "undecided":
            if self.seeds_needed is None:
                return f"{label}: undecided, more than {SEEDS_CAP} seeds would be needed"
            return f"{label}: undecided, about {self.seeds_needed} seeds would decide"
        return f"{label}: untested ({self.seeds} seed{'s' if self.seeds != 1 else ''})"

    @property
    def short(self) -> str:
        """The word with what it needs, for a table cell: 'undecided: ~6 seeds'."""
        if self.word == "undecided":
            return f"undecided: ~{self.seeds_needed} seeds" if self.seeds_needed else f"undecided: >{SEEDS_CAP} seeds"
        return self.word


def rule_text(margin: float, design: Optional[SequentialDesign] = None, unit: str = "nats/token") -> str:
    looks = len(design.looks()) if design else 1
    level = f"{ALPHA:.0%}" if looks == 1 else f"{ALPHA:.0%}/{looks} = {ALPHA / looks:.2%} per look"
    return (f"Verdicts (loss: lower is better): helps/hurts when the test of no difference rejects at {level} "
            f"(Holm over the comparisons); no effect when an equivalence test (TOST, two one-sided t-tests "
            f"at ±{margin:g} {unit}) shows Δ within ±{margin:g}, Holm-corrected the same way; undecided "
            f"otherwise, with the seeds a paired test would need at {POWER:.0%} power at the observed seed "
            f"spread; untested with fewer than two seeds.")


# ---- the decision -------------------------------------------------------------------------------

def _p_values(delta, se, df, margin):
    """(p of 'no difference', p of TOST) per comparison; NaN where untested (df NaN)."""
    from scipy import stats

    exact = se <= _ROUNDING * np.maximum(1.0, np.abs(delta))
    safe_se = np.where(exact, 1.0, se)
    t = delta / safe_se
    p_diff = np.where(exact, np.where(np.abs(delta) > _ROUNDING, 0.0, 1.0), 2 * stats.t.sf(np.abs(t), df))
    p_lower = stats.t.sf((delta + margin) / safe_se, df)   # H0: Δ ≤ -margin
    p_upper = stats.t.cdf((delta - margin) / safe_se, df)  # H0: Δ ≥ +margin
    p_tost = np.where(exact, np.where(np.abs(delta) < margin, 0.0, 1.0), np.maximum(p_lower, p_upper))
    untested = np.isnan(df)
    return np.where(untested, np.nan, p_diff), np.where(untested, np.nan, p_tost)


def level(design: Optional[SequentialDesign]) -> float:
    """The family-wise level of one look."""
    return ALPHA / (len(design.looks()) if design else 1)


def judge(delta, se, df, margin: float, design: Optional[SequentialDesign] = None) -> np.ndarray:
    """Verdict words (helps/hurts/no effect/undecided/untested) for comparisons along the last axis
    (vectorised over any leading axes, e.g. simulated studies). df NaN: untested."""
    delta, se, df = (np.asarray(x, dtype=float) for x in (delta, se, df))
    p_diff, p_tost = _p_values(delta, se, df, margin)
    a = level(design)
    differs = holm_adjust(p_diff) < a
    equivalent = holm_adjust(p_tost) < a
    words = np.full(delta.shape, "undecided", dtype=object)
    words[equivalent] = "no effect"
    words[differs & (delta < 0)] = "helps"
    words[differs & (delta > 0)] = "hurts"
    words[np.isnan(df)] = "untested"
    return words


# ---- power ---------------------------------------------------------------------------------------

def _power_difference(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test at level alpha with n pairs for a true difference `effect`."""
    from scipy import stats

    df = n - 1
    nc = abs(effect) * math.sqrt(n) / sd
    crit = stats.t.ppf(1 - alpha / 2, df)
    # The far tail (the wrong sign) is negligible and scipy's non-central t can return NaN for it.
    return float(np.nan_to_num(stats.nct.sf(crit, df, nc)) + np.nan_to_num(stats.nct.cdf(-crit, df, nc)))


def _power_equivalence(effect: float, sd: float, n: int, alpha: float, margin: float) -> float:
    """A lower bound on the power of TOST at ±margin (P(both one-sided tests reject) ≥ P1 + P2 - 1)."""
    from scipy import stats

    df = n - 1
    crit = stats.t.ppf(1 - alpha, df)
    lower = np.nan_to_num(stats.nct.sf(crit, df, (effect + margin) * math.sqrt(n) / sd))
    upper = np.nan_to_num(stats.nct.cdf(-crit, df, (effect - margin) * math.sqrt(n) / sd))
    return max(0.0, float(lower + upper - 1))


def seeds_needed(delta: float, sd: float, margin: float, alpha: float, more_than: int = 1) -> Optional[int]:
    """Seeds (pairs) at which a paired test at level alpha would decide with 80% power if the true Δ and
    the seed spread are the observed ones: rejecting no difference, or showing equivalence (the smaller);
    at least one more than the `more_than` already run (they did not decide). None above SEEDS_CAP."""
    first = max(2, more_than + 1)
    if not sd > 0:
        return first
    for n in range(first, SEEDS_CAP + 1):
        if (_power_difference(delta, sd, n, alpha) >= POWER
                or _power_equivalence(delta, sd, n, alpha, margin) >= POWER):
            return n
    return None


def minimum_detectable_effect(sd: float, n: int, alpha: float) -> Optional[float]:
    """The smallest |Δ| a two-sided paired t-test at level alpha detects with 80% power with n pairs."""
    from scipy.optimize import brentq

    if n < 2:
        return None
    if not sd > 0:
        return 0.0
    def short(nc: float) -> float:
        return _power_difference(nc / math.sqrt(n), 1.0, n, alpha) - POWER

    high = 1.0
    while short(high) < 0:  # bracket the root
        high *= 2
        if high > 1e6:
            return None
    return brentq(short, 0.0, high) * sd / math.sqrt(n)


# ---- verdicts for a report ----------------------------------------------------------------------

def verdicts_from_stats(delta: Sequence[float], se: Sequence[float], df: Sequence[float], n: Sequence[int],
                        cis: Sequence[Optional[tuple]], margin: float,
                        design: Optional[SequentialDesign] = None) -> list[Verdict]:
    """One Verdict per comparison of one family (Holm runs over all of them). `n` is the seeds compared;
    df NaN where a comparison is untested."""
    margin = check_margin(margin)
    delta_a = np.asarray(delta, dtype=float)
    words = judge(delta_a, se, df, margin, design)
    tested = int(np.sum(~np.isnan(np.asarray(df, dtype=float))))
    # Power at the strictest Holm threshold (Bonferroni): what a comparison must reach to be sure of a verdict.
    alpha = level(design) / max(1, tested)
    out = []
    for i, word in enumerate(words):
        sd = float(se[i]) * math.sqrt(n[i]) if not math.isnan(float(df[i])) else None
        needed = seeds_needed(float(delta_a[i]), sd, margin, alpha, int(n[i])) if word == "undecided" else None
        mde = minimum_detectable_effect(sd, int(n[i]), alpha) if sd is not None else None
        d = None if math.isnan(delta_a[i]) else float(delta_a[i])
        out.append(Verdict(str(word), d, cis[i], margin, int(n[i]), needed, mde))
    return out


def verdicts_from_differences(differences: Sequence, seeds: Sequence[int], margin: float,
                              design: Optional[SequentialDesign] = None) -> list[Optional[Verdict]]:
    """Verdicts for the report's Differences (report.stats; paired or Welch), one family, with the seeds
    each compares (pairs; with Welch, the smaller side); None where there is no Δ at all."""
    present = [i for i, d in enumerate(differences) if d is not None]
    if not present:
        return [None] * len(differences)
    ds = [differences[i] for i in present]
    nan = float("nan")
    verdicts = verdicts_from_stats(
        [d.delta for d in ds], [d.stderr if d.stderr is not None else nan for d in ds],
        [d.df if d.p is not None and d.df is not None else nan for d in ds],
        [max(1, seeds[i]) for i in present], [d.ci for d in ds], margin, design)
    out: list[Optional[Verdict]] = [None] * len(differences)
    for i, v in zip(present, verdicts):
        out[i] = v
    return out


def summary_line(verdicts: dict[str, Verdict]) -> str:
    """One line: every comparison's sentence, decided ones first."""
    order = {w: i for i, w in enumerate(WORDS)}
    items = sorted(verdicts.items(), key=lambda kv: order[kv[1].word])
    return "; ".join(v.sentence(label) for label, v in items) if items else "no comparisons against a baseline"
