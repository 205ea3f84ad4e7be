"""What a modification's Δ does along a sweep axis, in one sentence that claims no more than the
intervals allow.

The rules, in order (points in axis order; "significant" is the report's Holm-corrected test):
- fewer than two points with a 95% interval: no trend is claimed (one seed has no interval);
- significantly better than the baseline at one point and significantly worse at another: the Δ
  *changes sign*;
- significant at no point: *within noise* (or, when two points' intervals do not overlap, Δ *shifts*
  between them although it is nowhere distinguishable from the baseline);
- otherwise the effect has one direction (a benefit or a harm), and its size *grows* (or *shrinks*)
  along the axis only where the 95% interval at a later point lies wholly beyond (or short of) the
  interval at an earlier one; both directions: it *varies*; neither: its size is *steady within the
  intervals*.
Non-overlapping 95% intervals are a strict test of a difference between two points (stricter than
5%), so a growth claimed here is one a reader can see in the plot's bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from pileablate.report.stats import Difference


@dataclass(frozen=True)
class Trend:
    # kind: "no comparison", "untested", "changes sign", "within noise", "shifts", "grows", "shrinks",
    # "varies" or "steady"
    kind: str
    sentence: str    # the verdict and its evidence (every point's Δ and interval)


def evidence(label: str, d: Optional[Difference]) -> str:
    """'Δ -0.0812 [-0.1003, -0.0621] at micro (significant)'."""
    if d is None:
        return f"no Δ at {label}"
    if d.ci is None or d.p is None:
        return f"Δ {d.delta:+.4f} at {label} (no interval: one seed)"
    verdict = "significant" if d.significant else "not significant"
    return f"Δ {d.delta:+.4f} [{d.ci[0]:+.4f}, {d.ci[1]:+.4f}] at {label} ({verdict})"


def _tested(d: Optional[Difference]) -> bool:
    return d is not None and d.ci is not None and d.p is not None


def _separated(points: Sequence[tuple[str, Difference]], sign: int) -> tuple[list, list]:
    """Pairs (earlier, later) whose intervals do not overlap, as (grows, shrinks) of the effect
    sign * Δ (sign -1: a benefit, whose size is -Δ)."""
    grows, shrinks = [], []
    for i, (a, da) in enumerate(points):
        for b, db in points[i + 1:]:
            lo_a, hi_a = sorted((sign * da.ci[0], sign * da.ci[1]))
            lo_b, hi_b = sorted((sign * db.ci[0], sign * db.ci[1]))
            if lo_b > hi_a:
                grows.append((a, b))
            elif lo_a > hi_b:
                shrinks.append((a, b))
    return grows, shrinks


def _pairs_text(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{a} and {b}" for a, b in pairs)


def trend(name: str, points: Sequence[tuple[str, Optional[Difference]]], along: str = "along the axis") -> Trend:
    """The trend of `name`'s Δ over `points` ((point label, Δ) in axis order). `along` names the
    direction ('with model size (nano → micro)')."""
    facts = "; ".join(evidence(label, d) for label, d in points)
    with_delta = [(label, d) for label, d in points if d is not None]
    tested = [(label, d) for label, d in points if _tested(d)]
    if len(with_delta) < 2:
        return Trend("no comparison", f"**{name}**: a Δ at fewer than two points, so nothing to compare {along} "
                                      f"({facts}).")
    if len(tested) < 2:
        return Trend("untested", f"**{name}**: fewer than two points have a 95% interval (one seed has none), so "
                                 f"no trend is claimed {along}; run two or more seeds ({facts}).")
    better = [label for label, d in tested if d.significant and d.delta < 0]
    worse = [label for label, d in tested if d.significant and d.delta > 0]
    if better and worse:
        return Trend("changes sign", f"**{name}** changes sign {along}: significantly better than the baseline at "
                                     f"{', '.join(better)}, significantly worse at {', '.join(worse)} ({facts}).")
    if not better and not worse:
        grows, shrinks = _separated(tested, 1)
        if grows or shrinks:
            return Trend("shifts", f"**{name}** is not significantly different from the baseline at any point, but "
                                   f"its Δ differs between {_pairs_text(grows + shrinks)} (their 95% intervals do not "
                                   f"overlap) ({facts}).")
        return Trend("within noise", f"**{name}** is within noise at every point {along}: not significantly "
                                     f"different from the baseline anywhere, and no two points' 95% intervals are "
                                     f"apart ({facts}).")
    sign, effect = (-1, "benefit") if better else (1, "harm")
    where = better or worse
    grows, shrinks = _separated(tested, sign)
    if grows and shrinks:
        return Trend("varies", f"**{name}**'s {effect} changes size {along}, but not in one direction: larger at "
                               f"the second point of {_pairs_text(grows)}, smaller at the second of "
                               f"{_pairs_text(shrinks)} (95% intervals apart) ({facts}).")
    if grows or shrinks:
        kind = "grows" if grows else "shrinks"
        return Trend(kind, f"**{name}**'s {effect} {kind} {along}: the 95% intervals at "
                           f"{_pairs_text(grows or shrinks)} do not overlap ({facts}).")
    return Trend("steady", f"**{name}** {'helps' if sign < 0 else 'hurts'} (significant at {', '.join(where)}); its "
                           f"size does not change {along} beyond the 95% intervals, which overlap at every pair of "
                           f"points ({facts}).")
