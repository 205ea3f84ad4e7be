"""Run `make demo` once and write its results into the README, so the README's demo section cannot drift
from what the demo prints.

Removes `demo/` (unless --keep), times `make demo`, then replaces the README block between
`<!-- BEGIN demo-results -->` and `<!-- END demo-results -->` with: the wall time and the runs made (from
this one run's output), the report's first line, the results table (from the report over `demo/runs`),
and when each configuration stopped getting seeds.

Usage: .venv/bin/python benchmarks/demo_readme.py [--keep] [--readme README.md]
       .venv/bin/python benchmarks/demo_readme.py --render-only LOG   # from a saved run: its log and demo/runs
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN demo-results -->", "<!-- END demo-results -->"


def run_demo(keep: bool) -> tuple[str, float]:
    """(the demo's output, its wall time in seconds)."""
    if not keep:
        shutil.rmtree(ROOT / "demo", ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"make demo failed ({proc.returncode}):\n{log[-3000:]}")
    return log, elapsed


def _runs_made(log: str) -> tuple[int, int, int]:
    """(tuning runs, reported runs, rounds) the demo's output says it trained."""
    finished = re.findall(r"^(\S+): finished", log, flags=re.M)
    tuning = sum(1 for name in finished if name.startswith("tune-"))
    rounds = len(re.findall(r"^after round \d+:", log, flags=re.M))
    return tuning, len(finished) - tuning, rounds


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(log: str, seconds: float | None, runs_dir: Path, machine: str = "our 2-core machine") -> str:
    """The README block: measured line, the verdicts, the table and when each configuration stopped."""
    from pileablate.report.build import build_report
    from pileablate.report.table import _delta_with_interval, _verdict, format_mean_std, lr_text

    report = build_report([runs_dir])
    tuning, reported, rounds = _runs_made(log)
    took = "" if seconds is None else f"{int(seconds // 60)} min {int(seconds % 60)} s for "
    lines = [
        f"**Results** (measured by `python benchmarks/demo_readme.py`, which runs `rm -rf demo; make demo` once and "
        f"writes this block; on {machine}: {took}prepare, {tuning} tuning runs, {reported} reported runs in "
        f"{rounds} rounds and the report). Validation loss in nats/token on the held-out Python source (lower is "
        "better). The numbers are deterministic for a given torch build, thread count and CPU (floating-point "
        "results also depend on the CPU); wall times are not. The report's first line:",
        "",
        *textwrap.wrap(report.headline(), 104, initial_indent="> ", subsequent_indent="> "),
        "",
        "| configuration | verdict | seeds | val loss | Δ vs baseline [95% interval] | lr (tuned) |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.configurations:
        verdict = "" if c.is_baseline else _verdict(c)
        delta = "" if c.is_baseline else _delta_with_interval(c)
        loss = format_mean_std(c.mean("final_val_loss"), c.std("final_val_loss"))
        lines.append(f"| {_cell(c.name)} | {_cell(verdict)} | {len(c.counted)} | {loss} | {delta} | {lr_text(c)} |")
    most = max(len(c.counted) for c in report.configurations)
    stopped = [c for c in report.configurations if len(c.counted) < most]
    if stopped:
        early = ", ".join(f"`{c.name}` after {len(c.counted)}" for c in sorted(stopped, key=lambda c: len(c.counted)))
        lines += ["", f"Decided early, so trained no more: {early} seeds; the others went on to {most}."]
    return "\n".join(lines)


def write_block(readme: Path, block: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{readme} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="do not remove demo/ first (reuses finished runs)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--render-only", type=Path, metavar="LOG", help="write the block from a saved demo log")
    parser.add_argument("--machine", default="our 2-core machine", help="where it ran, as the README says it")
    args = parser.parse_args()
    if args.render_only:
        log, seconds = args.render_only.read_text(), None
    else:
        log, seconds = run_demo(args.keep)
        (ROOT / "demo" / "make-demo.log").write_text(log)
    write_block(args.readme, render(log, seconds, ROOT / "demo" / "runs", args.machine))
    print(f"{args.readme}: demo results written", file=sys.stderr)


if __name__ == "__main__":
    main()
