"""The lists beside the results table: the runs that do not count (and why), and the learning-rate
tuning (the rate chosen per configuration). Each as rows for the terminal and for Markdown."""

from __future__ import annotations

from pileablate.report.aggregate import Configuration
from pileablate.report.fmt import DASH, format_count, format_float
from pileablate.report.table import format_lr
from pileablate.report.tuning import Tuning

EXCLUDED_HEADERS = ("run", "configuration", "seed", "status", "steps", "final val loss", "why it does not count")
TUNING_HEADERS = ("configuration", "lrs tried", "mean tuning loss per lr", "chosen lr", "note")


def excluded_rows(configs: list[Configuration]) -> list[list[str]]:
    rows = []
    for config in configs:
        for run in config.runs:
            if run.name in config.excluded:
                s = run.summary
                rows.append([run.name, config.name, DASH if run.seed is None else str(run.seed),
                             run.status + (f" ({s['stop_reason']})" if s.get("stop_reason") else ""),
                             format_count(s.get("steps")), format_float(s.get("final_val_loss")),
                             config.excluded[run.name]])
    return rows


def _loss_at(tuning: Tuning, lr: float) -> str:
    losses = tuning.losses[lr]
    failed = sum(loss is None for loss in losses)
    if failed:
        return f"{lr:g}: {failed} of {len(losses)} failed"
    mark = " ←" if lr == tuning.chosen else ""
    return f"{lr:g}: {format_float(tuning.mean_loss(lr))}{mark}"


def tuning_rows(tuning: list[Tuning]) -> list[list[str]]:
    rows = []
    for t in tuning:
        note = t.problem or (t.edge_flag() or "").removeprefix(f"{t.name}: ")
        rows.append([t.name, format_lr(t.lrs), "; ".join(_loss_at(t, lr) for lr in t.lrs),
                     DASH if t.chosen is None else f"{t.chosen:g}", note])
    return rows


def rich_grid(title: str, headers: tuple[str, ...], rows: list[list[str]], style: str = "yellow"):
    from rich.table import Table

    table = Table(title=title, header_style="bold", title_style=style)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
