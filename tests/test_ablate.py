"""`pileablate ablate` for real: the seven experiments over the nano preset on the bytes store, then
the report it prints and writes (tables, CSV, plots) checked on those runs.

One short ablation (7 runs x 10 steps) is made once per module and shared; tests that need their
own runs use a one-configuration grid.
"""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from pileablate.cli import app
from pileablate.errors import UserError

SEVEN = ["baseline", "warmup", "cosine", "rmsnorm", "rope", "swiglu", "all"]
TINY = ["--preset", "nano", "--max-steps", "10", "--eval-every", "5", "--log-every", "1", "--eval-tokens", "2048"]


def ablate(*args: str):
    return CliRunner().invoke(app, ["ablate", *args], catch_exceptions=True)


@pytest.fixture(scope="module")
def ablation(bytes_store, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ablation") / "runs"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    return runs, result


def test_ablate_runs_the_seven_experiments_and_prints_the_report(ablation):
    runs, result = ablation
    assert sorted(p.name for p in runs.iterdir() if (p / "summary.json").exists()) == sorted(f"{n}-s0" for n in SEVEN)
    for name in SEVEN:
        summary = json.loads((runs / f"{name}-s0" / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["steps"] == 10
        assert name in result.stdout  # the report table, on stdout
    assert "run 7/7: all-s0" in result.stderr  # progress: which run of how many


def test_every_run_gets_the_same_budget_data_and_seed(ablation):
    runs, _ = ablation
    configs = [json.loads((runs / f"{n}-s0" / "config.json").read_text()) for n in SEVEN]
    assert {json.dumps(c["train"][k]) for c in configs for k in ("max_steps",)} == {"10"}
    assert len({c["data"]["fingerprint"] for c in configs}) == 1
    assert {c["seed"] for c in configs} == {0}
    mods = {c["name"]: tuple(c["mods"]) for c in configs}
    assert mods["baseline-s0"] == () and mods["rope-s0"] == ("rope",)
    assert set(mods["all-s0"]) == {"warmup", "cosine", "rmsnorm", "rope", "swiglu"}


def test_summary_csv_lists_every_configuration_with_the_expected_columns(ablation):
    from pileablate.report.table import SUMMARY_COLUMNS

    runs, _ = ablation
    with (runs / "summary.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = {row["configuration"]: row for row in reader}
    assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
    assert set(rows) == set(SEVEN)
    for row in rows.values():
        assert float(row["tokens"]) == 10 * 8 * 64  # 10 steps x batch 8 x seq 64
        assert 0 < float(row["final_val_loss"]) < 6.0 and float(row["val_bits_per_byte"]) > 0.3
        assert int(float(row["params_total"])) > 0
    assert float(rows["baseline"]["delta_vs_baseline"]) == 0.0
    assert rows["rope"]["delta_significant"] == ""  # one seed: significance unknown, not claimed
    report_md = (runs / "report.md").read_text()
    assert all(f"| {n} |" in report_md for n in SEVEN) and "significance is unknown" in report_md


def test_each_plot_exists_with_one_set_of_curves_per_run(ablation):
    from pileablate.report.build import PLOTS, build_report
    from pileablate.report.plots import build_figures

    runs, _ = ablation
    for stem in PLOTS:
        assert (runs / "plots" / f"{stem}.png").is_file() and (runs / "plots" / f"{stem}.svg").is_file()
    figures = build_figures(build_report([runs]).configurations)
    # one line per configuration (one seed each here)
    assert len(figures["loss_vs_tokens"].axes[0].lines) == 7
    assert len(figures["loss_vs_time"].axes[0].lines) == 7
    panels = [ax for ax in figures["runs_grid"].axes if ax.get_visible()]
    assert len(panels) == 6 and all(len(ax.lines) == 3 for ax in panels)  # baseline mean, the seed, its mean
    assert len(figures["final_val_loss"].axes[0].get_xticklabels()) == 6
    assert len([line for line in figures["delta_over_training"].axes[0].lines if line.get_label()[0] != "_"]) == 6
    # one curve per distinct schedule: constant (baseline and the model-only mods), warmup, cosine (+all)
    lr = figures["lr_schedule"].axes[0]
    by_label = {line.get_label(): list(line.get_ydata()) for line in lr.lines}
    assert set(by_label) == {"baseline, rmsnorm, rope, swiglu", "warmup", "cosine, all"}
    assert len(set(by_label["baseline, rmsnorm, rope, swiglu"])) == 1
    assert by_label["cosine, all"][-1] < max(by_label["cosine, all"])
    # computed from step 0: the warmup starts at zero, not at the first logged step's rate
    assert by_label["warmup"][0] < 0.01 * max(by_label["warmup"]) and lr.get_lines()[0].get_xdata()[0] == 0


def test_rerun_skips_finished_runs(ablation, bytes_store):
    runs, _ = ablation
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), *TINY)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("skipped") == 7
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")} == before


def test_rerun_with_other_settings_or_budget_is_refused_before_training(ablation, bytes_store):
    runs, _ = ablation
    for change in (["--lr", "3e-3"], ["--max-steps", "20"]):
        args = [a for a in TINY]
        if change[0] in args:
            args[args.index(change[0]) + 1] = change[1]
        else:
            args += change
        result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), *args)
        assert isinstance(result.exception, UserError), result.output
        assert "another --runs-dir" in str(result.exception)


def test_interrupted_run_is_resumed_to_the_uninterrupted_result(ablation, bytes_store, tmp_path):
    """An ablation stopped half-way through baseline-s0 (checkpoint at step 5, summary 'stopped')
    continues it on re-run, and ends where the uninterrupted run ended, bit for bit on CPU."""
    from pileablate.commands.train import train_config_from_args
    from pileablate.train.trainer import train

    uninterrupted, _ = ablation
    runs = tmp_path / "runs"
    half = [*TINY]
    half[half.index("--max-steps") + 1] = "5"
    train(train_config_from_args(["--data", str(bytes_store), "--runs-dir", str(runs), "--name", "baseline-s0", *half]))
    run_dir = runs / "baseline-s0"
    # What SIGINT at step 5 of a 10-step run leaves behind (the constant-LR baseline's first five
    # steps do not depend on the budget).
    for file, edit in (("summary.json", {"status": "stopped", "stop_reason": "interrupted"}), ("config.json", None)):
        data = json.loads((run_dir / file).read_text())
        if edit:
            data.update(edit)
            data["budget"]["max_steps"] = 10
        else:
            data["train"]["max_steps"] = 10
        (run_dir / file).write_text(json.dumps(data))

    grid = tmp_path / "grid.toml"
    grid.write_text('[[config]]\nmods = []\n')
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--grid", str(grid), *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "resume" in result.stderr
    resumed = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((uninterrupted / "baseline-s0" / "summary.json").read_text())
    assert resumed["status"] == "finished" and resumed["steps"] == 10
    assert resumed["final_val_loss"] == reference["final_val_loss"]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 10


def test_a_failed_run_does_not_stop_the_others(tmp_path, monkeypatch):
    """A modification failing its guards is recorded and reported; the remaining runs still train."""
    from pileablate.ablate.plan import Experiment, plan_runs
    from pileablate.ablate.runner import run_grid
    from pileablate.train import trainer
    from pileablate.train.config import TrainConfig
    from pileablate.train.state import RunFailed

    trained = []

    def fake_train(cfg, console=None):
        trained.append(cfg.name)
        if cfg.name == "rope-s0":
            raise RunFailed("guard failed before training: rope leaks", {"status": "failed"})
        return {"name": cfg.name, "status": "finished"}

    monkeypatch.setattr(trainer, "train", fake_train)
    plan = plan_runs([Experiment("baseline", ()), Experiment("rope", ("rope",)),
                      Experiment("swiglu", ("swiglu",))], [0])
    from rich.console import Console

    configs = [TrainConfig(runs_dir=tmp_path, max_steps=1, name=p.name) for p in plan]
    outcomes, interrupted = run_grid(configs, plan, Console(quiet=True))
    assert trained == ["baseline-s0", "rope-s0", "swiglu-s0"] and not interrupted
    assert [o.error is not None for o in outcomes] == [False, True, False]


def test_an_interrupt_stops_the_grid_and_leaves_the_rest_for_the_rerun(tmp_path, monkeypatch):
    from rich.console import Console

    from pileablate.ablate.plan import default_grid, plan_runs
    from pileablate.ablate.runner import run_grid
    from pileablate.train import trainer
    from pileablate.train.config import TrainConfig

    trained = []

    def fake_train(cfg, console=None):
        trained.append(cfg.name)
        return {"name": cfg.name, "status": "stopped" if cfg.name == "cosine-s0" else "finished"}

    monkeypatch.setattr(trainer, "train", fake_train)
    plan = plan_runs(default_grid(), [0])
    configs = [TrainConfig(runs_dir=tmp_path, max_steps=1, name=p.name) for p in plan]
    outcomes, interrupted = run_grid(configs, plan, Console(quiet=True))
    assert interrupted and trained == ["baseline-s0", "warmup-s0", "cosine-s0"]


def test_dry_run_prints_the_plan_and_trains_nothing(bytes_store, tmp_path):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "runs"), "--preset", "nano",
                    "--seeds", "2", "--seed", "3", "--dry-run")
    assert result.exit_code == 0, result.output
    for name in SEVEN:
        assert f"{name}-s3" in result.stdout and f"{name}-s4" in result.stdout
    assert "14 runs" in result.stdout
    assert not (tmp_path / "runs").exists()
    # The default budget's passes over the store, said before anything runs (stderr), with why it repeats data.
    manifest = json.loads((bytes_store / "manifest.json").read_text())
    assert "passes over the train split" in result.stderr and f"of {manifest['splits']['train']['tokens']:,} tokens" \
        in result.stderr


def test_default_budget_is_the_baselines_and_the_same_for_every_run(bytes_store):
    import torch

    from pileablate.ablate.runner import grid_budget
    from pileablate.commands.train import train_config_from_args
    from pileablate.model.build import build_model_config
    from pileablate.model.gpt import GPT
    from pileablate.train.config import DEFAULT_TOKENS_PER_PARAM

    base = train_config_from_args(["--data", str(bytes_store), "--preset", "nano"])
    budgeted, defaulted = grid_budget(base, 257)
    with torch.device("meta"):
        baseline = GPT(build_model_config("nano", (), 257)).num_params()["active"]
        rope = GPT(build_model_config("nano", ("rope",), 257)).num_params()["active"]
    assert defaulted and budgeted.max_tokens == DEFAULT_TOKENS_PER_PARAM * baseline
    assert rope != baseline  # why the budget must be fixed for the grid, not per run
    given = train_config_from_args(["--data", str(bytes_store), "--time-limit", "30s"])
    assert grid_budget(given, 257) == (given, False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "x"], "names its runs itself"),
        (["--resume"], "resumes interrupted runs by itself"),
        (["--mods", "gqa,mla"], "cannot be combined"),
        (["--mods", "warp"], "unknown modification"),
        (["--max-tokens", "1e99"], "beyond any use"),
        (["--max-steps", "10000000000000000"], "beyond any use"),
        (["--sweep", "max_tokens=1M,1e99"], "beyond any use"),
    ],
)
def test_bad_options_are_one_line_errors(bytes_store, tmp_path, args, message):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path), "--dry-run", *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_an_unknown_option_is_a_one_line_error(capsys):
    from pileablate.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "--dry-run", "--no-such-option"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "--no-such-option" in err and "\n" not in err and "ablate --help" in err


def test_missing_data_says_to_prepare(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pileablate", "ablate", "--data", str(tmp_path / "nope"), "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "pileablate prepare" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ctrl_c_stops_the_grid_and_the_same_command_resumes_it(bytes_store, tmp_path):
    """A real SIGINT in the middle of a run: exit 130 with a resume hint, checkpoint kept; the
    same command then resumes that run (not from scratch) and finishes the grid."""
    import os
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "runs"
    grid = tmp_path / "grid.toml"
    grid.write_text('[[config]]\nmods = []\n[[config]]\nmods = ["rope"]\n')
    args = [sys.executable, "-m", "pileablate", "ablate", "--data", str(bytes_store), "--runs-dir", str(runs),
            "--grid", str(grid), "--preset", "nano", "--max-steps", "120", "--eval-every", "60",
            "--log-every", "1", "--eval-tokens", "2048", "--checkpoint-every", "1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = runs / "baseline-s0" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at run 1/2" in err and "Re-run the same command" in err
    stopped = json.loads((runs / "baseline-s0" / "summary.json").read_text())
    assert stopped["status"] == "stopped" and 0 < stopped["steps"] < 120
    assert not (runs / "rope-s0").exists()

    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resum" in again.stderr
    for name in ("baseline-s0", "rope-s0"):
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["steps"] == 120
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, 121))  # continued from the checkpoint: no step twice, none missing
