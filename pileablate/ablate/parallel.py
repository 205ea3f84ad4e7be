"""`ablate --jobs N`: N runs at once on one machine, each in its own process on its own device.

Each run is the same `train(cfg)` as in a sequential grid, in a spawned process pinned to one GPU, or
on a CPU to its share of the cores (torch threads = cores // jobs), so a run's result is bit-identical
to the same run made alone with that many threads. Its console output goes to RUN/train.log; this
process shows one live table of every running run, read from their metrics files. Ctrl-C reaches every
run (one process group): each checkpoints and stops, and re-running the command resumes them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pileablate.ablate.plan import PlannedRun
from pileablate.ablate.runner import Outcome, read_summary, run_state
from pileablate.errors import UserError

# Exit codes of a run's process.
FINISHED, FAILED, STOPPED = 0, 1, 130


@dataclass(frozen=True)
class Slot:
    """Where one concurrent run goes: a device and the torch threads it may use."""

    device: str
    threads: int


def plan_slots(jobs: int, devices: Optional[str]) -> list[Slot]:
    """`--devices cuda:0,cuda:1` (one slot per device), else every visible GPU, else CPU shares."""
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    cores = os.cpu_count() or 1
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
        if len(names) < jobs and not all(n == "cpu" for n in names):
            raise UserError(f"--jobs {jobs} needs {jobs} devices; --devices names {len(names)}")
        names = (names * jobs)[:jobs]
    else:
        import torch

        gpus = torch.cuda.device_count()
        if gpus and jobs > gpus:
            raise UserError(f"--jobs {jobs} but {gpus} GPU(s) are visible; one run per GPU (or pass --devices)")
        names = [f"cuda:{i}" for i in range(jobs)] if gpus else ["cpu"] * jobs
    cpu_jobs = sum(1 for n in names if n == "cpu")
    return [Slot(n, max(1, cores // cpu_jobs) if n == "cpu" else max(1, cores // jobs)) for n in names]


def _train_in_child(cfg, threads: int, log_path: str) -> None:
    """A run in its own process: its threads, its log file, its exit code."""
    import sys

    import torch
    from rich.console import Console

    from pileablate.train.trainer import RunFailed, train

    torch.set_num_threads(threads)
    with open(log_path, "a", encoding="utf-8") as log:
        console = Console(file=log, soft_wrap=True, force_terminal=False)
        try:
            summary = train(cfg, console=console)
        except RunFailed as err:
            console.print(f"failed: {err}", highlight=False)
            sys.exit(FAILED)
        except BaseException as err:  # a crash in a child must reach the parent as a failed run
            console.print(f"error: {err!r}", highlight=False)
            sys.exit(FAILED)
    sys.exit(STOPPED if summary.get("status") == "stopped" else FINISHED)


def run_parallel(configs: Sequence, plan: Sequence[PlannedRun], slots: Sequence[Slot], console) -> tuple[list[Outcome], bool]:
    """Train the planned runs, len(slots) at a time. Returns (outcomes in plan order, interrupted)."""
    import dataclasses

    context = multiprocessing.get_context("spawn")
    pending = [(cfg, p) for cfg, p in zip(configs, plan)]
    outcomes: dict[str, Outcome] = {}
    running: dict[int, tuple] = {}  # slot index -> (process, cfg, planned, state)
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with _LiveRuns(console) as live:
            while pending or running:
                while pending and not interrupted and len(running) < len(slots):
                    cfg, planned = pending.pop(0)
                    state = run_state(Path(cfg.runs_dir) / planned.name)
                    if state.action in ("skip", "failed"):
                        outcomes[planned.title] = Outcome(planned, state, read_summary(Path(cfg.runs_dir) / planned.name))
                        continue
                    index = next(i for i in range(len(slots)) if i not in running)
                    cfg = dataclasses.replace(cfg, device=slots[index].device)
                    log = Path(cfg.runs_dir) / planned.name / "train.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    process = context.Process(target=_train_in_child, args=(cfg, slots[index].threads, str(log)))
                    process.start()
                    running[index] = (process, cfg, planned, state)
                interrupted |= _reap(running, outcomes, console)
                live.show(running)
                time.sleep(0.2)
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reached the children too; SIGTERM (not a second SIGINT, which would abort
        # them without a checkpoint) tells those that did not get it. Then wait for their checkpoints.
        interrupted = True
        _signal_children(running, signal.SIGTERM)
        for process, *_ in running.values():
            process.join()
        _reap(running, outcomes, console)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return [outcomes[p.title] for p in plan if p.title in outcomes], interrupted


def _reap(running: dict, outcomes: dict, console) -> bool:
    """Collect finished processes; True when one of them was interrupted."""
    interrupted = False
    for index in [i for i, (process, *_) in running.items() if not process.is_alive()]:
        process, cfg, planned, state = running.pop(index)
        process.join()
        summary = read_summary(Path(cfg.runs_dir) / planned.name)
        error = None
        if process.exitcode == STOPPED:
            interrupted = True
        elif process.exitcode != FINISHED:
            error = f"exit code {process.exitcode}; see {Path(cfg.runs_dir) / planned.name / 'train.log'}"
            console.print(f"[red]{planned.title} failed[/red] ({error})", highlight=False)
        else:
            console.print(f"{planned.title}: {(summary or {}).get('status')} · val loss "
                          f"{_fmt((summary or {}).get('final_val_loss'))}", highlight=False)
        outcomes[planned.title] = Outcome(planned, state, summary, error)
    return interrupted


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _signal_children(running: dict, signum: int) -> None:
    for process, *_ in running.values():
        if process.is_alive():
            os.kill(process.pid, signum)


class _LiveRuns:
    """One rich table of the running runs: step, losses, tokens/s, from their metrics files."""

    def __init__(self, console):
        from rich.live import Live

        self._live = Live(console=console, refresh_per_second=2, transient=True)
        self._last = 0.0

    def __enter__(self) -> "_LiveRuns":
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def show(self, running: dict) -> None:
        if time.monotonic() - self._last < 0.5:
            return
        from rich.table import Table

        from pileablate.train.metrics import read_metrics

        self._last = time.monotonic()
        table = Table(title=f"{len(running)} runs training", header_style="bold")
        for header in ("run", "device", "step", "train loss", "val loss", "tokens/s"):
            table.add_column(header, justify="left" if header in ("run", "device") else "right")
        for process, cfg, planned, _ in running.values():
            rows = read_metrics(Path(cfg.runs_dir) / planned.name / "metrics.jsonl")
            last = rows[-1] if rows else {}
            val = next((r["val_loss"] for r in reversed(rows) if r.get("val_loss") is not None), None)
            table.add_row(planned.title, cfg.device, str(last.get("step", 0)), _fmt(last.get("train_loss")),
                          _fmt(val), f"{last.get('tokens_per_s') or 0:,.0f}")
        self._live.update(table)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
