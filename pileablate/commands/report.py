"""`pileablate report`: tables (terminal, Markdown, CSV) and plots from run directories."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report(
    runs_dirs: Optional[List[Path]] = typer.Argument(
        None, metavar="[RUNS_DIR]...",
        help="Folders of runs (or single run folders) to report on. Default: runs/.",
        show_default=False,
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Where report.md, summary.csv, runs.csv and plots/ go. Default: the first RUNS_DIR.",
        show_default=False,
    ),
    mix_data: bool = typer.Option(
        False, "--mix-data", help="Mix runs made on different data or tokenizers in one table (the report says so)."
    ),
    margin: Optional[float] = typer.Option(
        None, "--margin", metavar="NATS", help="Differences within ±NATS (nats/token) count as no effect "
        "(equivalence test). Default: the margin ablate recorded in RUNS_DIR/study.json, else 0.01.", show_default=False,
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw the plots (PNG and SVG)."),
    tracker: Optional[List[str]] = typer.Option(
        None, "--tracker", metavar="NAME", help="Also add the table and plots beside the runs' live curves: tensorboard "
        "(RUNS_DIR/tensorboard), wandb (the runs' W&B group); comma list or repeated.", show_default=False,
    ),
    mods_file: Optional[List[Path]] = typer.Option(
        None, "--mods-file", metavar="FILE", help="Files registering the runs' own modifications (repeatable); the "
        "report notes a file the runs recorded that has changed since.", show_default=False,
    ),
) -> None:
    """Verdicts, loss tables and plots from run directories.

    Prints the verdicts (helps / hurts / no effect within ±margin / undecided, with the seeds that would
    decide) and a compact table, one row per configuration (seeds pooled: mean ± std), and writes report.md,
    summary.csv (per configuration), runs.csv (per run) and plots/*.png|svg. Only finished runs that
    passed their guards count; the others are listed apart with the reason. Each difference to the
    baseline comes with its 95% interval and is marked significant only when it beats seed-to-seed
    noise (paired t-test over seeds, or Welch's where seeds do not pair; Holm-corrected, 5%).
    """
    from pileablate.report.build import build_report, write_report
    from pileablate.console import stdout_console
    from pileablate.report.console import print_files

    from pileablate.report.build import publish_to_trackers
    from pileablate.trackers import parse_trackers, require_packages

    from pileablate.console import stderr_console
    from pileablate.mods_files import changed_in_runs, load_mods_files

    load_mods_files(mods_file or ())
    trackers = parse_trackers(tracker)
    require_packages(trackers)
    paths = list(runs_dirs) if runs_dirs else [Path("runs")]
    for note in changed_in_runs(paths):
        stderr_console().print(f"[yellow]note:[/yellow] {note}", markup=True, highlight=False)
    result = build_report(paths, mix_data=mix_data, margin=margin)
    out_dir = out if out is not None else paths[0]
    files = write_report(result, out_dir, plots=plots)
    stdout_console().print(result.table())
    print_files(result, files)
    publish_to_trackers(result, files, trackers, paths[0])
