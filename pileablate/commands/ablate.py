"""`pileablate ablate`: the grid (baseline, each modification alone, all together) × seeds, equal budgets.

All parsing happens here: the train options through `pileablate train`'s own parser, then `--mods` /
`--grid` / `--seeds` / `--tune-*` / `--sweep` into one `Study` (an `Ablation` at one or more points), which
`pileablate.ablate.study` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer


def _option(*names: str, **kwargs):
    """A typer option without a default shown (most of ablate's defaults are "not given")."""
    return typer.Option(*names, show_default=kwargs.pop("show_default", False), **kwargs)


# The options, declared once here so that `ablate`'s signature reads as the list of what it takes.
Mods = Annotated[Optional[str], _option(
    "--mods", help="Comma list of modifications: runs the baseline, each alone, and all together. "
    "Default: warmup,cosine,rmsnorm,rope,swiglu (the seven experiments).")]
Grid = Annotated[Optional[Path], _option(
    "--grid", help="TOML file of explicit configurations: one \\[\\[config]] table per configuration with "
    "mods = [\"rope\", \"swiglu\"] (and optionally name = \"...\"); optional top-level seeds = K.")]
SweepAxes = Annotated[Optional[List[str]], _option(
    "--sweep", metavar="OPTION=V1,V2,...",
    help="Run the whole grid at every value of a train option, to see whether a modification's Δ holds at scale: "
    "preset=nano,micro,mini, n_layer=, n_head=, d_model=, seq_len=, max_tokens=1M,3M,10M, max_steps=, "
    "time_limit=. Repeat for several axes (their product). Each point gets the same seeds, its own folder "
    "(RUNS/micro/rope-s0), its own default budget when none is given, its own tuned lr with --tune-lr; one "
    "report over all points says how Δ moves along the axis. Replaces the grid file's \\[sweep] table.")]
Seeds = Annotated[Optional[str], _option(
    "--seeds", metavar="N|auto",
    help="Seeds per configuration (--seed S gives seeds S, S+1, ...). Default 1, or the grid file's seeds. "
    "'auto': 3 seeds of every configuration, then 2 more at a time only for the configurations whose verdict "
    "is still undecided, up to --max-seeds (a sequential rule the report states).")]
MaxSeeds = Annotated[Optional[int], _option(
    "--max-seeds", help="With --seeds auto: the most seeds a configuration gets (at least 3; default 10).")]
Margin = Annotated[Optional[float], _option(
    "--margin", metavar="NATS",
    help="The difference in validation loss (nats/token) below which a modification has 'no effect'; recorded "
    "in RUNS/study.json for the report. Default: the report's (see 'pileablate report --help').")]
TuneLr = Annotated[Optional[str], _option(
    "--tune-lr", metavar="auto|N|LR,LR,...",
    help="Tune the learning rate of every configuration before the reported runs: 'auto' tries 5 rates "
    "log-spaced over x1/10..x10 of the preset's default, N tries N such rates, or give the rates "
    "(3e-4,1e-3,3e-3). Tuning runs use seeds of their own (1000+) and are scored on held-out tuning windows "
    "disjoint from the validation windows the report scores; each configuration's reported runs then train "
    "at its chosen rate. A rate chosen at the edge of the rates tried adds one rate beyond it (same ratio), "
    "twice at most.")]
TuneSeeds = Annotated[int, _option("--tune-seeds", min=1, show_default=True,
                                   help="Tuning runs per configuration and rate.")]
TuneBudget = Annotated[float, _option(
    "--tune-budget", metavar="FRACTION", show_default=True,
    help="The tuning runs' budget as a fraction of the reported runs' budget (the best rate moves with the "
    "budget: shorten with care).")]
Jobs = Annotated[int, _option(
    "--jobs", min=1, show_default=True,
    help="Runs at once on this machine, each slot with its own worker process: one per GPU, or on a CPU each "
    "with its share of the cores this process may use (its CPU affinity; a tiny model gains little from a second "
    "thread). Results are bit-identical to the same runs made one after another with that many threads.")]
Devices = Annotated[Optional[str], _option(
    "--devices", help="Devices for --jobs, comma list (cuda:0,cuda:1). Default: every visible GPU, else the CPU.")]
Task = Annotated[Optional[str], _option(
    "--task", metavar="K/N", help="Make only this task's share of the plan (every N-th run from the K-th): N tasks "
    "of a job array cover the grid exactly once. No report: run 'pileablate report' after.")]
Stage = Annotated[str, _option(
    "--stage", show_default=True, help="tune, train or all: with --tune-lr a job array runs the tuning runs first "
    "(--stage tune), then the reported ones (--stage train).")]
Emit = Annotated[Optional[str], _option(
    "--emit", metavar="slurm", help="Write sbatch job-array scripts for this ablation and the submit.sh that "
    "submits them into RUNS/slurm/, and stop (nothing trains here).")]
ArrayTasks = Annotated[Optional[int], _option(
    "--array-tasks", min=1, help="With --emit: tasks per array (default: one per run).")]
GpusPerRun = Annotated[Optional[int], _option(
    "--gpus-per-run", min=0, help="With --emit: GPUs per array task (default: 1, none with --device cpu).")]
CpusPerRun = Annotated[Optional[int], _option(
    "--cpus-per-run", min=1, help="With --emit: CPUs per array task, the run's thread count (default: 8 with a GPU, "
    "4 on a CPU).")]
SlurmTime = Annotated[Optional[str], _option(
    "--slurm-time", metavar="[D-]HH:MM:SS", help="With --emit: the array's time limit (default: from --time-limit).")]
SlurmPartition = Annotated[Optional[str], _option("--slurm-partition", help="With --emit: sbatch --partition.")]
SlurmAccount = Annotated[Optional[str], _option("--slurm-account", help="With --emit: sbatch --account.")]
SlurmQos = Annotated[Optional[str], _option("--slurm-qos", help="With --emit: sbatch --qos.")]
SlurmMem = Annotated[Optional[str], _option("--slurm-mem", metavar="SIZE", help="With --emit: sbatch --mem (16G).")]
SlurmExtra = Annotated[Optional[List[str]], _option(
    "--slurm-extra", metavar="OPTION", help="With --emit: any other #SBATCH line, repeatable (--constraint=a100).")]
SlurmSetup = Annotated[Optional[str], _option(
    "--slurm-setup", metavar="COMMANDS", help="With --emit: shell commands each task runs first (\"module load "
    "cuda; source venv/bin/activate\"); the command then uses the python they put on PATH.")]
DryRun = Annotated[bool, _option(
    "--dry-run", show_default=True,
    help="Print the plan (runs, budget, what is finished or will resume) and stop. Every other option is a "
    "'pileablate train' option applied to every run (--data, --runs-dir, --preset, --max-tokens, --time-limit, "
    "--lr, --device, ...).")]


def ablate(ctx: typer.Context, mods: Mods = None, grid: Grid = None, sweep: SweepAxes = None, seeds: Seeds = None,
           max_seeds: MaxSeeds = None, margin: Margin = None, tune_lr: TuneLr = None, tune_seeds: TuneSeeds = 1,
           tune_budget: TuneBudget = 1.0, jobs: Jobs = 1,
           devices: Devices = None, task: Task = None, stage: Stage = "all", emit: Emit = None,
           array_tasks: ArrayTasks = None, gpus_per_run: GpusPerRun = None, cpus_per_run: CpusPerRun = None,
           slurm_time: SlurmTime = None, slurm_partition: SlurmPartition = None, slurm_account: SlurmAccount = None,
           slurm_qos: SlurmQos = None, slurm_mem: SlurmMem = None, slurm_extra: SlurmExtra = None,
           slurm_setup: SlurmSetup = None, dry_run: DryRun = False) -> None:
    """Run the ablation grid over seeds with one budget for every run, then print the report.

    Every other option is a train option and applies to every run (see 'pileablate train --help'),
    e.g. --data, --runs-dir, --preset, --max-tokens, --time-limit, --lr, --device.
    Without a budget, every run gets the baseline's default token budget. Runs are named
    <configuration>-s<seed> (baseline-s0, rope-s0, all-s1), tuning runs tune-<configuration>-lr<rate>-s<seed>;
    re-running the command skips finished runs and resumes an interrupted one. The report (report.md,
    summary.csv, plots/) is written into the runs folder.

    With --seeds auto, seeds are added round by round only to the configurations whose verdict is still
    undecided (3, then 5, 7, ... up to --max-seeds); the same command continues an interrupted study.

    With --sweep (e.g. --sweep preset=nano,micro) the whole grid runs at every point of the axes, each
    point in its own folder (RUNS/micro/rope-s0), and the report says for each modification how its Δ
    moves along the axis (scaling.csv, plots/scaling_delta, plots/baseline_scaling).
    """
    from pileablate.ablate import Ablation, default_grid, grid_from_toml
    from pileablate.ablate.study import NOT_IN_ARRAYS, Study, run_study
    from pileablate.commands.train import train_config_from_args
    from pileablate.errors import UserError

    base = train_config_from_args(list(ctx.args))
    if task is not None:
        from pileablate.ablate.slurm import use_task_cpus

        use_task_cpus()
    if mods is not None and grid is not None:
        raise UserError("--mods and --grid both choose the configurations; give one of them")
    experiments, grid_seeds = grid_from_toml(grid) if grid is not None else (default_grid(mods), None)
    count, most = _seed_counts(seeds, grid_seeds, max_seeds)
    ablation = Ablation(base, experiments, [base.seed + i for i in range(most or count)],
                        tune_lrs=_tune_rates(tune_lr, base), tune_seeds=tune_seeds, tune_budget=tune_budget,
                        jobs=jobs, devices=devices, task=_parse_task(task), stage=stage)
    if emit is not None and emit != "slurm":
        raise UserError(f"--emit {emit!r}: only 'slurm' is supported")
    if emit is not None and most is not None:
        raise UserError(NOT_IN_ARRAYS.format(option="--emit slurm"))
    study = Study(ablation, _sweep_axes(sweep, grid), tune_spec=tune_lr, max_seeds=most, margin=margin)
    if emit is not None:
        from pileablate.ablate.slurm import make_request

        request = make_request(base.device, gpus_per_run, cpus_per_run, partition=slurm_partition,
                               account=slurm_account, qos=slurm_qos, mem=slurm_mem, extra=slurm_extra or (),
                               setup=slurm_setup, time=slurm_time)
        given = [("--mods", mods), ("--grid", grid.resolve() if grid else None), ("--seeds", seeds),
                 ("--margin", margin), ("--tune-lr", tune_lr),
                 ("--tune-seeds", tune_seeds if tune_lr else None), ("--tune-budget", tune_budget if tune_lr else None)]
        given += [("--sweep", spec) for spec in sweep or ()]
        args = [str(x) for name, value in given if value is not None for x in (name, value)] + list(ctx.args)
        _emit_slurm(study, args, array_tasks, request)
    elif dry_run:
        from pileablate.ablate.cost import print_plan

        print_plan(study)
    else:
        run_study(study)


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


def _sweep_axes(specs: Optional[List[str]], grid: Optional[Path]) -> list:
    """The axes of --sweep (which replace a grid file's [sweep] table), else the file's."""
    from pileablate.ablate.axes import check_axes, parse_axis, sweep_from_grid_file

    if specs:
        return check_axes([parse_axis(spec) for spec in specs])
    return sweep_from_grid_file(grid) if grid is not None else []


def _parse_task(text: Optional[str]):
    from pileablate.units import parse_share

    return None if text is None else parse_share(text, "--task")


def _emit_slurm(study, args, tasks, request) -> None:
    from pileablate.ablate.slurm import fit_warnings, write_scripts
    from pileablate.ablate.study import parts
    from pileablate.console import stderr_console

    parts(study)  # the data and every configuration's model are checked before any script is written
    files = write_scripts(study, args, tasks, request)
    console = stderr_console()
    for warning in fit_warnings(request):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for path in files:
        console.print(f"wrote {path}", highlight=False)
    console.print(f"submit with: bash {files[-1]}   then, when it has finished: pileablate report "
                  f"{study.ablation.base.runs_dir}", highlight=False)


def _tune_rates(spec: Optional[str], base) -> tuple[float, ...]:
    from pileablate.ablate.tuning import lr_candidates
    from pileablate.train.config import preset_defaults

    if spec is None:
        return ()
    return lr_candidates(spec, preset_defaults(base.preset)["lr"])
