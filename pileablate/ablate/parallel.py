"""`ablate --jobs N`: N runs at once on one machine, each in its own process on its own device.

Each slot (one GPU, or on a CPU its share of the cores: torch threads = cores // jobs) has one spawned
worker process that trains its runs one after another, each the same `train(cfg)` as in a sequential
grid, so a run's result is bit-identical to the same run made alone with that many threads. A worker
lives for the whole ablation (tuning runs, then reported runs) because starting one (import torch, then
torch.optim's first import of dynamo) costs about 7 s on 2 cores, a third of a demo run. Each run's
console output goes to RUN/train.log; this process shows one live table of every running run, read from
their metrics files. Ctrl-C reaches every worker (one process group): each running run checkpoints and
stops, idle workers exit, and re-running the command resumes the runs.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from pileablate.ablate.plan import PlannedRun
from pileablate.ablate.runner import NOT_TRAINED, Outcome, held_state, run_grid, run_state
from pileablate.errors import UserError
from pileablate.runfolder import read_summary
from pileablate.writes import writing

# How a run ended, as a worker reports it with the reason (a failure's message, the holder of a held
# run, the (errno, strerror, file) of a failed write, else None).
FINISHED, FAILED, HELD, WRITE_FAILED, STOPPED = 0, 1, 2, 3, 130


@dataclass(frozen=True)
class Slot:
    """Where one concurrent run goes: a device and the torch threads it may use."""

    device: str
    threads: int


def plan_slots(jobs: int, device: str) -> list[Slot]:
    """The slots of `--jobs` from `--device`: the devices it lists (cuda:0,cuda:1), every visible GPU for
    auto or cuda, else shares of the CPU."""
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    cores = usable_cores()
    names = [d.strip() for d in str(device or "auto").split(",") if d.strip()]
    if names in (["auto"], ["cuda"]):
        import torch

        gpus = torch.cuda.device_count()
        if gpus and jobs > gpus:
            raise UserError(f"--jobs {jobs} but {gpus} GPU(s) are visible; one run per GPU (or list the devices "
                            "with --device cuda:0,cuda:1,...)")
        if not gpus and names == ["cuda"]:
            raise UserError("--device cuda but no GPU is visible; use --device cpu (or auto)")
        names = [f"cuda:{i}" for i in range(jobs)] if gpus else ["cpu"] * jobs
    elif all(n == "cpu" for n in names):
        names = ["cpu"] * jobs
    elif len(names) < jobs:
        raise UserError(f"--jobs {jobs} needs {jobs} devices; --device names {len(names)}")
    names = names[:jobs]
    cpu_jobs = sum(1 for n in names if n == "cpu")
    return [Slot(n, max(1, cores // cpu_jobs) if n == "cpu" else max(1, cores // jobs)) for n in names]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as SLURM, taskset and containers set it),
    not the machine's: on a 64-core node a task given 8 must split 8 among its runs."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows: no affinity to read
        return os.cpu_count() or 1


def _worker(threads: int, inbox) -> None:
    """One slot's process: imports torch once (seconds that a run of a small model would otherwise pay
    again each time), then trains the runs it is sent, one after another, until told to stop."""
    import torch

    torch.set_num_threads(threads)
    while True:
        try:
            job = inbox.recv()
        except (EOFError, KeyboardInterrupt):  # the parent is gone, or Ctrl-C reached an idle worker
            return
        if job is None:
            return
        code, reason = _train_one(*job)
        inbox.send((code, reason))
        if code == STOPPED:
            return


def _train_one(cfg, log_path: str) -> tuple[int, Optional[str]]:
    """A run in a worker, its console in its log file: (how it ended, why it failed). A failure ends the
    run, never the worker."""
    from rich.console import Console

    from pileablate.runlock import RunHeld
    from pileablate.train.state import RunFailed
    from pileablate.train.trainer import train
    from pileablate.writes import is_write_error

    with writing(log_path), open(log_path, "a", encoding="utf-8") as log:
        console = Console(file=log, soft_wrap=True, force_terminal=False)
        try:
            summary = train(cfg, console=console)
        except RunHeld as err:  # another process claimed it since the parent looked: it is theirs
            return HELD, str(err.holder)
        except RunFailed as err:
            console.print(f"failed: {err}", highlight=False)
            return FAILED, str(err)
        except KeyboardInterrupt:  # Ctrl-C before the run could checkpoint: it starts or resumes on re-run
            return STOPPED, None
        except Exception as err:  # a crash in a run must reach the parent as a failed run
            if is_write_error(err):  # a full disk stops the study (the parent raises it), the run resumable
                return WRITE_FAILED, (err.errno, err.strerror, err.filename)
            console.print(f"error: {err!r}", highlight=False)
            return FAILED, repr(err)
    return (STOPPED if summary.get("status") == "stopped" else FINISHED), None


@dataclass
class _Worker:
    """A slot's worker process (started when first needed, again if it died) and the run it is training."""

    slot: Slot
    process: Optional[multiprocessing.process.BaseProcess] = None
    pipe: Optional[Connection] = None
    job: Optional[tuple] = None  # (cfg, planned, state)

    def start_run(self, context, cfg, planned: PlannedRun, state) -> None:
        if self.process is None or not self.process.is_alive():
            self.pipe, child_end = context.Pipe()
            self.process = context.Process(target=_worker, args=(self.slot.threads, child_end), daemon=True)
            self.process.start()
            child_end.close()
        log = Path(cfg.runs_dir) / planned.name / "train.log"
        with writing(log):
            log.parent.mkdir(parents=True, exist_ok=True)
        self.pipe.send((cfg, str(log)))
        self.job = (cfg, planned, state)

    def ended(self) -> Optional[tuple[int, Optional[str]]]:
        """(how the run ended, why it failed) once it has ended, else None."""
        try:
            if self.pipe.poll():
                return self.pipe.recv()
        except (EOFError, OSError):
            pass
        if self.process.is_alive():
            return None
        self.process.join()
        return FAILED, f"its process died (exit code {self.process.exitcode})"

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            try:
                self.pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout=30)
            if self.process.is_alive():
                self.process.terminate()


class WorkerPool:
    """One worker per slot, started when first needed and kept for every plan it is given (the tuning
    phase, then the reported runs) until closed."""

    def __init__(self, slots: Sequence[Slot]):
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(slot) for slot in slots]

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        for worker in self._workers:
            worker.close()

    def run(self, configs: Sequence, plan: Sequence[PlannedRun], console) -> tuple[list[Outcome], bool]:
        """Train the planned runs, one per slot at a time. Returns (outcomes in plan order, interrupted)."""
        import dataclasses

        pending = list(zip(configs, plan))
        outcomes: dict[str, Outcome] = {}
        workers = self._workers
        interrupted = False
        write_failures: list[tuple] = []
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            with _LiveRuns(console) as live:
                while (pending and not interrupted) or _busy(workers):
                    while pending and not interrupted and any(w.job is None for w in workers):
                        cfg, planned = pending.pop(0)
                        state = run_state(Path(cfg.runs_dir) / planned.name)
                        if state.action in NOT_TRAINED:
                            outcomes[planned.title] = Outcome(planned, state, read_summary(Path(cfg.runs_dir) / planned.name))
                            continue
                        worker = next(w for w in workers if w.job is None)
                        worker.start_run(self._context, dataclasses.replace(cfg, device=worker.slot.device), planned, state)
                    interrupted |= _reap(workers, outcomes, console, write_failures)
                    interrupted |= bool(write_failures)  # nothing more is started; the running runs end
                    live.show(_busy(workers))
                    time.sleep(0.2)
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reached the workers too; SIGTERM (not a second SIGINT, which would abort
            # them without a checkpoint) tells those that did not get it. Then wait for their checkpoints.
            interrupted = True
            for worker in _busy(workers):
                if worker.process.is_alive():
                    os.kill(worker.process.pid, signal.SIGTERM)
            while _busy(workers):
                _reap(workers, outcomes, console, write_failures)
                time.sleep(0.1)
        finally:
            signal.signal(signal.SIGTERM, previous)
        if write_failures:  # as if the write had failed here: the CLI says it in one line
            raise OSError(*write_failures[0])
        return [outcomes[p.title] for p in plan if p.title in outcomes], interrupted


@contextmanager
def plan_trainer(jobs: int, device: str) -> Iterator[Callable]:
    """`train_plan(configs, plan, console) -> (outcomes, interrupted)` for the whole of an ablation or a
    sweep: in this process one run after another (`--jobs 1`), else on a pool of workers."""
    if jobs <= 1:
        yield run_grid
        return
    with WorkerPool(plan_slots(jobs, device)) as pool:
        yield pool.run


def _busy(workers: Sequence[_Worker]) -> list[_Worker]:
    return [w for w in workers if w.job is not None]


def _reap(workers: Sequence[_Worker], outcomes: dict, console, write_failures: list) -> bool:
    """Collect ended runs; True when one of them was interrupted. A failed write is added to
    `write_failures` (the run is left as it was, to resume)."""
    interrupted = False
    for worker in _busy(workers):
        ended = worker.ended()
        if ended is None:
            continue
        code, reason = ended
        cfg, planned, state = worker.job
        worker.job = None
        summary = read_summary(Path(cfg.runs_dir) / planned.name)
        error = None
        if code == STOPPED:
            interrupted = True
        elif code == HELD:
            state = held_state(reason)
            console.print(f"[dim]{planned.title} · {state.detail}: skipped[/dim]", highlight=False)
        elif code == WRITE_FAILED:
            write_failures.append(reason)
            continue
        elif code != FINISHED:
            error = f"{reason}; see {Path(cfg.runs_dir) / planned.name / 'train.log'}"
            console.print(f"[red]{planned.title} failed[/red] ({error})", highlight=False)
        else:
            console.print(f"{planned.title}: {(summary or {}).get('status')} · val loss "
                          f"{_fmt((summary or {}).get('final_val_loss'))}", highlight=False)
        outcomes[planned.title] = Outcome(planned, state, summary, error)
    return interrupted


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


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

    def show(self, running: Sequence[_Worker]) -> None:
        if time.monotonic() - self._last < 0.5:
            return
        from rich.table import Table

        from pileablate.runfolder import read_metrics

        self._last = time.monotonic()
        table = Table(title=f"{len(running)} runs training", header_style="bold")
        for header in ("run", "device", "step", "train loss", "val loss", "tokens/s"):
            table.add_column(header, justify="left" if header in ("run", "device") else "right")
        for cfg, planned, _ in (w.job for w in running):
            rows = read_metrics(Path(cfg.runs_dir) / planned.name)
            last = rows[-1] if rows else {}
            val = next((r["val_loss"] for r in reversed(rows) if r.get("val_loss") is not None), None)
            table.add_row(planned.title, cfg.device, str(last.get("step", 0)), _fmt(last.get("train_loss")),
                          _fmt(val), f"{last.get('tokens_per_s') or 0:,.0f}")
        self._live.update(table)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
