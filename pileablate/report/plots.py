"""Report figures. Each builder returns a matplotlib `Figure` (no pyplot, no global state, Agg
canvas), so tests count its curves and `save_figure` writes it as PNG and SVG.

What a researcher reads at a glance: one line per configuration (the mean over the seeds that count)
with a band from its lowest to its highest seed, the baseline black, thicker and drawn on top; the loss
axes zoomed to the part of training where configurations differ (the first fall from chance is the
same for all); Δ against the baseline over training, paired by seed, so that a gap opening or closing
at the budget's end shows; and the final Δ with every seed's paired difference as a dot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pileablate.report.aggregate import Configuration
from pileablate.report.fmt import format_count
from pileablate.report.runs import Run
from pileablate.report.tuning import Tuning

BASELINE_COLOR = (0.0, 0.0, 0.0, 1.0)
LINE_WIDTH = 1.8
BASELINE_WIDTH = 2.8
BAND_ALPHA = 0.15
# The loss plots start here (fraction of the longest x): before it every configuration falls from ln(vocab)
# alike, and a y axis holding that fall hides differences of a tenth.
ZOOM_FROM = 0.2


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colors(configs: Sequence[Configuration]) -> dict[str, tuple]:
    """One colour per configuration; the baseline black (tab10/tab20 have no black)."""
    from matplotlib import colormaps

    others = [c for c in configs if not c.is_baseline]
    cmap = colormaps["tab10" if len(others) <= 10 else "tab20"]
    colors = {c.name: cmap(i % cmap.N) for i, c in enumerate(others)}
    colors.update({c.name: BASELINE_COLOR for c in configs if c.is_baseline})
    return colors


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds < 180:
        return "s", 1.0
    if seconds < 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _count_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_count(v)))


# ---- curves over seeds ------------------------------------------------------------------------------

@dataclass
class Curve:
    """A quantity over training, across seeds: x, the mean, the lowest and highest seed, and n seeds."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


def _by_step(run: Run, key: str, x_key: str) -> dict[int, tuple[float, float]]:
    """step -> (x, value) over the logged steps that carry `key`."""
    return {int(row["step"]): (float(row[x_key]), float(row[key])) for row in run.metrics
            if row.get(key) is not None and row.get(x_key) is not None and row.get("step") is not None}


def _across(series: list[dict[int, tuple[float, float]]], interval: bool = False) -> Optional[Curve]:
    """Seeds' series on the steps they all logged (seeds of one configuration evaluate at the same steps).
    The band: lowest to highest seed, or with `interval` the mean's 95% t interval (a range with one seed)."""
    series = [s for s in series if s]
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
        return None
    xs = np.array([[s[step][0] for step in steps] for s in series]).mean(axis=0)
    ys = np.array([[s[step][1] for step in steps] for s in series])
    mean = ys.mean(axis=0)
    if interval and len(series) > 1:
        from scipy import stats

        half = stats.t.ppf(0.975, len(series) - 1) * ys.std(axis=0, ddof=1) / np.sqrt(len(series))
        return Curve(xs, mean, mean - half, mean + half, len(series))
    return Curve(xs, mean, ys.min(axis=0), ys.max(axis=0), len(series))


def loss_curve(config: Configuration, x_key: str = "tokens", key: str = "val_loss") -> Optional[Curve]:
    """The configuration's validation loss over training: mean and range over the runs that count."""
    return _across([_by_step(r, key, x_key) for r in config.counted])


def _paired_seeds(config: Configuration, baseline: Configuration) -> list[tuple[Run, Run]]:
    base = {r.seed: r for r in baseline.counted if r.seed is not None}
    return [(r, base[r.seed]) for r in config.counted if r.seed in base]


def delta_curve(config: Configuration, baseline: Configuration, key: str = "val_loss") -> Optional[Curve]:
    """Δ against the baseline over training, paired by seed: each seed's loss minus the baseline's of
    the same seed (same batches, same validation windows), at the steps both evaluated; the band is the
    mean's 95% interval (at the last evaluation the paired interval the report shows)."""
    diffs = []
    for mine, base in _paired_seeds(config, baseline):
        a, b = _by_step(mine, key, "tokens"), _by_step(base, key, "tokens")
        diffs.append({step: (a[step][0], a[step][1] - b[step][1]) for step in set(a) & set(b)})
    return _across(diffs, interval=True)


def paired_final_differences(config: Configuration, baseline: Configuration, key: str) -> list[float]:
    """Each seed's final `key` minus the baseline's of the same seed (the dots of the Δ panel)."""
    return [float(m.summary[key]) - float(b.summary[key]) for m, b in _paired_seeds(config, baseline)
            if m.summary.get(key) is not None and b.summary.get(key) is not None]


def _draw(ax, curve: Curve, color, label: str, baseline: bool = False) -> None:
    # The baseline on top of every configuration, thicker: the line all others are read against.
    z = 4 if baseline else 2
    ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=BAND_ALPHA, linewidth=0, zorder=z - 1)
    ax.plot(curve.x, curve.mean, color=color, linewidth=BASELINE_WIDTH if baseline else LINE_WIDTH,
            marker="o", markersize=3, label=label, zorder=z)


def _zoom(ax, curves: list[Curve]) -> None:
    """x from ZOOM_FROM of the way, y over what the curves and bands show there."""
    if not curves:
        return
    longest = max(float(c.x[-1]) for c in curves)
    start = ZOOM_FROM * longest
    shown = [v for c in curves for lo, hi, x in zip(c.low, c.high, c.x) if x >= start for v in (lo, hi)]
    if not shown:
        return
    lo, hi = min(shown), max(shown)
    pad = 0.08 * (hi - lo) if hi > lo else 0.05
    ax.set_xlim(start, longest * 1.02)
    ax.set_ylim(lo - pad, hi + pad)


def _label(config: Configuration, n: int) -> str:
    extra = " (baseline)" if config.is_baseline and config.name != "baseline" else ""
    extra += " (not comparable)" if config.not_comparable else ""
    return f"{config.name}{extra}, {n} seed{'s' if n != 1 else ''}"


def _loss_figure(configs: list[Configuration], x_key: str, xlabel: str, title: str, loss_unit: str,
                 scale: float = 1.0):
    """One line per configuration (mean over seeds, band lowest-highest seed), the baseline on top."""
    fig = _figure(9, 5.5)
    ax = fig.add_subplot()
    colors = _colors(configs)
    curves = []
    for config in sorted(configs, key=lambda c: c.is_baseline):  # the baseline last: on top
        curve = loss_curve(config, x_key)
        if curve is None:
            continue
        curve.x = curve.x / scale
        _draw(ax, curve, colors[config.name], _label(config, curve.n), config.is_baseline)
        curves.append(curve)
    _zoom(ax, curves)
    ax.set_xlabel(xlabel)
    if x_key == "tokens":
        _count_ticks(ax)
    ax.set_ylabel(f"validation loss ({loss_unit})")
    ax.set_title(f"{title}: mean over seeds, band from the lowest to the highest seed\n(from {ZOOM_FROM:.0%} of "
                 "training on: before it every configuration falls from chance alike)", fontsize="medium")
    ax.grid(alpha=0.3)
    if curves:
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: not labels[i].startswith("baseline"))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize="small", loc="upper right")
    return fig


def loss_vs_tokens_figure(configs: list[Configuration], loss_unit: str = "nats/token"):
    """Validation loss against tokens seen, one line per configuration."""
    return _loss_figure(configs, "tokens", "tokens seen", "Validation loss against tokens", loss_unit)


def loss_vs_time_figure(configs: list[Configuration], loss_unit: str = "nats/token"):
    """Validation loss against training time (the mean time of the seeds at each evaluation)."""
    longest = max((r.series("val_loss", "elapsed_s")[0] or [0.0])[-1] for c in configs for r in c.runs)
    unit, scale = _time_unit(longest)
    return _loss_figure(configs, "elapsed_s", f"training time ({unit})", "Validation loss against training time",
                        loss_unit, scale)


def runs_grid_figure(configs: list[Configuration], loss_unit: str = "nats/token"):
    """Small multiples: one panel per configuration, each seed a thin line, its mean bold, the baseline's
    mean and band in every panel; one zoomed y axis for all, so a gap reads the same everywhere."""
    baseline = next((c for c in configs if c.is_baseline), None)
    others = [c for c in configs if not c.is_baseline] or list(configs)
    cols = min(3, len(others))
    rows = -(-len(others) // cols)
    fig = _figure(4.0 * cols, 3.0 * rows + 0.5)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    colors = _colors(configs)
    base_curve = loss_curve(baseline) if baseline is not None else None
    curves = [base_curve] if base_curve is not None else []
    for i, config in enumerate(others):
        ax = axes[i // cols][i % cols]
        if base_curve is not None and config is not baseline:
            _draw(ax, base_curve, BASELINE_COLOR, f"baseline, {base_curve.n} seeds", baseline=True)
        for run in config.runs:
            xs, ys = run.series("val_loss")
            counts = run.name not in config.excluded
            ax.plot(xs, ys, color=colors[config.name] if counts else "firebrick", linewidth=0.7,
                    alpha=0.6 if counts else 0.9, linestyle="-" if counts else "--", zorder=1)
        curve = loss_curve(config)
        if curve is not None:
            ax.plot(curve.x, curve.mean, color=colors[config.name], linewidth=LINE_WIDTH, zorder=3)
            curves.append(curve)
        excluded = f", {len(config.excluded)} not counted (dashed red)" if config.excluded else ""
        ax.set_title(f"{config.name} ({len(config.counted)} seeds{excluded})", fontsize="medium")
        ax.grid(alpha=0.3)
    for j in range(len(others), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    _zoom(axes[0][0], curves)
    for col in range(cols):
        last = max(i for i in range(len(others)) if i % cols == col)
        ax = axes[last // cols][col]
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("tokens seen")
        _count_ticks(ax)
    for row in axes:
        row[0].set_ylabel(f"val loss ({loss_unit})")
    fig.suptitle("Each configuration against the baseline (black: its mean, band lowest-highest seed); thin: "
                 "each seed", fontsize="medium")
    return fig


def _margin_band(ax, margin: Optional[float]) -> None:
    ax.axhline(0.0, color="black", linewidth=1, zorder=1)
    if margin:
        ax.axhspan(-margin, margin, color="gray", alpha=0.15, linewidth=0, label=f"±{margin:g}: no effect band")


def delta_over_training_figure(configs: list[Configuration], margin: Optional[float] = None,
                               key: str = "val_loss", unit: str = "nats/token"):
    """Δ against the baseline over training, paired by seed, one line per configuration (mean over
    seeds, band lowest-highest seed): is a gap opening or closing when the budget ends?"""
    fig = _figure(9, 5.5)
    ax = fig.add_subplot()
    baseline = next((c for c in configs if c.is_baseline), None)
    colors = _colors(configs)
    curves = []
    for config in configs:
        if config.is_baseline or baseline is None or config.not_comparable:
            continue
        curve = delta_curve(config, baseline, key)
        if curve is None:
            continue
        _draw(ax, curve, colors[config.name], f"{config.name}, {curve.n} paired seeds")
        curves.append(curve)
    _zoom(ax, curves)
    _margin_band(ax, margin)
    ax.set_xlabel("tokens seen")
    _count_ticks(ax)
    ax.set_ylabel(f"Δ validation loss vs baseline ({unit}; negative is better)")
    ax.set_title("Δ against the baseline over training, paired by seed: mean and its 95% interval (per "
                 "comparison)", fontsize="medium")
    ax.grid(alpha=0.3)
    if curves or margin:
        ax.legend(fontsize="small", loc="best")
    return fig


def _delta_intervals(ax, configs: list[Configuration], key: str, margin: Optional[float] = None) -> None:
    """Δ vs baseline per configuration with its 95% interval as an error bar (none when untested), each
    seed's paired difference a dot, its verdict written above it, and the ±margin band of "no effect"."""
    colors = _colors(configs)
    baseline = next((c for c in configs if c.is_baseline), None)
    others = [c for c in configs if not c.is_baseline]
    ticks = []
    for i, c in enumerate(others):
        d = c.delta
        seeds = paired_final_differences(c, baseline, key) if baseline is not None and d is not None else []
        ticks.append(f"{c.name}\nn={len(seeds) or len(c.counted)}")
        if d is None:
            ax.annotate("not comparable" if c.not_comparable else "no Δ", (i, 0.0), ha="center", va="bottom",
                        fontsize="small", color="gray")
            continue
        if seeds:
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.scatter(np.asarray(jitter) + i, seeds, color=colors[c.name], s=14, alpha=0.6, zorder=2,
                       edgecolor="none")
        yerr = None if d.ci is None else [[d.delta - d.ci[0]], [d.ci[1] - d.delta]]
        ax.errorbar([i], [d.delta], yerr=yerr, fmt="o", color="black", capsize=6, markersize=6, zorder=3)
        verdict = f"\n{c.verdict.short}" if c.verdict is not None else ""
        top = max([d.ci[1] if d.ci else d.delta, *seeds])
        ax.annotate(f"{d.delta:+.3f}{d.marker}{verdict}", (i, top), textcoords="offset points", xytext=(0, 4),
                    ha="center", va="bottom", fontsize="small")
    ax.margins(x=0.1, y=0.25)  # room for the labels above the intervals
    _margin_band(ax, margin)
    if margin:
        ax.legend(fontsize="small", loc="lower right")
    ax.set_xticks(range(len(others)), ticks)
    ax.set_ylabel("Δ vs baseline (negative is better)")
    ax.set_xlabel(DELTA_LEGEND, fontsize="x-small")
    ax.set_title("Final Δ against the baseline: mean with its 95% interval (black), each seed's paired "
                 "difference (dots), n seeds, verdict", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)


# Why an interval can exclude zero without a star: the reader's first question about this panel.
DELTA_LEGEND = ("error bars: 95% interval of that comparison alone;\n* significant after Holm's correction over all "
                "comparisons\n(and every look of a sequential study), so an interval clear of 0 may still lack its star")


def final_delta_figure(configs: list[Configuration], key: str = "final_val_loss", margin: Optional[float] = None):
    """Δ to the baseline per configuration: its 95% interval, every seed's paired difference, n and verdict.
    (No bars of the loss itself: bars start at zero and hide differences of a tenth.)"""
    fig = _figure(max(8.0, 1.5 * len(configs) + 2), 5.2)
    _delta_intervals(fig.add_subplot(), configs, key, margin)
    return fig


def lr_sensitivity_figure(tuning: list[Tuning], configs: Sequence[Configuration] = ()):
    """Final tuning loss against learning rate (log x, every rate tried labelled), one curve per
    configuration: the mean over tuning seeds, each seed a dot, the chosen rate a star (and in the legend);
    rates at which a seed failed are left out. A configuration keeps the colour it has in the other figures."""
    from matplotlib import colormaps
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = _figure(8, 5)
    ax = fig.add_subplot()
    cmap = colormaps["tab10" if len(tuning) <= 10 else "tab20"]
    colors = _colors(list(configs)) if configs else {}
    tried: set[float] = set()
    for i, t in enumerate(tuning):
        color = colors.get(t.name, cmap(i % cmap.N))
        lrs = [lr for lr in t.lrs if t.mean_loss(lr) is not None]
        tried.update(t.lrs)
        chosen = f" (chosen {t.chosen:g})" if t.chosen is not None else ""
        ax.plot(lrs, [t.mean_loss(lr) for lr in lrs], color=color, marker="o", linewidth=1.6,
                label=f"{t.name}{chosen}")
        for lr in lrs:
            seeds = t.losses[lr]
            if len(seeds) > 1:
                ax.scatter([lr] * len(seeds), seeds, color=color, s=8, alpha=0.5)
        if t.chosen is not None:
            ax.scatter([t.chosen], [t.mean_loss(t.chosen)], color=color, marker="*", s=180, edgecolor="black", zorder=3)
    ax.set_xscale("log")
    if tried:  # a log axis labels only powers of ten: label every rate tried, and only those
        rates = sorted(tried)
        ax.xaxis.set_major_locator(FixedLocator(rates))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{lr:g}" for lr in rates])
    ax.set_xlabel("peak learning rate (every rate tried)")
    ax.set_ylabel("final loss on the tuning windows (held out of validation)")
    ax.set_title("Learning-rate sensitivity (star: the chosen rate)")
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def schedule_curve(run: Run) -> Optional[tuple[np.ndarray, list[float]]]:
    """(tokens, lr) from step 0, computed from the run's schedule component and budget (the logged rows
    start at the first log step, after part of a warmup); None for a schedule that is not registered
    here (a user's file the report was not given with --mods-file)."""
    from types import SimpleNamespace

    from pileablate.errors import UserError
    from pileablate.train.optimizer import make_schedule
    from pileablate.train.schedule import budget_progress

    train = run.config.get("train") or {}
    per_step = run.config.get("tokens_per_step")
    steps = int(run.summary.get("steps") or 0)
    if not per_step or not steps or train.get("lr") is None:
        return None
    # What a schedule component reads of a run's settings (docs/modifications.md).
    settings = SimpleNamespace(mods=tuple(run.config.get("mods") or train.get("mods") or ()), lr=float(train["lr"]),
                               min_lr=float(train.get("min_lr") or 0.0), warmup_steps=int(train.get("warmup_steps") or 0),
                               mod_options=tuple(train.get("mod_options") or ()))
    try:
        schedule = make_schedule(settings)
    except (UserError, AttributeError, TypeError, ValueError):
        return None
    if schedule.kind != run.config.get("schedule"):  # not the schedule the run recorded: draw what it logged
        return None
    logged = [(0.0, 0.0)] + [(float(r["step"]), float(r["elapsed_s"])) for r in run.metrics
                             if r.get("step") is not None and r.get("elapsed_s") is not None]
    # Every step of a short run; for a long one its first 2,000 (a warmup) and 2,000 spread over the rest.
    at = np.unique(np.concatenate([np.arange(min(steps, 2000)), np.linspace(0, steps - 1, 2000).astype(int)]))
    elapsed = np.interp(at, [s for s, _ in logged], [e for _, e in logged])
    lrs = [schedule(int(s), budget_progress(int(s), int(s) * per_step, float(e), train.get("max_steps"),
                                            train.get("max_tokens"), train.get("time_limit")))
           for s, e in zip(at, elapsed)]
    return at * per_step, lrs


def lr_schedule_figure(configs: list[Configuration]):
    """Learning rate against tokens from step 0: one curve per distinct schedule, labelled with every
    configuration that follows it (seeds and model-only modifications share the baseline's)."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    colors = _colors(configs)
    schedules: dict[tuple, list[Configuration]] = {}
    for config in configs:
        run = config.runs[0]
        curve = schedule_curve(run) or run.series("lr", "tokens")  # a user's schedule: as logged
        if len(curve[0]):
            schedules.setdefault((tuple(curve[0]), tuple(round(v, 15) for v in curve[1])), []).append(config)
    for (xs, lrs), members in schedules.items():
        ax.plot(xs, lrs, color=colors[members[0].name], linewidth=1.8, label=", ".join(c.name for c in members))
    ax.set_xlabel("tokens seen")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    _count_ticks(ax)
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedules, from step 0")
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
    return {
        "loss_vs_tokens": loss_vs_tokens_figure(configs),
        "delta_over_training": delta_over_training_figure(configs, margin, *(
            ("val_bits_per_byte", "bits/byte") if delta_key == "val_bits_per_byte" else ("val_loss", "nats/token"))),
        "loss_vs_time": loss_vs_time_figure(configs),
        "runs_grid": runs_grid_figure(configs),
        "final_val_loss": final_delta_figure(configs, delta_key, margin),
        "lr_schedule": lr_schedule_figure(configs),
        **tuned,
    }
