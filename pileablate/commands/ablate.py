"""`pileablate ablate`: the grid (baseline, each modification alone, all together) × seeds, equal budgets.

All parsing happens here: the train options through `pileablate train`'s own parser, then `--mods` /
`--grid` / `--seeds` / `--tune-*` into an `Ablation`, which `pileablate.ablate` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def ablate(
    ctx: typer.Context,
    mods: Optional[str] = typer.Option(
        None, "--mods",
        help="Comma list of modifications: runs the baseline, each alone, and all together. "
             "Default: warmup,cosine,rmsnorm,rope,swiglu (the seven experiments).",
        show_default=False,
    ),
    grid: Optional[Path] = typer.Option(
        None, "--grid",
        help="TOML file of explicit configurations: one \\[\\[config]] table per configuration with "
             "mods = [\"rope\", \"swiglu\"] (and optionally name = \"...\"); optional top-level seeds = K.",
        show_default=False,
    ),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", min=1,
        help="Seeds per configuration (--seed S gives seeds S, S+1, ...). Default 1, or the grid file's seeds.",
        show_default=False,
    ),
    tune_lr: Optional[str] = typer.Option(
        None, "--tune-lr", metavar="auto|N|LR,LR,...",
        help="Tune the learning rate of every configuration before the reported runs: 'auto' tries 5 rates "
             "log-spaced over x1/10..x10 of the preset's default, N tries N such rates, or give the rates "
             "(3e-4,1e-3,3e-3). Tuning runs use seeds of their own (1000+) and are scored on held-out tuning "
             "windows disjoint from the validation windows the report scores; each configuration's reported "
             "runs then train at its chosen rate.",
        show_default=False,
    ),
    tune_seeds: int = typer.Option(1, "--tune-seeds", min=1, help="Tuning runs per configuration and rate."),
    tune_budget: float = typer.Option(
        1.0, "--tune-budget", metavar="FRACTION",
        help="The tuning runs' budget as a fraction of the reported runs' budget (the best rate moves with the "
             "budget: shorten with care).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="Print the plan (runs, budget, what is finished or will resume) and stop. Every other option is a "
             "'pileablate train' option applied to every run (--data, --runs-dir, --preset, --max-tokens, "
             "--time-limit, --lr, --device, ...).",
    ),
) -> None:
    """Run the ablation grid over seeds with one budget for every run, then print the report.

    Every other option is a train option and applies to every run (see 'pileablate train --help'),
    e.g. --data, --runs-dir, --preset, --max-tokens, --time-limit, --lr, --device.
    Without a budget, every run gets the baseline's default token budget. Runs are named
    <configuration>-s<seed> (baseline-s0, rope-s0, all-s1), tuning runs tune-<configuration>-lr<rate>-s<seed>;
    re-running the command skips finished runs and resumes an interrupted one. The report (report.md,
    summary.csv, plots/) is written into the runs folder.
    """
    from pileablate.ablate import Ablation, default_grid, grid_from_toml, run_ablation
    from pileablate.commands.train import train_config_from_args
    from pileablate.errors import UserError

    base = train_config_from_args(list(ctx.args))
    if mods is not None and grid is not None:
        raise UserError("--mods and --grid both choose the configurations; give one of them")
    experiments, grid_seeds = grid_from_toml(grid) if grid is not None else (default_grid(mods), None)
    count = seeds if seeds is not None else (grid_seeds or 1)
    ablation = Ablation(base, experiments, [base.seed + i for i in range(count)],
                        tune_lrs=_tune_rates(tune_lr, base), tune_seeds=tune_seeds, tune_budget=tune_budget)
    if dry_run:
        _print_plan(ablation)
    else:
        run_ablation(ablation)


def _tune_rates(spec: Optional[str], base) -> tuple[float, ...]:
    from pileablate.ablate.tuning import lr_candidates
    from pileablate.train.config import preset_defaults

    if spec is None:
        return ()
    return lr_candidates(spec, preset_defaults(base.preset)["lr"])


def _print_plan(ablation) -> None:
    from pileablate.console import stderr_console

    from pileablate.ablate.ablation import describe, plan_table, prepared
    from pileablate.report.console import stdout_console

    ablation = prepared(ablation)
    stderr_console().print(describe(ablation), highlight=False)
    stdout_console().print(plan_table(ablation, ablation.tuning_plan() + ablation.report_plan()))
