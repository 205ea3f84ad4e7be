"""`pileablate train` as a process: signals, torchrun/DDP on CPU, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pileablate.train.config import TrainConfig
from pileablate.runfolder import read_metrics
from pileablate.train.trainer import train

NANO = ["--preset", "nano", "--device", "cpu", "--batch-size", "4", "--eval-tokens", "1024", "--log-every", "1"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for_rows(metrics: Path, rows: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            return
        if proc.poll() is not None:
            raise AssertionError(f"train exited early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.01)
    raise AssertionError("train wrote no metrics in time")


def test_sigint_checkpoints_exits_with_a_resume_hint_and_resumes_exactly(tmp_path, bytes_store):
    """Interrupt a cosine+warmup run, continue it: every step's loss equals an uninterrupted run's."""
    STEPS = 150  # leaves the signal seconds to land mid-run even when the test process is slow to poll
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "all", "--max-steps", str(STEPS),
            "--eval-every", "100000", *NANO, "--batch-size", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "pileablate", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    run_dir = runs / "all-s0"
    _wait_for_rows(run_dir / "metrics.jsonl", 3, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped at step" in err and "--resume" in err and "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["stop_reason"] == "interrupted"
    stopped_at = summary["steps"]
    assert 3 <= stopped_at < STEPS
    import torch

    assert torch.load(run_dir / "ckpt" / "latest.pt", weights_only=True)["progress"]["step"] == stopped_at

    cfg = TrainConfig(data=bytes_store, runs_dir=runs, preset="nano", device="cpu", batch_size=8, eval_tokens=1024,
                      log_every=1, mods=("warmup", "cosine", "rmsnorm", "rope", "swiglu"), max_steps=STEPS, eval_every=100000)
    resumed = train(cfg)  # the same command again continues the run
    reference = train(TrainConfig(**{**cfg.__dict__, "name": "uninterrupted"}))
    assert resumed["status"] == "finished" and resumed["steps"] == STEPS
    a = [r["train_loss"] for r in read_metrics(run_dir)]
    b = [r["train_loss"] for r in read_metrics(Path(reference["run_dir"]))]
    assert len(a) == len(b) == STEPS and a == b
    assert resumed["final_val_loss"] == reference["final_val_loss"]


def test_sigterm_from_a_scheduler_also_saves_and_stops_cleanly(tmp_path, bytes_store):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "pileablate", "train", "--data", str(bytes_store), "--runs-dir",
                             str(runs), "--max-steps", "100000", *NANO], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    _wait_for_rows(runs / "baseline-s0" / "metrics.jsonl", 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    summary = json.loads((runs / "baseline-s0" / "summary.json").read_text())
    assert summary["status"] == "stopped" and (runs / "baseline-s0" / "ckpt" / "latest.pt").exists()


# Two gloo processes each take half of every step's windows; DDP averages their gradients. The sums
# are done in a different order than one process's mean over the whole batch, so losses agree to
# float32 rounding that Adam slightly amplifies: within DDP_REL_TOL (relative) over these steps.
DDP_REL_TOL = 1e-4


def test_torchrun_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path, bytes_store):
    runs = tmp_path / "runs"
    common = ["--data", str(bytes_store), "--runs-dir", str(runs), "--preset", "nano", "--device", "cpu",
              "--max-steps", "8", "--eval-every", "4", "--eval-tokens", "2048", "--log-every", "1", "--mods", "rope"]
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "pileablate", "train", *common, "--batch-size", "4", "--name", "ddp"],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("\t") == 5  # one result line (rank 0 only)
    single = train(TrainConfig(data=bytes_store, runs_dir=runs, preset="nano", device="cpu", max_steps=8,
                               eval_every=4, eval_tokens=2048, log_every=1, mods=("rope",), batch_size=8, name="single"))
    ddp_rows = read_metrics(runs / "ddp")
    single_rows = read_metrics(Path(single["run_dir"]))
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in single_rows] == list(range(1, 9))
    assert [r["train_loss"] for r in ddp_rows] == pytest.approx([r["train_loss"] for r in single_rows], rel=DDP_REL_TOL)
    assert ddp_rows[-1]["val_loss"] == pytest.approx(single_rows[-1]["val_loss"], rel=DDP_REL_TOL)
    config = json.loads((runs / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2 and config["tokens_per_step"] == 8 * 64
    assert json.loads((runs / "ddp" / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}"], "run 'pileablate prepare' first"),
    (["--mods", "rope,flash"], "unknown modification 'flash'"),
    (["--time-limit", "ten minutes"], "--time-limit 'ten minutes': not a duration"),
    (["--max-tokens", "many"], "--max-tokens 'many'"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, bytes_store, capsys, args, message):
    from pileablate.cli import main

    args = [a.replace("{missing}", str(tmp_path / "nothing")) for a in args]
    if "--data" not in args:
        args += ["--data", str(bytes_store)]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--runs-dir", str(tmp_path / "runs"), "--preset", "nano", "--max-steps", "1", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_help_is_the_manual(capsys):
    from pileablate.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--mods", "--preset", "--time-limit", "--max-tokens", "--max-steps", "--checkpoint-every",
                   "--precision", "--compile", "--resume", "--mod-option", "--grad-accum", "--eval-tokens"):
        assert option in text


COMMANDS = ("prepare", "mods", "train", "ablate", "report", "generate", "export")


def _help(command: str) -> str:
    from typer.testing import CliRunner

    from pileablate.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_short_flag_and_a_concept_have_one_name_across_commands():
    import typer.main

    from pileablate.cli import app

    group = typer.main.get_command(app)
    meaning: dict[str, set] = {}
    longs = set()
    for name in COMMANDS:
        for param in group.commands[name].params:
            opts = list(param.opts) + list(getattr(param, "secondary_opts", []))
            long = next((o for o in opts if o.startswith("--")), None)
            longs.update(o for o in opts if o.startswith("--"))
            for short in (o for o in opts if not o.startswith("--") and o.startswith("-")):
                meaning.setdefault(short, set()).add(long)
    assert {short: names for short, names in meaning.items() if len(names) > 1} == {}  # -t was two things
    assert "--force" not in longs  # overwriting is --overwrite; mixing data in a report is --mix-data
    assert {"--overwrite", "--mix-data"} <= longs


def test_help_shows_install_extras_plain_types_and_no_internal_options():
    texts = {command: _help(command) for command in COMMANDS}
    assert "pileablate[hf]" in texts["export"]  # not eaten as rich markup
    assert ".[tensorboard]" in texts["train"]
    for command, text in texts.items():
        assert "<bool>" not in text and "<list" not in text and "<int" not in text, command
    assert "INTEGER" in texts["train"] and "PATH" in texts["export"]
    assert "--tuning" not in texts["train"]  # set by ablate, not a person
    assert "auto: small" in texts["train"].replace("\n", " ") or "Default auto: small" in texts["train"]


def test_the_run_header_says_which_preset_was_chosen_and_why(tmp_path, bytes_store, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = TrainConfig(data=bytes_store, runs_dir=tmp_path, n_layer=1, d_model=32, n_head=2, seq_len=32,
                      batch_size=2, eval_tokens=256, max_steps=1)
    assert cfg.preset == "micro"
    train(cfg)
    assert "preset micro (the default without CUDA; --preset to choose)" in capsys.readouterr().err
