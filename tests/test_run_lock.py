"""One process per run folder (pileablate.runlock): a second `train` refuses, a killed trainer's run is
taken over at once, two `ablate` commands on one runs folder train every run once, and `--no-wait` /
`--task` report a run another process holds instead of waiting for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pileablate import runlock
from pileablate.cli import app
from pileablate.runfolder import read_metrics

NANO = ["--preset", "nano", "--device", "cpu", "--batch-size", "4", "--eval-tokens", "1024"]
TINY = [*NANO, "--max-steps", "6", "--eval-every", "3", "--log-every", "2"]
# Holds a run folder's lock, as another trainer would, until its stdin closes.
HOLD = ("import sys; from pileablate import runlock; runlock.claim(sys.argv[1]); print('held', flush=True); "
        "sys.stdin.read()")


def _env() -> dict:
    # Wide enough that rich never wraps a line the tests look for.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "1000"}


def _until(done, proc_or_procs, what: str, timeout: float = 300.0) -> None:
    """Wait until `done()`; a process that exits first, or a hang, fails the test (no timing is asserted)."""
    procs = proc_or_procs if isinstance(proc_or_procs, list) else [proc_or_procs]
    deadline = time.monotonic() + timeout
    while not done():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"process {proc.args[:4]} exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Holder:
    """Another process holding a run folder's lock (what a trainer does), released on `let_go()`."""

    def __init__(self, run_dir: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=_env())
        assert self.proc.stdout.readline().strip() == "held"

    def let_go(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in read_metrics(run_dir)]


def test_a_second_train_refuses_and_a_killed_trainers_run_is_taken_over_at_once(tmp_path, bytes_store):
    from pileablate.commands.train import train_config_from_args
    from pileablate.train.trainer import train

    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), *NANO, "--log-every", "1", "--eval-every", "100000",
            "--checkpoint-every", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "pileablate", "train", *args, "--max-steps", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    run_dir = runs / "baseline-s0"
    _until(lambda: len(_steps(run_dir)) >= 12, proc, "a checkpoint")
    assert runlock.holder(run_dir) == runlock.Holder(proc.pid, socket.gethostname())

    second = subprocess.run([sys.executable, "-m", "pileablate", "train", *args, "--max-steps", "100000"],
                            capture_output=True, text=True, env=_env(), timeout=300)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"error: run baseline-s0 is being trained by pid {proc.pid} on host {socket.gethostname()} ({run_dir}); wait "
        "for it to end (or stop that process), then run the same command again"]

    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert runlock.holder(run_dir) is None  # the kernel dropped the dead process's lock
    checkpoint_step = _checkpoint_step(run_dir)
    assert checkpoint_step >= 5
    # The next process takes the run over (resumes it from the checkpoint) without waiting for anything.
    summary = train(train_config_from_args([*args, "--max-steps", str(checkpoint_step + 5)]))
    assert summary["status"] == "finished" and summary["steps"] == checkpoint_step + 5
    steps = _steps(run_dir)
    assert steps == list(range(1, checkpoint_step + 6))  # every step once, in order
    assert runlock.holder(run_dir) is None  # and let go when it ended


def _checkpoint_step(run_dir: Path) -> int:
    import torch

    return torch.load(run_dir / "ckpt" / "latest.pt", weights_only=True)["progress"]["step"]


def test_two_ablate_commands_on_one_runs_folder_train_every_run_once(tmp_path, bytes_store):
    """Both commands skip the run a third process holds, train the others between them, wait, and the
    first to see it let go takes it over; each run is trained by one process, its metrics in order, and
    both commands end with the same report."""
    runs = tmp_path / "runs"
    held = Holder(runs / "baseline-s0")
    command = [sys.executable, "-m", "pileablate", "ablate", "--data", str(bytes_store), "--runs-dir", str(runs),
               "--mods", "rope", "--seeds", "2", *TINY]
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=_env())
             for log in logs]
    waiting = f"waiting for 1 run(s) that other processes are training: baseline-s0 (pid {held.proc.pid} on host"
    _until(lambda: all(waiting in log.read_text() for log in logs), procs, "both commands to wait")
    held.let_go()
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [log.read_text()[-2000:] for log in logs]

    names = ["baseline-s0", "rope-s0", "baseline-s1", "rope-s1"]
    text = "".join(log.read_text() for log in logs)
    for name in names:
        assert text.count(f"training {runs / name} ") == 1, name  # one process trained it, once
        assert f"resuming {runs / name} " not in text
        assert _steps(runs / name) == [2, 3, 4, 6]  # every row once, steps strictly increasing
        assert json.loads((runs / name / "summary.json").read_text())["status"] == "finished"
    assert outputs[0] == outputs[1] and "baseline" in outputs[0]  # the same report


@pytest.fixture
def one_run_held(tmp_path, bytes_store):
    """A finished two-seed ablation whose baseline-s1 another process is training again: (runs, holder)."""
    runs = tmp_path / "runs"
    done = CliRunner().invoke(app, ["ablate", "--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope",
                                    "--seeds", "2", *TINY], catch_exceptions=True)
    assert done.exit_code == 0, (done.output, done.exception)
    summary = json.loads((runs / "baseline-s1" / "summary.json").read_text())
    (runs / "baseline-s1" / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    held = Holder(runs / "baseline-s1")
    yield runs, held
    held.let_go()


def test_no_wait_reports_a_held_run_as_being_trained(one_run_held, bytes_store):
    runs, held = one_run_held
    result = CliRunner().invoke(app, ["ablate", "--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope",
                                      "--seeds", "2", "--no-wait", *TINY], catch_exceptions=True)
    assert result.exit_code == 0, (result.output, result.exception)
    being_trained = f"being trained by pid {held.proc.pid} on host {socket.gethostname()}"
    assert being_trained in result.output and "waiting for" not in result.output
    assert being_trained in (runs / "report.md").read_text()
    assert _steps(runs / "baseline-s1") == [2, 3, 4, 6]  # not touched


def test_a_task_leaves_a_held_run_to_its_holder_and_ends(one_run_held, bytes_store):
    from pileablate.ablate.slurm import pending_tasks

    runs, held = one_run_held
    result = CliRunner().invoke(app, ["ablate", "--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope",
                                      "--seeds", "2", "--task", "1/1", *TINY], catch_exceptions=True)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "being trained by pid" in result.output and "1 runs of the stage are not finished yet" in result.output
    # submit.sh asks which tasks to submit again: not the one whose run is held (it is running).
    listing = {"runs_dir": str(runs), "stages": {"train": [["baseline-s0", "rope-s0", "baseline-s1", "rope-s1"]]}}
    assert pending_tasks(listing, "train") == []
    held.let_go()
    assert pending_tasks(listing, "train") == [1]  # its holder died before finishing it: submit it again
