"""One study: configurations x seeds at one or more points, and its plan (the parts, their runs in
order). `pileablate.ablate.run` runs it along one path (plan, tune, train, list failures, report,
publish to the trackers); `phases` executes each phase.

A plain ablation is a study with one point whose runs lie in RUNS itself (RUNS/rope-s0); a sweep
(`--sweep preset=nano,micro`) has a point per value, each in its own folder (RUNS/micro/rope-s0) with
its point.json. Every point is the grid of `Ablation` on the point's settings, with its own default
budget when none is given and its own tuned rates; there is one report, in RUNS, over all points.

    from pileablate.ablate import Ablation, default_grid
    from pileablate.ablate.run import run_study
    from pileablate.ablate.study import Study

    run_study(Study(Ablation(TrainConfig(data="data", max_tokens=1_000_000), default_grid("rope"),
                             seeds=[0, 1])))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from pileablate.ablate.ablation import Ablation
from pileablate.ablate.axes import Axis, Point, check_axes, points
from pileablate.ablate.plan import PlannedRun, format_lr
from pileablate.ablate.runner import data_identity, grid_budget, run_state
from pileablate.runfolder import budget_of
from pileablate.errors import UserError
from pileablate.train.config import TrainConfig

NO_POINT = Point("", {})    # a plain ablation's one point: no folder of its own
NOT_IN_ARRAYS = ("{option} needs fixed seeds (--seeds N): --seeds auto chooses each round's runs from the verdicts "
                 "of the round before, which the tasks of a job array cannot wait for")


@dataclass
class Study:
    """One grid (`ablation`: experiments, seeds, tuning, execution) at every point of `axes` (none: one
    point, the plain ablation). `max_seeds` set: `--seeds auto`, seeds added round by round up to it."""

    ablation: Ablation                 # its base holds the shared settings; runs_dir is the study's folder
    axes: list[Axis] = field(default_factory=list)
    tune_spec: Optional[str] = None    # --tune-lr as given: 'auto' and N centre on each point's preset default
    max_seeds: Optional[int] = None    # --seeds auto --max-seeds N; None: the fixed seeds of `ablation`
    margin: Optional[float] = None     # --margin (nats/token); None: the report's default
    points: list[Point] = field(init=False)

    def __post_init__(self) -> None:
        from pileablate.options import default_of, flag_of

        check_axes(self.axes)
        base = self.ablation.base
        for axis in self.axes:
            if "." in axis.field:  # a modification's option: the point's value replaces a --mod-option of it
                continue
            given = getattr(base, axis.field)
            machine_chose = axis.field == "preset" and base.preset_reason is not None
            if given != default_of(TrainConfig, axis.field) and not machine_chose:
                option = flag_of(TrainConfig, axis.field)
                shown = f"{given:g}" if isinstance(given, float) else str(given)
                raise UserError(f"--sweep {axis.option} and {option} {shown} both set {axis.option}; drop {option}")
        self.points = points(self.axes) if self.axes else [NO_POINT]
        self._check_design()

    def _check_design(self) -> None:
        from pileablate.report.verdict import SequentialDesign, check_margin

        if self.margin is not None:
            check_margin(self.margin)
        if not self.sequential:
            return

        first = SequentialDesign.first
        if self.max_seeds < first:
            raise UserError(f"--max-seeds {self.max_seeds}: --seeds auto starts with {first} seeds of every "
                            f"configuration; give --max-seeds {first} or more")
        if self.ablation.task is not None:
            raise UserError(NOT_IN_ARRAYS.format(option="--task"))
        if len(self.ablation.seeds) != self.max_seeds:
            raise UserError(f"--seeds auto --max-seeds {self.max_seeds} needs {self.max_seeds} seeds to draw "
                            f"from; the ablation lists {len(self.ablation.seeds)}")

    @property
    def is_sweep(self) -> bool:
        return bool(self.axes)

    @property
    def sequential(self) -> bool:
        return self.max_seeds is not None

    def at(self, point: Point) -> Ablation:
        """The plain ablation of one point (its budget not yet fixed: see `parts`)."""
        if point is NO_POINT:
            return self.ablation
        settings = {k: v for k, v in point.values.items() if "." not in k}
        options = {k: v for k, v in point.values.items() if "." in k}  # a modification's option: NAME.KEY
        given = tuple(o for o in self.ablation.base.mod_options if o.partition("=")[0].strip().lower() not in options)
        base = dataclasses.replace(self.ablation.base, **settings, runs_dir=Path(self.ablation.base.runs_dir) / point.label,
                                   mod_options=given + tuple(f"{k}={v}" for k, v in options.items()))
        tune_lrs = self.ablation.tune_lrs
        if tune_lrs and self.tune_spec:
            from pileablate.ablate.tuning import lr_candidates
            from pileablate.train.config import default_lr

            tune_lrs = lr_candidates(self.tune_spec, default_lr(base.preset))
        return dataclasses.replace(self.ablation, base=base, tune_lrs=tune_lrs)

    # What `ablate --emit slurm` needs (slurm.write_scripts), over every point.
    @property
    def base(self):
        times = [p.values["time_limit"] for p in self.points if "time_limit" in p.values]
        base = self.ablation.base
        return dataclasses.replace(base, time_limit=max(times)) if times else base

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
        """This task's share of the whole study's plan (--task K/N): every N-th from the K-th."""
        return self.ablation.share(pairs)


@dataclass(frozen=True)
class Part:
    """The grid at one point: the point and its plain ablation (base = the point's settings and folder)."""

    point: Point
    ablation: Ablation
    default_budget: bool = False   # the budget is the baseline's default at this point (none was given)
    train_tokens: int = 0          # tokens in the store's train split (what a budget's passes are counted in)

    def passes(self) -> str:
        """'0.0067 passes over the train split (...)', and a warning when a run sees its data more than once."""
        from pileablate.ablate.cost import tokens_per_run
        from pileablate.train.passes import describe_passes, repeat_warning

        tokens = tokens_per_run(self.ablation.base)
        warning = repeat_warning(tokens, self.train_tokens, self.default_budget)
        return describe_passes(tokens, self.train_tokens) + (f"; warning: {warning}" if warning else "")

    def key(self, label: str) -> str:
        """A configuration as the report names it: 'rope', or 'micro/rope' in a sweep."""
        return f"{self.point.label}/{label}" if self.point.label else label


def ordered(pairs: Sequence[tuple[Part, PlannedRun]]) -> list[tuple[Part, PlannedRun]]:
    """Seeds outermost across points (stable, so points keep their order within a seed): a first pass
    is a complete one-seed study. Each run is tagged with its point; indices follow this order."""
    tagged = [(part, dataclasses.replace(p, point=part.point.label or None)) for part, p in pairs]
    tagged.sort(key=lambda pair: pair[1].seed)
    return [(part, dataclasses.replace(p, index=i)) for i, (part, p) in enumerate(tagged, start=1)]


def parts(study: Study) -> list[Part]:
    """Every point's ablation with its budget fixed (the baseline's default at that point when none is
    given) and every configuration's model checked at that point: a size that cannot be built is a
    one-line error before anything runs."""
    from pileablate.ablate.cost import tokens_per_run
    from pileablate.model.build import build_model_config
    from pileablate.train.passes import check_passes, train_split_tokens

    vocab_size, _ = data_identity(study.ablation.base.data)
    train_tokens = train_split_tokens(study.ablation.base.data)
    out = []
    for point in study.points:
        ablation = study.at(point)
        for experiment in ablation.experiments:
            try:
                build_model_config(ablation.base.preset, experiment.mods, vocab_size,
                                   mod_options=ablation.base.mod_options, **ablation.base.model_overrides())
            except UserError as err:
                if point is NO_POINT:
                    raise
                raise UserError(f"--sweep point {point.label} ({point.describe()}), {experiment.label}: "
                                f"{err}") from None
        base, defaulted = grid_budget(ablation.base, vocab_size)
        check_passes(tokens_per_run(base), train_tokens)
        out.append(Part(point, dataclasses.replace(ablation, base=base), default_budget=defaulted,
                        train_tokens=train_tokens))
    return out


def check_configurations(ready: Sequence[Part]) -> None:
    """Every configuration's modifications pass the causality probe together before any run starts, so
    a leak is refused as one, never blamed on a learning rate that 'did not finish'."""
    from pileablate.model.build import PRESETS
    from pileablate.model.guards import check_configuration

    for part in ready:
        base = part.ablation.base
        context = base.seq_len or PRESETS.get(base.preset, {}).get("seq_len", 1024)
        for experiment in part.ablation.experiments:
            check_configuration(experiment.mods, base.mod_options, context, part.key(experiment.label))


def run_dir(part: Part, planned: PlannedRun) -> Path:
    return Path(part.ablation.base.runs_dir) / planned.name


def describe(study: Study, ready: Sequence[Part]) -> str:
    from pileablate.report.checks import describe_budget
    from pileablate.train.config import DEFAULT_TOKENS_PER_PARAM

    ablation = study.ablation
    n_seeds = len(ablation.seeds)
    n_runs = sum(len(part.ablation.report_plan()) for part in ready)
    n_tuning = sum(len(part.ablation.tuning_plan()) for part in ready)
    tuning = f" after {n_tuning} tuning runs" if n_tuning else ""
    seeds = f"{n_seeds} seed{'s' if n_seeds > 1 else ''}"
    if study.sequential:
        first = seeds_in_first_round(study)
        seeds = f"{first} to {study.max_seeds} seeds (--seeds auto)"
        n_runs = f"{n_runs // n_seeds * first} to {n_runs}"
    if not study.is_sweep:
        passes = ready[0].passes()
        return (f"ablation: {len(ablation.experiments)} configurations × {seeds} = {n_runs} runs{tuning} · preset "
                f"{ablation.base.preset} · budget {describe_budget(budget_of(ready[0].ablation.base))} per run"
                + (f" = {passes}" if passes else "") + f" · {ablation.base.runs_dir}")
    budgets = "; ".join(f"{part.point.label} {describe_budget(budget_of(part.ablation.base))}"
                        + (" (default)" if part.default_budget else "")
                        + (f" = {part.passes()}" if part.passes() else "") for part in ready)
    default = (f" · (default): the baseline's {DEFAULT_TOKENS_PER_PARAM} tokens per parameter at that point"
               if any(part.default_budget for part in ready) else "")
    return (f"sweep: {len(ready)} points × {len(ablation.experiments)} configurations × {seeds} = {n_runs} runs"
            f"{tuning} · budget per run: {budgets}{default} · {ablation.base.runs_dir}")


def seeds_in_first_round(study: Study) -> int:
    from pileablate.report.verdict import SequentialDesign

    return SequentialDesign(max_seeds=study.max_seeds).looks()[0]


def plan_table(pairs: Sequence[tuple[Part, PlannedRun]], title: str):
    """Every run in the order it will train: run (point/run in a sweep), mods, seed, lr, state."""
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for header in ("#", "run", "mods", "seed", "lr", "state"):
        table.add_column(header, justify="right" if header in ("#", "seed", "lr") else "left")
    for part, p in pairs:
        state = run_state(run_dir(part, p))
        lr = format_lr(p.lr) if p.lr is not None else ("tuned" if part.ablation.tuning else "default")
        table.add_row(str(p.index), p.title, ",".join(p.mods) or "baseline", str(p.seed), lr,
                      f"{state.action}: {state.detail}" if state.action != "train" else "train (new)")
    return table
