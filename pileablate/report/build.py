"""A report from run directories: load, check, group, then write report.md, summary.csv, runs.csv
and the plots (PNG and SVG) into one folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from pileablate.report.aggregate import Configuration, group_runs
from pileablate.report.checks import (
    MIN_PLAUSIBLE_BITS_PER_BYTE,
    OVERFIT_GAP_NATS,
    OVERFIT_GAP_RELATIVE,
    budget_flags,
    describe_budget,
)
from pileablate.report.runs import Run, check_same_data, load_runs
from pileablate.report.stats import SIGNIFICANCE_RULE
from pileablate.report.table import (
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    markdown_table,
    rich_table,
    run_markdown_table,
    run_rows,
    summary_rows,
    to_csv,
)

PLOTS = ("loss_vs_tokens", "loss_vs_time", "runs_grid", "final_val_loss", "lr_schedule")


@dataclass
class Report:
    runs: list[Run]
    configurations: list[Configuration]
    notes: list[str] = field(default_factory=list)   # mixed data (only with --force)
    warnings: list[str] = field(default_factory=list)  # report-wide flags: unequal budgets
    delta_key: str = "final_val_loss"

    @property
    def delta_metric(self) -> str:
        return "val bits/byte" if self.delta_key == "val_bits_per_byte" else "val loss (nats/token)"

    def table(self):
        return rich_table(self.configurations, title=f"pileablate report: {len(self.runs)} runs, "
                          f"Δ on final {self.delta_metric}")


def build_report(paths: Iterable[Path], force: bool = False, runs: Optional[list[Run]] = None) -> Report:
    """Load and check the runs under `paths` (or the given runs); refuses mixed data unless forced."""
    runs = runs if runs is not None else load_runs(paths)
    notes = check_same_data(runs, force)
    mixed_tokenizers = len({r.tokenizer_id for r in runs if r.fingerprint}) > 1
    delta_key = "val_bits_per_byte" if mixed_tokenizers else "final_val_loss"
    configs = group_runs(runs, delta_key=delta_key)
    return Report(runs=runs, configurations=configs, notes=notes, warnings=budget_flags(runs), delta_key=delta_key)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def markdown(report: Report, plot_dir: Optional[str] = "plots") -> str:
    runs = report.runs
    first = next((r for r in runs if r.fingerprint), runs[0])
    data = first.data
    tok = data.get("tokenizer") or {}
    lines = [
        "# pileablate report",
        "",
        f"{len(runs)} runs in {len(report.configurations)} configurations, "
        f"made {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `pileablate report`.",
        "",
        (f"- Data: `{data.get('dir', '?')}` (fingerprint `{(first.fingerprint or 'unknown')[:16]}`), "
         f"tokenizer `{tok.get('name') or tok.get('spec') or '?'}` (vocabulary {tok.get('n_vocab', '?')}).")
        if not report.notes else "- Data: MIXED, see below.",
        f"- Budget per run: {describe_budget(first.budget) if not report.warnings else 'UNEQUAL, see flags'}.",
        f"- Δ vs baseline: difference of the mean final {report.delta_metric} to the baseline's "
        "(negative is better).",
    ]
    for note in report.notes:
        lines.append(f"- **Mixed data (--force):** {note}.")
    lines += ["", "## Results", "", markdown_table(report.configurations), "",
              "Means over seeds, ± one sample standard deviation. " + SIGNIFICANCE_RULE, ""]
    flagged = [(c.name, f) for c in report.configurations for f in c.flags]
    lines += ["## Flags", ""]
    if not flagged and not report.warnings:
        lines.append("None: every run finished its budget, passed its guards, and shows no over-fitting "
                     "or impossible loss.")
    for warning in report.warnings:
        lines.append(f"- **{warning}**")
    for name, flag in flagged:
        lines.append(f"- {name}: {flag}")
    lines += [
        "",
        f"Rules: over-fitting when the mean train loss over the last 10% of logged steps is more than "
        f"{OVERFIT_GAP_NATS} nats/token and {OVERFIT_GAP_RELATIVE:.0%} below the final validation loss; "
        f"an impossible loss is one below {MIN_PLAUSIBLE_BITS_PER_BYTE} bits per byte (no model compresses "
        "text that well: a sign of leaked future tokens); guards and flags come from each run's summary.",
        "",
    ]
    if plot_dir is not None:
        lines += ["## Plots", ""]
        captions = {
            "loss_vs_tokens": "Train (faint raw, bold smoothed) and validation (dashed) loss against tokens",
            "loss_vs_time": "The same against wall-clock time",
            "runs_grid": "One panel per run",
            "final_val_loss": "Final validation loss per configuration (±1 std over seeds)",
            "lr_schedule": "Learning-rate schedules",
        }
        for stem in PLOTS:
            lines += [f"### {captions[stem]}", "", f"![{captions[stem]}]({plot_dir}/{stem}.png)", ""]
    lines += ["## Runs", "", run_markdown_table(runs), ""]
    return "\n".join(lines)


def write_report(report: Report, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write every file of the report; returns name -> path (plots as `plots/<stem>.png`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if plots:
        from pileablate.report.plots import build_figures, save_figure

        for stem, fig in build_figures(report.configurations, report.delta_key).items():
            files[stem] = save_figure(fig, out_dir / "plots", stem)[0]
    metric = "val_bits_per_byte" if report.delta_key == "val_bits_per_byte" else "final_val_loss"
    _atomic_write(out_dir / "summary.csv", to_csv(summary_rows(report.configurations, metric), SUMMARY_COLUMNS))
    _atomic_write(out_dir / "runs.csv", to_csv(run_rows(report.configurations), RUN_COLUMNS))
    _atomic_write(out_dir / "report.md", markdown(report, "plots" if plots else None))
    files.update({"report.md": out_dir / "report.md", "summary.csv": out_dir / "summary.csv",
                  "runs.csv": out_dir / "runs.csv"})
    return files
