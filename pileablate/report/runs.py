"""Load run directories (config.json, metrics.jsonl, summary.json; see docs/DESIGN.md "Runs").

A path given to `report` is either one run (it holds `config.json` or `summary.json`) or a folder of
runs (its subfolders that do). Nothing here needs torch: a report opens on any machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from pileablate.errors import UserError
from pileablate.runfolder import BUDGET_FIELDS, is_run_dir, read_config, read_metrics, read_point, read_summary

_SEED_SUFFIX = re.compile(r"-s\d+$")


@dataclass
class Run:
    """One run directory, read once."""

    path: Path
    config: dict
    summary: dict
    metrics: list[dict] = field(default_factory=list)
    sweep_point: dict = field(default_factory=dict)  # the point.json of a sweep point's folder ({} outside a sweep)

    @property
    def point(self) -> Optional[str]:
        """The sweep point the run belongs to (its folder, recorded by `ablate --sweep`), or None."""
        label = self.sweep_point.get("point")
        return None if label is None else str(label)

    @property
    def name(self) -> str:
        """The run's name; in a sweep prefixed by its point (micro/rope-s0), so that no two points'
        runs share a name, a configuration, a mean or a test."""
        name = str(self.summary.get("name") or self.config.get("name") or self.path.name)
        return f"{self.point}/{name}" if self.point else name

    @property
    def mods(self) -> tuple[str, ...]:
        mods = self.summary.get("mods", self.config.get("mods", []))
        if isinstance(mods, str):
            mods = [m for m in mods.split(",") if m]
        return tuple(mods)

    @property
    def seed(self) -> Optional[int]:
        seed = self.summary.get("seed", self.config.get("seed"))
        return None if seed is None else int(seed)

    @property
    def status(self) -> str:
        return str(self.summary.get("status") or "unknown")

    @property
    def configuration(self) -> str:
        """What seeds of the same experiment share: the run name without its `-sN` seed suffix."""
        return _SEED_SUFFIX.sub("", self.name)

    @property
    def data(self) -> dict:
        return self.config.get("data") or {}

    @property
    def fingerprint(self) -> Optional[str]:
        return self.data.get("fingerprint")

    @property
    def tokenizer_id(self) -> Optional[str]:
        tok = self.data.get("tokenizer") or {}
        return tok.get("sha256") or tok.get("name")

    @property
    def tokenizer_name(self) -> str:
        tok = self.data.get("tokenizer") or {}
        return str(tok.get("name") or tok.get("spec") or "?")

    @property
    def budget(self) -> dict:
        """The budget the run was given (None for a limit not set)."""
        budget = self.summary.get("budget")
        if not budget:
            train = self.config.get("train") or {}
            budget = {k: train.get(k) for k in BUDGET_FIELDS}
        return {k: budget.get(k) for k in BUDGET_FIELDS}

    @property
    def role(self) -> str:
        """"tuning" for a learning-rate tuning run (measured on the tuning windows), else "report"."""
        return str(self.summary.get("role") or self.config.get("role") or "report")

    @property
    def lr(self) -> Optional[float]:
        """The peak learning rate the run trained with (config.json records the resolved value)."""
        value = (self.config.get("train") or {}).get("lr", self.summary.get("lr"))
        return None if value is None else float(value)

    @property
    def pairing_key(self) -> dict:
        """What seeds of two configurations must share for seed s to mean the same batches, the same
        validation windows and the same budget: the data, the window length, the batch layout, the
        validation tokens and the budget."""
        train, model = self.config.get("train") or {}, self.config.get("model") or {}
        return {
            "data": self.fingerprint,
            "batches": (model.get("seq_len"), train.get("batch_size"), train.get("grad_accum"),
                        self.config.get("world_size")),
            "validation windows": (model.get("seq_len"), train.get("eval_tokens")),
            "budget": tuple(self.budget.values()),
        }

    @property
    def val_bytes_per_token(self) -> Optional[float]:
        value = self.data.get("val_bytes_per_token")
        return float(value) if value else None

    def series(self, key: str, x: str = "tokens") -> tuple[list[float], list[float]]:
        """(x, y) over the logged steps that carry `key` (val_loss only on evaluation steps)."""
        xs, ys = [], []
        for row in self.metrics:
            if row.get(key) is None or row.get(x) is None:
                continue
            xs.append(float(row[x]))
            ys.append(float(row[key]))
        return xs, ys


def load_run(path: Path) -> Run:
    path = Path(path)
    return Run(path=path, config=read_config(path) or {}, summary=read_summary(path) or {},
               metrics=read_metrics(path), sweep_point=read_point(path.parent) or {})


def _runs_in(folder: Path) -> list[Path]:
    """The runs in a folder of runs, and in its subfolders that are folders of runs themselves (ablate
    keeps learning-rate tuning runs apart in one)."""
    runs: list[Path] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if is_run_dir(sub):
            runs.append(sub)
        else:
            runs += sorted(p for p in sub.iterdir() if p.is_dir() and is_run_dir(p))
    return runs


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Each path is one run or a folder of runs; the result keeps the given order, then name order."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UserError(f"no runs folder {path}; pass the folder of your runs (default runs/) "
                            "or make runs with 'pileablate ablate'")
        if not path.is_dir():
            raise UserError(f"{path} is not a directory; pass a runs folder (default runs/) or one run's folder")
        candidates = [path] if is_run_dir(path) else _runs_in(path)
        for run_dir in candidates:
            if run_dir.resolve() not in {p.resolve() for p in found}:
                found.append(run_dir)
    return found


def load_runs(paths: Iterable[Path]) -> list[Run]:
    paths = [Path(p) for p in paths]
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        where = ", ".join(str(p) for p in paths)
        raise UserError(f"no runs in {where}; train some with 'pileablate ablate' or 'pileablate train'")
    runs = [load_run(p) for p in run_dirs]
    check_names(runs)
    return runs


def check_names(runs: list[Run]) -> None:
    """Runs are told apart by name (a configuration is its runs' name without the seed); two folders
    that both hold, say, baseline-s0 would silently become one configuration with a seed twice."""
    seen: dict[str, Run] = {}
    for run in runs:
        other = seen.setdefault(run.name, run)
        if other is not run:
            raise UserError(f"two runs are named {run.name} ({other.path} and {run.path}); report those folders "
                            "one at a time, or rename one of the runs")


def check_same_data(runs: list[Run], mix_data: bool) -> list[str]:
    """Runs on different data or tokenizers do not share a table unless `mix_data` (--mix-data).

    Returns the notes the report prints when mixed (empty when all runs share data and tokenizer).
    """
    # A run that failed before training (guards) has no config.json and so no data identity; it is
    # flagged in the report and says nothing about mixing.
    known = [r for r in runs if r.fingerprint]
    fingerprints = sorted({r.fingerprint for r in known})
    tokenizers = sorted({r.tokenizer_name for r in known})
    tokenizer_ids = {r.tokenizer_id or "unknown" for r in known}
    notes = []
    if len(fingerprints) > 1:
        groups = "; ".join(
            f"{fp[:12]}: {', '.join(r.name for r in known if r.fingerprint == fp)}" for fp in fingerprints
        )
        notes.append(f"runs were made on {len(fingerprints)} different data sets ({groups})")
    if len(tokenizer_ids) > 1:
        notes.append(
            f"runs use different tokenizers ({', '.join(tokenizers)}): losses per token do not compare; "
            "differences are taken on validation bits per byte"
        )
    if notes and not mix_data:
        raise UserError(
            notes[0] + "; report them separately (one runs folder each) or pass --mix-data to mix them"
        )
    return notes
