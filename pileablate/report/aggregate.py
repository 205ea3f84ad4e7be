"""Runs grouped into configurations (seeds of one experiment): which runs count, seed statistics,
Δ to the baseline (tested and Holm-corrected), and the size difference to the baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pileablate.report.checks import exclusion_reason, repeated_data_flag, run_flags, train_loss_tail
from pileablate.report.comparable import differences, distinguishing, not_comparable_flag, settings, settings_key
from pileablate.report.compare import compare
from pileablate.report.runs import Run
from pileablate.report.stats import Difference, mean, std, with_holm

# Parameter difference to the baseline above which a configuration is flagged as not size-matched
# (matching aims at 1%; 2% leaves room for hand-made runs that are close but not exact).
PARAMS_FLAG_FRACTION = 0.02


@dataclass
class Configuration:
    """All seeds of one configuration. Figures are over the runs that count (finished, guards passed);
    the others are kept, with the reason, in `excluded`."""

    name: str
    mods: tuple[str, ...]
    runs: list[Run]
    excluded: dict[str, str] = field(default_factory=dict)  # run name -> why it does not count
    flags: list[str] = field(default_factory=list)
    delta: Optional[Difference] = None
    is_baseline: bool = False
    params_vs_baseline: Optional[float] = None  # active parameters / the baseline's - 1
    point: Optional[str] = None  # the sweep point (its runs' folder); None outside a sweep
    verdict: Optional[object] = None  # report.verdict.Verdict against the baseline (set by build_report)
    settings: dict = field(default_factory=dict)      # comparable.settings of its runs (all alike)
    not_comparable: list[str] = field(default_factory=list)  # settings that differ from the baseline's: no Δ

    @property
    def label(self) -> str:
        """The configuration without its sweep point: 'rope' for 'micro/rope'."""
        return self.name.removeprefix(f"{self.point}/") if self.point else self.name

    @property
    def counted(self) -> list[Run]:
        return [r for r in self.runs if r.name not in self.excluded]

    def values(self, key: str) -> list[float]:
        """`key` from each counted run's summary, over the runs that have it."""
        return [float(r.summary[key]) for r in self.counted if r.summary.get(key) is not None]

    def train_losses(self) -> list[float]:
        """Each counted run's train loss, one definition everywhere: the mean over its last 10% of
        logged steps (checks.train_loss_tail), as one batch's loss is too noisy to compare."""
        return [v for v in (train_loss_tail(r) for r in self.counted) if v is not None]

    def mean(self, key: str) -> Optional[float]:
        return mean(self.values(key))

    def std(self, key: str) -> Optional[float]:
        return std(self.values(key))

    @property
    def seeds(self) -> list[int]:
        """Seeds of the runs that count."""
        return sorted(r.seed for r in self.counted if r.seed is not None)

    @property
    def peak_mem_bytes(self) -> Optional[float]:
        values = self.values("peak_mem_bytes")
        return max(values) if values else None

    @property
    def params_active(self) -> Optional[float]:
        """Active parameters (the matched quantity; total for all but moe), from any run that
        recorded them: a run that failed still had its model built."""
        counts = [float(r.summary.get("params_active") or r.summary["params_total"])
                  for r in self.runs if r.summary.get("params_active") or r.summary.get("params_total")]
        return mean(counts)

    @property
    def lrs(self) -> list[float]:
        return sorted({r.lr for r in self.runs if r.lr is not None})

    @property
    def other_rates(self) -> dict[str, list[float]]:
        """Rates of optimizers other than `--lr` itself (muon's hidden matrices at a multiple of it, a
        user's optimizer at its lr_scale): optimizer name -> the rates its runs used. Empty when every
        optimizer ran at --lr."""
        rates: dict[str, set] = {}
        for run in self.runs:
            recorded = run.config.get("learning_rates") or {}
            for name, rate in recorded.items():
                if run.lr is None or abs(float(rate) - run.lr) > 1e-12 * max(1.0, run.lr):
                    rates.setdefault(name, set()).add(float(rate))
        return {name: sorted(values) for name, values in rates.items()}


def _order(config: Configuration) -> tuple:
    # Baseline first, then single modifications, then combinations, as the ablation reads; within
    # each, the order the runs were made in (ablate's plan order).
    created = min(str(r.config.get("created") or "") for r in config.runs)
    return (not config.is_baseline, len(config.mods), created, config.name)


def _group(runs: list[Run]) -> list[Configuration]:
    """Seeds of one configuration share a name up to `-sN`, the same modifications and every other
    recorded setting but the learning rate (comparable.settings): a seed trained at another batch size
    is another configuration, not another seed."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.configuration, run.mods, settings_key(run)), []).append(run)
    configs = []
    for (name, mods, key), members in groups.items():
        config = Configuration(name=_label(name, mods, key, groups), mods=mods, runs=members,
                               settings=settings(members[0]))
        members.sort(key=lambda r: (r.seed is None, r.seed or 0, r.name))
        for run in members:
            reason = exclusion_reason(run)
            if reason:
                config.excluded[run.name] = reason
            for flag in run_flags(run):
                config.flags.append(flag if len(members) == 1 else f"{run.name}: {flag}")
        repeated = repeated_data_flag(members)
        if repeated:
            config.flags.append(repeated)
        if not config.counted:
            config.flags.append("no run counts (see excluded runs): no figures, no Δ")
        configs.append(config)
    return configs


def _label(name: str, mods: tuple, key: str, groups: dict) -> str:
    """The configuration's name; where runs of one name differ in modifications or settings, each group
    says what sets it apart ('rope [batch_size 1]', 'x [swiglu]', 'x [rope, batch_size 4]')."""
    twins = [(m, members) for (n, m, k), members in groups.items() if n == name and (m, k) != (mods, key)]
    if not twins:
        return name
    apart = [",".join(mods) or "baseline"] if any(m != mods for m, _ in twins) else []
    same_mods = [settings(members[0]) for m, members in twins if m == mods]
    if same_mods:
        apart.append(distinguishing(settings(groups[(name, mods, key)][0]), same_mods))
    return f"{name} [{', '.join(apart)}]"


def _size_difference(config: Configuration, baseline: Configuration) -> None:
    mine, base = config.params_active, baseline.params_active
    if mine is None or not base:
        return
    config.params_vs_baseline = mine / base - 1
    if abs(config.params_vs_baseline) > PARAMS_FLAG_FRACTION:
        config.flags.append(f"parameters {config.params_vs_baseline:+.1%} vs the baseline "
                            f"(over {PARAMS_FLAG_FRACTION:.0%}: sizes not matched)")


def group_runs(runs: list[Run], delta_key: str = "final_val_loss", common_seeds: bool = False) -> list[Configuration]:
    """Configurations in reading order, each with its Δ to the baseline over the runs that count
    (`common_seeds`: against the baseline's runs of the configuration's seeds, see compare.compare)."""
    configs = _group(runs)
    baselines = [c for c in configs if not c.mods]
    # In a sweep the name carries the point ('micro/baseline').
    baseline = next((c for c in baselines if c.name.rsplit("/", 1)[-1] == "baseline"),
                    next((c for c in baselines if c.name.rsplit("/", 1)[-1].startswith("baseline")),
                         baselines[0] if baselines else None))
    if baseline is not None:
        baseline.is_baseline = True
        others = []
        for config in configs:
            config.not_comparable = [] if config is baseline else differences(config.settings, baseline.settings)
            flag = not_comparable_flag(config.not_comparable)
            if flag:
                config.flags.append(flag)
            elif config is not baseline:
                others.append(config)
        for config in others:
            _size_difference(config, baseline)
        # Only comparable configurations are tested, and only they share Holm's correction.
        deltas = with_holm([compare(c.counted, baseline.counted, delta_key, common_seeds) for c in others])
        for config, delta in zip(others, deltas):
            config.delta = delta
    configs.sort(key=_order)
    return configs
