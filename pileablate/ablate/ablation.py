"""The ablation as a Python API on typed settings: `Ablation` says what to run, `run_ablation` runs it.

    from pileablate.ablate import Ablation, default_grid, run_ablation
    from pileablate.train.config import TrainConfig

    run_ablation(Ablation(TrainConfig(data_dir="data", preset="micro", max_tokens=300_000),
                          default_grid(), seeds=[0, 1], tune_lrs=(1e-3, 3e-3, 1e-2)))

With learning rates to tune, the tuning runs come first (every experiment at every rate, on seeds of
their own, scored on the tuning windows); each experiment's reported runs then train at the rate its
tuning runs chose. `commands/ablate.py` only turns the command line into an `Ablation`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from pileablate.ablate.plan import Experiment, PlannedRun, format_lr, plan_runs, plan_tuning, tuning_seeds
from pileablate.ablate.runner import (
    BUDGET_FIELDS, Outcome, budget_of, check_existing, data_identity, grid_budget, read_summary, run_state,
)
from pileablate.data.verify import check_store
from pileablate.errors import UserError
from pileablate.train.config import TrainConfig


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
    devices: Optional[str] = None       # "cuda:0,cuda:1": one concurrent run per device
    task: Optional[tuple[int, int]] = None  # (K, N): only every N-th run from the K-th (a job array's task)
    stage: str = "all"                  # "tune", "report" or "all" (a job array runs the stages apart)

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
        if self.stage not in ("tune", "report", "all"):
            raise UserError(f"--stage {self.stage!r}: use tune, report or all")
        if self.stage == "tune" and not self.tuning:
            raise UserError("--stage tune needs --tune-lr")
        if self.task is not None and self.tuning and self.stage == "all":
            raise UserError("with --tune-lr, a job array runs --stage tune first, then --stage report (every "
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
            scaled[key] = max(1, int(round(value * fraction))) if key != "time_limit_s" else value * fraction
    return scaled


@dataclass
class AblationResult:
    outcomes: list[Outcome] = field(default_factory=list)
    chosen_lrs: dict[str, float] = field(default_factory=dict)
    report: object = None


def prepared(ablation: Ablation) -> Ablation:
    """The ablation with its grid budget fixed (the baseline's default when none is given)."""
    vocab_size, _ = data_identity(ablation.base.data_dir)
    base, _ = grid_budget(ablation.base, vocab_size)
    return dataclasses.replace(ablation, base=base)


def run_ablation(ablation: Ablation, console=None) -> AblationResult:
    """Tune (when asked), train the reported runs, and write the report. Raises UserError subclasses
    for an interrupt (exit 130) and for failed runs (exit 1) after everything else has run."""
    from pileablate.ablate.parallel import plan_trainer
    from pileablate.console import stderr_console

    console = console or stderr_console()
    ablation = prepared(ablation)
    result = AblationResult()
    console.print(describe(ablation), highlight=False)
    with plan_trainer(ablation.jobs, ablation.devices) as train_plan:
        tuning, plan = _tune_then_train(ablation, train_plan, console, result)
    if plan is None or ablation.task is not None:
        return _task_done(ablation, tuning + (plan or []), console, result)
    result.report = report_on(ablation.base.runs_dir, tuning + plan, ablation.base.trackers)
    # A tuning run that diverges at a high rate is an answer, not a failure of the ablation.
    failed = [o for o in result.outcomes if o.run.role == "report" and (o.state.action == "failed" or o.error)]
    untuned = [e.label for e in ablation.experiments if ablation.tuning and e.label not in result.chosen_lrs]
    problems = [f"{len(failed)} of {len(plan)} runs failed ({', '.join(o.run.name for o in failed)})"] if failed else []
    problems += [f"not reported, no tuning run finished: {', '.join(untuned)}"] if untuned else []
    if problems:
        raise AblationFailed("; ".join(problems) + "; the report lists them. Fix the cause, delete those run "
                             "folders and re-run to redo only them")
    return result


def _tune_then_train(ablation: Ablation, train_plan, console, result: AblationResult):
    """(tuning plan, reported plan), the reported plan None when this is only the tuning stage."""
    _, fingerprint = data_identity(ablation.base.data_dir)
    check_store(ablation.base.data_dir, console)  # once here, not in every run (or every worker at once)
    tuning = ablation.tuning_plan()
    check_existing(ablation, tuning, fingerprint)
    if tuning and ablation.stage in ("tune", "all"):
        console.print(f"tuning the learning rate: {len(tuning)} runs ({len(ablation.experiments)} configurations x "
                      f"{len(ablation.tune_lrs)} rates {', '.join(format_lr(x) for x in ablation.tune_lrs)} x "
                      f"{ablation.tune_seeds} seed(s))", highlight=False)
        _run_phase(ablation, tuning, train_plan, console, result)
        if ablation.stage == "tune":
            return tuning, None
    if tuning:
        result.chosen_lrs = chosen_lrs(ablation, tuning)
        unfinished = [p.name for p in tuning
                      if run_state(Path(ablation.base.runs_dir) / p.name).action in ("train", "resume")]
        if unfinished:
            raise UserError(f"{len(unfinished)} tuning runs are not finished ({unfinished[0]}, ...); run "
                            "--stage tune to the end first")
    plan = ablation.report_plan(result.chosen_lrs or None)
    plan = [p for p in plan if not ablation.tuning or p.label in result.chosen_lrs]
    check_existing(ablation, plan, fingerprint)
    _run_phase(ablation, plan, train_plan, console, result)
    return tuning, plan


def _run_phase(ablation: Ablation, plan: Sequence[PlannedRun], train_plan, console, result: AblationResult) -> None:
    """This task's share of a phase, each run with its TrainConfig."""
    share = ablation.share(plan)
    train_phase(train_plan, [ablation.config_for(p) for p in share], share, console, result)


def _task_done(ablation: Ablation, plan: Sequence[PlannedRun], console, result: AblationResult) -> AblationResult:
    """A task of a job array (or the tuning stage) ends without a report: the others may still run."""
    left = [p for p in plan if run_state(Path(ablation.base.runs_dir) / p.name).action in ("train", "resume")]
    console.print(f"done: this share of the plan ({len(result.outcomes)} runs); {len(left)} runs of the stage are not "
                  f"finished yet. When every task has finished: pileablate report {ablation.base.runs_dir}",
                  highlight=False)
    return result


def train_phase(train_plan, configs: Sequence, plan: Sequence[PlannedRun], console, result: AblationResult) -> None:
    """Train one phase's runs (`parallel.plan_trainer`); an interrupt stops the ablation, checkpoints kept."""
    outcomes, interrupted = train_plan(configs, plan, console)
    result.outcomes += outcomes
    if interrupted:
        raise AblationInterrupted(f"interrupted at run {len(outcomes)}/{len(plan)} ({outcomes[-1].run.title}); "
                                  "checkpoints are saved. Re-run the same command to continue where it stopped")


def chosen_lrs(ablation: Ablation, tuning: Sequence[PlannedRun]) -> dict[str, float]:
    """Each experiment's rate: the lowest mean tuning loss among the rates whose tuning runs all finished
    (`report.tuning.choose_lr`, the rule the report shows). Experiments with no such rate are left out."""
    from pileablate.report.tuning import choose_lr

    points: dict[str, list[tuple[float, Optional[float]]]] = {}
    for planned in tuning:
        summary = read_summary(Path(ablation.base.runs_dir) / planned.name) or {}
        finished = summary.get("status") == "finished" and summary.get("final_val_loss") is not None
        points.setdefault(planned.label, []).append((planned.lr, summary["final_val_loss"] if finished else None))
    chosen = {}
    for label, pairs in points.items():
        try:
            chosen[label] = choose_lr(pairs, label)[0]
        except UserError:
            continue  # no rate finished: the experiment is listed as not reported
    return chosen


def describe(ablation: Ablation) -> str:
    from pileablate.report.checks import describe_budget

    n_seeds, n_runs = len(ablation.seeds), len(ablation.report_plan())
    tuning = f" after {len(ablation.tuning_plan())} tuning runs" if ablation.tuning else ""
    return (f"ablation: {len(ablation.experiments)} configurations × {n_seeds} seed{'s' if n_seeds > 1 else ''} = "
            f"{n_runs} runs{tuning} · preset {ablation.base.preset} · budget "
            f"{describe_budget(budget_of(ablation.base))} per run · {ablation.base.runs_dir}")


def plan_table(ablation: Ablation, plan: Sequence[PlannedRun]):
    from rich.table import Table

    from pileablate.report.checks import describe_budget

    table = Table(title=f"ablation plan: {len(plan)} runs in {ablation.base.runs_dir}, each "
                        f"{describe_budget(budget_of(ablation.base))}", header_style="bold")
    for header in ("#", "run", "mods", "seed", "lr", "state"):
        table.add_column(header, justify="right" if header in ("#", "seed", "lr") else "left")
    for p in plan:
        state = run_state(Path(ablation.base.runs_dir) / p.name)
        lr = format_lr(p.lr) if p.lr is not None else ("tuned" if ablation.tuning else "default")
        table.add_row(str(p.index), p.name, ",".join(p.mods) or "baseline", str(p.seed), lr,
                      f"{state.action}: {state.detail}" if state.action != "train" else "train (new)")
    return table


def report_on(runs_dir: Path, plan: Sequence[PlannedRun], trackers: Sequence[str] = ()):
    """The report over this ablation's runs (not whatever else lies in the runs folder)."""
    return report_folders(Path(runs_dir), [Path(runs_dir) / p.name for p in plan], "ablation", trackers)


def report_folders(runs_dir: Path, folders: Sequence[Path], what: str, trackers: Sequence[str] = ()):
    """One report over these run folders, written into `runs_dir`, printed, and sent to the runs'
    trackers when they have any."""
    from pileablate.console import stdout_console
    from pileablate.report.build import build_report, publish_to_trackers, write_report
    from pileablate.report.console import print_files
    from pileablate.report.runs import is_run_dir, load_run

    runs = [load_run(folder) for folder in folders if is_run_dir(folder)]
    if not runs:
        raise UserError(f"no run of this {what} in {runs_dir} finished; nothing to report")
    report = build_report([runs_dir], runs=runs)
    files = write_report(report, runs_dir)
    stdout_console().print(report.table())
    print_files(report, files)
    publish_to_trackers(report, files, trackers, runs_dir)
    return report


class AblationInterrupted(UserError):
    exit_code = 130


class AblationFailed(UserError):
    exit_code = 1
