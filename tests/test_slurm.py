"""`ablate --emit slurm` without a scheduler: the scripts' requests and options, their shell (bash -n, a fake
`sbatch` and `sinfo` on PATH), the forwarded time-out signal, and the task's threads. The real scheduler:
tests/test_slurm_cluster.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pileablate.ablate.slurm import array_spec
from pileablate.cli import app
from pileablate.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "nano", "--max-steps", "6", "--eval-every", "3", "--eval-tokens", "2048", "--log-every", "2"]
GRID = ["--mods", "rope", "--tune-lr", "1e-3", "--preset", "nano", "--max-steps", "6"]


def ablate(*args):
    return CliRunner().invoke(app, ["ablate", *args], catch_exceptions=True)


def emit(store, runs, *args):
    result = ablate("--data", str(store), "--runs-dir", str(runs), *GRID, "--emit", "slurm", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fake_tool(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def env_with(bin_dir: Path, **extra) -> dict:
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT), **extra}


def test_cpu_runs_ask_for_no_gpu_and_for_their_threads_as_cpus(bytes_store, tmp_path):
    runs = tmp_path / "runs"
    emit(bytes_store, runs, "--device", "cpu", "--cpus-per-run", "2")
    text = (runs / "slurm" / "train.sbatch").read_text()
    assert "--gpus" not in text and "gres" not in text and "GPU" not in text
    assert "#SBATCH --cpus-per-task=2" in text
    assert 'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-2}"' in text
    assert "task ${SLURM_ARRAY_TASK_ID} of 2" in text and "--stage train" in text


def test_gpu_runs_ask_for_one_gpu_by_default_and_cpu_runs_refuse_one(bytes_store, tmp_path):
    runs = tmp_path / "runs"
    emit(bytes_store, runs)
    text = (runs / "slurm" / "train.sbatch").read_text()
    assert "#SBATCH --gpus-per-task=1" in text and "#SBATCH --cpus-per-task=8" in text
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "cpu"), *GRID, "--device", "cpu",
                    "--gpus-per-run", "1", "--emit", "slurm")
    assert isinstance(result.exception, UserError) and "--gpus-per-run" in str(result.exception)
    assert not (tmp_path / "cpu").exists()


def test_slurm_options_become_sbatch_lines_and_paths_are_absolute(bytes_store, tmp_path, monkeypatch):
    monkeypatch.chdir(bytes_store.parent)
    runs = tmp_path / "runs"
    emit(bytes_store.name, runs, "--slurm-partition", "cpuq", "--slurm-account", "lab", "--slurm-qos", "low",
         "--slurm-mem", "4G", "--slurm-extra", "--constraint=a100", "--slurm-extra", "--exclusive",
         "--slurm-setup", "module load python; source /opt/venv/bin/activate", "--device", "cpu")
    text = (runs / "slurm" / "tune.sbatch").read_text()
    for line in ("--partition=cpuq", "--account=lab", "--qos=low", "--mem=4G", "--constraint=a100", "--exclusive",
                 "--kill-on-invalid-dep=yes", "--signal=B:USR1@"):
        assert f"#SBATCH {line}" in text, line
    setup = text.index("module load python; source /opt/venv/bin/activate")
    assert setup < text.index("python -m pileablate ablate")  # the set-up's python, after it
    assert f"--data {bytes_store.resolve()}" in text and f"--runs-dir {runs.resolve()}" in text
    assert f"#SBATCH --output={runs.resolve()}/slurm/logs/tune/" in text and (runs / "slurm/logs/tune").is_dir()


@pytest.mark.parametrize("args, message", [(["--slurm-mem", "lots"], "--slurm-mem"),
                                           (["--slurm-extra", "constraint=a100"], "--slurm-extra")])
def test_bad_slurm_options_are_one_line_errors_and_write_nothing(bytes_store, tmp_path, args, message):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "r"), *GRID, "--emit", "slurm", *args)
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_the_scripts_are_valid_bash(bytes_store, tmp_path):
    runs = tmp_path / "runs"
    emit(bytes_store, runs, "--slurm-setup", "true; true")
    for name in ("tune.sbatch", "train.sbatch", "submit.sh"):
        subprocess.run(["bash", "-n", str(runs / "slurm" / name)], check=True)


def _submitted(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def _finish(runs: Path, name: str) -> None:
    (runs / name).mkdir(parents=True, exist_ok=True)
    (runs / name / "config.json").write_text("{}")
    (runs / name / "summary.json").write_text(json.dumps({"status": "finished", "steps": 6}))


def test_submit_forwards_its_arguments_and_resubmits_only_unfinished_tasks(bytes_store, tmp_path):
    runs, bin_dir, log = tmp_path / "runs", tmp_path / "bin", tmp_path / "sbatch.log"
    emit(bytes_store, runs, "--device", "cpu")
    fake_tool(bin_dir, "sbatch", f'echo "$@" >> {log}\necho "$(wc -l < {log});cluster"')
    submit = [str(runs / "slurm" / "submit.sh")]

    subprocess.run(["bash", *submit, "--partition=debug", "--comment=a b"], env=env_with(bin_dir), check=True)
    tune, train = _submitted(log)
    assert tune == ["--parsable", "--array=1-2", "--partition=debug", "--comment=a", "b", "tune.sbatch"]
    assert train == ["--parsable", "--array=1-2", "--dependency=afterok:1", "--partition=debug", "--comment=a", "b",
                     "train.sbatch"]

    log.unlink()
    _finish(runs, "tune-baseline-lr0.001-s1000")  # task 1 of the tuning array is done, task 2 is not
    out = subprocess.run(["bash", *submit], env=env_with(bin_dir), check=True, capture_output=True, text=True).stdout
    submitted = [a[1:3] for a in _submitted(log)]
    assert submitted == [["--array=2", "tune.sbatch"], ["--array=1-2", "--dependency=afterok:1"]]
    assert "submitted tune.sbatch (tasks 2): job 1" in out

    log.unlink()
    _finish(runs, "tune-rope-lr0.001-s1000")
    _finish(runs, "rope-s0")
    out = subprocess.run(["bash", *submit], env=env_with(bin_dir), check=True, capture_output=True, text=True).stdout
    assert _submitted(log) == [["--parsable", "--array=1", "train.sbatch"]]  # no dependency on a stage not submitted
    assert "tune: every task has finished or is queued" in out


def test_submit_again_while_the_arrays_are_queued_submits_nothing_and_waits_for_what_still_runs(bytes_store, tmp_path):
    """submit.sh asks squeue (for the arrays it noted in jobs.txt) which tasks are still queued or running:
    those are not submitted twice, and a resubmitted next stage depends on them."""
    runs, bin_dir, log, queue = tmp_path / "runs", tmp_path / "bin", tmp_path / "sbatch.log", tmp_path / "queue"
    emit(bytes_store, runs, "--device", "cpu")
    fake_tool(bin_dir, "sbatch", f'echo "$@" >> {log}\necho "$(wc -l < {log});cluster"')
    fake_tool(bin_dir, "squeue", f'[ "$*" = "-h -r -o %F %K" ] && cat {queue}')
    submit = ["bash", str(runs / "slurm" / "submit.sh")]
    subprocess.run(submit, env=env_with(bin_dir), check=True, capture_output=True)
    assert (runs / "slurm" / "jobs.txt").read_text() == "tune 1\ntrain 2\n"

    log.unlink()
    queue.write_text("1 1\n1 2\n2 1\n2 2\n99 1\n")  # both arrays queued (and another user's job)
    out = subprocess.run(submit, env=env_with(bin_dir), check=True, capture_output=True, text=True).stdout
    assert not log.exists()
    assert "tune: every task has finished or is queued" in out and "train: every task" in out

    queue.write_text("1 2\n")  # tuning task 1 failed, so the training array was dropped; task 2 still runs
    out = subprocess.run(submit, env=env_with(bin_dir), check=True, capture_output=True, text=True).stdout
    assert [a[1:3] for a in _submitted(log)] == [["--array=1", "tune.sbatch"], ["--array=1-2", "--dependency=afterok:1:1_2"]]


def test_a_time_out_signal_reaches_the_run_as_sigterm(bytes_store, tmp_path):
    """Slurm signals the task's shell (--signal=B:USR1@...): the shell forwards SIGTERM, on which the trainer
    checkpoints, and exits with the run's status."""
    runs, bin_dir, seen = tmp_path / "runs", tmp_path / "bin", tmp_path / "seen"
    emit(bytes_store, runs, "--slurm-setup", "true")  # the command is then the `python` on PATH: the fake one
    fake_tool(bin_dir, "python", f"trap 'echo TERM > {seen}; exit 130' TERM\n"
                                 f'echo "$OMP_NUM_THREADS $MKL_NUM_THREADS" > {seen}.tmp\n'
                                 f"mv {seen}.tmp {seen}.started\n"
                                 "for i in $(seq 600); do sleep 0.05; done")  # ends by itself
    task = subprocess.Popen(["bash", str(runs / "slurm" / "train.sbatch")], stdout=subprocess.PIPE, text=True,
                            env=env_with(bin_dir, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_JOB_ID="7",
                                         SLURM_CPUS_PER_TASK="3"))
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{seen}.started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        task.send_signal(signal.SIGUSR1)
        assert task.wait(30) == 130
    finally:
        task.kill()
    assert seen.read_text().strip() == "TERM"
    assert Path(f"{seen}.started").read_text().split() == ["3", "3"]  # both from SLURM_CPUS_PER_TASK
    header = task.stdout.read()
    assert "stage train: task 2 of 2 (job 7)" in header and "3 CPU threads" in header  # OMP from the task's CPUs


def test_a_task_computes_on_the_cpus_slurm_gave_it_and_records_them(bytes_store, tmp_path, one_torch_thread,
                                                                      monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    runs = tmp_path / "runs"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--task", "1/2",
                    "--device", "cpu", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads((runs / "baseline-s0" / "config.json").read_text())["hardware"]["threads"] == 2


def test_requests_no_node_can_hold_are_warned_about(bytes_store, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "sinfo", 'echo "2|(null)"; echo "2|(null)"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = emit(bytes_store, tmp_path / "cpu", "--device", "cpu", "--cpus-per-run", "4")
    assert "no node of the cluster has 4 CPUs" in result.output and "--cpus-per-run 2 or fewer" in result.output
    result = emit(bytes_store, tmp_path / "gpu", "--cpus-per-run", "2")
    assert "has 1 GPU(s) (the most is 0)" in result.output and "CPUs" not in result.output
    fake_tool(bin_dir, "sinfo", 'echo "64|gpu:a100:4(S:0-1)"')
    assert "warning" not in emit(bytes_store, tmp_path / "fits", "--gpus-per-run", "4").output
    fake_tool(bin_dir, "sinfo", 'exit 0')  # sinfo -p of a partition that does not exist lists nothing
    result = emit(bytes_store, tmp_path / "nowhere", "--slurm-partition", "gpu-typo")
    assert "sinfo lists no node in partition gpu-typo" in result.output


def test_array_spec_writes_runs_of_ids_as_ranges():
    assert array_spec([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert array_spec([4]) == "4" and array_spec([]) == ""


def test_pending_is_a_command_for_submit_sh(tmp_path):
    listing = {"runs_dir": str(tmp_path), "stages": {"tune": [["a"], ["b", "c"], ["d"]]}}
    (tmp_path / "tasks.json").write_text(json.dumps(listing))
    for name in ("a", "b"):
        _finish(tmp_path, name)
    done = subprocess.run([sys.executable, "-m", "pileablate.ablate.slurm", "pending", str(tmp_path / "tasks.json"),
                           "tune"], capture_output=True, text=True, check=True, env=env_with(tmp_path))
    assert done.stdout.strip() == "2-3"


def test_a_relative_grid_file_is_named_absolutely(bytes_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.toml").write_text('[[config]]\nmods = ["rope"]\n')
    result = ablate("--data", str(bytes_store), "--runs-dir", "runs", "--grid", "grid.toml", "--preset", "nano",
                    "--max-steps", "6", "--emit", "slurm")
    assert result.exit_code == 0, (result.output, result.exception)
    text = (tmp_path / "runs" / "slurm" / "train.sbatch").read_text()
    assert f"--grid {tmp_path.resolve() / 'grid.toml'} " in text and f"--runs-dir {tmp_path.resolve() / 'runs'} " in text
