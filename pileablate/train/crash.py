"""A run that crashes is recorded, not left "running".

An unexpected exception while training (a `torch.compile` failure on a user's modification, a bug)
marks the run failed in summary.json (stop reason "crashed", the exception in "error"), keeps the
traceback in RUNS/<name>/error.txt and becomes a `RunFailed` whose one line points there; an ablation
then goes on with its other runs. What is not a crash passes through untouched: a `UserError` (the
run's own failures included), an interrupt, and a failed write (a full disk: the run stays resumable,
and writing a summary would fail too).
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from typing import Iterator

from pileablate import runfolder
from pileablate.errors import UserError
from pileablate.train.record import run_summary
from pileablate.train.session import Session
from pileablate.train.state import RunFailed
from pileablate.writes import is_write_error

CRASHED = "crashed"


@contextmanager
def recording_crashes(s: Session) -> Iterator[None]:
    try:
        yield
    except Exception as err:
        if isinstance(err, UserError) or is_write_error(err):
            raise
        raise crashed(s, err) from err


def crashed(s: Session, err: Exception) -> RunFailed:
    """Record the crash in the run folder; the RunFailed to raise, carrying the failed summary."""
    reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}".rstrip(": ")
    s.metrics.close()
    summary = run_summary(s.cfg, s.counts, s.run_dir, s.data, s.progress, s.guards, "failed", CRASHED)
    summary["error"] = reason
    error_file = s.run_dir / runfolder.ERROR_FILE
    if s.info.is_main:
        runfolder.write_error(s.run_dir, "".join(traceback.format_exception(err)))
        runfolder.write_summary(s.run_dir, summary)
    return RunFailed(f"run {s.cfg.name} crashed at step {s.progress.step} ({reason}); the traceback is in "
                     f"{error_file} ('pileablate --debug ...' shows it here)", summary)
