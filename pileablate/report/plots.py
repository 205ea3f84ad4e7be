"""Report figures. Each builder returns a matplotlib `Figure` (no pyplot, no global state, Agg
canvas), so tests count its curves and `save_figure` writes it as PNG and SVG.

Colours follow the configuration (seeds of one configuration share a colour; the baseline is black and
drawn first, under the others); each seed is a thin line: raw train loss faint, its smoothed curve thin,
validation loss (the number the report compares) bold with markers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

from pileablate.report.aggregate import Configuration
from pileablate.report.fmt import format_count
from pileablate.report.runs import Run
from pileablate.report.stats import smooth
from pileablate.report.tuning import Tuning

RAW_ALPHA = 0.2
BASELINE_COLOR = (0.0, 0.0, 0.0, 1.0)
TRAIN_WIDTH = 0.9        # a seed's smoothed train loss: thin
VAL_WIDTH = 2.2          # validation, what the report compares: highlighted


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colors(configs: list[Configuration]) -> dict[str, tuple]:
    """One colour per configuration; the baseline black (tab10/tab20 have no black)."""
    from matplotlib import colormaps

    others = [c for c in configs if not c.is_baseline]
    cmap = colormaps["tab10" if len(others) <= 10 else "tab20"]
    colors = {c.name: cmap(i % cmap.N) for i, c in enumerate(others)}
    colors.update({c.name: BASELINE_COLOR for c in configs if c.is_baseline})
    return colors


def _run_color(configs: list[Configuration]) -> dict[str, tuple]:
    colors = _colors(configs)
    return {run.name: colors[c.name] for c in configs for run in c.runs}


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds < 180:
        return "s", 1.0
    if seconds < 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _tight_ylim(ax, values: list[float], upper_quantile: float = 0.97) -> None:
    """A y-range over `values` (callers leave out the first steps' loss, about ln(vocab), where the
    part in which runs differ should be readable), ignoring the top 3% of spikes."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return
    lo = finite[0]
    hi = finite[min(len(finite) - 1, int(upper_quantile * (len(finite) - 1)))]
    if hi <= lo:
        return
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


def _count_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_count(v)))


def _draw_run(ax, run: Run, color, x: str, scale: float = 1.0, label: Optional[str] = None) -> list[float]:
    """Raw train (faint), smoothed train (thin), validation (bold, markers): up to three curves."""
    shown: list[float] = []
    xs, ys = run.series("train_loss", x)
    if xs:
        xs = [v / scale for v in xs]
        ax.plot(xs, ys, color=color, alpha=RAW_ALPHA, linewidth=0.6)
        smoothed = smooth(ys)
        ax.plot(xs, smoothed, color=color, linewidth=TRAIN_WIDTH, label=label)
        # The tail of the smoothed curve sets the y-range: raw spikes should not.
        shown.extend(smoothed[len(smoothed) // 10:])
    vx, vy = run.series("val_loss", x)
    if vx:
        ax.plot([v / scale for v in vx], vy, color=color, marker="o", markersize=4, linewidth=VAL_WIDTH)
        shown.extend(vy[len(vy) // 10:])
    return shown


def _style_legend(ax, configs: list[Configuration], colors: dict[str, tuple]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[c.name], linewidth=VAL_WIDTH,
                      label=c.name + (" (baseline)" if c.is_baseline and c.name != "baseline" else ""))
               for c in configs]
    handles += [
        Line2D([], [], color="gray", alpha=RAW_ALPHA, linewidth=0.6, label="train, one seed (raw)"),
        Line2D([], [], color="gray", linewidth=TRAIN_WIDTH, label="train, one seed (smoothed)"),
        Line2D([], [], color="gray", marker="o", markersize=4, linewidth=VAL_WIDTH, label="validation, one seed"),
    ]
    ax.legend(handles=handles, fontsize="small", ncols=2 if len(handles) > 8 else 1, loc="upper right")


def _all_runs_figure(configs: list[Configuration], x_key: str, xlabel: str, title: str,
                     loss_unit: str, scale: float = 1.0):
    """Every run's train and validation loss on one axes, against `x_key` of its metrics."""
    fig = _figure(9, 5.5)
    ax = fig.add_subplot()
    colors = _run_color(configs)
    shown: list[float] = []
    # The baseline first (underneath: a configuration equal to it stays visible), in black.
    for config in sorted(configs, key=lambda c: not c.is_baseline):
        for run in config.runs:
            shown += _draw_run(ax, run, colors[run.name], x_key, scale)
    ax.set_xlabel(xlabel)
    if x_key == "tokens":
        _count_ticks(ax)
    ax.set_ylabel(f"loss ({loss_unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _tight_ylim(ax, shown)
    _style_legend(ax, configs, _colors(configs))
    return fig


def loss_vs_tokens_figure(configs: list[Configuration], loss_unit: str = "nats/token"):
    """All runs' train and validation loss against tokens seen, on one axes."""
    return _all_runs_figure(configs, "tokens", "tokens seen", "Loss against tokens (all runs)", loss_unit)


def loss_vs_time_figure(configs: list[Configuration], loss_unit: str = "nats/token"):
    """All runs' train and validation loss against wall-clock time."""
    longest = max((r.series("train_loss", "elapsed_s")[0] or [0.0])[-1] for c in configs for r in c.runs)
    unit, scale = _time_unit(longest)
    return _all_runs_figure(configs, "elapsed_s", f"wall-clock time ({unit})",
                            "Loss against wall-clock time (all runs)", loss_unit, scale)


def runs_grid_figure(configs: list[Configuration], loss_unit: str = "nats/token"):
    """One panel per run (shared axes) with its raw, smoothed and validation curves."""
    runs = [r for c in configs for r in c.runs]
    cols = min(4, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig = _figure(3.2 * cols, 2.6 * rows + 0.4)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    colors = _run_color(configs)
    excluded = {id(r) for c in configs for r in c.runs if r.name in c.excluded}
    full: list[float] = []
    for i, run in enumerate(runs):
        ax = axes[i // cols][i % cols]
        _draw_run(ax, run, colors[run.name], "tokens")
        full += smooth(run.series("train_loss")[1]) + run.series("val_loss")[1]
        counts = id(run) not in excluded
        ax.set_title(run.name + ("" if counts else " (does not count)"), fontsize="medium",
                     color="black" if counts else "firebrick")
        ax.grid(alpha=0.3)
    for j in range(len(runs), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    # Panels show each whole curve (the fall from ln(vocab) is the learning); the all-runs figures
    # zoom on the part where runs differ.
    _tight_ylim(axes[0][0], full, upper_quantile=1.0)
    for col in range(cols):
        # The lowest visible panel of each column carries the x labels (the last row may be short).
        last = max(i for i in range(len(runs)) if i % cols == col)
        ax = axes[last // cols][col]
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("tokens seen")
        _count_ticks(ax)
    for row in axes:
        row[0].set_ylabel(f"loss ({loss_unit})")
    fig.suptitle("Each run: train (faint raw, thin smoothed) and validation (bold, markers)")
    return fig


def _loss_bars(ax, configs: list[Configuration], key: str, label: str) -> None:
    """Mean over the seeds that count, error bar one standard deviation, seeds as dots."""
    colors = _colors(configs)
    means = [c.mean(key) for c in configs]
    stds = [c.std(key) or 0.0 for c in configs]
    heights = [m if m is not None else 0.0 for m in means]
    seeded = any(c.std(key) is not None for c in configs)
    # No error bar at all with one seed: a zero-width bar would read as "no noise".
    ax.bar(range(len(configs)), heights, yerr=stds if seeded else None, capsize=4,
           color=[colors[c.name] for c in configs], edgecolor="black", linewidth=0.6)
    for i, c in enumerate(configs):
        values = c.values(key)
        if len(values) > 1:
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    base = next((c for c in configs if c.is_baseline), None)
    if base is not None and base.mean(key) is not None:
        ax.axhline(base.mean(key), color="gray", linestyle=":", linewidth=1, label="baseline")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_xticks(range(len(configs)), [c.name for c in configs], rotation=30, ha="right")
    ax.set_ylabel(label)
    ax.set_xlabel("bars: mean ±1 std over the seeds that count" if seeded else "one seed each: no error bars")
    ax.set_title("Final validation loss per configuration")
    # Bars from zero: a bar's height is its value. The differences are read on the Δ panel beside it.
    present = [m + sd for m, sd in zip(means, stds) if m is not None]
    ax.set_ylim(0.0, 1.08 * max(present) if present else 1.0)
    ax.grid(axis="y", alpha=0.3)


def _delta_intervals(ax, configs: list[Configuration], margin: Optional[float] = None) -> None:
    """Δ vs baseline per configuration with its 95% interval as an error bar (none when untested), its
    verdict written above it, and the ±margin band of "no effect"."""
    colors = _colors(configs)
    others = [c for c in configs if not c.is_baseline]
    for i, c in enumerate(others):
        d = c.delta
        if d is None:
            continue
        yerr = None if d.ci is None else [[d.delta - d.ci[0]], [d.ci[1] - d.delta]]
        ax.errorbar([i], [d.delta], yerr=yerr, fmt="o", color=colors[c.name], capsize=5, markersize=6)
        verdict = f"\n{c.verdict.short}" if c.verdict is not None else ""
        ax.annotate(f"{d.delta:+.3f}{d.marker}{verdict}", (i, d.ci[1] if d.ci else d.delta),
                    textcoords="offset points", xytext=(0, 4), ha="center", va="bottom", fontsize="small")
    ax.margins(x=0.15, y=0.25)  # room for the labels above the intervals
    ax.axhline(0.0, color="gray", linestyle=":", linewidth=1)
    if margin:
        ax.axhspan(-margin, margin, color="gray", alpha=0.15, linewidth=0, label=f"±{margin:g}: no effect band")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_xticks(range(len(others)), [c.name for c in others], rotation=30, ha="right")
    ax.set_ylabel("Δ vs baseline (negative is better)")
    ax.set_xlabel(DELTA_LEGEND, fontsize="x-small")
    ax.set_title("Difference to the baseline, with its verdict")
    ax.grid(axis="y", alpha=0.3)


# Why an interval can exclude zero without a star: the reader's first question about this panel.
DELTA_LEGEND = ("error bars: 95% interval of that comparison alone;\n* significant after Holm's correction over all "
                "comparisons\n(and every look of a sequential study), so an interval clear of 0 may still lack its star")


def final_val_bar_figure(configs: list[Configuration], key: str = "final_val_loss",
                         label: str = "final validation loss (nats/token)", margin: Optional[float] = None):
    """Left: one bar per configuration (mean over the seeds that count, ±1 std, seeds as dots).
    Right: Δ to the baseline with its 95% confidence interval as error bars."""
    fig = _figure(max(9.0, 1.6 * len(configs) + 3), 4.8)
    bars, deltas = fig.subplots(1, 2, width_ratios=[len(configs), max(1, len(configs) - 1)])
    _loss_bars(bars, configs, key, label)
    _delta_intervals(deltas, configs, margin)
    return fig


def lr_sensitivity_figure(tuning: list[Tuning], configs: Sequence[Configuration] = ()):
    """Final tuning loss against learning rate (log x), one curve per configuration: the mean over
    tuning seeds, each seed a dot, the chosen rate a star; rates at which a seed failed are left out.
    A configuration keeps the colour it has in the other figures."""
    from matplotlib import colormaps

    fig = _figure(8, 5)
    ax = fig.add_subplot()
    cmap = colormaps["tab10" if len(tuning) <= 10 else "tab20"]
    colors = _colors(list(configs)) if configs else {}
    for i, t in enumerate(tuning):
        color = colors.get(t.name, cmap(i % cmap.N))
        lrs = [lr for lr in t.lrs if t.mean_loss(lr) is not None]
        ax.plot(lrs, [t.mean_loss(lr) for lr in lrs], color=color, marker="o", linewidth=1.6, label=t.name)
        for lr in lrs:
            seeds = t.losses[lr]
            if len(seeds) > 1:
                ax.scatter([lr] * len(seeds), seeds, color=color, s=8, alpha=0.5)
        if t.chosen is not None:
            ax.scatter([t.chosen], [t.mean_loss(t.chosen)], color=color, marker="*", s=180, edgecolor="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("final loss on the tuning windows (held out of validation)")
    ax.set_title("Learning-rate sensitivity (star: chosen rate)")
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def lr_schedule_figure(configs: list[Configuration]):
    """Learning rate against tokens: one curve per distinct schedule, labelled with every
    configuration that follows it (seeds and model-only modifications share the baseline's)."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    colors = _colors(configs)
    schedules: dict[tuple, list[Configuration]] = {}
    for config in configs:
        xs, lrs = config.runs[0].series("lr", "tokens")
        if xs:
            schedules.setdefault((tuple(xs), tuple(round(v, 15) for v in lrs)), []).append(config)
    for (xs, lrs), members in schedules.items():
        ax.plot(xs, lrs, color=colors[members[0].name], linewidth=1.8,
                label=", ".join(c.name for c in members))
    ax.set_xlabel("tokens seen")
    _count_ticks(ax)
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedules")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{stem}.{ext}"
        tmp = path.with_name(f".{path.name}.tmp")  # atomic: an interrupted report leaves no torn image
        fig.savefig(tmp, format=ext, dpi=120 if ext == "png" else None)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def build_figures(configs: list[Configuration], delta_key: str = "final_val_loss", tuning: Sequence[Tuning] = (),
                  margin: Optional[float] = None) -> dict:
    """name -> Figure, every figure of the report (lr_sensitivity only with tuning runs, the others
    only with runs to compare)."""
    tuned = {"lr_sensitivity": lr_sensitivity_figure(list(tuning), configs)} if tuning else {}
    if not configs:
        return tuned
    if delta_key == "val_bits_per_byte":
        bar = final_val_bar_figure(configs, "val_bits_per_byte", "final validation bits per byte", margin)
    else:
        bar = final_val_bar_figure(configs, margin=margin)
    return {
        "loss_vs_tokens": loss_vs_tokens_figure(configs),
        "loss_vs_time": loss_vs_time_figure(configs),
        "runs_grid": runs_grid_figure(configs),
        "final_val_loss": bar,
        "lr_schedule": lr_schedule_figure(configs),
        **tuned,
    }
