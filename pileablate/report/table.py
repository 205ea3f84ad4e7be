"""The results table, three ways: a rich table for the terminal, Markdown, and CSV (one row per
configuration in summary.csv, one row per run in runs.csv).
"""

from __future__ import annotations

import csv
import io
from typing import Callable

from pileablate.report.aggregate import Configuration
from pileablate.report.checks import train_loss_tail
from pileablate.report.fmt import (
    DASH,
    format_bytes,
    format_count,
    format_float,
    format_mean_std,
    format_seconds,
)
from pileablate.report.runs import Run

# summary.csv: one row per configuration; means over seeds, `_std` the sample standard deviation.
SUMMARY_COLUMNS = (
    "configuration", "mods", "seeds", "runs", "status",
    "params_total", "params_active", "tokens", "steps", "wall_time_s", "epochs",
    "final_train_loss", "final_train_loss_std", "final_val_loss", "final_val_loss_std",
    "best_val_loss", "best_val_loss_std", "val_bits_per_byte", "val_bits_per_byte_std",
    "delta_vs_baseline", "delta_metric", "delta_threshold", "delta_significant",
    "tokens_per_s", "peak_mem_bytes",
    "budget_time_limit_s", "budget_max_tokens", "budget_max_steps", "flags",
)

# runs.csv: one row per run, the figures of summary.json as they are.
RUN_COLUMNS = (
    "name", "configuration", "mods", "seed", "status", "stop_reason",
    "params_total", "params_active", "tokens", "steps", "elapsed_s", "epochs",
    "final_train_loss", "final_val_loss", "best_val_loss", "val_bits_per_byte",
    "tokens_per_s", "peak_mem_bytes", "budget_time_limit_s", "budget_max_tokens", "budget_max_steps",
    "fingerprint", "path",
)


def mods_text(mods: tuple[str, ...]) -> str:
    return ",".join(mods) if mods else "baseline"


def _status(config: Configuration) -> str:
    statuses = sorted({r.status for r in config.runs})
    return "/".join(statuses)


def _seeds_text(config: Configuration) -> str:
    """How many runs, and which seeds: '3 (s0,s1,s2)'."""
    seeds = config.seeds
    return f"{len(config.runs)}" + (f" ({','.join(f's{s}' for s in seeds)})" if seeds else "")


def _params(config: Configuration) -> str:
    total, active = config.mean("params_total"), config.mean("params_active")
    if total is None:
        return DASH
    if active is None or round(active) == round(total):
        return format_count(total)
    return f"{format_count(total)}/{format_count(active)}"


def _delta(config: Configuration) -> str:
    if config.is_baseline:
        return "(baseline)"
    d = config.delta
    if d is None:
        return DASH
    return f"{d.delta:+.3f}{d.marker}"


def _train_loss(config: Configuration) -> str:
    return format_mean_std(config.mean("final_train_loss"), config.std("final_train_loss"))


# (header, cell) for the terminal and Markdown tables.
DISPLAY_COLUMNS: tuple[tuple[str, Callable[[Configuration], str]], ...] = (
    ("configuration", lambda c: c.name),
    ("mods", lambda c: mods_text(c.mods)),
    ("seeds", _seeds_text),
    ("params (total/active)", _params),
    ("tokens", lambda c: format_count(c.mean("tokens"))),
    ("steps", lambda c: format_count(c.mean("steps"))),
    ("wall time", lambda c: format_seconds(c.mean("elapsed_s"))),
    ("epochs", lambda c: format_float(c.mean("epochs"), 2)),
    ("train loss", _train_loss),
    ("val loss", lambda c: format_mean_std(c.mean("final_val_loss"), c.std("final_val_loss"))),
    ("best val", lambda c: format_mean_std(c.mean("best_val_loss"), c.std("best_val_loss"))),
    ("val bits/byte", lambda c: format_mean_std(c.mean("val_bits_per_byte"), c.std("val_bits_per_byte"))),
    ("Δ vs baseline", _delta),
    ("tokens/s", lambda c: format_count(c.mean("tokens_per_s"))),
    ("peak mem", lambda c: format_bytes(c.peak_mem_bytes)),
    ("flags", lambda c: "; ".join(c.flags) if c.flags else ""),
)


def _num(x):
    return "" if x is None else x


def summary_rows(configs: list[Configuration], delta_metric: str) -> list[dict]:
    rows = []
    for c in configs:
        budget = c.runs[0].budget
        d = c.delta
        rows.append({
            "configuration": c.name,
            "mods": mods_text(c.mods),
            "seeds": " ".join(str(s) for s in c.seeds),
            "runs": len(c.runs),
            "status": _status(c),
            "params_total": _num(c.mean("params_total")),
            "params_active": _num(c.mean("params_active")),
            "tokens": _num(c.mean("tokens")),
            "steps": _num(c.mean("steps")),
            "wall_time_s": _num(c.mean("elapsed_s")),
            "epochs": _num(c.mean("epochs")),
            "final_train_loss": _num(c.mean("final_train_loss")),
            "final_train_loss_std": _num(c.std("final_train_loss")),
            "final_val_loss": _num(c.mean("final_val_loss")),
            "final_val_loss_std": _num(c.std("final_val_loss")),
            "best_val_loss": _num(c.mean("best_val_loss")),
            "best_val_loss_std": _num(c.std("best_val_loss")),
            "val_bits_per_byte": _num(c.mean("val_bits_per_byte")),
            "val_bits_per_byte_std": _num(c.std("val_bits_per_byte")),
            "delta_vs_baseline": 0.0 if c.is_baseline else _num(d.delta if d else None),
            "delta_metric": delta_metric,
            "delta_threshold": _num(d.threshold if d else None),
            "delta_significant": "" if (c.is_baseline or d is None or d.significant is None) else str(d.significant).lower(),
            "tokens_per_s": _num(c.mean("tokens_per_s")),
            "peak_mem_bytes": _num(c.peak_mem_bytes),
            "budget_time_limit_s": _num(budget["time_limit_s"]),
            "budget_max_tokens": _num(budget["max_tokens"]),
            "budget_max_steps": _num(budget["max_steps"]),
            "flags": " | ".join(c.flags),
        })
    return rows


def run_rows(configs: list[Configuration]) -> list[dict]:
    rows = []
    for c in configs:
        for r in c.runs:
            s, budget = r.summary, r.budget
            rows.append({
                "name": r.name, "configuration": c.name, "mods": mods_text(r.mods),
                "seed": _num(r.seed), "status": r.status, "stop_reason": _num(s.get("stop_reason")),
                "params_total": _num(s.get("params_total")), "params_active": _num(s.get("params_active")),
                "tokens": _num(s.get("tokens")), "steps": _num(s.get("steps")),
                "elapsed_s": _num(s.get("elapsed_s")), "epochs": _num(s.get("epochs")),
                "final_train_loss": _num(s.get("final_train_loss")),
                "final_val_loss": _num(s.get("final_val_loss")),
                "best_val_loss": _num(s.get("best_val_loss")),
                "val_bits_per_byte": _num(s.get("val_bits_per_byte")),
                "tokens_per_s": _num(s.get("tokens_per_s")), "peak_mem_bytes": _num(s.get("peak_mem_bytes")),
                "budget_time_limit_s": _num(budget["time_limit_s"]),
                "budget_max_tokens": _num(budget["max_tokens"]),
                "budget_max_steps": _num(budget["max_steps"]),
                "fingerprint": _num(r.fingerprint), "path": str(r.path),
            })
    return rows


def to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def display_rows(configs: list[Configuration]) -> list[list[str]]:
    return [[cell(c) for _, cell in DISPLAY_COLUMNS] for c in configs]


def rich_table(configs: list[Configuration], title: str = "pileablate report"):
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    text_columns = {"seeds", "configuration", "mods", "flags"}
    rows = display_rows(configs)
    # A terminal is narrow: columns with nothing to say (peak memory on a CPU) are left out here;
    # report.md and summary.csv keep every column.
    keep = [i for i, (header, _) in enumerate(DISPLAY_COLUMNS)
            if header == "flags" or any(row[i] != DASH for row in rows)]
    for i in keep:
        header = DISPLAY_COLUMNS[i][0]
        table.add_column(
            header,
            justify="left" if header in text_columns else "right",
            style="yellow" if header == "flags" else None,
            overflow="fold",
        )
    for config, row in zip(configs, rows):
        table.add_row(*[row[i] for i in keep], style="bold" if config.is_baseline else None)
    return table


def markdown_table(configs: list[Configuration]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    headers = [h for h, _ in DISPLAY_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in display_rows(configs):
        lines.append("| " + " | ".join(esc(cell) for cell in row) + " |")
    return "\n".join(lines)


def run_markdown_table(runs: list[Run]) -> str:
    headers = ["run", "seed", "status", "tokens", "steps", "wall time", "train loss (tail)",
               "val loss", "best val", "bits/byte"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in runs:
        s = r.summary
        reason = f" ({s['stop_reason']})" if s.get("stop_reason") else ""
        lines.append("| " + " | ".join([
            r.name, str(r.seed) if r.seed is not None else DASH, r.status + reason,
            format_count(s.get("tokens")), format_count(s.get("steps")), format_seconds(s.get("elapsed_s")),
            format_float(train_loss_tail(r)), format_float(s.get("final_val_loss")),
            format_float(s.get("best_val_loss")), format_float(s.get("val_bits_per_byte")),
        ]) + " |")
    return "\n".join(lines)
