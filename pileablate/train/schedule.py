"""How much of a run's budget is used: what every schedule is a function of (with the step).

The budget fraction is the largest of steps/max_steps, tokens/max_tokens and elapsed/time_limit: the
budget that will end the run first. A time-limited cosine run therefore reaches the minimum rate as
its time runs out, whatever its speed. The schedules themselves are components (pileablate/mods/).
"""

from __future__ import annotations


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
