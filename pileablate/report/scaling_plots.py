"""A sweep's figures: Δ against the axis (one line per configuration, 95% intervals as bands, zero
line; one panel per combination of the other axes) and the baseline's loss against the axis.

The x axis is the baseline's parameters or tokens at each point (or the context length), on a log
scale; when a point lacks that figure, the points are spaced evenly and named instead.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from pileablate.report.fmt import format_count
from pileablate.report.plots import _count_ticks, _figure
from pileablate.report.scaling import Point, Scaling, Series


def _xs(scaling: Scaling, points: Sequence[Point]) -> tuple[list[float], bool]:
    """(x per point, numeric?): the measure where every point has a positive one, else 0, 1, 2 ..."""
    xs = [p.x(scaling.measure) for p in points]
    if all(x is not None and x > 0 for x in xs) and len(set(xs)) == len(xs):
        return [float(x) for x in xs], True
    return [float(i) for i in range(len(points))], False


def _style_x(ax, scaling: Scaling, points: Sequence[Point], xs: list[float], numeric: bool) -> None:
    if numeric:
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{format_count(x)}\n{p.label}" for x, p in zip(xs, points)])
        ax.minorticks_off()
        ax.set_xlabel(scaling.axis_label)
    else:
        ax.set_xticks(xs, [p.label for p in points])
        ax.set_xlabel("sweep point")


def _panels(fig, count: int):
    cols = min(3, count)
    rows = math.ceil(count / cols)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return flat[:count]


def _slices(scaling: Scaling) -> list[tuple]:
    return [b.slice for b in scaling.baselines]


def _draw_series(ax, series: Series, x_of: dict, color) -> None:
    pts = [(x_of[p.label], c.delta) for p, c in series.entries if c is not None and c.delta is not None]
    if not pts:
        return
    ax.plot([x for x, _ in pts], [d.delta for _, d in pts], color=color, linewidth=1.8, label=series.label)
    banded = [(x, d) for x, d in pts if d.ci is not None]
    if len(banded) > 1:
        ax.fill_between([x for x, _ in banded], [d.ci[0] for _, d in banded], [d.ci[1] for _, d in banded],
                        color=color, alpha=0.18, linewidth=0)
    for x, d in pts:
        if d.ci is not None:
            ax.plot([x, x], list(d.ci), color=color, linewidth=1.0, alpha=0.7)
        filled = bool(d.significant)
        ax.plot([x], [d.delta], marker="o", markersize=7, color=color,
                markerfacecolor=color if filled else "white", markeredgewidth=1.5)


def scaling_delta_figure(scaling: Scaling):
    """Δ vs baseline against the axis: a line per configuration, its 95% intervals as a band (and a
    bar at each point), filled markers where significant (Holm), the zero line."""
    from matplotlib import colormaps

    slices = _slices(scaling)
    fig = _figure(min(18.0, 6.5 * min(3, len(slices))), 4.8 * math.ceil(len(slices) / 3))
    labels = list(dict.fromkeys(s.label for s in scaling.series))
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colors = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
    for ax, values, base in zip(_panels(fig, len(slices)), slices, scaling.baselines):
        points = [p for p, _ in base.entries]
        xs, numeric = _xs(scaling, points)
        x_of = {p.label: x for p, x in zip(points, xs)}
        for series in (s for s in scaling.series if s.slice == values):
            _draw_series(ax, series, x_of, colors[series.label])
        ax.axhline(0.0, color="gray", linestyle=":", linewidth=1.2)
        _style_x(ax, scaling, points, xs, numeric)
        ax.set_ylabel("Δ vs baseline (negative is better)")
        title = ", ".join(f"{k}={v}" for k, v in values)
        ax.set_title(title or "Δ vs baseline along the sweep", fontsize="medium")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle("Does it hold at scale? Δ with 95% intervals (filled: significant after Holm)")
    return fig


def baseline_scaling_figure(scaling: Scaling, key: str = "final_val_loss"):
    """The baseline's final validation loss against the axis: mean ± 1 std, each seed a dot."""
    from matplotlib import colormaps

    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    cmap = colormaps["tab10"]
    numeric_all = True
    for i, series in enumerate(scaling.baselines):
        points = [p for p, _ in series.entries]
        xs, numeric = _xs(scaling, points)
        numeric_all &= numeric
        known = [(x, c) for x, (_, c) in zip(xs, series.entries) if c is not None and c.mean(key) is not None]
        if not known:
            continue
        color = cmap(i % cmap.N)
        ax.errorbar([x for x, _ in known], [c.mean(key) for _, c in known],
                    yerr=[c.std(key) or 0.0 for _, c in known], color=color, marker="o", capsize=4,
                    linewidth=1.8, label=series.name)
        for x, c in known:
            values = c.values(key)
            if len(values) > 1:
                ax.scatter([x] * len(values), values, color=color, s=10, zorder=3, alpha=0.6)
    first = [p for p, _ in scaling.baselines[0].entries] if scaling.baselines else []
    if first:
        xs, numeric = _xs(scaling, first)
        if len(scaling.baselines) == 1:
            _style_x(ax, scaling, first, xs, numeric)
        elif numeric_all:
            ax.set_xscale("log")
            ax.set_xlabel(scaling.axis_label)
            if scaling.measure != "seq_len":
                _count_ticks(ax)
    ax.set_ylabel("baseline final validation loss (nats/token)")
    ax.set_title("The baseline along the sweep (mean ± 1 std over seeds; dots: seeds)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def scaling_figures(scaling: Optional[Scaling]) -> dict:
    if scaling is None:
        return {}
    return {"scaling_delta": scaling_delta_figure(scaling), "baseline_scaling": baseline_scaling_figure(scaling)}
