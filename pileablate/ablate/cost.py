"""What a study costs before anything runs (`ablate --dry-run`): runs, tokens, and parameters × tokens
point by point (training compute is about 6 × parameters × tokens FLOPs), and the plan it will train."""

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


def cost_table(parts: Sequence, costs: Sequence[Cost], most: bool = False):
    from rich.table import Table

    from pileablate.runfolder import budget_of
    from pileablate.report.checks import describe_budget
    from pileablate.report.fmt import DASH, format_count

    title = "cost per point" if parts[0].point.label else "cost"
    most = "; at most: every configuration to --max-seeds" if most else ""
    table = Table(title=f"{title} (params × tokens ≈ training FLOPs / 6{most})", header_style="bold")
    for header in ("point", "settings", "params (baseline)", "budget per run", "runs", "tokens (all runs)",
                   "params × tokens"):
        table.add_column(header, justify="left" if header in ("point", "settings", "budget per run") else "right")
    for part, cost in zip(parts, costs):
        budget = describe_budget(budget_of(part.ablation.base)) + (" (default)" if part.default_budget else "")
        runs = str(cost.runs) + (f" + {cost.tuning_runs} tuning" if cost.tuning_runs else "")
        table.add_row(cost.label or "ablation", part.point.describe(), format_count(cost.params), budget, runs,
                      format_count(cost.tokens) if cost.tokens is not None else "time-bound",
                      f"{cost.params_x_tokens:.3g}" if cost.params_x_tokens is not None else DASH)
    known = [c for c in costs if c.tokens is not None]
    if len(known) == len(costs):
        table.add_row("all points", "", "", "", str(sum(c.runs + c.tuning_runs for c in costs)),
                      format_count(sum(c.tokens for c in known)), f"{sum(c.params_x_tokens for c in known):.3g}",
                      style="bold")
    return table


def print_plan(study) -> None:
    """The dry run: for a sweep or `--seeds auto` the cost (per point, and the most it can cost), then
    every run in the order it will train (stdout); with `--seeds auto` the first round's runs."""
    from pileablate.ablate.runner import data_identity
    from pileablate.runfolder import budget_of
    from pileablate.ablate.study import describe, ordered, parts, plan_table, seeds_in_first_round
    from pileablate.console import stderr_console, stdout_console
    from pileablate.report.checks import describe_budget

    ready = parts(study)
    vocab_size, _ = data_identity(study.ablation.base.data)
    stderr_console().print(describe(study, ready), highlight=False)
    out = stdout_console()
    if study.is_sweep or study.sequential:
        out.print(cost_table(ready, _costs(ready, vocab_size), most=study.sequential))
    first = seeds_in_first_round(study) if study.sequential else None
    tuning = ordered([(part, p) for part in ready for p in part.ablation.tuning_plan()])
    reported = ordered([(part, p) for part in ready for p in part.ablation.report_plan()
                        if first is None or part.ablation.seeds.index(p.seed) < first])
    runs_dir = study.ablation.base.runs_dir
    what = "first round: " if study.sequential else ""
    edges = " (a rate chosen at an edge of the grid adds tuning runs beyond it)" if tuning else ""
    if not study.is_sweep:
        out.print(plan_table(ordered(tuning + reported), f"ablation plan: {what}{len(tuning) + len(reported)} runs "
                             f"in {runs_dir}, each {describe_budget(budget_of(ready[0].ablation.base))}{edges}"))
    else:
        if tuning:
            out.print(plan_table(tuning, f"sweep plan: {len(tuning)} tuning runs first (in each point's folder)"
                                         f"{edges}"))
        out.print(plan_table(reported, f"sweep plan: {what}{len(reported)} reported runs in {runs_dir}"
                                       + (", each at its point's tuned lr" if tuning else "")))
    if study.sequential:
        out.print(f"at most {sum(c.runs + c.tuning_runs for c in _costs(ready, vocab_size))} runs"
                  f"{_most_tokens(ready, vocab_size)}, if every configuration stays undecided to "
                  f"{study.max_seeds} seeds (plus any tuning runs at the grid's edges)", highlight=False)


def _costs(ready, vocab_size: int) -> list[Cost]:
    return [point_cost(part, vocab_size) for part in ready]


def _most_tokens(ready, vocab_size: int) -> str:
    from pileablate.report.fmt import format_count

    costs = _costs(ready, vocab_size)
    if any(c.tokens is None for c in costs):
        return ""
    return f" and {format_count(sum(c.tokens for c in costs))} tokens"
