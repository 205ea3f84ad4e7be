"""`pileablate ablate` end to end: plan the grid, show it or run it, then report on it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from pileablate.ablate.plan import Configuration, PlannedRun, default_grid, grid_from_toml, plan_runs
from pileablate.ablate.runner import Outcome, budget_of, check_existing, data_identity, grid_budget, run_grid, run_state
from pileablate.errors import UserError


def build_plan(base, mods: Optional[str], grid: Optional[Path], seeds: Optional[int]) -> tuple[list[Configuration], list[PlannedRun]]:
    if mods is not None and grid is not None:
        raise UserError("--mods and --grid both choose the configurations; give one of them")
    grid_seeds = None
    if grid is not None:
        configs, grid_seeds = grid_from_toml(grid)
    else:
        configs = default_grid(mods)
    count = seeds if seeds is not None else (grid_seeds or 1)
    return configs, plan_runs(configs, [base.seed + i for i in range(count)])


def check_base(base) -> None:
    """Options that belong to ablate, not to each run."""
    if base.name is not None:
        raise UserError("ablate names its runs itself (baseline-s0, rope-s0, ...); drop --name "
                        "and keep ablations apart with --runs-dir")
    if base.mods:
        raise UserError("give the modifications to ablate with --mods or --grid")
    if base.resume:
        raise UserError("ablate resumes interrupted runs by itself; drop --resume and re-run the same command")


def describe_budget(base) -> str:
    from pileablate.report.checks import describe_budget as describe

    return describe(budget_of(base))


def plan_table(base, plan: Sequence[PlannedRun]):
    from rich.table import Table

    table = Table(title=f"ablation plan: {len(plan)} runs in {base.runs_dir}, each {describe_budget(base)}",
                  header_style="bold")
    for header in ("#", "run", "mods", "seed", "state"):
        table.add_column(header, justify="right" if header in ("#", "seed") else "left")
    for p in plan:
        state = run_state(Path(base.runs_dir) / p.name)
        table.add_row(str(p.index), p.name, ",".join(p.mods) or "baseline", str(p.seed),
                      f"{state.action}: {state.detail}" if state.action != "train" else "train (new)")
    return table


def report_on(base, plan: Sequence[PlannedRun]):
    """The report over this ablation's runs (not whatever else lies in the runs folder)."""
    from pileablate.report.build import build_report, write_report
    from pileablate.report.console import print_files, stdout_console
    from pileablate.report.runs import is_run_dir, load_run

    runs_dir = Path(base.runs_dir)
    runs = [load_run(runs_dir / p.name) for p in plan if is_run_dir(runs_dir / p.name)]
    if not runs:
        raise UserError(f"no run of this ablation in {runs_dir} finished; nothing to report")
    report = build_report([runs_dir], runs=runs)
    files = write_report(report, runs_dir)
    stdout_console().print(report.table())
    print_files(report, files)
    return report


def run_ablation(train_args: Sequence[str], mods: Optional[str], grid: Optional[Path], seeds: Optional[int],
                 dry_run: bool) -> None:
    from rich.console import Console

    from pileablate.commands.train import train_config_from_args

    err = Console(stderr=True)
    base = train_config_from_args(list(train_args))
    check_base(base)
    configs, plan = build_plan(base, mods, grid, seeds)
    vocab_size, fingerprint = data_identity(base.data_dir)
    base, defaulted = grid_budget(base, vocab_size)
    check_existing(base, plan, fingerprint)
    n_seeds = len({p.seed for p in plan})
    err.print(
        f"ablation: {len(configs)} configurations × {n_seeds} seed{'s' if n_seeds > 1 else ''} = {len(plan)} runs · "
        f"preset {base.preset} · budget {describe_budget(base)} per run"
        + (" (the baseline's default, for every run)" if defaulted else "") + f" · {base.runs_dir}",
        highlight=False,
    )
    if dry_run:
        from pileablate.report.console import stdout_console

        stdout_console().print(plan_table(base, plan))
        return

    outcomes, interrupted = run_grid(base, plan, err)
    if interrupted:
        done = len(outcomes)
        raise _Interrupted(f"interrupted at run {done}/{len(plan)} ({plan[done - 1].name}); its checkpoint is saved. "
                           "Re-run the same command to continue where it stopped")
    report_on(base, plan)
    failed = [o for o in outcomes if o.state.action == "failed" or o.error]
    if failed:
        names = ", ".join(o.run.name for o in failed)
        raise _Failed(f"{len(failed)} of {len(plan)} runs failed ({names}); the report flags them. "
                      f"Fix the cause, delete those run folders and re-run to redo only them")


class _Interrupted(UserError):
    exit_code = 130


class _Failed(UserError):
    exit_code = 1


__all__ = ["run_ablation", "build_plan", "Outcome"]
