"""`ablate --emit slurm` on a real scheduler: benchmarks/slurm_check.py (a one-node cluster on localhost,
an emitted CPU grid end to end, a cancelled task resumed, submit.sh run again while the arrays run
submitting nothing, every run trained once, losses identical to the local grid; and a prepare job array
with its verification giving one process's store). Runs
where slurmctld, slurmd and munged are installed and the tests run as root; skipped otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue", "scancel", "scontrol", "sinfo")


@pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS) or os.geteuid() != 0,
                    reason="needs Slurm (apt-get install slurm-wlm munge) and root")
def test_an_emitted_grid_runs_on_a_real_scheduler_and_recovers_from_a_cancel():
    check = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "slurm_check.py")], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        out, _ = check.communicate(timeout=235)  # the check bounds itself at 230 s
    except subprocess.TimeoutExpired:
        check.send_signal(signal.SIGTERM)  # the check stops its cluster on SIGTERM
        out, _ = check.communicate(timeout=60)
    assert check.returncode == 0, out
    assert "final losses identical to the local grid" in out and "re-submitted: tune tasks 2, train tasks 1-2" in out
    assert "submitted nothing" in out and "its metrics' steps strictly increase" in out
    assert "hold the documents of one process's store" in out  # prepare --emit slurm
