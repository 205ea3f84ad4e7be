"""Sweep axes: `--sweep preset=nano,micro` or `--sweep max_tokens=1M,3M` (and a `[sweep]` table in the
grid file). An axis is one train option with two or more values; several axes make their product, and
each point of the product gets the whole grid.

Values are parsed with the train option's own grammar (`units.parse_count` for token counts,
`parse_duration` for times, whole numbers for sizes, preset names checked against the presets), and
each point has a folder label that says its values: `micro`, `d64`, `tok3M`, `micro-tok3M`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

from pileablate.errors import UserError

# Options that define the experiment's ground (the data, where runs go, how they are named and run):
# they cannot differ between points of one grid.
FIXED_OPTIONS = frozenset({"data", "runs_dir", "device", "precision", "name", "mods", "seed", "resume"})


def _whole(option: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        raw = str(text).strip()
        if not raw.isdigit() or int(raw) < 1:
            raise UserError(f"--sweep {option}: {text!r} is not a positive whole number")
        return int(raw)
    return parse


def _preset(text: str) -> str:
    from pileablate.model.build import PRESETS

    name = str(text).strip()
    if name not in PRESETS:
        raise UserError(f"--sweep preset: unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return name


def _count(text: str) -> int:
    from pileablate.units import parse_count

    return parse_count(text, "--sweep max_tokens")


def _steps(text: str) -> int:
    from pileablate.units import parse_count

    return parse_count(text, "--sweep max_steps")


def _duration(text: str) -> float:
    from pileablate.units import parse_duration

    return parse_duration(text, "--sweep time_limit")


def exact_count(n: int) -> str:
    """A count as short as it stays exact: 3000000 -> 3M, 1500000 -> 1500k, 1234567 -> 1234567."""
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def exact_seconds(s: float) -> str:
    """90 -> 90s, 300 -> 5m, 5400 -> 90m, 7200 -> 2h (exact; fractions of a second as given)."""
    if s == int(s):
        s = int(s)
        for unit, scale in (("h", 3600), ("m", 60)):
            if s % scale == 0:
                return f"{s // scale}{unit}"
    return f"{s:g}s"


@dataclass(frozen=True)
class AxisKind:
    """How one train option varies along an axis."""

    field: str                      # the TrainConfig field, or a modification's option NAME.KEY
    parse: Callable[[str], object]
    label: Callable[[object], str]  # the value in a folder name
    measures: str                   # what the report plots Δ against: "parameters", "tokens", "seq_len" or "value"


AXES: dict[str, AxisKind] = {
    "preset": AxisKind("preset", _preset, str, "parameters"),
    "n_layer": AxisKind("n_layer", _whole("n_layer"), lambda v: f"L{v}", "parameters"),
    "n_head": AxisKind("n_head", _whole("n_head"), lambda v: f"H{v}", "parameters"),
    "d_model": AxisKind("d_model", _whole("d_model"), lambda v: f"d{v}", "parameters"),
    "seq_len": AxisKind("seq_len", _whole("seq_len"), lambda v: f"ctx{v}", "seq_len"),
    "max_tokens": AxisKind("max_tokens", _count, lambda v: f"tok{exact_count(v)}", "tokens"),
    "max_steps": AxisKind("max_steps", _steps, lambda v: f"steps{v}", "tokens"),
    "time_limit": AxisKind("time_limit", _duration, lambda v: f"time{exact_seconds(v)}", "tokens"),
}
AXIS_NAMES = "preset, n_layer, n_head, d_model, seq_len, max_tokens, max_steps, time_limit, or a modification's option NAME.KEY"


def _mod_option_kind(key: str) -> AxisKind:
    """A modification's own option as an axis (`--sweep lion.beta2=0.95,0.99`): its values are typed
    as the option declares, the runs get them as --mod-option, and the report plots Δ against them."""
    from pileablate.registry import modification, modifications

    name, _, option = key.partition(".")
    if name not in modifications() or option not in modification(name).options:
        known = ", ".join(f"{m.name}.{k}" for m in modifications().values() for k in m.options) or "none loaded"
        raise UserError(f"--sweep {key}: not an axis; sweep one of {AXIS_NAMES} (modification options: {known})")
    declared = modification(name).options[option]
    return AxisKind(key, lambda text: declared.parse(text, f"--sweep {key}"), lambda v: f"{option}{v:g}"
                    if isinstance(v, float) else f"{option}{v}", "value")


def axis_kind(field: str) -> AxisKind:
    return AXES[field] if field in AXES else _mod_option_kind(field)


@dataclass(frozen=True)
class Axis:
    field: str
    values: tuple

    @property
    def kind(self) -> AxisKind:
        return axis_kind(self.field)

    @property
    def option(self) -> str:
        """The axis as the --sweep option names it: the train option's own name."""
        return self.field


def axis_field(name: str) -> str:
    """The TrainConfig field an axis name means ('max-tokens', 'time_limit' ...), or a one-line error."""
    key = str(name).strip().lower().lstrip("-").replace("-", "_")
    if key in AXES:
        return key
    if "." in key:
        return _mod_option_kind(key).field
    if key in FIXED_OPTIONS:
        flag = "--" + key.replace("_", "-")
        raise UserError(f"--sweep {name}: {flag} cannot vary across a grid (every point shares the "
                        f"data, runs folder, hardware, seeds and configurations); give it once as {flag}")
    if key in ("lr", "min_lr"):
        raise UserError(f"--sweep {name}: the learning rate is tuned, not swept: --tune-lr chooses it per "
                        "configuration at every point")
    raise UserError(f"--sweep {name}: not an axis; sweep one of {AXIS_NAMES}")


def parse_axis(spec: str) -> Axis:
    """'preset=nano,micro' -> Axis('preset', ('nano', 'micro'))."""
    name, sep, values = str(spec).partition("=")
    if not sep or not name.strip():
        raise UserError(f"--sweep {spec!r}: use OPTION=V1,V2,..., e.g. --sweep preset=nano,micro or "
                        "--sweep max_tokens=1M,3M")
    return axis_from_values(name, [v for v in values.split(",") if v.strip()])


def axis_from_values(name: str, values: Sequence) -> Axis:
    """An axis from its option name and its values as text (or numbers, from TOML)."""
    field = axis_field(name)
    option = field
    parsed = tuple(axis_kind(field).parse(str(v).strip()) for v in values)
    if len(parsed) < 2:
        raise UserError(f"--sweep {option}: an axis needs two or more values (got {len(parsed)}); "
                        f"give one value as the train option itself")
    if len(set(parsed)) != len(parsed):
        raise UserError(f"--sweep {option}: a value is listed twice ({', '.join(str(v) for v in values)})")
    return Axis(field, parsed)


def check_axes(axes: Sequence[Axis]) -> list[Axis]:
    fields = [a.field for a in axes]
    twice = sorted({a.option for a in axes if fields.count(a.field) > 1})
    if twice:
        raise UserError(f"--sweep {twice[0]} is given twice; list all its values in one --sweep {twice[0]}=A,B,...")
    return list(axes)


def sweep_from_grid_file(path) -> list[Axis]:
    """The `[sweep]` axes of a grid file (none when it has no such table)."""
    from pileablate.ablate.plan import _load_toml

    return sweep_from_toml(_load_toml(path), path)


def sweep_from_toml(data: dict, path) -> list[Axis]:
    """Axes from a grid file's `[sweep]` table: `preset = ["nano", "micro"]` or `max_tokens = "1M,3M"`."""
    table = data.get("sweep")
    if table is None:
        return []
    if not isinstance(table, dict) or not table:
        raise UserError(f"--grid {path}: [sweep] must be a table of axes, e.g. [sweep] preset = [\"nano\", \"micro\"]")
    axes = []
    for name, values in table.items():
        if isinstance(values, str):
            values = [v for v in values.split(",") if v.strip()]
        if not isinstance(values, list):
            raise UserError(f"--grid {path}: [sweep] {name} must be a list of values or a comma list")
        axes.append(axis_from_values(name, values))
    return check_axes(axes)


@dataclass(frozen=True)
class Point:
    """One point of the sweep: a value on every axis, and the folder its runs go in."""

    label: str
    values: dict   # TrainConfig field -> value, in axis order

    def describe(self) -> str:
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.values.items())


def points(axes: Sequence[Axis]) -> list[Point]:
    """The product of the axes, the first axis outermost; labels joined by '-' (micro-tok3M)."""
    out = []
    for combo in itertools.product(*(a.values for a in axes)):
        values = {a.field: v for a, v in zip(axes, combo)}
        label = "-".join(a.kind.label(v) for a, v in zip(axes, combo))
        out.append(Point(label, values))
    labels = [p.label for p in out]
    if len(set(labels)) != len(labels):  # the labels are exact, so only a bug could get here
        raise UserError(f"--sweep: two points share the folder {next(x for x in labels if labels.count(x) > 1)}")
    return out
