"""Verdicts (report/verdict.py): the decision rule, the power figures, and whole simulated studies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.verdicts import paired_stats, verdicts_from_diffs

from pileablate.errors import UserError
from pileablate.report.stats import paired
from pileablate.report.verdict import (
    DEFAULT_MARGIN,
    SequentialDesign,
    Verdict,
    check_margin,
    holm_adjust,
    judge,
    minimum_detectable_effect,
    seeds_needed,
)
from pileablate.report.stats import holm


def test_looks_and_the_rule_are_stated():
    design = SequentialDesign()
    assert design.looks() == [3, 5, 7, 9, 10]
    assert SequentialDesign(first=3, max_seeds=8, step=3).looks() == [3, 6, 8]
    assert "5 planned looks" in design.describe() and "1.00%" in design.describe()
    with pytest.raises(UserError):
        SequentialDesign(first=3, max_seeds=2)


@pytest.mark.parametrize("bad", [0.0, -0.01, float("nan"), float("inf")])
def test_a_margin_must_be_positive_and_finite(bad):
    with pytest.raises(UserError, match="--margin"):
        check_margin(bad)


def test_holm_vectorised_matches_the_reports_holm():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=6)
        p[rng.uniform(size=6) < 0.2] = np.nan
        expected = holm([None if math.isnan(x) else float(x) for x in p])
        got = holm_adjust(p)
        assert [None if math.isnan(x) else x for x in got] == pytest.approx(expected)


def test_paired_stats_match_the_reports_paired_test():
    a, b = [2.0, 2.1, 1.95, 2.05], [2.1, 2.15, 2.0, 2.2]
    d = paired(a, b)
    delta, se, df = paired_stats(np.subtract(a, b), np.array(4))
    assert (float(delta), float(se), float(df)) == pytest.approx((d.delta, d.stderr, d.df))


def test_each_word():
    tight_help = [-0.11, -0.10, -0.12, -0.11]
    tight_zero = [0.001, -0.001, 0.0005, -0.0005]
    noisy = [0.05, -0.06, 0.02]
    one_seed = [-0.3]
    v = verdicts_from_diffs([tight_help, [-x for x in tight_help], tight_zero, noisy, one_seed])
    assert [x.word for x in v] == ["helps", "hurts", "no effect", "undecided", "untested"]
    assert v[0].sentence("rope") == "rope helps by 0.11 [0.10, 0.12]"
    assert v[2].sentence("rmsnorm") == "rmsnorm: no effect beyond ±0.01"
    assert v[3].sentence("warmup").startswith("warmup: undecided, ")
    assert v[3].seeds == 3 and v[3].mde is not None and v[3].mde > 0
    assert v[0].seeds_needed is None and v[4].sentence("all") == "all: untested (1 seed)"


def test_identical_seeds_decide_exactly():
    v = verdicts_from_diffs([[0.0, 0.0, 0.0], [-0.2, -0.2]])
    assert [x.word for x in v] == ["no effect", "helps"]


def test_a_margin_wider_than_the_interval_makes_no_effect():
    diffs = [0.004, -0.003, 0.006, -0.001, 0.002]
    assert verdicts_from_diffs([diffs], margin=0.001)[0].word == "undecided"
    assert verdicts_from_diffs([diffs], margin=0.05)[0].word == "no effect"


def test_seeds_needed_and_mde_follow_the_power_of_a_paired_t_test():
    from scipy import stats

    n = seeds_needed(0.05, 0.05, 0.01, 0.05)  # effect of one seed standard deviation
    assert 8 <= n <= 12  # textbook: ~10 pairs for d = 1 at 80% power, two-sided 5%
    mde = minimum_detectable_effect(1.0, 10, 0.05)
    crit = stats.t.ppf(0.975, 9)
    power = stats.nct.sf(crit, 9, mde * math.sqrt(10)) + stats.nct.cdf(-crit, 9, mde * math.sqrt(10))
    assert power == pytest.approx(0.8, abs=1e-6)
    assert seeds_needed(0.001, 1.0, 0.01, 0.05) is None  # hopeless: above the cap


def test_sequential_looks_are_stricter_than_one_look():
    diffs = [-0.05, -0.03, -0.04]  # rejects at 5% (p≈0.01), not at 1%
    assert verdicts_from_diffs([diffs])[0].word == "helps"
    assert verdicts_from_diffs([diffs], design=SequentialDesign())[0].word == "undecided"


# ---- whole simulated studies ---------------------------------------------------------------------

def simulate(true_delta: float, studies: int, design: SequentialDesign, comparisons: int = 6,
             sd: float = 1.0, margin: float = 0.5, seed: int = 0):
    """Whole studies of `comparisons` configurations: per-seed paired differences drawn from
    N(true_delta, sd); every comparison starts at the first look; after each look the undecided ones
    get seeds up to the next look; decided ones stop. Returns (words at the end, seeds used)."""
    rng = np.random.default_rng(seed)
    diffs = rng.normal(true_delta, sd, size=(studies, comparisons, design.max_seeds))
    looks = design.looks()
    n = np.full((studies, comparisons), looks[0])
    ever_claimed = np.zeros((studies, comparisons), dtype=bool)  # a helps/hurts at any look
    for next_look in looks[1:] + [None]:
        words = judge(*paired_stats(diffs, n), margin, design)
        ever_claimed |= (words == "helps") | (words == "hurts")
        if next_look is None:
            break
        n = np.where(words == "undecided", next_look, n)
    return words, n, ever_claimed


def test_looking_after_every_round_does_not_inflate_false_claims():
    """4,000 studies, fixed seed: with no true difference, the share of studies with any false
    helps/hurts (at any look) stays at or below 5% plus two Monte-Carlo standard errors."""
    studies = 4000
    _, n, claimed = simulate(0.0, studies, SequentialDesign())
    rate = claimed.any(axis=1).mean()
    se = math.sqrt(0.05 * 0.95 / studies)
    assert rate <= 0.05 + 2 * se, rate
    assert n.max() == 10 and n.min() == 3  # the study did add seeds, and stopped some early


def test_a_true_difference_of_two_seed_sds_decides_with_fewer_seeds_than_the_maximum():
    design = SequentialDesign()
    words, n, _ = simulate(-2.0, 2000, design)
    assert n.mean() < design.max_seeds
    assert (words == "helps").mean() > 0.9


def test_without_the_look_correction_the_same_studies_would_inflate_false_claims():
    """The test above can fail: testing every look at the full 5% (one look's level) does inflate."""
    from pileablate.report import verdict

    design = SequentialDesign()
    original = verdict.level
    verdict.level = lambda design: 0.05
    try:
        _, _, claimed = simulate(0.0, 4000, design)
    finally:
        verdict.level = original
    assert claimed.any(axis=1).mean() > 0.05 + 2 * math.sqrt(0.05 * 0.95 / 4000)


def test_verdict_is_frozen_and_keeps_the_margin():
    v = Verdict("no effect", 0.001, (-0.002, 0.004), DEFAULT_MARGIN, 3)
    with pytest.raises(Exception):
        v.word = "helps"
    assert v.margin == 0.01


def test_seeds_needed_is_always_more_than_the_seeds_that_did_not_decide():
    # A large observed effect with a p just short of the corrected level: power says 3 seeds, yet 4 ran.
    assert seeds_needed(1.0, 0.5, 0.01, 0.05, more_than=4) >= 5
    diffs = [-0.05, -0.03, -0.04]
    v = verdicts_from_diffs([diffs], design=SequentialDesign())[0]
    assert v.word == "undecided" and v.seeds_needed > 3


def test_a_tight_interval_is_never_shown_as_one_number():
    v = Verdict("helps", -0.100, (-0.105, -0.095), DEFAULT_MARGIN, 3)
    assert v.sentence("rope") == "rope helps by 0.100 [0.095, 0.105]"
    assert Verdict("hurts", 0.32, (0.25, 0.39), DEFAULT_MARGIN, 3).sentence("cosine") == "cosine hurts by 0.32 [0.25, 0.39]"
    assert Verdict("helps", -0.02, (-0.03, -0.01), DEFAULT_MARGIN, 3).sentence("warmup") == "warmup helps by 0.020 [0.010, 0.030]"
