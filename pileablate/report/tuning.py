"""Learning-rate tuning: the chosen rate per configuration, from runs measured on the tuning windows.

Tuning runs (config.json `"role": "tuning"`) train each configuration at several peak learning rates;
their `final_val_loss` is measured on the tuning windows: held-out windows of the validation
split, disjoint from the validation windows the report compares (train/data_loader.py). The
rule (README "Learning-rate tuning"): per configuration, the learning rate with the lowest mean final
tuning loss over the tuning seeds, among the rates at which every tuning seed finished (a rate at
which one seed diverged is not a rate to train with); ties go to the smaller rate. A choice at the
smallest or largest rate tried is flagged: the best rate may lie outside the grid.

No torch here: `ablate` imports `choose_lr` to pick the rates it then trains with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

from pileablate.errors import UserError
from pileablate.report.checks import exclusion_reason
from pileablate.report.runs import Run
from pileablate.report.stats import mean


def _losses_by_lr(points: Iterable[tuple[float, Optional[float]]]) -> dict[float, list[Optional[float]]]:
    by_lr: dict[float, list[Optional[float]]] = {}
    for lr, loss in points:
        ok = loss is not None and math.isfinite(float(loss))
        by_lr.setdefault(float(lr), []).append(float(loss) if ok else None)
    return by_lr


def choose_lr(points: Iterable[tuple[float, Optional[float]]], name: str = "the configuration") -> tuple[float, bool]:
    """(chosen lr, at_edge) from one configuration's tuning runs as (lr, final tuning loss) pairs, one
    per run (several seeds per lr allowed); the loss is None (or not finite) for a run that failed.

    at_edge: the chosen rate is the smallest or the largest tried (also when only one was tried).
    Raises UserError when no rate had every one of its runs finish.
    """
    by_lr = _losses_by_lr(points)
    finished = {lr: mean(losses) for lr, losses in by_lr.items() if losses and None not in losses}
    if not finished:
        tried = ", ".join(f"{lr:g}" for lr in sorted(by_lr)) or "none"
        raise UserError(f"no learning rate tried for {name} ({tried}) finished its tuning runs; "
                        "try smaller rates, or look at the failed tuning runs' summaries")
    chosen = min(finished, key=lambda lr: (finished[lr], lr))
    return chosen, chosen in (min(by_lr), max(by_lr))


def tuning_point(run: Run) -> tuple[float, Optional[float]]:
    """(lr, final tuning loss) of a tuning run; the loss is None when the run does not count."""
    if run.lr is None:
        raise UserError(f"tuning run {run.path} records no learning rate in its config.json; delete it or rerun it")
    loss = None if exclusion_reason(run) else float(run.summary["final_val_loss"])
    return run.lr, loss


@dataclass
class Tuning:
    """One configuration's learning-rate tuning, as the report shows it."""

    name: str
    mods: tuple[str, ...]
    runs: list[Run]
    losses: dict[float, list[Optional[float]]] = field(default_factory=dict)  # lr -> loss per run (None: failed)
    chosen: Optional[float] = None
    at_edge: bool = False
    problem: Optional[str] = None  # why nothing was chosen

    @property
    def lrs(self) -> list[float]:
        return sorted(self.losses)

    def mean_loss(self, lr: float) -> Optional[float]:
        """Mean tuning loss at `lr` over its runs; None when any of them failed."""
        losses = self.losses.get(lr) or []
        return mean(losses) if losses and None not in losses else None

    def edge_flag(self) -> Optional[str]:
        if not self.at_edge or self.chosen is None:
            return None
        side = "only rate" if len(self.lrs) == 1 else ("smallest" if self.chosen == self.lrs[0] else "largest")
        return (f"{self.name}: the chosen lr {self.chosen:g} is the {side} tried; the best may lie outside "
                "the grid (widen it)")


def tuning_results(runs: list[Run], names: Optional[dict[tuple[str, ...], str]] = None) -> list[Tuning]:
    """Tuning runs grouped by modifications, each with its chosen learning rate. `names` (mods ->
    configuration name, in the report's order) names and orders them as the report's configurations
    with the same modifications; the others follow, baseline first, then by modifications."""
    names = names or {}
    order = list(names)
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(run.mods, []).append(run)
    results = []
    for mods, members in groups.items():
        name = names.get(mods) or (",".join(mods) if mods else "baseline")
        points = [tuning_point(r) for r in members]
        tuning = Tuning(name=name, mods=mods, runs=members, losses=_losses_by_lr(points))
        refused = next((r for r in members if (r.summary or {}).get("stop_reason") == "guard_failed"), None)
        if refused is not None:  # a leak or a broken model, whatever the rate: never "no rate finished"
            error = (refused.summary.get("guards") or {}).get("error") or "a guard failed before training"
            tuning.problem = f"{name}: refused before training at every learning rate: {error}"
            results.append(tuning)
            continue
        try:
            tuning.chosen, tuning.at_edge = choose_lr(points, name)
        except UserError as err:
            tuning.problem = str(err)
        results.append(tuning)
    results.sort(key=lambda t: (order.index(t.mods) if t.mods in order else len(order), len(t.mods), t.name))
    return results
