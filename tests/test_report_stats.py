"""The report's statistics against textbook values: paired and Welch t-tests, intervals, Holm."""

from __future__ import annotations

import math
import random

import pytest

from pileablate.report.stats import holm, paired, welch, with_holm

# Student's sleep data (Cushny & Peebles 1905; R's `sleep`): extra hours of sleep of the same ten
# patients under two drugs. R: t.test(extra ~ group, data = sleep, paired = TRUE) and without pairing.
DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_t_test_matches_the_textbook_sleep_example():
    d = paired(DRUG_1, DRUG_2)
    assert d.test == "paired" and d.df == 9
    assert d.delta == pytest.approx(-1.58)
    assert d.t == pytest.approx(-4.0621, abs=1e-4)
    assert d.p == pytest.approx(0.002833, abs=1e-6)
    assert d.ci == pytest.approx((-2.4598858, -0.7001142), abs=1e-6)


def test_welch_t_test_matches_the_textbook_sleep_example():
    d = welch(DRUG_1, DRUG_2)
    assert d.test == "welch"
    assert d.t == pytest.approx(-1.8608, abs=1e-4)
    assert d.df == pytest.approx(17.776, abs=1e-3)
    assert d.p == pytest.approx(0.07939, abs=1e-5)
    assert d.ci == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)


def test_holm_adjusted_p_values_match_the_worked_example():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # untested comparisons are not in the family; adjusted values are capped at 1
    assert holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])
    assert holm([0.5, 0.6]) == [1.0, 1.0]


def test_holm_property_between_raw_and_bonferroni_and_order_preserving():
    rng = random.Random(0)
    for _ in range(200):
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
        adjusted = holm(ps)
        m = len(ps)
        for p, q in zip(ps, adjusted):
            assert p <= q <= min(1.0, m * p) + 1e-12
        order = sorted(range(m), key=lambda i: ps[i])
        assert all(adjusted[i] <= adjusted[j] for i, j in zip(order, order[1:]))


def test_holm_keeps_the_chance_of_any_false_star_near_five_percent():
    """Six comparisons of configurations equal to the baseline, three paired seeds each: uncorrected,
    about 1 - 0.95**6 = 26% of reports show at least one false *; with Holm at most 5%."""
    rng = random.Random(1)
    trials, raw_hits, holm_hits = 300, 0, 0
    for _ in range(trials):
        base = [rng.gauss(0, 1) for _ in range(3)]
        diffs = [paired([b + rng.gauss(0, 0.1) for b in base], base) for _ in range(6)]
        raw_hits += any(d.p < 0.05 for d in diffs)
        holm_hits += any(d.significant for d in with_holm(diffs))
    assert 0.18 < raw_hits / trials < 0.34
    assert holm_hits / trials < 0.085


def test_pairing_removes_what_the_seed_alone_decides():
    # Each seed moves both sides alike (same batches, same validation windows); the modification
    # helps by 0.02 with little noise of its own. Welch sees only the seed spread.
    seed_effect = [0.0, 0.3, -0.2, 0.15]
    base = [2.0 + e for e in seed_effect]
    mod = [2.0 + e - 0.02 + n for e, n in zip(seed_effect, [0.001, -0.002, 0.0015, -0.001])]
    assert paired(mod, base).significant is True
    assert welch(mod, base).significant is False
    assert paired(mod, base).delta == pytest.approx(welch(mod, base).delta)


def test_one_seed_is_untested_and_identical_seeds_are_exact():
    one = welch([1.9], [2.0], "Welch")
    assert one.p is None and one.significant is None and one.marker == "?" and one.ci is None
    assert paired([1.9], [2.0]).why.startswith("one seed")
    assert welch([], [2.0]) is None
    exact = paired([1.9, 2.0, 2.1], [2.0, 2.1, 2.2])  # the same difference for every seed
    assert exact.stderr == 0.0 and exact.p == 0.0 and exact.significant is True
    assert exact.ci == pytest.approx((-0.1, -0.1))
    same = welch([2.0, 2.0], [2.0, 2.0])
    assert same.p == 1.0 and same.significant is False


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_interval_half_width_is_the_t_quantile_times_the_standard_error(n):
    from scipy import stats

    rng = random.Random(n)
    a = [rng.gauss(2, 0.1) for _ in range(n)]
    b = [rng.gauss(2, 0.1) for _ in range(n)]
    d = paired(a, b)
    assert (d.ci[1] - d.ci[0]) / 2 == pytest.approx(stats.t.ppf(0.975, n - 1) * d.stderr)
    assert d.ci[0] < d.delta < d.ci[1]
    assert (d.p < 0.05) == (d.ci[0] > 0 or d.ci[1] < 0)
    assert math.isclose(d.p, stats.ttest_rel(a, b).pvalue)


def test_choose_lr_imports_without_torch():
    """`ablate` picks its learning rates with choose_lr before any model exists: no torch needed."""
    import subprocess
    import sys

    code = ("import sys; from pileablate.report.tuning import choose_lr; "
            "assert choose_lr([(1e-3, 2.0), (3e-3, 1.9), (1e-2, 2.5)]) == (3e-3, False); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
