"""`pileablate ablate`: the grid (baseline, each modification alone, all together) × seeds, equal budgets."""

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
    <configuration>-s<seed> (baseline-s0, rope-s0, all-s1); re-running the command skips finished
    runs and resumes an interrupted one. The report (report.md, summary.csv, plots/) is written into
    the runs folder.
    """
    from pileablate.ablate.ablation import run_ablation

    run_ablation(ctx.args, mods=mods, grid=grid, seeds=seeds, dry_run=dry_run)
