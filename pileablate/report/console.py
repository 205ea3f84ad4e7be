"""Where a report goes on the terminal: the table on stdout (a result), file paths and flags on stderr."""

from __future__ import annotations

from pathlib import Path


def print_files(report, files: dict[str, Path]) -> None:
    from pileablate.console import stderr_console

    err = stderr_console()
    for warning in report.warnings + [f"mixed data (--mix-data): {n}" for n in report.notes]:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    err.print(f"report: {files['report.md']}", highlight=False)
    scaling = f", {files['scaling.csv']} (per sweep point)" if "scaling.csv" in files else ""
    err.print(f"tables: {files['summary.csv']} (per configuration), {files['runs.csv']} (per run){scaling}",
              highlight=False)
    plots = [p for name, p in files.items() if p.suffix == ".png"]
    if plots:
        err.print(f"plots:  {plots[0].parent}/ ({', '.join(p.stem for p in plots)}; .png and .svg)", highlight=False)
