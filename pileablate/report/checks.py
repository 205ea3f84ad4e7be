"""Flags a reader must see before trusting a number: over-fitting, impossible losses, failed guards,
incomplete runs, unequal budgets.
"""

from __future__ import annotations

import math
from typing import Optional

from pileablate.report.fmt import format_count, format_seconds
from pileablate.report.runs import Run
from pileablate.report.stats import mean

# The trainer's plausibility floor (pileablate/train/metrics.py explains the figure), repeated here so
# a report needs no torch: no model trained on one machine comes near it on held-out text; below it
# the model has seen the tokens it predicts (the lab's 0.086 nats/token leak is ~0.03 bits per byte).
MIN_PLAUSIBLE_BITS_PER_BYTE = 0.3

# Train loss this far below validation loss (nats/token, and relative) means the model is fitting
# its training windows rather than the language; noisy final batches stay well inside both margins.
OVERFIT_GAP_NATS = 0.1
OVERFIT_GAP_RELATIVE = 0.05

_GUARD_OK = {"ok", "passed", "pass", "true", "skipped", "n/a", "none"}

# Trainer flags that mean the run's numbers cannot be trusted (DESIGN.md "Runs").
FAILING_FLAGS = frozenset({"guard_failed", "non_finite_loss", "implausible_loss", "diverged"})


def train_loss_tail(run: Run, fraction: float = 0.1, minimum: int = 5) -> Optional[float]:
    """Mean train loss over the last 10% of logged steps: one batch's loss is too noisy to compare."""
    _, losses = run.series("train_loss")
    if not losses:
        value = run.summary.get("final_train_loss")
        return None if value is None else float(value)
    n = max(minimum, int(len(losses) * fraction))
    return mean(losses[-n:])


def run_bits_per_byte(run: Run, loss_nats: Optional[float]) -> Optional[float]:
    """A loss of this run in bits per byte of its validation text (None when unknown)."""
    from pileablate.train.metrics import bits_per_byte  # the one formula (no torch behind it)

    bpt = run.val_bytes_per_token
    return None if loss_nats is None or not bpt else bits_per_byte(loss_nats, bpt)


def _guard_failures(run: Run) -> list[str]:
    guards = dict(run.summary.get("guards") or {})
    error = guards.pop("error", None)
    failures = []
    for guard, value in guards.items():
        # A guard records "passed", a measured number (the initial loss), or None when not reached.
        if value is True or value is None or isinstance(value, (int, float)) or str(value).lower() in _GUARD_OK:
            continue
        failures.append(f"guard {guard} failed" + (f": {error}" if error else f": {value}"))
        error = None
    if error:
        failures.append(f"guard failed: {error}")
    return failures


def _implausible_loss(run: Run, train_tail: Optional[float]) -> Optional[str]:
    """The lowest of the run's losses in bits per byte, when it is below what any model reaches."""
    lowest = [
        bpb
        for bpb in (
            run.summary.get("val_bits_per_byte"),
            run_bits_per_byte(run, run.summary.get("best_val_loss")),
            run_bits_per_byte(run, train_tail),
        )
        if bpb is not None and math.isfinite(float(bpb))
    ]
    if lowest and min(lowest) < MIN_PLAUSIBLE_BITS_PER_BYTE:
        return (f"loss below what the data allows: {min(lowest):.3f} bits/byte < {MIN_PLAUSIBLE_BITS_PER_BYTE}"
                " (leak of future tokens?)")
    return None


def being_trained(run: Run) -> Optional[str]:
    """"being trained by pid P on host H" for a run another process holds now (pileablate.runlock)."""
    from pileablate.runlock import holder

    if run.status == "finished":
        return None
    who = holder(run.path)
    return None if who is None else f"being trained by {who}"


def run_flags(run: Run) -> list[str]:
    """Every warning about one run, each a short phrase for the table and report."""
    flags: list[str] = []
    status = run.status
    reason = run.summary.get("stop_reason")
    if status == "failed":
        flags.append(f"failed ({reason or 'unknown reason'})")
    elif being_trained(run):
        flags.append(being_trained(run))
    elif status in ("running", "stopped", "unknown") and reason not in ("time_limit", "max_tokens", "max_steps"):
        flags.append(f"incomplete: {status}" + (f" ({reason})" if reason else ""))
    flags += _guard_failures(run)
    for flag in run.summary.get("flags") or []:
        if flag not in flags and flag != reason:  # the stop reason is already in the status flag
            flags.append(str(flag))

    val = run.summary.get("final_val_loss")
    train = train_loss_tail(run)
    if val is not None and train is not None:
        gap = float(val) - train
        if gap > OVERFIT_GAP_NATS and gap > OVERFIT_GAP_RELATIVE * float(val):
            epochs = run.summary.get("epochs")
            at = f" after {float(epochs):.1f} epochs" if epochs is not None else ""
            flags.append(f"over-fitting: train {train:.3f} < val {float(val):.3f}{at}")
    implausible = _implausible_loss(run, train)
    if implausible:
        flags.append(implausible)
    for key in ("final_train_loss", "final_val_loss"):
        value = run.summary.get(key)
        if value is not None and not math.isfinite(float(value)):
            flags.append(f"non-finite {key.replace('_', ' ')}")
    return flags


def repeated_data_flag(runs: list[Run]) -> Optional[str]:
    """Runs that saw their train data more than once (a budget beyond one pass over the store): a
    setting the reader must know of, as repeated tokens are easier to predict than new ones."""
    passes = [float(r.summary["epochs"]) for r in runs if r.summary.get("epochs") is not None]
    if not passes or max(passes) <= 1:
        return None
    return f"repeated data: {max(passes):.2f} passes over the train split (tokens seen more than once)"


def exclusion_reason(run: Run) -> Optional[str]:
    """Why a run must stay out of every mean, Δ, interval and test; None when it counts.

    A run counts only when it finished its budget (status "finished"), passed its guards, carries none
    of the trainer's failure flags, has a finite final validation loss, and no loss of it is below what
    the data allows. Over-fitting is a finding about the configuration, not a failure: it counts.
    """
    status, reason = run.status, run.summary.get("stop_reason")
    if status == "failed":
        return f"failed ({reason or 'unknown reason'})"
    if status != "finished":
        return being_trained(run) or f"unfinished: {status}" + (f" ({reason})" if reason else "")
    guards = _guard_failures(run)
    if guards:
        return guards[0]
    failing = [str(f) for f in run.summary.get("flags") or [] if f in FAILING_FLAGS]
    if failing:
        return "flagged " + ", ".join(failing)
    value = run.summary.get("final_val_loss")
    if value is None:
        return "no final validation loss"
    if not math.isfinite(float(value)):
        return "non-finite final validation loss"
    return _implausible_loss(run, train_loss_tail(run))


def describe_budget(budget: dict) -> str:
    parts = []
    if budget.get("time_limit") is not None:
        parts.append(f"time {format_seconds(float(budget['time_limit']))}")
    if budget.get("max_tokens") is not None:
        parts.append(f"{format_count(int(budget['max_tokens']))} tokens")
    if budget.get("max_steps") is not None:
        parts.append(f"{int(budget['max_steps'])} steps")
    return " or ".join(parts) if parts else "none recorded"


def budget_flags(runs: list[Run]) -> list[str]:
    """One line per distinct budget when runs were not given the same budget (else nothing)."""
    budgets: dict[str, list[str]] = {}
    for run in runs:
        budgets.setdefault(describe_budget(run.budget), []).append(run.name)
    if len(budgets) < 2:
        return []
    return ["unequal budgets: " + "; ".join(f"{b}: {', '.join(names)}" for b, names in budgets.items())]

