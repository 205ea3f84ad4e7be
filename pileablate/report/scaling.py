"""A sweep's runs (`ablate --sweep`): grouped by point first, so that no mean or test mixes two
points, and read along the first axis: each modification's Δ at every point with its trend, and the
baseline's own loss against the axis (its scaling curve).

A run's point comes from the `point.json` of its folder (`Run.point`), never from guessing. Holm's
correction runs over every comparison at every point: the report makes all of those claims at once.
Along the first axis Δ is plotted against the baseline's parameters (size axes), its tokens (budget
axes) or the context length; further axes give one series (and panel) per combination of their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from pileablate.errors import UserError
from pileablate.report.aggregate import Configuration, group_runs
from pileablate.report.runs import Run
from pileablate.report.stats import with_holm
from pileablate.report.trend import Trend, trend

# What Δ is plotted against, by the first axis (kept in step with pileablate.ablate.axes.AXES, which
# the report does not import: a report needs no torch and no ablate).
MEASURE = {"preset": "parameters", "n_layer": "parameters", "n_head": "parameters", "d_model": "parameters",
           "seq_len": "seq_len", "max_tokens": "tokens", "max_steps": "tokens", "time_limit": "tokens"}
# A modification's option (NAME.KEY) is plotted against its own value.
MEASURE_TEXT = {"parameters": ("parameters (the baseline's, active)", "with model size"),
                "value": ("the swept option's value", "with the option"),
                "tokens": ("tokens per run (the baseline's)", "with training tokens"),
                "seq_len": ("context length (tokens)", "with context length")}
PRESET_ORDER = ("nano", "micro", "mini", "small", "medium")


@dataclass
class Point:
    """One point of the sweep and its configurations."""

    label: str
    axes: list[str]
    values: dict
    configurations: list[Configuration] = field(default_factory=list)

    @property
    def baseline(self) -> Optional[Configuration]:
        return next((c for c in self.configurations if c.is_baseline), None)

    def x(self, measure: str) -> Optional[float]:
        """Where the point lies on the plot's axis: the baseline's parameters or tokens, or seq_len."""
        base = self.baseline or (self.configurations[0] if self.configurations else None)
        if base is None:
            return None
        if measure == "parameters":
            return base.params_active
        if measure == "tokens":
            return base.mean("tokens")
        if measure == "value":
            value = self.values.get(self.axes[0]) if self.axes else None
            return float(value) if isinstance(value, (int, float)) else None
        seq = [(r.config.get("model") or {}).get("seq_len") for r in base.runs]
        return float(seq[0]) if seq and seq[0] else None

    def slice_of(self, first: str) -> tuple:
        """The values of every axis but the first: the series this point belongs to."""
        return tuple((k, v) for k, v in self.values.items() if k != first)


def _sort_key(point: Point) -> tuple:
    key = []
    for axis in point.axes:
        value = point.values.get(axis)
        if axis == "preset":
            key.append(PRESET_ORDER.index(value) if value in PRESET_ORDER else len(PRESET_ORDER))
        else:
            key.append(float(value) if isinstance(value, (int, float)) else 0.0)
    return tuple(key)


def recorded(run: Run, axis: str):
    """The value of a sweep axis that the run's config.json records (None when it has no config)."""
    if axis == "preset":
        return run.config.get("preset")
    if axis in ("max_tokens", "max_steps", "time_limit"):
        return (run.config.get("train") or {}).get(axis)
    if "." in axis:  # a modification's option: what the run was given (a run without that modification: None)
        given = dict(o.split("=", 1) for o in (run.config.get("train") or {}).get("mod_options") or ())
        return given.get(axis)  # as text: "lion.beta2=0.95" records 0.95 as written
    return (run.config.get("model") or {}).get(axis)


def check_point(run: Run) -> None:
    """A run lies in the folder of the point it was made for: its config.json records the point's values
    (a tuning run's budget is its share of the point's, --tune-budget)."""
    for axis, value in (run.sweep_point.get("values") or {}).items():
        if run.role == "tuning" and axis in ("max_tokens", "max_steps", "time_limit"):
            continue
        made = recorded(run, axis)
        if made is not None and (str(made) != str(value) if "." in axis else made != value):
            raise UserError(f"{run.path} was made with {axis} {made}, but lies in the folder of sweep point "
                            f"{run.point} ({axis} {value}); move it out of that folder")


def group_points(runs: list[Run], delta_key: str, common_seeds: bool = False) -> tuple[list[Configuration], list[Point]]:
    """Configurations point by point (each point's own baseline; Holm over all comparisons), in the
    order of the axes' values; runs outside any point form a group of their own, first."""
    by_label: dict[Optional[str], list[Run]] = {}
    for run in runs:
        check_point(run)
        by_label.setdefault(run.point, []).append(run)
    points = []
    for label, members in by_label.items():
        record = members[0].sweep_point
        points.append(Point(label or "(no point)", list(record.get("axes") or []), dict(record.get("values") or {})))
        points[-1].configurations = group_runs(members, delta_key=delta_key, common_seeds=common_seeds)
        for config in points[-1].configurations:
            config.point = label
    points.sort(key=lambda p: (p.label != "(no point)", _sort_key(p)))
    configs = [c for p in points for c in p.configurations]
    others = [c for c in configs if not c.is_baseline]
    for config, delta in zip(others, with_holm([c.delta for c in others])):
        config.delta = delta
    return configs, points


@dataclass
class Series:
    """One configuration along the first axis, at fixed values of the others."""

    name: str                                    # 'rope', or 'rope (max_tokens=3000000)'
    label: str                                   # the configuration: 'rope'
    slice: tuple                                 # the other axes' values: (('max_tokens', 3000000),)
    entries: list[tuple[Point, Optional[Configuration]]]
    trend: Optional[Trend] = None


@dataclass
class Scaling:
    axes: list[str]
    points: list[Point]
    measure: str                                  # 'parameters' | 'tokens' | 'seq_len'
    series: list[Series] = field(default_factory=list)
    baselines: list[Series] = field(default_factory=list)  # the baseline along the axis, one per slice

    @property
    def axis_label(self) -> str:
        return MEASURE_TEXT[self.measure][0]

    def along(self, points: Sequence[Point]) -> str:
        return f"{MEASURE_TEXT[self.measure][1]} ({' → '.join(p.label for p in points)})"


def _slice_text(values: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in values)


def scaling(points: list[Point]) -> Optional[Scaling]:
    """Each configuration's Δ along the first axis with its trend, per slice of the other axes; None
    when the points do not share one set of axes (runs of different sweeps)."""
    swept = [p for p in points if p.axes]
    if len(swept) < 2 or len({tuple(p.axes) for p in swept}) != 1:
        return None
    axes = swept[0].axes
    first = axes[0]
    result = Scaling(axes, swept, MEASURE.get(first, "value" if "." in first else "parameters"))
    slices: dict[tuple, list[Point]] = {}
    for point in swept:
        slices.setdefault(point.slice_of(first), []).append(point)
    for values, members in slices.items():
        suffix = f" ({_slice_text(values)})" if values else ""
        labels: list[str] = []
        for point in members:
            labels += [c.label for c in point.configurations if not c.is_baseline and c.label not in labels]
        for label in labels:
            entries = [(p, next((c for c in p.configurations if c.label == label and not c.is_baseline), None))
                       for p in members]
            series = Series(label + suffix, label, values, entries)
            series.trend = trend(series.name, [(p.label, c.delta if c else None) for p, c in entries],
                                 result.along(members))
            result.series.append(series)
        result.baselines.append(Series("baseline" + suffix, "baseline", values, [(p, p.baseline) for p in members]))
    return result
