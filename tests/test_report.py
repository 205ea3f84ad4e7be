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

from pileablate.report.build import PLOTS, build_report, markdown, write_report
from pileablate.report.plots import (
    delta_over_training_figure,
    final_delta_figure,
    loss_vs_time_figure,
    loss_vs_tokens_figure,
    lr_schedule_figure,
    runs_grid_figure,
)
from pileablate.report.stats import smooth, std, welch
from pileablate.report.table import SUMMARY_COLUMNS, markdown_table

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
    budget = budget or {"time_limit": None, "max_tokens": None, "max_steps": steps}
    tokens_per_step = 1024
    config = {
        "name": name, "mods": list(mods), "seed": seed, "preset": "nano", "model": {"n_layer": 2},
        "train": {"seed": seed, "max_steps": budget["max_steps"], "time_limit": budget["time_limit"],
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
    make_run(runs, "baseline-s0", budget={"time_limit": None, "max_tokens": None, "max_steps": 50})
    make_run(runs, "rope-s0", mods=("rope",), budget={"time_limit": 60.0, "max_tokens": None, "max_steps": None})
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
    with pytest.raises(UserError, match="--mix-data"):
        build_report([runs])
    report = build_report([runs], mix_data=True)
    assert report.delta_key == "val_bits_per_byte"  # tokens of different tokenizers do not compare
    files = write_report(report, tmp_path / "out", plots=False)
    assert "Mixed data (--mix-data)" in files["report.md"].read_text()


def test_each_figure_has_the_expected_curves(tmp_path):
    seven_runs(tmp_path / "runs", seeds=(0, 1))
    report = build_report([tmp_path / "runs"])
    configs = report.configurations
    names = [c.name for c in configs]
    # One line per configuration (the mean over its seeds) with its band, the baseline drawn last (on top).
    for figure in (loss_vs_tokens_figure(configs), loss_vs_time_figure(configs)):
        ax = figure.axes[0]
        assert [line.get_label().split(",")[0] for line in ax.lines] == names[1:] + names[:1]
        assert len(ax.collections) == 7 and all(line.get_label().endswith("2 seeds") for line in ax.lines)
    grid = runs_grid_figure(configs)
    panels = [ax for ax in grid.axes if ax.get_visible()]
    # a panel per configuration beside the baseline: the baseline's mean, each seed, the configuration's mean
    assert len(panels) == 6 and all(len(ax.lines) == 4 for ax in panels)
    assert len({ax.get_ylim() for ax in panels}) == 1  # one shared y axis
    deltas = delta_over_training_figure(configs).axes[0]
    assert [line.get_label() for line in deltas.lines if not line.get_label().startswith("_")] == [
        f"{n}, 2 paired seeds" for n in names[1:]]
    final = final_delta_figure(configs).axes[0]
    assert [t.get_text() for t in final.get_xticklabels()] == [f"{n}\nn=2" for n in names[1:]]
    assert not final.patches  # no bars from zero (they hid differences of a tenth)
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


# ---- which runs count -----------------------------------------------------------------------------

def three_seed_grid(runs: Path, broken: dict | None = None) -> Path:
    """baseline, rope and swiglu with seeds 0-2; `broken` = {run name: make_run overrides}."""
    values = {"baseline": [2.00, 2.02, 2.01], "rope": [1.90, 1.93, 1.91], "swiglu": [1.99, 2.03, 2.00]}
    for name, losses in values.items():
        for seed, loss in enumerate(losses):
            kw = dict(mods=() if name == "baseline" else (name,), seed=seed, final_val=loss)
            kw.update((broken or {}).get(f"{name}-s{seed}", {}))
            make_run(runs, f"{name}-s{seed}", **kw)
    return runs


def test_a_failed_seed_is_listed_apart_and_never_pooled(tmp_path):
    from scipy import stats

    runs = three_seed_grid(tmp_path / "runs", {"rope-s1": dict(
        status="failed", stop_reason="non_finite_loss", flags=["non_finite_loss"], final_val=9.5)})
    report = build_report([runs])
    rope = next(c for c in report.configurations if c.name == "rope")
    assert rope.excluded == {"rope-s1": "failed (non_finite_loss)"}
    assert rope.seeds == [0, 2] and rope.values("final_val_loss") == [1.90, 1.91]
    assert rope.delta.delta == pytest.approx((1.90 + 1.91) / 2 - 2.01)
    # seeds no longer pair: Welch, and the report says why
    assert rope.delta.test == "welch" and rope.delta.why == "Welch: seeds differ (0,2 vs baseline 0,1,2)"
    assert rope.delta.p == pytest.approx(stats.ttest_ind([1.90, 1.91], [2.00, 2.02, 2.01], equal_var=False).pvalue)
    swiglu = next(c for c in report.configurations if c.name == "swiglu")
    assert swiglu.delta.why == "paired t-test over seeds 0,1,2"
    assert swiglu.delta.p == pytest.approx(stats.ttest_rel([1.99, 2.03, 2.00], [2.00, 2.02, 2.01]).pvalue)

    files = write_report(report, tmp_path / "out", plots=False)
    md = files["report.md"].read_text()
    section = md.split("## Runs that do not count")[1].split("##")[0]
    assert "| rope-s1 | rope | 1 | failed (non_finite_loss) |" in section
    assert "Welch: seeds differ (0,2 vs baseline 0,1,2)" in md and "| 2 of 3 (s0,s2) |" in md
    rows = {r["configuration"]: r for r in csv.DictReader(files["summary.csv"].open())}
    assert rows["rope"]["seeds"] == "0 2" and rows["rope"]["runs"] == "3" and rows["rope"]["runs_excluded"] == "1"
    assert float(rows["rope"]["final_val_loss"]) == pytest.approx(1.905)
    assert float(rows["rope"]["delta_ci_low"]) < float(rows["rope"]["delta_vs_baseline"]) < float(rows["rope"]["delta_ci_high"])
    run_rows = {r["name"]: r for r in csv.DictReader(files["runs.csv"].open())}
    assert run_rows["rope-s1"]["counted"] == "false" and run_rows["rope-s1"]["excluded_reason"] == "failed (non_finite_loss)"
    assert run_rows["rope-s0"]["counted"] == "true"


@pytest.mark.parametrize("broken, reason", [
    (dict(status="failed", stop_reason="guard_failed", guards={"causality": "failed", "error": "leaks"}),
     "failed (guard_failed)"),
    (dict(status="stopped", stop_reason="interrupted"), "unfinished: stopped (interrupted)"),
    (dict(status="running", stop_reason=None), "unfinished: running"),
    (dict(flags=["implausible_loss"]), "flagged implausible_loss"),
    (dict(final_val=float("nan")), "non-finite final validation loss"),
    (dict(final_val=0.05), "loss below what the data allows"),
    (dict(guards={"causality": "failed", "initial_loss": 5.6}), "guard causality failed"),
])
def test_every_kind_of_failed_or_unfinished_run_is_kept_out(tmp_path, broken, reason):
    runs = three_seed_grid(tmp_path / "runs", {"rope-s2": broken})
    rope = next(c for c in build_report([runs]).configurations if c.name == "rope")
    assert list(rope.excluded) == ["rope-s2"] and rope.excluded["rope-s2"].startswith(reason)
    assert rope.values("final_val_loss") == [1.90, 1.93]


def test_over_fitting_is_a_finding_not_a_failure(tmp_path):
    runs = three_seed_grid(tmp_path / "runs", {"rope-s0": dict(final_train=1.2, epochs=12.0)})
    rope = next(c for c in build_report([runs]).configurations if c.name == "rope")
    assert rope.excluded == {} and any("over-fitting" in f for f in rope.flags)
    assert rope.delta.test == "paired"


def test_a_configuration_without_a_counted_run_shows_no_delta(tmp_path):
    failed = dict(status="failed", stop_reason="non_finite_loss", flags=["non_finite_loss"])
    runs = three_seed_grid(tmp_path / "runs", {f"rope-s{s}": failed for s in range(3)})
    report = build_report([runs])
    rope = next(c for c in report.configurations if c.name == "rope")
    assert rope.delta is None and rope.mean("final_val_loss") is None and len(rope.excluded) == 3
    row = next(r for r in markdown_table(report.configurations).splitlines() if r.startswith("| rope |"))
    assert "| 0 of 3 |" in row and "–" in row
    # the two comparisons left form the Holm family
    swiglu = next(c for c in report.configurations if c.name == "swiglu")
    assert swiglu.delta.p_adjusted == pytest.approx(min(1.0, swiglu.delta.p))


def test_a_baseline_without_a_counted_run_leaves_no_delta_and_says_so(tmp_path):
    failed = dict(status="failed", stop_reason="implausible_loss", flags=["implausible_loss"])
    runs = three_seed_grid(tmp_path / "runs", {f"baseline-s{s}": failed for s in range(3)})
    report = build_report([runs])
    assert all(c.delta is None for c in report.configurations)
    assert any("no baseline run counts" in w for w in report.warnings)


def test_holm_correction_runs_over_every_comparison_of_the_report(tmp_path):
    from pileablate.report.stats import holm

    runs = three_seed_grid(tmp_path / "runs")
    for seed, loss in enumerate([2.05, 2.04, 2.08]):
        make_run(runs, f"mla-s{seed}", mods=("mla",), seed=seed, final_val=loss)
    others = [c for c in build_report([runs]).configurations if not c.is_baseline]
    assert [c.delta.p_adjusted for c in others] == pytest.approx(holm([c.delta.p for c in others]))
    assert all(c.delta.significant == (c.delta.p_adjusted < 0.05) for c in others)


@pytest.mark.parametrize("change, difference", [
    (dict(budget={"time_limit": None, "max_tokens": None, "max_steps": 40}), "max_steps 40 vs 50"),
    (dict(eval_tokens=8192), "eval_tokens 8192 vs 4096"),
])
def test_a_configuration_on_another_budget_or_validation_windows_is_not_compared(tmp_path, change, difference):
    """Seeds that could only be compared unpaired (Welch) once are now not compared at all: a budget or
    validation windows other than the baseline's measure something else (issue 30)."""
    runs = three_seed_grid(tmp_path / "runs", {f"rope-s{s}": change for s in range(3)})
    report = build_report([runs])
    rope = next(c for c in report.configurations if c.name == "rope")
    assert rope.delta is None and rope.not_comparable == [difference] and "rope" not in report.verdicts
    md = markdown(report, None)
    assert f"not comparable with the baseline ({difference})" in md.split("## Statistics")[1]


def test_parameter_difference_is_shown_and_flagged_above_two_percent(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "baseline-s0", params=100_000)
    make_run(runs, "gqa-s0", mods=("gqa",), params=88_000)
    make_run(runs, "rope-s0", mods=("rope",), params=100_900)
    report = build_report([runs])
    configs = {c.name: c for c in report.configurations}
    assert configs["gqa"].params_vs_baseline == pytest.approx(-0.12)
    assert any("parameters -12.0% vs the baseline" in f for f in configs["gqa"].flags)
    assert configs["rope"].params_vs_baseline == pytest.approx(0.009) and configs["rope"].flags == []
    table = markdown_table(report.configurations)
    assert "| -12.0% |" in table and "| +0.9% |" in table
    rows = {r["configuration"]: r for r in csv.DictReader(
        write_report(report, tmp_path / "out", plots=False)["summary.csv"].open())}
    assert float(rows["gqa"]["params_vs_baseline_pct"]) == pytest.approx(-12.0)


def test_final_delta_figure_draws_each_delta_with_its_interval_and_each_seeds_paired_difference(tmp_path):
    runs = three_seed_grid(tmp_path / "runs")
    configs = build_report([runs]).configurations
    deltas = final_delta_figure(configs).axes[0]
    assert len(deltas.containers) == 2  # rope and swiglu: one error bar each
    rope = next(c for c in configs if c.name == "rope")
    low, high = deltas.containers[0].lines[2][0].get_segments()[0][:, 1]
    assert (low, high) == pytest.approx(rope.delta.ci)
    dots = deltas.collections[0].get_offsets()[:, 1]  # rope's seeds: 1.90-2.00, 1.93-2.02, 1.91-2.01
    assert sorted(dots) == pytest.approx([-0.1, -0.1, -0.09])


# ---- learning-rate tuning -------------------------------------------------------------------------

def tuning_grid(runs: Path, losses: dict, seeds=(0, 1)) -> None:
    """Tuning runs under runs/tuning/: losses = {mods name: {lr: loss or None (failed)}}."""
    for name, by_lr in losses.items():
        mods = () if name == "baseline" else (name,)
        for lr, loss in by_lr.items():
            for seed in seeds:
                failed = dict(status="failed", stop_reason="non_finite_loss", flags=["non_finite_loss"])
                make_run(runs / "tuning", f"tune-{name}-lr{lr:g}-s{seed}", mods=mods, seed=seed, lr=lr,
                         role="tuning", final_val=(loss or 9.0) + 0.01 * seed, **(failed if loss is None else {}))


def test_choose_lr_picks_the_lowest_mean_tuning_loss_and_flags_the_edges():
    from pileablate.errors import UserError
    from pileablate.report.tuning import choose_lr

    grid = [(3e-4, 2.30), (3e-4, 2.32), (1e-3, 2.20), (1e-3, 2.24), (3e-3, 2.21), (3e-3, 2.22)]
    assert choose_lr(grid) == (3e-3, True)  # mean 2.215 beats 2.22: the largest rate, an edge
    assert choose_lr([(lr, loss + (0.1 if lr == 3e-3 else 0)) for lr, loss in grid]) == (1e-3, False)
    # a rate at which one seed failed is never chosen, however good its other seed
    assert choose_lr([*grid, (1e-2, 1.0), (1e-2, None)]) == (3e-3, False)
    assert choose_lr([(1e-3, 2.0), (3e-3, 2.0)]) == (1e-3, True)  # tie: the smaller rate
    assert choose_lr([(1e-3, 2.0)]) == (1e-3, True)  # one rate: nothing brackets it
    with pytest.raises(UserError, match="no learning rate tried for rope"):
        choose_lr([(1e-3, None), (3e-3, float("nan"))], "rope")


def test_tuning_runs_stay_out_of_the_comparison_and_get_their_own_section(tmp_path):
    runs = three_seed_grid(tmp_path / "runs")
    tuning_grid(runs, {"baseline": {3e-4: 2.3, 1e-3: 2.2, 3e-3: 2.25},
                       "rope": {3e-4: 2.3, 1e-3: 2.2, 3e-3: 2.1, 1e-2: None}})
    report = build_report([runs])
    assert len(report.runs) == 9 and len(report.tuning_runs) == 14
    assert all(r.role == "report" for c in report.configurations for r in c.runs)
    tuning = {t.name: t for t in report.tuning}
    assert (tuning["baseline"].chosen, tuning["baseline"].at_edge) == (1e-3, False)
    assert (tuning["rope"].chosen, tuning["rope"].at_edge) == (3e-3, False)  # 1e-2 was tried and failed
    files = write_report(report, tmp_path / "out")
    md = files["report.md"].read_text()
    section = md.split("## Learning-rate tuning")[1].split("\n## ")[0]
    assert "| rope | 0.0003/0.001/0.003/0.01 |" in section and "0.01: 2 of 2 failed" in section
    assert files["lr_sensitivity"].exists() and "plots/lr_sensitivity.png" in md
    run_rows = list(csv.DictReader(files["runs.csv"].open()))
    assert sum(r["role"] == "tuning" for r in run_rows) == 14
    assert all(r["counted"] == "false" for r in run_rows if r["role"] == "tuning")


def test_a_choice_at_the_edge_of_the_grid_is_flagged(tmp_path):
    runs = three_seed_grid(tmp_path / "runs")
    tuning_grid(runs, {"rope": {3e-4: 2.3, 1e-3: 2.2, 3e-3: 2.1}})
    report = build_report([runs])
    assert any("the chosen lr 0.003 is the largest tried" in w for w in report.warnings)
    assert "largest tried" in markdown(report, None).split("## Flags")[1]


def test_lr_sensitivity_figure_has_one_curve_per_configuration_on_a_log_axis(tmp_path):
    from pileablate.report.plots import lr_sensitivity_figure

    runs = three_seed_grid(tmp_path / "runs")
    tuning_grid(runs, {"baseline": {3e-4: 2.3, 1e-3: 2.2, 3e-3: 2.25}, "rope": {1e-3: 2.2, 3e-3: 2.1}})
    report = build_report([runs])
    ax = lr_sensitivity_figure(report.tuning, report.configurations).axes[0]
    assert ax.get_xscale() == "log"
    curves = {line.get_label(): list(line.get_xdata()) for line in ax.lines}
    assert curves == {"baseline (chosen 0.001)": [3e-4, 1e-3, 3e-3], "rope (chosen 0.003)": [1e-3, 3e-3]}
    # Every rate tried is a labelled tick (a log axis would label only 1e-3), and only those.
    assert list(ax.get_xticks()) == [3e-4, 1e-3, 3e-3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0003", "0.001", "0.003"]


def test_the_terminal_shows_runs_that_do_not_count_and_the_tuning(tmp_path):
    from typer.testing import CliRunner

    from pileablate.cli import app

    runs = three_seed_grid(tmp_path / "runs", {"rope-s1": dict(status="stopped", stop_reason="interrupted")})
    tuning_grid(runs, {"rope": {1e-3: 2.2, 3e-3: 2.1}})
    result = CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "Runs that do not count" in result.stdout and "unfinished: stopped (interrupted)" in result.stdout
    assert "Learning-rate tuning" in result.stdout and "8 of 9 runs count" in result.stdout


def test_a_report_of_tuning_runs_alone_shows_the_tuning(tmp_path):
    runs = tmp_path / "runs"
    tuning_grid(runs, {"baseline": {1e-3: 2.2, 3e-3: 2.1, 1e-2: 2.3}})
    report = build_report([runs])
    assert report.configurations == [] and report.tuning[0].chosen == 3e-3
    files = write_report(report, tmp_path / "out")
    assert set(files) == {"lr_sensitivity", "report.md", "summary.csv", "runs.csv"}
    md = files["report.md"].read_text()
    assert "No runs to compare yet" in md and "## Learning-rate tuning" in md
