"""The ablation grid: which experiments, which seeds, which run names.

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

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


# Tuning runs use seeds of their own, this far above the reported seeds, so that no reported run
# repeats the data order (and initialisation) of a run that chose its learning rate.
TUNING_SEED_OFFSET = 1000


@dataclass(frozen=True)
class Experiment:
    """One cell of the grid: a label and the modifications on top of the baseline."""

    label: str
    mods: tuple[str, ...]


@dataclass(frozen=True)
class PlannedRun:
    index: int          # 1-based position in its plan
    name: str           # run directory name: <label>-s<seed>, or tune-<label>-lr<lr>-s<seed>
    label: str
    mods: tuple[str, ...]
    seed: int
    role: str = "report"          # "report" (scored on the validation windows) or "tuning"
    lr: Optional[float] = None    # None: the base learning rate (or the preset's default)
    point: Optional[str] = None   # a sweep's point (the folder the run lies in), None outside a sweep

    @property
    def title(self) -> str:
        """The name progress shows: micro/rope-s0 in a sweep, rope-s0 otherwise."""
        return f"{self.point}/{self.name}" if self.point else self.name


def label_for(mods: Sequence[str]) -> str:
    """'baseline', 'all' (exactly the seed study's five), a single name, or 'a+b' for a combination."""
    from pileablate.registry import SEED_MODS

    mods = tuple(mods)
    if not mods:
        return "baseline"
    if set(mods) == set(SEED_MODS):
        return "all"
    return "+".join(mods)


def default_grid(mods_spec: Optional[str] = None) -> list[Experiment]:
    """Baseline, each modification alone, and all of them together (duplicates dropped)."""
    from pileablate.registry import SEED_MODS, resolve_mods

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
    return [Experiment(label_for(c), c) for c in unique]


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a dependency there)
        import tomli as tomllib
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"--grid {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"--grid {path}: not valid TOML ({err})") from None


def grid_from_toml(path: Path) -> tuple[list[Experiment], Optional[int]]:
    """Experiments (and an optional seed count) from a grid file (its format: docs/ablate.md)."""
    from pileablate.registry import resolve_mods

    data = _load_toml(path)
    unknown = set(data) - {"seeds", "config", "sweep"}  # [sweep]: pileablate.ablate.axes reads it
    if unknown:
        raise UserError(f"--grid {path}: unknown key(s) {', '.join(sorted(unknown))}; expected 'seeds', [[config]] "
                        "tables and an optional [sweep] table")
    entries = data.get("config")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--grid {path}: no [[config]] tables; list each configuration as a [[config]] table "
                        "with mods = [\"rope\", \"swiglu\"] and optionally name = \"...\" (see 'pileablate ablate --help')")
    configs: list[Experiment] = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "mods" not in entry or set(entry) - {"name", "mods"}:
            raise UserError(f"--grid {path}: [[config]] #{i} needs 'mods' (and optionally 'name'), nothing else")
        mods = resolve_mods(entry["mods"])
        label = str(entry.get("name") or label_for(mods))
        if not _NAME_OK.match(label):
            raise UserError(f"--grid {path}: name {label!r} of [[config]] #{i} must be a plain directory name")
        configs.append(Experiment(label, mods))
    labels = [c.label for c in configs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise UserError(f"--grid {path}: configuration names repeat ({', '.join(dupes)}); give each a distinct 'name'")
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
        raise UserError(f"--grid {path}: seeds must be a positive integer")
    return configs, seeds


def plan_runs(configs: Sequence[Experiment], seeds: Sequence[int],
              lrs: Optional[dict[str, float]] = None) -> list[PlannedRun]:
    """Seeds outermost: a full first pass over the experiments is a one-seed ablation already,
    so an interrupted multi-seed grid leaves something comparable behind. `lrs` gives an
    experiment's learning rate by label (the tuned one)."""
    runs: list[PlannedRun] = []
    for seed in seeds:
        for config in configs:
            lr = (lrs or {}).get(config.label)
            runs.append(PlannedRun(len(runs) + 1, f"{config.label}-s{seed}", config.label, config.mods, seed, lr=lr))
    return runs


def format_lr(lr: float) -> str:
    """3 significant digits, as run names and tables show a learning rate: 0.001, 0.00316, 0.01."""
    return f"{lr:.3g}"


def plan_tuning(configs: Sequence[Experiment], lrs: Sequence[float], seeds: Sequence[int]) -> list[PlannedRun]:
    """Every experiment at every candidate learning rate, on the tuning seeds."""
    runs: list[PlannedRun] = []
    for seed in seeds:
        for config in configs:
            for lr in lrs:
                name = f"tune-{config.label}-lr{format_lr(lr)}-s{seed}"
                runs.append(PlannedRun(len(runs) + 1, name, config.label, config.mods, seed, "tuning", lr))
    return runs


def tuning_seeds(reported: Sequence[int], count: int) -> list[int]:
    if max(reported) >= TUNING_SEED_OFFSET:
        raise UserError(f"--tune-lr keeps seeds >= {TUNING_SEED_OFFSET} for its tuning runs; use smaller --seed")
    return [TUNING_SEED_OFFSET + min(reported) + i for i in range(count)]
