"""A configuration against the baseline: the test its seeds allow (paired or Welch) and why."""

from __future__ import annotations

from typing import Optional

from pileablate.report.runs import Run
from pileablate.report.stats import Difference, paired, welch


def _seeds_text(seeds) -> str:
    return ",".join(str(s) for s in sorted(seeds)) or "none"


def choose_test(runs: list[Run], baseline: list[Run]) -> tuple[bool, str]:
    """(paired?, why). Seeds pair when both sides have exactly the same seeds and, seed by seed, the
    same data, batches, validation windows and budget: then seed s saw the same tokens in the same
    order on both sides and the per-seed differences cancel what the seed alone decides."""
    seeds, base_seeds = [r.seed for r in runs], [r.seed for r in baseline]
    for side in (seeds, base_seeds):
        if None in side or len(set(side)) != len(side):
            return False, "Welch: runs without a seed, or a seed twice"
    if set(seeds) != set(base_seeds):
        return False, f"Welch: seeds differ ({_seeds_text(seeds)} vs baseline {_seeds_text(base_seeds)})"
    by_seed = {r.seed: r for r in baseline}
    for aspect in runs[0].pairing_key if runs else ():
        if any(r.pairing_key[aspect] != by_seed[r.seed].pairing_key[aspect] for r in runs):
            return False, f"Welch: not the same {aspect} for each seed"
    return True, f"paired t-test over seeds {_seeds_text(seeds)}"


def _baseline_seeds_of(runs: list[Run], baseline: list[Run]) -> Optional[list[Run]]:
    """The baseline's runs of exactly the configuration's seeds, when the baseline has each of them (and
    more); None otherwise."""
    seeds = [r.seed for r in runs]
    by_seed = {r.seed: r for r in baseline}
    if not seeds or None in seeds or len(set(seeds)) != len(seeds) or len(by_seed) != len(baseline):
        return None
    if not set(seeds) < set(by_seed):
        return None
    return [by_seed[s] for s in seeds]


def compare(runs: list[Run], baseline: list[Run], key: str, common_seeds: bool = False) -> Optional[Difference]:
    """Mean `key` of `runs` minus the baseline's, tested as the seeds allow (None without values).

    `common_seeds` (a sequential study, where the baseline trains every seed an open comparison needs and
    a decided configuration stops): a configuration with fewer seeds than the baseline is compared with the
    baseline's runs of its own seeds, paired, so that its verdict stays the one the study acted on."""
    runs = sorted((r for r in runs if r.summary.get(key) is not None), key=lambda r: (r.seed is None, r.seed or 0))
    baseline = sorted((r for r in baseline if r.summary.get(key) is not None), key=lambda r: (r.seed is None, r.seed or 0))
    subset = _baseline_seeds_of(runs, baseline) if common_seeds else None
    baseline = subset if subset is not None else baseline
    a = [float(r.summary[key]) for r in runs]
    b = [float(r.summary[key]) for r in baseline]
    is_paired, why = choose_test(runs, baseline)
    if subset is not None:
        why += " (the baseline's runs of those seeds)"
    return paired(a, b, why) if is_paired else welch(a, b, why)
