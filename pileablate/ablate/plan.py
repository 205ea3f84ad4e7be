"""The ablation grid: which configurations, which seeds, which run names.

Default (the seed study's seven experiments): the baseline, each of warmup, cosine, rmsnorm, rope,
swiglu alone, and all five together. `--mods a,b,c` makes the same shape over another set;
`--grid FILE.toml` lists configurations explicitly. Run names are stable (`rope-s0`, `all-s1`,
`rope+swiglu-s2`) so re-running the command finds the runs it already made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pileablate.errors import UserError

GRID_EXAMPLE = """\
seeds = 2                       # optional; --seeds on the command line wins
[[config]]
mods = []                       # the baseline
[[config]]
mods = ["rope", "swiglu"]       # name defaults to rope+swiglu
[[config]]
name = "modern"
mods = "all"                    # a comma list or an alias works too"""

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


@dataclass(frozen=True)
class Configuration:
    """One point of the grid: a label and the modifications on top of the baseline."""

    label: str
    mods: tuple[str, ...]


@dataclass(frozen=True)
class PlannedRun:
    index: int          # 1-based position in the plan
    name: str           # run directory name: <label>-s<seed>
    label: str
    mods: tuple[str, ...]
    seed: int


def label_for(mods: Sequence[str]) -> str:
    """'baseline', 'all' (exactly the seed study's five), a single name, or 'a+b' for a combination."""
    from pileablate.model.registry import SEED_MODS

    mods = tuple(mods)
    if not mods:
        return "baseline"
    if set(mods) == set(SEED_MODS):
        return "all"
    return "+".join(mods)


def default_grid(mods_spec: Optional[str] = None) -> list[Configuration]:
    """Baseline, each modification alone, and all of them together (duplicates dropped)."""
    from pileablate.model.registry import SEED_MODS, resolve_mods

    mods = resolve_mods(mods_spec) if mods_spec is not None else SEED_MODS
    if mods_spec is not None and not mods:
        raise UserError(f"--mods {mods_spec!r} names no modification; give e.g. --mods rope,swiglu")
    combos: list[tuple[str, ...]] = [()]
    combos += [(m,) for m in mods]
    combos.append(resolve_mods(list(mods)))  # UserError if they cannot all be combined
    unique: list[tuple[str, ...]] = []
    for combo in combos:
        if combo not in unique:
            unique.append(combo)
    return [Configuration(label_for(c), c) for c in unique]


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UserError("--grid needs Python 3.11 or newer (tomllib); use --mods, or upgrade Python") from None
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"--grid {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"--grid {path}: not valid TOML ({err})") from None


def grid_from_toml(path: Path) -> tuple[list[Configuration], Optional[int]]:
    """Configurations (and an optional seed count) from a grid file; see GRID_EXAMPLE."""
    from pileablate.model.registry import resolve_mods

    data = _load_toml(path)
    unknown = set(data) - {"seeds", "config"}
    if unknown:
        raise UserError(f"--grid {path}: unknown key(s) {', '.join(sorted(unknown))}; expected 'seeds' and [[config]] tables")
    entries = data.get("config")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--grid {path}: no [[config]] tables; list each configuration as a [[config]] table "
                        "with mods = [\"rope\", \"swiglu\"] and optionally name = \"...\" (see 'pileablate ablate --help')")
    configs: list[Configuration] = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "mods" not in entry or set(entry) - {"name", "mods"}:
            raise UserError(f"--grid {path}: [[config]] #{i} needs 'mods' (and optionally 'name'), nothing else")
        mods = resolve_mods(entry["mods"])
        label = str(entry.get("name") or label_for(mods))
        if not _NAME_OK.match(label):
            raise UserError(f"--grid {path}: name {label!r} of [[config]] #{i} must be a plain directory name")
        configs.append(Configuration(label, mods))
    labels = [c.label for c in configs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise UserError(f"--grid {path}: configuration names repeat ({', '.join(dupes)}); give each a distinct 'name'")
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
        raise UserError(f"--grid {path}: seeds must be a positive integer")
    return configs, seeds


def plan_runs(configs: Sequence[Configuration], seeds: Sequence[int]) -> list[PlannedRun]:
    """Seeds outermost: a full first pass over the configurations is a one-seed ablation already,
    so an interrupted multi-seed grid leaves something comparable behind."""
    runs: list[PlannedRun] = []
    for seed in seeds:
        for config in configs:
            runs.append(PlannedRun(len(runs) + 1, f"{config.label}-s{seed}", config.label, config.mods, seed))
    return runs
