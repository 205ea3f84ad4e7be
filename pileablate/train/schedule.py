"""Learning-rate schedules: constant (baseline), `warmup`, `cosine`.

A schedule is a pure function of (optimizer step, fraction of the budget used), so it needs no state
of its own: resuming restores the step and the budget used, and the rate follows exactly.

The budget fraction is the largest of steps/max_steps, tokens/max_tokens and elapsed/time_limit: the
budget that will end the run first. A time-limited cosine run therefore reaches the minimum rate as
its time runs out, whatever its speed.

- constant: `lr` throughout (the GPT-2 baseline of the seed study).
- warmup:   linear from ~0 to `lr` over the warmup, then constant (Goyal et al. 2017; GPT-2/3).
- cosine:   the warmup ramp times a half-cosine from `lr` down to `min_lr` over the whole budget
            (Loshchilov & Hutter 2017, "SGDR"; the GPT-3 / Chinchilla recipe). The cosine runs over the
            whole budget rather than from the end of warmup because with a time budget the warmup's
            share is not known in advance; during a 10% warmup the difference is below 2.5% of `lr`.

Warmup ends at `warmup_steps` or at WARMUP_MAX_FRACTION of the budget, whichever comes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "warmup", "cosine")


@dataclass(frozen=True)
class Schedule:
    kind: str  # constant | warmup | cosine
    lr: float
    min_lr: float
    warmup_steps: int
    warmup_fraction: float

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; expected one of {SCHEDULES}")

    def warmup_factor(self, step: int, progress: float) -> float:
        """Linear ramp in (0, 1]: `step` is the 0-based index of the step being taken."""
        if self.kind == "constant":
            return 1.0
        by_steps = (step + 1) / self.warmup_steps if self.warmup_steps > 0 else 1.0
        by_budget = progress / self.warmup_fraction if self.warmup_fraction > 0 else 1.0
        return min(1.0, max(by_steps, by_budget))

    def __call__(self, step: int, progress: float) -> float:
        """Learning rate for step `step` (0-based) when `progress` (0..1) of the budget is used."""
        progress = min(max(progress, 0.0), 1.0)
        factor = self.warmup_factor(step, progress)
        if self.kind == "cosine":
            decayed = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
            return decayed * factor
        return self.lr * factor


def budget_progress(step: int, tokens: int, elapsed_s: float, max_steps=None, max_tokens=None, time_limit=None) -> float:
    """Fraction (0..1) of the budget used: the largest over the budgets that are set."""
    fractions = [0.0]
    if max_steps:
        fractions.append(step / max_steps)
    if max_tokens:
        fractions.append(tokens / max_tokens)
    if time_limit:
        fractions.append(elapsed_s / time_limit)
    return min(1.0, max(fractions))
