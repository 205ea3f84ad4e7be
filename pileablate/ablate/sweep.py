"""`ablate --sweep`: the whole grid at every point of one or more axes (model size, tokens, ...), so the
report can say whether a modification's Δ grows, shrinks, changes sign or stays within noise.

A point is a set of train-option overrides with a folder of its own (RUNS/micro/rope-s0): its runs
are the grid of a plain ablation on `replace(base, **point.values)`, with the same seeds, its own
default budget when none is given (the baseline's tokens per parameter at that size) and, with
--tune-lr, its own tuned learning rates. `RUNS/<point>/point.json` records the point, so the report
groups by point and never pools runs of two points. There is one report, in RUNS, over all points.

    from pileablate.ablate import Ablation, default_grid
    from pileablate.ablate.axes import parse_axis
    from pileablate.ablate.sweep import Sweep, run_sweep

    run_sweep(Sweep(Ablation(TrainConfig(data_dir="data", max_tokens=1_000_000), default_grid("rope"),
                             seeds=[0, 1]), [parse_axis("preset=nano,micro")]))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from pileablate.ablate.ablation import Ablation, AblationFailed, AblationResult, chosen_lrs, train_phase
from pileablate.ablate.axes import Axis, Point, check_axes, points
from pileablate.ablate.plan import PlannedRun
from pileablate.ablate.runner import check_existing, data_identity, grid_budget, run_state
from pileablate.errors import UserError
from pileablate.report.runs import POINT_FILE  # one name for the writer and the reader (no torch there)


@dataclass(frozen=True)
class Part:
    """The grid at one point: the point and its plain ablation (base = the point's settings and folder)."""

    point: Point
    ablation: Ablation
    default_budget: bool = False   # the budget is the baseline's default at this point (none was given)


@dataclass
class Sweep:
    """One grid (`ablation`: experiments, seeds, tuning, jobs) at every point of `axes`."""

    ablation: Ablation                 # its base holds the shared settings; runs_dir is the sweep's top folder
    axes: list[Axis]
    tune_spec: Optional[str] = None    # --tune-lr as given: 'auto' and N centre on each point's preset default
    points: list[Point] = field(init=False)

    def __post_init__(self) -> None:
        from pileablate.train.config import field_default, option_name

        check_axes(self.axes)
        base = self.ablation.base
        for axis in self.axes:
            given = getattr(base, axis.field)
            if given != field_default(axis.field):
                option = option_name(axis.field)
                raise UserError(f"--sweep {axis.option} and {option} {given:g} both set {axis.option}; drop {option}"
                                if isinstance(given, float) else
                                f"--sweep {axis.option} and {option} {given} both set {axis.option}; drop {option}")
        self.points = points(self.axes)

    def at(self, point: Point) -> Ablation:
        """The plain ablation of one point (its budget not yet fixed: see `parts`)."""
        base = dataclasses.replace(self.ablation.base, **point.values,
                                   runs_dir=Path(self.ablation.base.runs_dir) / point.label)
        tune_lrs = self.ablation.tune_lrs
        if tune_lrs and self.tune_spec:
            from pileablate.ablate.tuning import lr_candidates
            from pileablate.train.config import preset_defaults

            tune_lrs = lr_candidates(self.tune_spec, preset_defaults(base.preset)["lr"])
        return dataclasses.replace(self.ablation, base=base, tune_lrs=tune_lrs)

    # What `ablate --emit slurm` needs (slurm.write_scripts), over every point.
    @property
    def base(self):
        times = [p.values["time_limit_s"] for p in self.points if "time_limit_s" in p.values]
        base = self.ablation.base
        return dataclasses.replace(base, time_limit_s=max(times)) if times else base

    @property
    def tuning(self) -> bool:
        return self.ablation.tuning

    def tuning_plan(self) -> list[PlannedRun]:
        return [p for _, p in ordered([(Part(pt, self.at(pt)), p) for pt in self.points
                                       for p in self.at(pt).tuning_plan()])]

    def report_plan(self) -> list[PlannedRun]:
        return [p for _, p in ordered([(Part(pt, self.at(pt)), p) for pt in self.points
                                       for p in self.at(pt).report_plan()])]

    def share(self, pairs: Sequence) -> list:
        """This task's share of the whole sweep's plan (--task K/N): every N-th from the K-th."""
        if self.ablation.task is None:
            return list(pairs)
        k, n = self.ablation.task
        return [x for i, x in enumerate(pairs) if i % n == k - 1]


def ordered(pairs: Sequence[tuple[Part, PlannedRun]]) -> list[tuple[Part, PlannedRun]]:
    """Seeds outermost across points (stable, so points keep their order within a seed): a first pass
    is a complete one-seed sweep. Each run is tagged with its point."""
    tagged = [(part, dataclasses.replace(p, point=part.point.label)) for part, p in pairs]
    return sorted(tagged, key=lambda pair: pair[1].seed)


def parts(sweep: Sweep) -> list[Part]:
    """Every point's ablation with its budget fixed (the baseline's default at that point when none is
    given) and every configuration's model checked at that point: a size that cannot be built is a
    one-line error before anything runs."""
    from pileablate.model.config import build_model_config

    vocab_size, _ = data_identity(sweep.ablation.base.data_dir)
    out = []
    for point in sweep.points:
        ablation = sweep.at(point)
        for experiment in ablation.experiments:
            try:
                build_model_config(ablation.base.preset, experiment.mods, vocab_size,
                                   **ablation.base.model_overrides())
            except UserError as err:
                raise UserError(f"--sweep point {point.label} ({point.describe()}), {experiment.label}: "
                                f"{err}") from None
        base, defaulted = grid_budget(ablation.base, vocab_size)
        out.append(Part(point, dataclasses.replace(ablation, base=base), default_budget=defaulted))
    return out


def point_record(sweep: Sweep, part: Part) -> dict:
    """RUNS/<point>/point.json: what the report reads to group runs by point (no timestamps, so that
    every task of a job array writes the same file)."""
    from pileablate.ablate.runner import budget_of

    return {"point": part.point.label, "axes": [a.field for a in sweep.axes], "values": part.point.values,
            "budget": budget_of(part.ablation.base), "default_budget": part.default_budget}


def claim_folders(sweep: Sweep, ready: Sequence[Part]) -> None:
    """Refuse a point folder that holds something else (a run, or another sweep's point); then record
    each point."""
    import json

    from pileablate.runfolder import is_run_dir, write_point

    records = []
    for part in ready:
        folder = Path(part.ablation.base.runs_dir)
        record = point_record(sweep, part)
        if is_run_dir(folder):
            raise UserError(f"{folder} is a run's folder, not a sweep point's; use another --runs-dir for the sweep")
        path = folder / POINT_FILE
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                raise UserError(f"{path} is unreadable; delete it (and the runs beside it) to redo point "
                                f"{part.point.label}") from None
            if old.get("values") != json.loads(json.dumps(record["values"])) or old.get("axes") != record["axes"]:
                raise UserError(f"{folder} holds another sweep's point ({old.get('values')}); use another --runs-dir")
        records.append((path, record))
    for path, record in records:
        write_point(path.parent, record)


def run_sweep(sweep: Sweep, console=None) -> AblationResult:
    """Every point's tuning runs, then every point's reported runs (each point at its own chosen rates),
    then one report over all points in the top runs folder. Interrupts and failures as `run_ablation`."""
    from pileablate.ablate.parallel import plan_trainer
    from pileablate.console import stderr_console

    console = console or stderr_console()
    ready = parts(sweep)
    ablation = sweep.ablation
    console.print(describe(sweep, ready), highlight=False)
    result = AblationResult()
    with plan_trainer(ablation.jobs, ablation.devices) as train_plan:
        tuning, reported = _tune_then_train(sweep, ready, train_plan, console, result)
    if reported is None or ablation.task is not None:
        return _task_done(sweep, tuning + (reported or []), console, result)
    result.report = report_on(ablation.base.runs_dir, tuning + reported)
    _raise_failures(ready, reported, result)
    return result


def _tune_then_train(sweep: Sweep, ready: Sequence[Part], train_plan, console, result: AblationResult):
    """(tuning pairs, reported pairs), the reported ones None when this is only the tuning stage."""
    ablation = sweep.ablation
    _, fingerprint = data_identity(ablation.base.data_dir)
    tuning = ordered([(part, p) for part in ready for p in part.ablation.tuning_plan()])
    for part in ready:
        check_existing(part.ablation, part.ablation.tuning_plan(), fingerprint)
    claim_folders(sweep, ready)
    if tuning and ablation.stage in ("tune", "all"):
        console.print(f"tuning the learning rate: {len(tuning)} runs over {len(ready)} points", highlight=False)
        _run_phase(sweep, sweep.share(tuning), train_plan, console, result)
        if ablation.stage == "tune":
            return tuning, None
    reported = []
    for part in ready:
        plan = _reported_plan(part, result)
        check_existing(part.ablation, plan, fingerprint)
        reported += [(part, p) for p in plan]
    reported = ordered(reported)
    _run_phase(sweep, sweep.share(reported), train_plan, console, result)
    return tuning, reported


def _reported_plan(part: Part, result: AblationResult) -> list[PlannedRun]:
    """The point's reported runs, at the rates its own tuning runs chose."""
    ablation = part.ablation
    if not ablation.tuning:
        return ablation.report_plan()
    tuning = ablation.tuning_plan()
    lrs = chosen_lrs(ablation, tuning)
    unfinished = [p.name for p in tuning
                  if run_state(Path(ablation.base.runs_dir) / p.name).action in ("train", "resume")]
    if unfinished:
        raise UserError(f"{len(unfinished)} tuning runs are not finished ({part.point.label}/{unfinished[0]}, ...); "
                        "run --stage tune to the end first")
    result.chosen_lrs.update({f"{part.point.label}/{label}": lr for label, lr in lrs.items()})
    return [p for p in ablation.report_plan(lrs) if p.label in lrs]


def _run_phase(sweep: Sweep, pairs: Sequence[tuple[Part, PlannedRun]], train_plan, console,
               result: AblationResult) -> None:
    configs = [part.ablation.config_for(p) for part, p in pairs]
    plan = [dataclasses.replace(p, index=i) for i, (_, p) in enumerate(pairs, start=1)]
    train_phase(train_plan, configs, plan, console, result)


def _task_done(sweep: Sweep, pairs, console, result: AblationResult) -> AblationResult:
    left = [p for part, p in pairs
            if run_state(Path(part.ablation.base.runs_dir) / p.name).action in ("train", "resume")]
    console.print(f"done: this share of the plan ({len(result.outcomes)} runs); {len(left)} runs of the stage are not "
                  f"finished yet. When every task has finished: pileablate report {sweep.ablation.base.runs_dir}",
                  highlight=False)
    return result


def _raise_failures(ready: Sequence[Part], reported, result: AblationResult) -> None:
    # A tuning run that diverges at a high rate is an answer, not a failure of the sweep.
    failed = [o for o in result.outcomes if o.run.role == "report" and (o.state.action == "failed" or o.error)]
    untuned = [f"{part.point.label}/{e.label}" for part in ready for e in part.ablation.experiments
               if part.ablation.tuning and f"{part.point.label}/{e.label}" not in result.chosen_lrs]
    problems = [f"{len(failed)} of {len(reported)} runs failed ({', '.join(o.run.title for o in failed)})"
                ] if failed else []
    problems += [f"not reported, no tuning run finished: {', '.join(untuned)}"] if untuned else []
    if problems:
        raise AblationFailed("; ".join(problems) + "; the report lists them. Fix the cause, delete those run "
                             "folders and re-run to redo only them")


def report_on(runs_dir: Path, pairs: Sequence[tuple[Part, PlannedRun]]):
    """One report over every point's runs, written into the sweep's top folder."""
    from pileablate.ablate.ablation import report_folders

    folders = [Path(part.ablation.base.runs_dir) / p.name for part, p in pairs]
    return report_folders(Path(runs_dir), folders, "sweep")


def describe(sweep: Sweep, ready: Sequence[Part]) -> str:
    from pileablate.ablate.runner import budget_of
    from pileablate.report.checks import describe_budget
    from pileablate.train.config import DEFAULT_TOKENS_PER_PARAM

    ablation = sweep.ablation
    n_runs = sum(len(part.ablation.report_plan()) for part in ready)
    n_tuning = sum(len(part.ablation.tuning_plan()) for part in ready)
    tuning = f" after {n_tuning} tuning runs" if n_tuning else ""
    budgets = "; ".join(f"{part.point.label} {describe_budget(budget_of(part.ablation.base))}"
                        + (" (default)" if part.default_budget else "") for part in ready)
    default = (f" · (default): the baseline's {DEFAULT_TOKENS_PER_PARAM} tokens per parameter at that point"
               if any(part.default_budget for part in ready) else "")
    return (f"sweep: {len(ready)} points × {len(ablation.experiments)} configurations × {len(ablation.seeds)} "
            f"seed{'s' if len(ablation.seeds) > 1 else ''} = {n_runs} runs{tuning} · budget per run: {budgets}"
            f"{default} · {ablation.base.runs_dir}")
