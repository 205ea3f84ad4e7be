"""The results table, three ways: a rich table for the terminal, Markdown, and CSV (one row per
configuration in summary.csv, one row per run in runs.csv).
"""

from __future__ import annotations

import csv
import io
from typing import Callable, Sequence

from pileablate.report.aggregate import Configuration
from pileablate.report.checks import exclusion_reason, train_loss_tail
from pileablate.report.fmt import (
    DASH,
    format_bytes,
    format_count,
    format_float,
    format_mean_std,
    format_seconds,
)
from pileablate.report.runs import Run
from pileablate.report.stats import mean, std
from pileablate.report.tuning import Tuning

# summary.csv: one row per configuration; means over seeds, `_std` the sample standard deviation.
# Figures are over the runs that count; `runs_excluded` says how many did not (runs.csv says why).
SUMMARY_COLUMNS = (
    "configuration", "mods", "seeds", "runs", "runs_excluded", "status", "lr",
    "params_total", "params_active", "params_vs_baseline_pct", "tokens", "steps", "wall_time_s", "epochs",
    "train_loss", "train_loss_std", "final_val_loss", "final_val_loss_std",
    "best_val_loss", "best_val_loss_std", "val_bits_per_byte", "val_bits_per_byte_std",
    "delta_vs_baseline", "delta_metric", "delta_ci_low", "delta_ci_high", "delta_p", "delta_p_holm",
    "delta_significant", "delta_test", "verdict", "verdict_margin", "verdict_seeds_needed", "verdict_mde",
    "tokens_per_s", "peak_mem_bytes",
    "budget_time_limit_s", "budget_max_tokens", "budget_max_steps", "flags",
)

# runs.csv: one row per run (tuning runs too), the figures of summary.json as they are (but the train
# loss: the report's one definition, the mean over the last 10% of logged steps), and whether the run
# counts in the statistics.
RUN_COLUMNS = (
    "name", "configuration", "role", "mods", "seed", "lr", "status", "stop_reason", "counted", "excluded_reason",
    "params_total", "params_active", "tokens", "steps", "elapsed_s", "epochs",
    "train_loss", "final_val_loss", "best_val_loss", "val_bits_per_byte",
    "tokens_per_s", "peak_mem_bytes", "budget_time_limit_s", "budget_max_tokens", "budget_max_steps",
    "fingerprint", "path",
)


def mods_text(mods: tuple[str, ...]) -> str:
    return ",".join(mods) if mods else "baseline"


def _status(config: Configuration) -> str:
    statuses = sorted({r.status for r in config.runs})
    return "/".join(statuses)


def _seeds_text(config: Configuration) -> str:
    """How many runs count, and which seeds: '3 (s0,s1,s2)', or '2 of 3 (s0,s2)' when one does not."""
    seeds = config.seeds
    counted = len(config.counted)
    total = f"{counted}" if counted == len(config.runs) else f"{counted} of {len(config.runs)}"
    return total + (f" ({','.join(f's{s}' for s in seeds)})" if seeds else "")


def format_lr(lrs: list[float]) -> str:
    return "/".join(f"{lr:g}" for lr in lrs) if lrs else DASH


def lr_text(config: Configuration) -> str:
    """The --lr the configuration trained at, and the rate of any other optimizer it used ("0.001
    (muon 0.02)"), so the report says which rate each part of the model trained at."""
    others = "; ".join(f"{name} {format_lr(rates)}" for name, rates in config.other_rates.items())
    return format_lr(config.lrs) + (f" ({others})" if others else "")


def _params_vs_baseline(config: Configuration) -> str:
    if config.is_baseline:
        return "(baseline)"
    if config.params_vs_baseline is None:
        return DASH
    return f"{config.params_vs_baseline:+.1%}"


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


def _interval(config: Configuration) -> str:
    d = config.delta
    if config.is_baseline or d is None or d.ci is None:
        return DASH
    return f"[{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]"


def _p_holm(config: Configuration) -> str:
    d = config.delta
    if config.is_baseline or d is None or d.p_adjusted is None:
        return DASH
    return f"{d.p_adjusted:.3g}"


def _test(config: Configuration) -> str:
    if config.is_baseline or config.delta is None:
        return ""
    return config.delta.why


def _train_loss(config: Configuration) -> str:
    values = config.train_losses()
    return format_mean_std(mean(values), std(values))


def _verdict(config: Configuration) -> str:
    if config.is_baseline:
        return "(baseline)"
    if config.not_comparable:
        return "not comparable"
    return config.verdict.short if config.verdict is not None else DASH


def _delta_with_interval(config: Configuration) -> str:
    """'-0.100* [-0.130, -0.070]': Δ and its 95% interval in one cell (the terminal's compact table)."""
    interval = _interval(config)
    return _delta(config) + ("" if interval == DASH else f" {interval}")


# (header, cell) for the terminal and Markdown tables.
DISPLAY_COLUMNS: tuple[tuple[str, Callable[[Configuration], str]], ...] = (
    ("configuration", lambda c: c.name),
    ("verdict", _verdict),
    ("mods", lambda c: mods_text(c.mods)),
    ("seeds", _seeds_text),
    ("params (total/active)", _params),
    ("Δ params", _params_vs_baseline),
    ("lr", lr_text),
    ("tokens", lambda c: format_count(c.mean("tokens"))),
    ("steps", lambda c: format_count(c.mean("steps"))),
    ("wall time", lambda c: format_seconds(c.mean("elapsed_s"))),
    ("epochs", lambda c: format_float(c.mean("epochs"), 2)),
    ("train loss (tail)", _train_loss),
    ("val loss", lambda c: format_mean_std(c.mean("final_val_loss"), c.std("final_val_loss"))),
    ("best val", lambda c: format_mean_std(c.mean("best_val_loss"), c.std("best_val_loss"))),
    ("val bits/byte", lambda c: format_mean_std(c.mean("val_bits_per_byte"), c.std("val_bits_per_byte"))),
    ("Δ vs baseline", _delta),
    ("95% CI of Δ", _interval),
    ("p (Holm)", _p_holm),
    ("test", _test),
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
            "runs_excluded": len(c.excluded),
            "status": _status(c),
            "lr": " ".join(f"{lr:g}" for lr in c.lrs),
            "params_total": _num(_first(c, "params_total")),
            "params_active": _num(c.params_active),
            "params_vs_baseline_pct": 0.0 if c.is_baseline else _num(
                None if c.params_vs_baseline is None else 100 * c.params_vs_baseline),
            "tokens": _num(c.mean("tokens")),
            "steps": _num(c.mean("steps")),
            "wall_time_s": _num(c.mean("elapsed_s")),
            "epochs": _num(c.mean("epochs")),
            "train_loss": _num(mean(c.train_losses())),
            "train_loss_std": _num(std(c.train_losses())),
            "final_val_loss": _num(c.mean("final_val_loss")),
            "final_val_loss_std": _num(c.std("final_val_loss")),
            "best_val_loss": _num(c.mean("best_val_loss")),
            "best_val_loss_std": _num(c.std("best_val_loss")),
            "val_bits_per_byte": _num(c.mean("val_bits_per_byte")),
            "val_bits_per_byte_std": _num(c.std("val_bits_per_byte")),
            "delta_vs_baseline": 0.0 if c.is_baseline else _num(d.delta if d else None),
            "delta_metric": delta_metric,
            "delta_ci_low": _num(d.ci[0] if d and d.ci else None),
            "delta_ci_high": _num(d.ci[1] if d and d.ci else None),
            "delta_p": _num(d.p if d else None),
            "delta_p_holm": _num(d.p_adjusted if d else None),
            "delta_significant": "" if (c.is_baseline or d is None or d.significant is None) else str(d.significant).lower(),
            "delta_test": "" if (c.is_baseline or d is None) else d.why,
            **_verdict_cells(c),
            "tokens_per_s": _num(c.mean("tokens_per_s")),
            "peak_mem_bytes": _num(c.peak_mem_bytes),
            "budget_time_limit_s": _num(budget["time_limit"]),
            "budget_max_tokens": _num(budget["max_tokens"]),
            "budget_max_steps": _num(budget["max_steps"]),
            "flags": " | ".join(c.flags),
        })
    return rows


def _verdict_cells(config: Configuration) -> dict:
    v = config.verdict
    if v is None:
        word = "baseline" if config.is_baseline else "not comparable" if config.not_comparable else ""
        return {"verdict": word, "verdict_margin": "",
                "verdict_seeds_needed": "", "verdict_mde": ""}
    return {"verdict": v.word, "verdict_margin": v.margin, "verdict_seeds_needed": _num(v.seeds_needed),
            "verdict_mde": _num(v.mde)}


def _first(config: Configuration, key: str):
    """A figure every run of a configuration shares (its model's size), from the first run with it."""
    return next((r.summary[key] for r in config.runs if r.summary.get(key) is not None), None)


def run_rows(configs: list[Configuration], tuning: Sequence[Tuning] = ()) -> list[dict]:
    """One row per run of every configuration, then per tuning run."""
    groups = [(c.name, c.runs) for c in configs] + [(t.name, t.runs) for t in tuning]
    rows = []
    for name, runs in groups:
        for r in runs:
            s, budget = r.summary, r.budget
            reason = exclusion_reason(r)
            rows.append({
                "name": r.name, "configuration": name, "role": r.role, "mods": mods_text(r.mods),
                "seed": _num(r.seed), "lr": _num(r.lr), "status": r.status,
                "stop_reason": _num(s.get("stop_reason")),
                "counted": str(reason is None and r.role == "report").lower(), "excluded_reason": reason or "",
                "params_total": _num(s.get("params_total")), "params_active": _num(s.get("params_active")),
                "tokens": _num(s.get("tokens")), "steps": _num(s.get("steps")),
                "elapsed_s": _num(s.get("elapsed_s")), "epochs": _num(s.get("epochs")),
                "train_loss": _num(train_loss_tail(r)),
                "final_val_loss": _num(s.get("final_val_loss")),
                "best_val_loss": _num(s.get("best_val_loss")),
                "val_bits_per_byte": _num(s.get("val_bits_per_byte")),
                "tokens_per_s": _num(s.get("tokens_per_s")), "peak_mem_bytes": _num(s.get("peak_mem_bytes")),
                "budget_time_limit_s": _num(budget["time_limit"]),
                "budget_max_tokens": _num(budget["max_tokens"]),
                "budget_max_steps": _num(budget["max_steps"]),
                "fingerprint": _num(r.fingerprint), "path": str(r.path),
            })
    return rows


def _csv_value(value):
    """Whole numbers as integers (120832, not 120832.0): counts read as counts."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def display_rows(configs: list[Configuration]) -> list[list[str]]:
    return [[cell(c) for _, cell in DISPLAY_COLUMNS] for c in configs]


# The terminal's compact table; report.md and summary.csv keep every column. Configuration, verdict and Δ
# are always shown whole; at a narrow width the standard deviation goes first, then the lr, the flag
# references and the loss (what they said is listed below the table). Flags are sentences: the table
# refers to them by number and lists them below it.
COMPACT_COLUMNS: tuple[tuple[str, Callable[[Configuration], str]], ...] = (
    ("configuration", lambda c: c.name),
    ("verdict", _verdict),
    ("Δ [95% interval]", _delta_with_interval),
    ("val loss", lambda c: format_float(c.mean("final_val_loss"))),
    ("± std", lambda c: "" if c.std("final_val_loss") is None else f"± {c.std('final_val_loss'):.3f}"),
    ("lr", lr_text),
)
COMPACT_KEEP = ("configuration", "verdict", "Δ [95% interval]")
COMPACT_DROP_FIRST = ("± std", "lr", "flags", "val loss")


def rich_table(configs: list[Configuration], title: str = "pileablate report"):
    """The compact table, fitted to the terminal's width (pileablate.widths), then its flags, numbered:
    numbers never wrap (a number broken over two lines reads as two)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from pileablate.widths import FittedTable

    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, _ in COMPACT_COLUMNS:
        text = header in ("configuration", "verdict")
        table.add_column(header, justify="left" if text else "right", no_wrap=header != "configuration",
                         overflow="fold")
    table.add_column("flags", style="yellow", no_wrap=True)
    notes: list[str] = []
    for config in configs:
        refs = []
        for flag in config.flags:
            notes.append(f"[{len(notes) + 1}] {config.name}: {flag}")
            refs.append(str(len(notes)))
        table.add_row(*[cell(config) for _, cell in COMPACT_COLUMNS], f"[{','.join(refs)}]" if refs else "",
                      style="bold" if config.is_baseline else None)

    def below(dropped: list[str]) -> list:
        """What a dropped column said, one line each (the flags are listed below anyway)."""
        cells = dict(COMPACT_COLUMNS)
        if "val loss" in dropped:  # the loss and its spread in one line
            dropped = [h for h in dropped if h != "± std"]
            cells["val loss"] = lambda c: format_mean_std(c.mean("final_val_loss"), c.std("final_val_loss"))
        return [Text(f"{header}: " + " · ".join(f"{c.name} {cells[header](c)}" for c in configs), style="dim")
                for header in dropped if header in cells]

    fitted = FittedTable(table, COMPACT_KEEP, COMPACT_DROP_FIRST, below)
    return Group(fitted, *(Text(note, style="yellow") for note in notes))


def markdown_grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (pipes in cells escaped)."""
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "|".join("---" for _ in headers) + "|", *map(line, rows)])


def markdown_table(configs: list[Configuration]) -> str:
    return markdown_grid([h for h, _ in DISPLAY_COLUMNS], display_rows(configs))


def run_markdown_table(runs: list[Run]) -> str:
    headers = ["run", "seed", "lr", "status", "tokens", "steps", "wall time", "train loss (tail)",
               "val loss", "best val", "bits/byte"]
    rows = []
    for r in runs:
        s = r.summary
        reason = f" ({s['stop_reason']})" if s.get("stop_reason") else ""
        rows.append([
            r.name, str(r.seed) if r.seed is not None else DASH, format_lr([r.lr] if r.lr else []),
            r.status + reason, format_count(s.get("tokens")), format_count(s.get("steps")),
            format_seconds(s.get("elapsed_s")), format_float(train_loss_tail(r)),
            format_float(s.get("final_val_loss")), format_float(s.get("best_val_loss")),
            format_float(s.get("val_bits_per_byte")),
        ])
    return markdown_grid(headers, rows)
