"""Learning-rate tuning for the grid: which rates to try (and where to extend them), and the rate each
experiment gets.

Serious comparisons tune the learning rate per configuration: with one shared rate, the rate decides
the verdict (on the demo setting cosine loses to the baseline by 0.09 nats at 1e-3 and wins by 0.36 at
3e-3). Tuning runs train each experiment at every candidate rate on seeds the reported runs never use,
and are scored on tuning windows of the held-out split that the reported validation windows never
overlap; so the loss a report shows was never used to choose anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from pileablate.ablate.plan import PlannedRun
from pileablate.errors import UserError

# `--tune-lr auto`: five points, log-spaced over x1/10 .. x10 around the preset's default rate.
AUTO_POINTS = 5
AUTO_SPAN = 10.0


def log_grid(center: float, points: int, span: float = AUTO_SPAN) -> tuple[float, ...]:
    """`points` rates log-spaced from center/span to center*span (center included when points is odd)."""
    if points == 1:
        return (center,)
    lo, hi = math.log(center / span), math.log(center * span)
    return tuple(float(f"{math.exp(lo + (hi - lo) * i / (points - 1)):.3g}") for i in range(points))


def lr_candidates(spec: str, default_lr: float) -> tuple[float, ...]:
    """`auto` (5 points over x1/10..x10 of the default), `N` (N such points) or a comma list of rates."""
    text = str(spec).strip().lower()
    if text == "auto":
        return log_grid(default_lr, AUTO_POINTS)
    if text.isdigit():
        points = int(text)
        if not 2 <= points <= 15:
            raise UserError(f"--tune-lr {spec}: give 2 to 15 points, a comma list of rates, or auto")
        return log_grid(default_lr, points)
    rates = []
    for item in (part.strip() for part in text.split(",")):
        try:
            rate = float(item)
        except ValueError:
            raise UserError(f"--tune-lr {spec!r}: {item!r} is not a learning rate; use e.g. 3e-4,1e-3,3e-3, "
                            "a number of points (5), or auto") from None
        if not math.isfinite(rate) or rate <= 0:
            raise UserError(f"--tune-lr {spec!r}: learning rates must be positive, got {item}")
        rates.append(rate)
    if len(set(rates)) != len(rates):
        raise UserError(f"--tune-lr {spec!r}: a rate is listed twice")
    return tuple(sorted(rates))


# A rate chosen at the edge of the grid extends the grid one step that way, at most this many times
# per configuration: the best rate may lie outside the grid, and an edge choice only flagged misleads.
MAX_EXTENSIONS = 2


def next_rate(tried: Sequence[float], chosen: float, grid: Sequence[float]) -> Optional[float]:
    """One step beyond the edge the chosen rate sits on, at the ratio of the two rates at that edge;
    None when the choice is inside the tried rates, only one rate was tried, or the configuration has
    already been extended MAX_EXTENSIONS times beyond `grid` (the rates asked for)."""
    rates = sorted(set(tried))
    if len(rates) < 2 or chosen not in (rates[0], rates[-1]):
        return None
    if sum(rate not in grid for rate in rates) >= MAX_EXTENSIONS:
        return None
    if chosen == rates[-1]:
        rate = float(f"{rates[-1] * rates[-1] / rates[-2]:.3g}")
    else:
        rate = float(f"{rates[0] * rates[0] / rates[1]:.3g}")
    return None if rate in rates else rate


def chosen_lrs(ablation, tuning: Sequence[PlannedRun]) -> dict[str, float]:
    """Each experiment's rate: the lowest mean tuning loss among the rates whose tuning runs all finished
    (`report.tuning.choose_lr`, the rule the report shows). Experiments with no such rate are left out."""
    from pileablate.report.tuning import choose_lr

    chosen = {}
    for label, pairs in _tuning_losses(ablation, tuning).items():
        try:
            chosen[label] = choose_lr(pairs, label)[0]
        except UserError:
            continue  # no rate finished: the experiment is listed as not reported
    return chosen


def edge_extensions(ablation, tuning: Sequence[PlannedRun]) -> list[PlannedRun]:
    """The tuning runs one step beyond the grid for each experiment whose chosen rate is at an edge of
    the rates it tried (on the same tuning seeds), or none."""
    from pileablate.ablate.plan import plan_tuning, tuning_seeds

    chosen = chosen_lrs(ablation, tuning)
    extra: list[PlannedRun] = []
    for experiment in ablation.experiments:
        if experiment.label not in chosen:
            continue
        tried = [p.lr for p in tuning if p.label == experiment.label]
        rate = next_rate(tried, chosen[experiment.label], ablation.tune_lrs)
        if rate is not None:
            extra += plan_tuning([experiment], [rate], tuning_seeds(ablation.seeds, ablation.tune_seeds))
    return extra


def _tuning_losses(ablation, tuning: Sequence[PlannedRun]) -> dict[str, list[tuple[float, Optional[float]]]]:
    from pileablate.runfolder import read_summary

    points: dict[str, list[tuple[float, Optional[float]]]] = {}
    for planned in tuning:
        summary = read_summary(Path(ablation.base.runs_dir) / planned.name) or {}
        finished = summary.get("status") == "finished" and summary.get("final_val_loss") is not None
        points.setdefault(planned.label, []).append((planned.lr, summary["final_val_loss"] if finished else None))
    return points
