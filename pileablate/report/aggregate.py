"""Runs grouped into configurations (seeds of one experiment), with seed statistics and Δ to baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pileablate.report.checks import run_flags
from pileablate.report.runs import Run
from pileablate.report.stats import Difference, mean, std, welch


@dataclass
class Configuration:
    """All seeds of one configuration and their figures (means over seeds; std where it matters)."""

    name: str
    mods: tuple[str, ...]
    runs: list[Run]
    flags: list[str] = field(default_factory=list)
    delta: Optional[Difference] = None
    is_baseline: bool = False

    def values(self, key: str) -> list[float]:
        """`key` from each run's summary, over the runs that have it."""
        return [float(r.summary[key]) for r in self.runs if r.summary.get(key) is not None]

    def mean(self, key: str) -> Optional[float]:
        return mean(self.values(key))

    def std(self, key: str) -> Optional[float]:
        return std(self.values(key))

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs if r.seed is not None)

    @property
    def peak_mem_bytes(self) -> Optional[float]:
        values = self.values("peak_mem_bytes")
        return max(values) if values else None


def _order(config: Configuration) -> tuple:
    # Baseline first, then single modifications, then combinations, as the ablation reads; within
    # each, the order the runs were made in (ablate's plan order).
    created = min(str(r.config.get("created") or "") for r in config.runs)
    return (not config.is_baseline, len(config.mods), created, config.name)


def group_runs(runs: list[Run], delta_key: str = "final_val_loss") -> list[Configuration]:
    """Seeds of one configuration share a name up to `-sN` and the same modifications."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.configuration, run.mods), []).append(run)
    names = [name for name, _ in groups]
    configs = []
    for (name, mods), members in groups.items():
        # Two hand-named runs with the same prefix but different modifications stay apart and say so.
        label = name if names.count(name) == 1 else f"{name} [{','.join(mods) or 'baseline'}]"
        members.sort(key=lambda r: (r.seed is None, r.seed or 0, r.name))
        config = Configuration(name=label, mods=mods, runs=members)
        for run in members:
            for flag in run_flags(run):
                config.flags.append(flag if len(members) == 1 else f"{run.name}: {flag}")
        configs.append(config)

    baselines = [c for c in configs if not c.mods]
    baseline = next((c for c in baselines if c.name == "baseline"), baselines[0] if baselines else None)
    if baseline is not None:
        baseline.is_baseline = True
        for config in configs:
            if config is not baseline:
                config.delta = welch(config.values(delta_key), baseline.values(delta_key))
    configs.sort(key=_order)
    return configs
