"""`pileablate report` on synthetic run directories written in the DESIGN.md "Runs" format.

These pin the report's rules (grouping, seed statistics, significance, flags, data mixing) on runs
whose numbers we choose; tests/test_ablate.py checks the same report on runs a real ablate made.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pileablate.report.build import PLOTS, build_report, write_report
from pileablate.report.plots import (
    final_val_bar_figure,
    loss_vs_time_figure,
    loss_vs_tokens_figure,
    lr_schedule_figure,
    runs_grid_figure,
)
from pileablate.report.stats import smooth, std, welch
from pileablate.report.table import SUMMARY_COLUMNS

FINGERPRINT = "f" * 64
_CLOCK = itertools.count()
BYTES_TOKENIZER = {"spec": "bytes", "name": "bytes", "sha256": "b" * 64, "n_vocab": 257, "eot_id": 256}


def make_run(
    runs: Path, name: str, mods=(), seed=0, final_val=2.0, final_train=None, steps=50,
    status="finished", stop_reason="max_steps", budget=None, fingerprint=FINGERPRINT,
    tokenizer=BYTES_TOKENIZER, epochs=0.5, guards=None, flags=(), val_bytes_per_token=1.0,
    lr=1e-3, role=None, params=None, eval_tokens=4096,
) -> Path:
    """A run directory whose losses decay from ln(257) towards `final_val` (train to `final_train`)."""
    d = runs / name
    d.mkdir(parents=True)
    final_train = final_val if final_train is None else final_train
    budget = budget or {"time_limit_s": None, "max_tokens": None, "max_steps": steps}
    tokens_per_step = 1024
    config = {
        "name": name, "mods": list(mods), "seed": seed, "preset": "nano", "model": {"n_layer": 2},
        "train": {"seed": seed, "max_steps": budget["max_steps"], "time_limit_s": budget["time_limit_s"],
                  "max_tokens": budget["max_tokens"], "lr": lr, "batch_size": 8, "grad_accum": 1,
                  "eval_tokens": eval_tokens},
        "data": {"dir": "data", "fingerprint": fingerprint, "tokenizer": tokenizer, "vocab_size": 257,
                 "val_bytes_per_token": val_bytes_per_token},
        "tokens_per_step": tokens_per_step, "world_size": 1, "pileablate_version": "0.1.0",
        "created": (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=next(_CLOCK))).isoformat(),
    }
    if role is not None:
        config["role"] = role
    start = math.log(257)
    rows = []
    for step in range(1, steps + 1):
        frac = step / steps
        row = {
            "step": step, "tokens": step * tokens_per_step, "elapsed_s": 0.1 * step,
            "lr": 1e-3 * min(1.0, step / 5) if "warmup" in mods else 1e-3,
            "train_loss": final_train + (start - final_train) * math.exp(-5 * frac) + 0.05 * math.sin(step),
            "grad_norm": 1.0, "tokens_per_s": 10240.0, "epoch": epochs * frac,
        }
        if step % 10 == 0:
            row["val_loss"] = final_val + (start - final_val) * math.exp(-5 * frac)
        rows.append(row)
    summary = {
        "name": name, "mods": list(mods), "seed": seed, "status": status, "stop_reason": stop_reason,
        "steps": steps, "tokens": steps * tokens_per_step, "elapsed_s": 0.1 * steps,
        "final_train_loss": rows[-1]["train_loss"], "final_val_loss": final_val,
        "best_val_loss": final_val, "val_bits_per_byte": final_val / math.log(2) / val_bytes_per_token,
        "params_total": params or 100_000 + 100 * len(mods), "params_active": params or 100_000 + 100 * len(mods),
        "epochs": epochs, "tokens_per_s": 10240.0, "peak_mem_bytes": None, "budget": budget,
        "guards": guards or {"causality": "passed", "initial_loss": 5.6}, "flags": list(flags),
    }
    (d / "config.json").write_text(json.dumps(config))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def seven_runs(runs: Path, seeds=(0,), deltas=None) -> Path:
    deltas = deltas or {"baseline": 0.0, "warmup": -0.02, "cosine": -0.05, "rmsnorm": 0.0,
                        "rope": -0.1, "swiglu": -0.08, "all": -0.2}
    for name, delta in deltas.items():
        mods = () if name == "baseline" else (
            ("warmup", "cosine", "rmsnorm", "rope", "swiglu") if name == "all" else (name,))
        for seed in seeds:
            make_run(runs, f"{name}-s{seed}", mods=mods, seed=seed, final_val=2.0 + delta + 0.01 * seed)
    return runs


def test_report_lists_every_configuration_with_baseline_first(tmp_path):
    seven_runs(tmp_path / "runs")
    report = build_report([tmp_path / "runs"])
    names = [c.name for c in report.configurations]
    # baseline, singles, combinations; each in the order the runs were made
    assert names == ["baseline", "warmup", "cosine", "rmsnorm", "rope", "swiglu", "all"]
    rope = next(c for c in report.configurations if c.name == "rope")
    assert rope.delta.delta == pytest.approx(-0.1)
    assert rope.delta.significant is None  # one seed: unknown, never claimed


def test_summary_csv_has_one_row_per_configuration_and_every_column(tmp_path):
    seven_runs(tmp_path / "runs", seeds=(0, 1))
    files = write_report(build_report([tmp_path / "runs"]), tmp_path / "out", plots=False)
    with files["summary.csv"].open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
    assert len(rows) == 7
    baseline = rows[0]
    assert baseline["configuration"] == "baseline" and baseline["seeds"] == "0 1"
    assert float(baseline["final_val_loss"]) == pytest.approx(2.005)
    assert float(baseline["final_val_loss_std"]) == pytest.approx(std([2.0, 2.01]))
    with files["runs.csv"].open() as fh:
        assert len(list(csv.DictReader(fh))) == 14
    text = files["report.md"].read_text()
    assert "Welch" in text and "| baseline |" in text


def test_delta_is_significant_only_when_it_beats_seed_noise(tmp_path):
    runs = tmp_path / "runs"
    for seed, (base, big, small) in enumerate([(2.00, 1.80, 2.01), (2.02, 1.81, 1.99), (2.01, 1.79, 2.02)]):
        make_run(runs, f"baseline-s{seed}", seed=seed, final_val=base)
        make_run(runs, f"rope-s{seed}", mods=("rope",), seed=seed, final_val=big)
        make_run(runs, f"swiglu-s{seed}", mods=("swiglu",), seed=seed, final_val=small)
    configs = {c.name: c for c in build_report([runs]).configurations}
    assert configs["rope"].delta.significant is True
    assert configs["swiglu"].delta.significant is False
    assert configs["rope"].delta.marker == "*"


@pytest.mark.parametrize("shift", [0.0, 0.003, 0.5, 1.0, 1.5])
def test_welch_property_shifting_one_side_moves_delta_not_noise(shift):
    a, b = [1.0, 1.1, 0.9, 1.05], [2.0, 2.2, 1.9]
    base = welch(a, b)
    moved = welch([x + shift for x in a], b)
    assert moved.delta == pytest.approx(base.delta + shift)
    assert moved.stderr == pytest.approx(base.stderr)
    assert moved.ci[1] - moved.ci[0] == pytest.approx(base.ci[1] - base.ci[0])
    # uncorrected, p < 5% exactly when the 95% interval leaves out zero
    assert moved.significant == (moved.ci[0] > 0 or moved.ci[1] < 0)


def test_smooth_keeps_constants_and_length():
    assert smooth([3.0] * 40) == pytest.approx([3.0] * 40)
    assert len(smooth(list(range(100)))) == 100


def test_overfitting_impossible_loss_and_failed_guard_are_flagged(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "baseline-s0", final_val=2.0)
    make_run(runs, "memorise-s0", mods=("rope",), final_val=2.5, final_train=1.2, epochs=12.0)
    make_run(runs, "leak-s0", mods=("swiglu",), final_val=0.086, val_bytes_per_token=4.0)
    make_run(runs, "broken-s0", mods=("cosine",), status="failed", stop_reason="guard_failed",
             guards={"causality": "failed", "initial_loss": None, "error": "swiglu leaks future tokens"})
    configs = {c.name: c for c in build_report([runs]).configurations}
    assert configs["baseline"].flags == []
    assert any("over-fitting" in f and "12.0 epochs" in f for f in configs["memorise"].flags)
    assert any("below what the data allows" in f for f in configs["leak"].flags)
    assert any("failed (guard_failed)" in f for f in configs["broken"].flags)
    assert any("guard causality failed" in f for f in configs["broken"].flags)


def test_unequal_budgets_are_flagged(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "baseline-s0", budget={"time_limit_s": None, "max_tokens": None, "max_steps": 50})
    make_run(runs, "rope-s0", mods=("rope",), budget={"time_limit_s": 60.0, "max_tokens": None, "max_steps": None})
    report = build_report([runs])
    assert len(report.warnings) == 1 and "unequal budgets" in report.warnings[0]
    files = write_report(report, tmp_path / "out", plots=False)
    assert "UNEQUAL" in files["report.md"].read_text()


def test_runs_on_different_data_need_force_and_the_report_says_so(tmp_path):
    from pileablate.errors import UserError

    runs = tmp_path / "runs"
    make_run(runs, "baseline-s0")
    make_run(runs, "rope-s0", mods=("rope",), fingerprint="0" * 64,
             tokenizer=dict(BYTES_TOKENIZER, name="gpt2", sha256="c" * 64))
    with pytest.raises(UserError, match="--force"):
        build_report([runs])
    report = build_report([runs], force=True)
    assert report.delta_key == "val_bits_per_byte"  # tokens of different tokenizers do not compare
    files = write_report(report, tmp_path / "out", plots=False)
    assert "Mixed data (--force)" in files["report.md"].read_text()


def test_each_figure_has_the_expected_curves(tmp_path):
    seven_runs(tmp_path / "runs", seeds=(0, 1))
    report = build_report([tmp_path / "runs"])
    configs = report.configurations
    n_runs = 14
    # per run: raw train, smoothed train, validation
    assert len(loss_vs_tokens_figure(configs).axes[0].lines) == 3 * n_runs
    assert len(loss_vs_time_figure(configs).axes[0].lines) == 3 * n_runs
    grid = runs_grid_figure(configs)
    panels = [ax for ax in grid.axes if ax.get_visible()]
    assert len(panels) == n_runs and all(len(ax.lines) == 3 for ax in panels)
    bars = final_val_bar_figure(configs).axes[0]
    assert len(bars.patches) == 7
    # synthetic schedules: constant for all but warmup (and all, which includes warmup)
    assert sorted(line.get_label() for line in lr_schedule_figure(configs).axes[0].lines) == [
        "baseline, cosine, rmsnorm, rope, swiglu", "warmup, all"]
    ax = loss_vs_tokens_figure(configs).axes[0]
    assert ax.get_xlabel() == "tokens seen" and "nats/token" in ax.get_ylabel()
    assert ax.get_legend() is not None


def test_report_command_writes_files_and_prints_table(tmp_path):
    from typer.testing import CliRunner

    from pileablate.cli import app

    seven_runs(tmp_path / "runs")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "baseline" in result.stdout and "swiglu" in result.stdout
    for stem in PLOTS:
        assert (tmp_path / "rep" / "plots" / f"{stem}.png").stat().st_size > 0
        assert (tmp_path / "rep" / "plots" / f"{stem}.svg").exists()


def test_report_on_missing_runs_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pileablate", "report", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no runs in") and len(proc.stderr.strip().splitlines()) == 1


def test_a_run_that_failed_before_its_first_step_is_reported_and_plotted(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "baseline-s0")
    broken = make_run(runs, "swiglu-s0", mods=("swiglu",), status="failed", stop_reason="guard_failed",
                      guards={"causality": "failed", "initial_loss": None, "error": "swiglu leaks"})
    # what the trainer leaves when the guards fail: a summary, no metrics, no config.json
    (broken / "metrics.jsonl").unlink()
    (broken / "config.json").unlink()
    summary = json.loads((broken / "summary.json").read_text())
    summary.update(steps=0, tokens=0, final_train_loss=None, final_val_loss=None, best_val_loss=None,
                   val_bits_per_byte=None)
    (broken / "summary.json").write_text(json.dumps(summary))
    report = build_report([runs])
    swiglu = report.configurations[1]
    assert swiglu.delta is None and any("guard causality failed: swiglu leaks" in f for f in swiglu.flags)
    files = write_report(report, tmp_path / "out")
    assert files["final_val_loss"].exists()
    assert "swiglu" in files["report.md"].read_text()


def test_report_paths_that_are_not_runs_are_one_line_errors(tmp_path):
    from pileablate.errors import UserError

    with pytest.raises(UserError, match="no runs folder"):
        build_report([tmp_path / "missing"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        build_report([tmp_path / "file"])
