"""What a sweep costs, point by point, before anything runs (`ablate --sweep ... --dry-run`): runs,
tokens, and parameters × tokens (training compute is about 6 × parameters × tokens FLOPs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Cost:
    label: str
    params: int                      # the baseline's active parameters at the point
    tokens_per_run: Optional[int]    # None: a time budget only (the tokens depend on the hardware)
    runs: int                        # reported runs
    tuning_runs: int = 0
    tuning_fraction: float = 1.0     # --tune-budget

    @property
    def tokens(self) -> Optional[int]:
        """Tokens over every run of the point (tuning runs at their share of the budget)."""
        if self.tokens_per_run is None:
            return None
        return self.runs * self.tokens_per_run + self.tuning_runs * round(self.tokens_per_run * self.tuning_fraction)

    @property
    def params_x_tokens(self) -> Optional[float]:
        return None if self.tokens is None else float(self.params) * self.tokens


def tokens_per_run(base) -> Optional[int]:
    """The most tokens one run of these settings trains on: its token budget, or its steps × tokens per
    step (one process), whichever ends first; None when only a time limit bounds it."""
    from pileablate.model.build import PRESETS
    from pileablate.train.config import preset_defaults

    limits = []
    if base.max_tokens is not None:
        limits.append(int(base.max_tokens))
    if base.max_steps is not None:
        batch = base.batch_size or preset_defaults(base.preset)["batch_size"]
        seq_len = base.seq_len or PRESETS[base.preset]["seq_len"]
        limits.append(int(base.max_steps) * batch * base.grad_accum * seq_len)
    return min(limits) if limits else None


def point_cost(part, vocab_size: int) -> Cost:
    from pileablate.ablate.runner import baseline_params

    ablation = part.ablation
    return Cost(part.point.label, baseline_params(ablation.base, vocab_size), tokens_per_run(ablation.base),
                len(ablation.report_plan()), len(ablation.tuning_plan()), ablation.tune_budget)


def cost_table(parts: Sequence, costs: Sequence[Cost]):
    from rich.table import Table

    from pileablate.ablate.runner import budget_of
    from pileablate.report.checks import describe_budget
    from pileablate.report.fmt import DASH, format_count

    table = Table(title="sweep plan: cost per point (params × tokens ≈ training FLOPs / 6)", header_style="bold")
    for header in ("point", "settings", "params (baseline)", "budget per run", "runs", "tokens (all runs)",
                   "params × tokens"):
        table.add_column(header, justify="left" if header in ("point", "settings", "budget per run") else "right")
    for part, cost in zip(parts, costs):
        budget = describe_budget(budget_of(part.ablation.base)) + (" (default)" if part.default_budget else "")
        runs = str(cost.runs) + (f" + {cost.tuning_runs} tuning" if cost.tuning_runs else "")
        table.add_row(cost.label, part.point.describe(), format_count(cost.params), budget, runs,
                      format_count(cost.tokens) if cost.tokens is not None else "time-bound",
                      f"{cost.params_x_tokens:.3g}" if cost.params_x_tokens is not None else DASH)
    known = [c for c in costs if c.tokens is not None]
    if len(known) == len(costs):
        table.add_row("all points", "", "", "", str(sum(c.runs + c.tuning_runs for c in costs)),
                      format_count(sum(c.tokens for c in known)), f"{sum(c.params_x_tokens for c in known):.3g}",
                      style="bold")
    return table


def plan_table(pairs: Sequence, title: str):
    """Every run of the sweep in the order it will train: point/run, mods, seed, lr, state."""
    from pathlib import Path

    from rich.table import Table

    from pileablate.ablate.plan import format_lr
    from pileablate.ablate.runner import run_state

    table = Table(title=title, header_style="bold")
    for header in ("#", "run", "mods", "seed", "lr", "state"):
        table.add_column(header, justify="right" if header in ("#", "seed", "lr") else "left")
    for i, (part, p) in enumerate(pairs, start=1):
        state = run_state(Path(part.ablation.base.runs_dir) / p.name)
        lr = format_lr(p.lr) if p.lr is not None else ("tuned" if part.ablation.tuning else "default")
        table.add_row(str(i), p.title, ",".join(p.mods) or "baseline", str(p.seed), lr,
                      f"{state.action}: {state.detail}" if state.action != "train" else "train (new)")
    return table


def print_plan(sweep) -> None:
    """The sweep's dry run: the cost per point, then every run in the order it will train (stdout)."""
    from pileablate.ablate.runner import data_identity
    from pileablate.ablate.sweep import describe, ordered, parts
    from pileablate.console import stderr_console
    from pileablate.console import stdout_console

    ready = parts(sweep)
    vocab_size, _ = data_identity(sweep.ablation.base.data_dir)
    stderr_console().print(describe(sweep, ready), highlight=False)
    out = stdout_console()
    out.print(cost_table(ready, [point_cost(part, vocab_size) for part in ready]))
    tuning = ordered([(part, p) for part in ready for p in part.ablation.tuning_plan()])
    reported = ordered([(part, p) for part in ready for p in part.ablation.report_plan()])
    if tuning:
        out.print(plan_table(tuning, f"sweep plan: {len(tuning)} tuning runs first (in each point's folder)"))
    out.print(plan_table(reported, f"sweep plan: {len(reported)} reported runs in {sweep.ablation.base.runs_dir}"
                                   + (", each at its point's tuned lr" if tuning else "")))
