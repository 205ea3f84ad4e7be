"""The grid on many devices and machines: `--jobs` (runs at once), `--task K/N` (a job array's share)
and `--emit slurm` (the job-array scripts)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pileablate.ablate import Ablation, default_grid
from pileablate.cli import app
from pileablate.errors import UserError
from pileablate.train.config import TrainConfig

TINY = ["--preset", "nano", "--max-steps", "6", "--eval-every", "3", "--eval-tokens", "2048", "--log-every", "2"]


def ablate(*args):
    return CliRunner().invoke(app, ["ablate", *args], catch_exceptions=True)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 14])
def test_the_tasks_of_an_array_cover_the_plan_exactly_once(n):
    plans = []
    for k in range(1, n + 1):
        ablation = Ablation(TrainConfig(), default_grid(), [0, 1], task=(k, n))
        plans.append([p.name for p in ablation.share(ablation.report_plan())])
    names = [name for plan in plans for name in plan]
    assert sorted(names) == sorted(p.name for p in Ablation(TrainConfig(), default_grid(), [0, 1]).report_plan())
    assert max(map(len, plans)) - min(map(len, plans)) <= 1


@pytest.mark.parametrize("args, message", [(["--task", "3/2"], "between 1 and N"), (["--task", "x"], "use K/N"),
                                           (["--task", "1/2", "--tune-lr", "auto"], "--stage tune first"),
                                           (["--stage", "tune"], "needs --tune-lr"), (["--emit", "pbs"], "only 'slurm'")])
def test_bad_grid_options_are_one_line_errors(bytes_store, tmp_path, args, message):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "r"), *args)
    assert isinstance(result.exception, UserError) and message in str(result.exception), result.output
    assert "\n" not in str(result.exception)


def _count_worker_starts(monkeypatch) -> list:
    """The pids of the worker processes `--jobs` starts."""
    from pileablate.ablate import parallel

    pids, start_run = [], parallel._Worker.start_run

    def counted(self, *args):
        start_run(self, *args)
        if self.process.pid not in pids:
            pids.append(self.process.pid)

    monkeypatch.setattr(parallel._Worker, "start_run", counted)
    return pids


def test_two_jobs_give_the_runs_made_one_after_another(bytes_store, tmp_path, one_torch_thread, monkeypatch):
    """--jobs 2 on 2 cores: one thread each, in two worker processes that each train several runs; the
    same numbers as one-thread runs made in order (a run after another in one worker included)."""
    monkeypatch.setattr("pileablate.ablate.parallel.usable_cores", lambda: 2)
    workers = _count_worker_starts(monkeypatch)
    parallel, serial = tmp_path / "parallel", tmp_path / "serial"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(parallel), "--mods", "rope,swiglu", "--jobs", "2",
                    "--device", "cpu,cpu", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert len(workers) == 2  # three runs, two processes: a worker is reused
    assert ablate("--data", str(bytes_store), "--runs-dir", str(serial), "--mods", "rope,swiglu", *TINY).exit_code == 0
    for name in ("baseline-s0", "rope-s0", "swiglu-s0"):
        a = [json.loads(line) for line in (parallel / name / "metrics.jsonl").read_text().splitlines()]
        b = [json.loads(line) for line in (serial / name / "metrics.jsonl").read_text().splitlines()]
        assert [(r["step"], r["train_loss"], r.get("val_loss")) for r in a] == \
               [(r["step"], r["train_loss"], r.get("val_loss")) for r in b]
        assert (parallel / name / "train.log").read_text().strip()
    assert (parallel / "report.md").exists()


def test_a_failed_run_does_not_stop_its_worker(bytes_store, tmp_path, monkeypatch):
    """Tuning at lr 1000 diverges: those runs fail and are said, and the same workers go on with the
    other rates and the reported runs."""
    monkeypatch.setattr("pileablate.ablate.parallel.usable_cores", lambda: 2)
    workers = _count_worker_starts(monkeypatch)
    runs = tmp_path / "runs"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--jobs", "2",
                    "--device", "cpu,cpu", "--tune-lr", "1e3,1e-3", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "tune-baseline-lr1e+03-s1000 failed" in result.output
    assert "the training loss became nan" in result.output  # the reason, not only "see the log"
    assert "nan" in (runs / "tune-baseline-lr1e+03-s1000" / "train.log").read_text()
    for name in ("baseline-s0", "rope-s0"):
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["lr"] == 1e-3
    assert len(workers) == 2  # the same two for the tuning runs and the reported runs, none replaced after a failure


def test_ctrl_c_with_jobs_checkpoints_every_running_run_and_the_rerun_resumes(bytes_store, tmp_path):
    """A real SIGINT to `ablate --jobs 2`: both running runs checkpoint and stop, the idle workers exit,
    the command exits 130; the same command resumes both and finishes the grid."""
    import os
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "pileablate", "ablate", "--data", str(bytes_store), "--runs-dir", str(runs),
            "--mods", "rope,swiglu", "--jobs", "2", "--device", "cpu,cpu", "--preset", "nano", "--max-steps", "400",
            "--eval-every", "100", "--log-every", "1", "--eval-tokens", "2048", "--checkpoint-every", "1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = [runs / name / "metrics.jsonl" for name in ("baseline-s0", "rope-s0")]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if all(m.exists() and len(m.read_text().splitlines()) >= 3 for m in first):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Re-run the same command" in err
    for name in ("baseline-s0", "rope-s0"):
        stopped = json.loads((runs / name / "summary.json").read_text())
        assert stopped["status"] == "stopped" and 0 < stopped["steps"] < 400
    assert not (runs / "swiglu-s0" / "summary.json").exists()

    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    for name in ("baseline-s0", "rope-s0", "swiglu-s0"):
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["steps"] == 400
    steps = [json.loads(line)["step"] for line in first[0].read_text().splitlines()]
    assert steps == list(range(1, 401))  # continued from the checkpoint: no step twice, none missing


def test_a_task_makes_only_its_share_and_no_report(bytes_store, tmp_path, one_torch_thread):
    runs = tmp_path / "runs"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--task", "2/2", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["rope-s0"]
    assert "pileablate report" in result.output and not (runs / "report.md").exists()
    assert "run 1/1: rope-s0" in result.output  # counted within the task's share, not "run 2/1"


def test_emit_slurm_writes_one_array_per_stage_and_a_submit_script(bytes_store, tmp_path):
    runs = tmp_path / "runs"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--seeds", "2",
                    "--time-limit", "20m", "--tune-lr", "1e-3,3e-3", "--emit", "slurm", "--array-tasks", "2")
    assert result.exit_code == 0, (result.output, result.exception)
    tune, train, submit = (runs / "slurm" / n for n in ("tune.sbatch", "train.sbatch", "submit.sh"))
    assert "#SBATCH --array=1-2" in tune.read_text() and "--stage tune" in tune.read_text()
    assert '--task "${SLURM_ARRAY_TASK_ID}/2"' in train.read_text() and "--stage train" in train.read_text()
    assert "--tune-lr 1e-3,3e-3" in train.read_text() and "--time-limit 20m" in train.read_text()
    # 4 reported runs in 2 tasks: 2 runs x 20 min x 1.5
    assert "#SBATCH --time=01:00:00" in train.read_text()
    text = submit.read_text()
    assert text.index("tune.sbatch") < text.index("train.sbatch") and "afterok" in text
    assert not any(p.name.endswith("-s0") for p in runs.iterdir())  # nothing trained


def test_a_worker_that_dies_fails_its_run_and_a_fresh_one_takes_the_next(bytes_store, tmp_path, monkeypatch):
    """A worker killed mid-run (the OOM killer, a segfault in a kernel): that run fails with the cause,
    a new worker takes the slot's next run, the grid goes on and the command exits 1 naming the run."""
    import os
    import signal
    import threading
    import time

    from pileablate.ablate import parallel

    monkeypatch.setattr("pileablate.ablate.parallel.usable_cores", lambda: 2)
    started, start_run = {}, parallel._Worker.start_run

    def recorded(self, context, cfg, planned, state):
        start_run(self, context, cfg, planned, state)
        started[planned.name] = self.process.pid

    monkeypatch.setattr(parallel._Worker, "start_run", recorded)
    runs = tmp_path / "runs"

    def kill_the_baseline_worker():
        metrics = runs / "baseline-s0" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            time.sleep(0.05)
        os.kill(started["baseline-s0"], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_baseline_worker)
    killer.start()
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope,swiglu", "--jobs", "2",
                    "--device", "cpu,cpu", "--preset", "nano", "--max-steps", "400", "--eval-every", "200",
                    "--eval-tokens", "2048", "--log-every", "1")
    killer.join()
    assert result.exit_code == 1 and "baseline-s0" in str(result.exception)
    assert "baseline-s0 failed (its process died (exit code -9)" in result.output
    for name in ("rope-s0", "swiglu-s0"):
        assert json.loads((runs / name / "summary.json").read_text())["status"] == "finished"
    assert len(set(started.values())) == 3  # the two first workers, then the one that replaced the dead one


def test_jobs_share_the_cores_this_process_may_use_not_the_machines(monkeypatch):
    """A SLURM task or container given 2 of a machine's 64 cores: two CPU jobs get one thread each."""
    from pileablate.ablate import parallel

    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {5, 9}, raising=False)
    assert parallel.usable_cores() == 2
    assert [s.threads for s in parallel.plan_slots(2, "cpu,cpu")] == [1, 1]
    assert [s.threads for s in parallel.plan_slots(1, "cpu")] == [2]


def test_the_stage_of_reported_runs_is_called_train(bytes_store, tmp_path):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "r"), "--tune-lr", "1e-3,3e-3",
                    "--stage", "report")
    assert isinstance(result.exception, UserError) and "use tune, train or all" in str(result.exception)
    assert Ablation(TrainConfig(), default_grid(), [0], tune_lrs=(1e-3,), stage="train").stage == "train"
