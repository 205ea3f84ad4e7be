"""A sweep's answer as tables: the Δ of each configuration at each point with its trend (terminal,
Markdown), the baseline along the axis, the report.md section, and scaling.csv (one row per point and
configuration)."""

from __future__ import annotations

from typing import Optional

from pileablate.report.aggregate import Configuration
from pileablate.report.fmt import DASH, format_count, format_mean_std, format_seconds
from pileablate.report.scaling import Point, Scaling, Series
from pileablate.report.table import markdown_grid, mods_text

SCALING_PLOTS = ("scaling_delta", "baseline_scaling")
SCALING_CAPTIONS = {
    "scaling_delta": "Δ vs baseline along the sweep (95% intervals as bands; filled markers significant)",
    "baseline_scaling": "The baseline's final validation loss along the sweep (its scaling curve)",
}

SCALING_CSV_COLUMNS = (
    "point", "axes", "settings", "configuration", "mods", "is_baseline", "x_measure", "x", "params_active",
    "tokens", "seeds", "final_val_loss", "final_val_loss_std", "delta_vs_baseline", "delta_ci_low",
    "delta_ci_high", "delta_p", "delta_p_holm", "delta_significant", "trend",
)


def axis_value(axis: str, value) -> str:
    """A point's value on one axis, as a column header: 'micro', '3M tokens', 'd_model=64'."""
    if axis == "preset":
        return str(value)
    if axis == "max_tokens":
        return f"{format_count(value)} tokens"
    if axis == "time_limit":
        return f"{format_seconds(value)} time"
    if axis == "max_steps":
        return f"{value} steps"
    return f"{axis}={value}"


def settings_text(point: Point) -> str:
    return ", ".join(axis_value(k, v) for k, v in point.values.items())


def delta_cell(config: Optional[Configuration]) -> str:
    d = config.delta if config is not None else None
    if d is None:
        return DASH
    interval = f" [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]" if d.ci is not None else ""
    return f"{d.delta:+.3f}{interval}{d.marker}"


def _columns(scaling: Scaling) -> list:
    """The first axis's values, in order: one column of the Δ table each."""
    first = scaling.axes[0]
    values: list = []
    for point in scaling.points:
        if point.values[first] not in values:
            values.append(point.values[first])
    return values


def delta_grid(scaling: Scaling) -> tuple[list[str], list[list[str]]]:
    first = scaling.axes[0]
    columns = _columns(scaling)
    headers = ["configuration", *(axis_value(first, v) for v in columns), "trend"]
    rows = []
    for series in scaling.series:
        cells = {p.values[first]: delta_cell(c) for p, c in series.entries}
        rows.append([series.name, *(cells.get(v, DASH) for v in columns), series.trend.kind if series.trend else ""])
    return headers, rows


BASELINE_HEADERS = ("point", "settings", "params (active)", "tokens per run", "params × tokens", "baseline val loss",
                    "val bits/byte", "seeds")


def baseline_rows(scaling: Scaling) -> list[list[str]]:
    rows = []
    for series in scaling.baselines:
        for point, base in series.entries:
            params = base.params_active if base else None
            tokens = base.mean("tokens") if base else None
            loss = format_mean_std(base.mean("final_val_loss"), base.std("final_val_loss")) if base else DASH
            bpb = format_mean_std(base.mean("val_bits_per_byte"), base.std("val_bits_per_byte")) if base else DASH
            rows.append([point.label, settings_text(point), format_count(params), format_count(tokens),
                         f"{params * tokens:.3g}" if params and tokens else DASH, loss, bpb,
                         ",".join(str(s) for s in base.seeds) if base else DASH])
    return rows


def _baseline_sentence(series: Series) -> Optional[str]:
    known = [(p, c) for p, c in series.entries if c is not None and c.mean("final_val_loss") is not None]
    if len(known) < 2:
        return None
    steps = ", ".join(f"{format_mean_std(c.mean('final_val_loss'), c.std('final_val_loss'))} at {p.label}"
                      for p, c in known)
    return f"- {series.name}: final validation loss {steps} (mean ± std over its seeds)."


def markdown_section(scaling: Scaling, comparisons: int, plot_dir: Optional[str] = "plots") -> list[str]:
    """`## Does it hold at scale?`: trends, the Δ table, the baseline along the axis, the plots."""
    headers, rows = delta_grid(scaling)
    axes = ", ".join(scaling.axes)
    lines = [
        "## Does it hold at scale?", "",
        f"A sweep over {axes}: {len(scaling.points)} points ({', '.join(p.label for p in scaling.points)}), each "
        "with the whole grid on the same seeds. A configuration is compared only with the baseline of its own "
        f"point; Holm's correction runs over all {comparisons} comparisons of this report. Along the first axis, Δ "
        f"is read against {scaling.axis_label}"
        + ("; the other axes give one series each." if len(scaling.axes) > 1 else "."), "",
        "### What the data shows", "",
    ]
    lines += [f"- {s.trend.sentence}" for s in scaling.series if s.trend]
    lines += ["", "A trend is claimed only as far as the 95% intervals allow: better or worse than the baseline "
              "where the Holm-corrected test says so, and a Δ growing or shrinking along the axis only where the "
              "intervals of two points do not overlap.", "",
              "### Δ vs baseline at each point", "", markdown_grid(headers, rows), "",
              "Δ [95% interval]; * significant (Holm), ? one seed (no interval).", "",
              "### The baseline along the axis", "", markdown_grid(BASELINE_HEADERS, baseline_rows(scaling)), ""]
    lines += [s for s in (_baseline_sentence(b) for b in scaling.baselines) if s] + [""]
    if plot_dir is not None:
        for stem in SCALING_PLOTS:
            lines += [f"![{SCALING_CAPTIONS[stem]}]({plot_dir}/{stem}.png)", ""]
    return lines


def rich_scaling(scaling: Scaling):
    from rich.table import Table

    headers, rows = delta_grid(scaling)
    table = Table(title="Does it hold at scale? Δ vs baseline [95% interval] at each point", header_style="bold")
    for header in headers:
        table.add_column(header, justify="left" if header in ("configuration", "trend") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def csv_rows(scaling: Scaling) -> list[dict]:
    trends = {id(c): s.trend.kind for s in scaling.series if s.trend for _, c in s.entries if c is not None}
    rows = []
    for point in scaling.points:
        for c in point.configurations:
            d = c.delta
            rows.append({
                "point": point.label, "axes": " ".join(scaling.axes), "settings": settings_text(point),
                "configuration": c.label, "mods": mods_text(c.mods), "is_baseline": str(c.is_baseline).lower(),
                "x_measure": scaling.measure, "x": _num(point.x(scaling.measure)),
                "params_active": _num(c.params_active), "tokens": _num(c.mean("tokens")),
                "seeds": " ".join(str(s) for s in c.seeds), "final_val_loss": _num(c.mean("final_val_loss")),
                "final_val_loss_std": _num(c.std("final_val_loss")),
                "delta_vs_baseline": "" if c.is_baseline or d is None else d.delta,
                "delta_ci_low": _num(d.ci[0] if d and d.ci else None),
                "delta_ci_high": _num(d.ci[1] if d and d.ci else None),
                "delta_p": _num(d.p if d else None), "delta_p_holm": _num(d.p_adjusted if d else None),
                "delta_significant": ("" if c.is_baseline or d is None or d.significant is None
                                      else str(d.significant).lower()),
                "trend": trends.get(id(c), ""),
            })
    return rows


def _num(x):
    return "" if x is None else x
