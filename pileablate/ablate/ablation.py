"""The ablation as a Python API on typed settings: `Ablation` says what to run (`pileablate.ablate.run`
runs it).

    from pileablate.ablate import Ablation, default_grid, run_ablation
    from pileablate.train.config import TrainConfig

    run_ablation(Ablation(TrainConfig(data="data", preset="micro", max_tokens=300_000),
                          default_grid(), seeds=[0, 1], tune_lrs=(1e-3, 3e-3, 1e-2)))

With learning rates to tune, the tuning runs come first (every experiment at every rate, on seeds of
their own, scored on the tuning windows); each experiment's reported runs then train at the rate its
tuning runs chose. An ablation is a study of one point. The package flows one way: this specification
<- `study` (points, parts, the plan) <- `phases` (executing each phase) <- `run` (run and report);
`commands/ablate.py` only turns the command line into a `Study`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

from pileablate.ablate.plan import Experiment, PlannedRun, plan_runs, plan_tuning, tuning_seeds
from pileablate.runfolder import BUDGET_FIELDS
from pileablate.errors import UserError
from pileablate.train.config import TrainConfig

# A job array's stages: the tuning runs, then the reported runs at the chosen rates; or both in one.
STAGES = ("tune", "train", "all")


@dataclass
class Ablation:
    """What `ablate` runs: experiments x seeds under one budget, optionally after tuning the lr."""

    base: TrainConfig                   # settings every run shares (data, preset, budget, ...)
    experiments: list[Experiment]
    seeds: list[int]
    tune_lrs: tuple[float, ...] = ()    # candidate learning rates; empty: no tuning, one shared lr
    tune_seeds: int = 1                 # tuning runs per experiment and rate
    tune_budget: float = 1.0            # the tuning runs' budget as a fraction of the reported one
    jobs: int = 1                       # runs at once on this machine (each in its own process)
    devices: Optional[str] = None       # --device cuda:0,cuda:1: one concurrent run per device (base.device: their kind)
    task: Optional[tuple[int, int]] = None  # (K, N): only every N-th run from the K-th (a job array's task)
    stage: str = "all"                  # "tune", "train" or "all" (a job array runs the stages apart)
    no_wait: bool = False               # runs another process is training: report them as they stand

    def __post_init__(self) -> None:
        base = self.base
        if base.name is not None:
            raise UserError("ablate names its runs itself (baseline-s0, rope-s0, ...); drop --name "
                            "and keep ablations apart with --runs-dir")
        if base.mods:
            raise UserError("give the modifications to ablate with --mods or --grid")
        if base.resume:
            raise UserError("ablate resumes interrupted runs by itself; drop --resume and re-run the same command")
        if self.tune_lrs and base.lr is not None:
            raise UserError("--tune-lr chooses the learning rate of each configuration; drop --lr (or drop --tune-lr "
                            "to give every run the same --lr)")
        if not 0 < self.tune_budget <= 1:
            raise UserError(f"--tune-budget {self.tune_budget}: give a fraction of the budget in (0, 1]")
        if self.tune_seeds < 1:
            raise UserError("--tune-seeds must be at least 1")
        if self.stage not in STAGES:
            raise UserError(f"--stage {self.stage!r}: use tune, train or all")
        if self.stage == "tune" and not self.tuning:
            raise UserError("--stage tune needs --tune-lr")
        if self.task is not None and self.tuning and self.stage == "all":
            raise UserError("with --tune-lr, a job array runs --stage tune first, then --stage train (every "
                            "reported run needs all tuning runs finished); 'ablate --emit slurm' writes both")

    def share(self, plan: Sequence[PlannedRun]) -> list[PlannedRun]:
        """This task's runs: every N-th from the K-th, of the same deterministic plan on every machine."""
        if self.task is None:
            return list(plan)
        k, n = self.task
        return [p for i, p in enumerate(plan) if i % n == k - 1]

    @property
    def tuning(self) -> bool:
        return bool(self.tune_lrs)

    @property
    def waits(self) -> bool:
        """Whether a phase waits for its runs that other processes are training. A job array's task does
        not: a run held by another task (or a resubmitted copy of this one) is that task's to finish."""
        return not self.no_wait and self.task is None

    def tuning_plan(self) -> list[PlannedRun]:
        if not self.tuning:
            return []
        return plan_tuning(self.experiments, self.tune_lrs, tuning_seeds(self.seeds, self.tune_seeds))

    def report_plan(self, lrs: Optional[dict[str, float]] = None) -> list[PlannedRun]:
        return plan_runs(self.experiments, self.seeds, lrs)

    def config_for(self, planned: PlannedRun) -> TrainConfig:
        """The TrainConfig of one planned run (tuning runs: the tuning budget and windows)."""
        cfg = dataclasses.replace(self.base, mods=planned.mods, seed=planned.seed, name=planned.name, resume=False,
                                  lr=planned.lr if planned.lr is not None else self.base.lr,
                                  tuning=planned.role == "tuning")
        if planned.role == "tuning" and self.tune_budget < 1:
            cfg = dataclasses.replace(cfg, **scaled_budget(self.base, self.tune_budget))
        return cfg


def scaled_budget(base: TrainConfig, fraction: float) -> dict:
    scaled = {}
    for key in BUDGET_FIELDS:
        value = getattr(base, key)
        if value is not None:
            scaled[key] = max(1, int(round(value * fraction))) if key != "time_limit" else value * fraction
    return scaled


class AblationInterrupted(UserError):
    exit_code = 130


class AblationFailed(UserError):
    exit_code = 1
