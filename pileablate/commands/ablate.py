"""`pileablate ablate`: the grid (baseline, each modification alone, all together) × seeds, equal budgets.

Its options are `AblateOptions`' fields, `SlurmOptions`' and `TrainConfig`'s (every run shares those); this
module turns them into one `Study` (an `Ablation` at one or more points), which `pileablate.ablate.study` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pileablate.ablate.options import FORWARDED_TO_TASKS, AblateOptions
from pileablate.options import from_command_line, parameters, with_parameters
from pileablate.slurm_options import SlurmOptions
from pileablate.train.config import TrainConfig

# The train options every run shares, less `mods` (ablate's --mods names what to ablate) and the internal
# `tuning`; --name and --resume are taken only to say why ablate does without them.
_TRAIN_PARAMETERS = parameters(TrainConfig, exclude=("mods", "tuning"), hidden=("name", "resume"))


@with_parameters(parameters(AblateOptions), parameters(SlurmOptions), _TRAIN_PARAMETERS, context=True)
def ablate(ctx: typer.Context, **options) -> None:
    """Run the ablation grid over seeds with one budget for every run, then print the report.

    The train options (model, optimizer, budget, evaluation, hardware) apply to every run. Without a
    budget, every run gets the baseline's default token budget. Runs are named <configuration>-s<seed>
    (baseline-s0, rope-s0, all-s1), tuning runs tune-<configuration>-lr<rate>-s<seed>; re-running the
    command skips finished runs and resumes an interrupted one. The report (report.md, summary.csv,
    plots/) is written into the runs folder.

    With --seeds auto, seeds are added round by round only to the configurations whose verdict is still
    undecided (3, then 5, 7, ... up to --max-seeds); the same command continues an interrupted study.

    With --sweep (e.g. --sweep preset=nano,micro) the whole grid runs at every point of the axes, each
    point in its own folder (RUNS/micro/rope-s0), and the report says for each modification how its Δ
    moves along the axis (scaling.csv, plots/scaling_delta, plots/baseline_scaling).

    --device may list devices (cuda:0,cuda:1): --jobs runs one run on each.
    """
    from pileablate.ablate import Ablation, default_grid, grid_from_toml
    from pileablate.ablate.run import run_study
    from pileablate.ablate.study import NOT_IN_ARRAYS, Study
    from pileablate.commands.train import train_config
    from pileablate.errors import UserError

    given = AblateOptions(**from_command_line(AblateOptions, options))
    devices = _devices(options)
    base = train_config({**options, "mods": None})
    if given.task is not None:
        from pileablate.ablate.slurm import use_task_cpus

        use_task_cpus()
    if given.mods is not None and given.grid is not None:
        raise UserError("--mods and --grid both choose the configurations; give one of them")
    experiments, grid_seeds = grid_from_toml(given.grid) if given.grid is not None else (default_grid(given.mods), None)
    count, most = _seed_counts(given.seeds, grid_seeds, given.max_seeds)
    ablation = Ablation(base, experiments, [base.seed + i for i in range(most or count)],
                        tune_lrs=_tune_rates(given.tune_lr, base), tune_seeds=given.tune_seeds,
                        tune_budget=given.tune_budget, jobs=given.jobs, devices=devices, task=_parse_task(given.task),
                        stage=given.stage, no_wait=given.no_wait)
    if given.emit is not None and given.emit != "slurm":
        raise UserError(f"--emit {given.emit!r}: only 'slurm' is supported")
    if given.emit is not None and most is not None:
        raise UserError(NOT_IN_ARRAYS.format(option="--emit slurm"))
    study = Study(ablation, _sweep_axes(given.sweep, given.grid), tune_spec=given.tune_lr, max_seeds=most,
                  margin=given.margin)
    if given.emit is not None:
        _emit_slurm(study, given, SlurmOptions(**from_command_line(SlurmOptions, options)), _forwarded_args(ctx))
    elif given.dry_run:
        from pileablate.ablate.cost import print_plan

        print_plan(study)
    else:
        run_study(study)


def _devices(options: dict) -> Optional[str]:
    """--device as a list of devices for --jobs ("cuda:0,cuda:1"), or None for one device. The runs
    share the kind of device named (`options["device"]` becomes it): losses on a CPU and on a GPU differ
    in their last digits, so one grid does not mix them."""
    from pileablate.errors import UserError
    from pileablate.train.config import check_device

    names = [d.strip() for d in str(options.get("device") or "auto").split(",") if d.strip()]
    if len(names) < 2:
        return None
    for name in names:
        check_device(name)
    kinds = {name.split(":")[0] for name in names}
    if len(kinds) > 1:
        raise UserError(f"--device {options['device']}: the runs of one grid train on one kind of device; "
                        "list only cuda:N devices, or only cpu")
    options["device"] = kinds.pop()
    return ",".join(names)


def _forwarded_args(ctx: typer.Context) -> list[str]:
    """What a job array's task repeats of this command line: the study, the tuning and the train options
    as given (paths absolute); the --emit, --jobs and --task options are the array's own."""
    from dataclasses import fields

    from pileablate.options import as_args

    here_only = {f.name for f in fields(AblateOptions) if f.metadata["cli"].group not in FORWARDED_TO_TASKS}
    here_only |= {f.name for f in fields(SlurmOptions)}
    return as_args(ctx.command, ctx, keep=lambda name: name not in here_only)


def _seed_counts(seeds: Optional[str], grid_seeds: Optional[int], max_seeds: Optional[int]):
    """(fixed seed count, None) or (None, the most seeds of --seeds auto)."""
    from pileablate.errors import UserError

    text = None if seeds is None else str(seeds).strip().lower()
    if text == "auto":
        from pileablate.report.verdict import SequentialDesign

        return None, max_seeds if max_seeds is not None else SequentialDesign().max_seeds
    if max_seeds is not None:
        raise UserError("--max-seeds goes with --seeds auto; give --seeds auto, or drop --max-seeds")
    if text is None:
        return grid_seeds or 1, None
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--seeds {seeds}: give a number of seeds (1 or more) or auto")
    return int(text), None


def _sweep_axes(specs: tuple[str, ...], grid: Optional[Path]) -> list:
    """The axes of --sweep (which replace a grid file's [sweep] table), else the file's."""
    from pileablate.ablate.axes import check_axes, parse_axis, sweep_from_grid_file

    if specs:
        return check_axes([parse_axis(spec) for spec in specs])
    return sweep_from_grid_file(grid) if grid is not None else []


def _parse_task(text: Optional[str]):
    from pileablate.units import parse_share

    return None if text is None else parse_share(text, "--task")


def _emit_slurm(study, given: AblateOptions, slurm: SlurmOptions, args: list[str]) -> None:
    from pileablate.ablate.slurm import fit_warnings, make_request, write_scripts
    from pileablate.ablate.study import parts
    from pileablate.console import stderr_console

    request = make_request(study.ablation.base.device, given.gpus_per_run, given.cpus_per_run, slurm)
    parts(study)  # the data and every configuration's model are checked before any script is written
    files = write_scripts(study, args, given.array_tasks, request)
    console = stderr_console()
    for warning in fit_warnings(request):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for path in files:
        console.print(f"wrote {path}", highlight=False)
    console.print(f"submit with: bash {files[-1]}   then, when it has finished: pileablate report "
                  f"{study.ablation.base.runs_dir}", highlight=False)


def _tune_rates(spec: Optional[str], base) -> tuple[float, ...]:
    from pileablate.ablate.tuning import lr_candidates
    from pileablate.train.config import default_lr

    if spec is None:
        return ()
    return lr_candidates(spec, default_lr(base.preset))
