"""Verdicts in the report: `report.verdicts`, study.json, --margin, and where the verdict is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.verdicts import verdicts_from_diffs
from typer.testing import CliRunner

from pileablate.cli import app, main
from pileablate.errors import UserError
from pileablate.report.build import build_report
from pileablate.report.verdict import DEFAULT_MARGIN, SequentialDesign
from test_report import make_run
from test_report_sweep import make_point


def grid(runs: Path, values: dict) -> Path:
    """baseline and modifications, one loss per seed each."""
    for name, losses in values.items():
        for seed, loss in enumerate(losses):
            make_run(runs, f"{name}-s{seed}", mods=() if name == "baseline" else (name,), seed=seed, final_val=loss)
    return runs


DECIDING = {"baseline": [2.00, 2.02, 2.01, 2.03], "rope": [1.89, 1.92, 1.90, 1.92],
            "rmsnorm": [2.0005, 2.0195, 2.0102, 2.0298], "swiglu": [1.95, 2.06, 2.03, 2.00]}


def test_report_verdicts_are_keyed_by_label_and_match_the_paired_differences(tmp_path):
    report = build_report([grid(tmp_path / "runs", DECIDING)])
    assert set(report.verdicts) == {"rope", "rmsnorm", "swiglu"}
    assert report.verdicts["rope"].word == "helps"
    assert report.verdicts["rmsnorm"].word == "no effect"
    assert [label for label, v in report.verdicts.items() if v.word == "undecided"] == ["swiglu"]
    base = DECIDING["baseline"]
    same = verdicts_from_diffs([[a - b for a, b in zip(DECIDING[n], base)] for n in ("rope", "rmsnorm", "swiglu")])
    for name, v in zip(("rope", "rmsnorm", "swiglu"), same):
        assert report.verdicts[name].word == v.word
        assert report.verdicts[name].delta == pytest.approx(v.delta)
        assert report.verdicts[name].seeds == 4 and report.verdicts[name].seeds_needed == v.seeds_needed
    assert report.margin == DEFAULT_MARGIN and report.design is None


def test_study_json_sets_the_margin_and_the_sequential_rule_and_margin_overrides(tmp_path):
    runs = grid(tmp_path / "runs", DECIDING)
    (runs / "study.json").write_text(json.dumps({"margin": 0.001, "sequential": {"first": 3, "max_seeds": 10, "step": 2}}))
    report = build_report([runs])
    assert report.design == SequentialDesign() and report.margin == 0.001
    assert report.verdicts["rmsnorm"].word == "undecided"  # ±0.001 is too tight for its spread
    assert build_report([runs], margin=0.05).verdicts["rmsnorm"].word == "no effect"
    (runs / "study.json").write_text(json.dumps({"margin": "wide", "sequential": None}))
    with pytest.raises(UserError, match="margin in study.json"):
        build_report([runs])
    (runs / "study.json").write_text("{torn")
    with pytest.raises(UserError, match="study.json: not valid JSON"):
        build_report([runs])


def test_a_sweep_keys_verdicts_by_point_and_label(tmp_path):
    root = tmp_path / "runs"
    make_point(root, "micro", {"rope": (-0.1, 0.002)}, shift=-0.3)
    make_point(root, "nano", {"rope": (-0.1, 0.002)})
    report = build_report([root])
    assert set(report.verdicts) == {"micro/rope", "nano/rope"}
    assert all(v.word == "helps" for v in report.verdicts.values())


@pytest.mark.parametrize("bad", ["0", "-0.01", "nan", "inf"])
def test_report_refuses_a_bad_margin_in_one_line_and_writes_nothing(tmp_path, capsys, bad):
    runs = grid(tmp_path / "runs", DECIDING)
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(runs), "--margin", bad, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: --margin") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_verdict_heads_the_terminal_and_report_md_and_fills_a_csv_column(tmp_path):
    import csv

    runs = grid(tmp_path / "runs", DECIDING)
    result = CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    assert result.exit_code == 0, result.output
    first = result.stdout.strip().splitlines()[0]
    assert first.startswith("Verdict: rope helps by 0.11")
    md = (runs / "report.md").read_text().splitlines()
    assert md[2].startswith("**Verdict:** rope helps by 0.11") and "rmsnorm: no effect beyond ±0.01" in md[2]
    assert any("TOST" in line and "±0.01" in line for line in md[:6])  # the rule and the margin
    assert "| configuration | verdict |" in "\n".join(md)
    rows = {r["configuration"]: r for r in csv.DictReader((runs / "summary.csv").open())}
    assert [rows[n]["verdict"] for n in ("baseline", "rope", "rmsnorm", "swiglu")] == [
        "baseline", "helps", "no effect", "undecided"]
    assert float(rows["rope"]["verdict_margin"]) == 0.01 and float(rows["swiglu"]["verdict_mde"]) > 0


def test_a_sequential_study_states_its_rule_in_the_report(tmp_path):
    runs = grid(tmp_path / "runs", DECIDING)
    (runs / "study.json").write_text(json.dumps({"margin": 0.01, "sequential": {"first": 3, "max_seeds": 10, "step": 2}}))
    CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    assert SequentialDesign().describe() in (runs / "report.md").read_text()


def test_the_terminal_table_fits_100_columns_with_one_line_per_configuration(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    runs = grid(tmp_path / "runs", {**DECIDING, "a-long-configuration-name": [1.9, 2.3, 1.8, 2.1]})
    make_run(runs, "gqa-s0", mods=("gqa",), seed=0, final_val=2.0, params=88_000)  # a long flag
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    Console(file=out).print(build_report([runs]).table())  # a terminal of COLUMNS=100
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100 and "parameters -12.0%" in out.getvalue()
    for name, delta in (("rope", "-0.107* [-0.115, -0.100]"), ("rmsnorm", "+0.000 [-0.001, +0.001]")):
        row = next(line for line in lines if line.lstrip().startswith(name))
        assert delta in row and (" 1.9" in row or " 2.0" in row)  # Δ, its interval and the val loss unbroken on the row
    # The lesser columns degrade first (issue 30): the seeds' spread is listed below the table at 100 columns.
    assert any(line.startswith("± std: baseline ± ") for line in lines)
    assert "tokens/s" not in out.getvalue() and "p (Holm)" not in out.getvalue()  # those are in report.md


def test_summary_csv_writes_whole_numbers_as_integers(tmp_path):
    runs = grid(tmp_path / "runs", DECIDING)
    CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    text = (runs / "summary.csv").read_text()
    import csv

    row = next(csv.DictReader(text.splitlines()))
    assert row["tokens"] == "51200" and row["steps"] == "50" and row["params_total"].isdigit()
    assert row["budget_max_steps"] == "50" and row["runs"] == "4"
    assert ".0," not in text.replace("0.0,", "")  # no whole number written as a float


def test_two_folders_holding_the_same_run_name_are_one_line_naming_the_clash(tmp_path, capsys):
    grid(tmp_path / "a", {"baseline": [2.0], "rope": [1.9]})
    grid(tmp_path / "b", {"baseline": [2.1]})
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--no-plots", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "baseline-s0" in err and str(tmp_path / "a" / "baseline-s0") in err and str(tmp_path / "b" / "baseline-s0") in err
    assert not (tmp_path / "out").exists()
    # The same folder given twice is one set of runs, not a clash.
    assert len(build_report([tmp_path / "a", tmp_path / "a"]).runs) == 2


def test_train_loss_has_one_definition_said_once(tmp_path):
    import csv
    import math

    from pileablate.report.build import TRAIN_LOSS_DEFINITION

    runs = grid(tmp_path / "runs", DECIDING)
    CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    md = (runs / "report.md").read_text()
    assert md.count(TRAIN_LOSS_DEFINITION) == 1 and md.count("last 10%") == 1
    assert "| train loss (tail) |" in md  # the configurations' table and the runs' table alike
    # make_run's last logged train loss is 2.0 + 0.05·sin(50); the tail mean (last 5 steps) differs
    tail = sum(2.0 + (math.log(257) - 2.0) * math.exp(-5 * s / 50) + 0.05 * math.sin(s) for s in range(46, 51)) / 5
    row = next(r for r in csv.DictReader((runs / "runs.csv").open()) if r["name"] == "baseline-s0")
    assert float(row["train_loss"]) == pytest.approx(tail) and "final_train_loss" not in row


def test_tuning_text_says_the_tuning_windows_are_held_out_of_the_validation_split(tmp_path):
    from test_report import three_seed_grid, tuning_grid

    runs = three_seed_grid(tmp_path / "runs")
    tuning_grid(runs, {"rope": {1e-3: 2.2, 3e-3: 2.1}})
    result = CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    md = (runs / "report.md").read_text()
    assert "held-out windows of the validation split" in md and "training data" not in md
    assert "held out of the validation split" in result.stdout.replace("\n", " ")


# ---- plots ----------------------------------------------------------------------------------------

def test_the_delta_panel_shows_verdicts_margin_seeds_and_why(tmp_path):
    from pileablate.report.plots import DELTA_LEGEND, final_delta_figure

    report = build_report([grid(tmp_path / "runs", DECIDING)])
    deltas = final_delta_figure(report.configurations, margin=report.margin).axes[0]
    texts = [t.get_text() for t in deltas.texts]
    assert any("helps" in t for t in texts) and any("no effect" in t for t in texts)
    assert any("undecided" in t for t in texts)
    assert deltas.get_xlabel() == DELTA_LEGEND and "may still lack its star" in DELTA_LEGEND
    band = [p for p in deltas.patches if p.get_label().startswith("±0.01")]
    assert len(band) == 1
    # each seed's paired difference is a dot, and the tick says how many seeds
    from matplotlib.collections import PathCollection

    assert [len(c.get_offsets()) for c in deltas.collections if isinstance(c, PathCollection)] == [4, 4, 4]
    assert all(t.get_text().endswith("n=4") for t in deltas.get_xticklabels())


def test_loss_curves_one_line_per_configuration_the_baseline_black_thick_and_on_top(tmp_path):
    from matplotlib.colors import to_rgba

    from pileablate.report.plots import BASELINE_COLOR, loss_vs_tokens_figure

    report = build_report([grid(tmp_path / "runs", DECIDING)])
    lines = loss_vs_tokens_figure(report.configurations).axes[0].lines
    assert len(lines) == len(report.configurations) == 4
    baseline = next(line for line in lines if line.get_label().startswith("baseline"))
    others = [line for line in lines if line is not baseline]
    assert to_rgba(baseline.get_color()) == BASELINE_COLOR
    assert all(baseline.get_zorder() > line.get_zorder() and baseline.get_linewidth() > line.get_linewidth()
               for line in others)
    assert len({to_rgba(line.get_color()) for line in others}) == 3 and BASELINE_COLOR not in {
        to_rgba(line.get_color()) for line in others}


def test_plots_are_written_atomically(tmp_path, monkeypatch):
    import os

    from pileablate.report import plots
    from pileablate.report.build import write_report

    report = build_report([grid(tmp_path / "runs", DECIDING)])
    replaced = []
    real = os.replace
    monkeypatch.setattr(plots.os, "replace", lambda a, b: (replaced.append(Path(b).name), real(a, b)))
    files = write_report(report, tmp_path / "out")
    assert {"final_val_loss.png", "final_val_loss.svg", "loss_vs_tokens.png"} <= set(replaced)
    assert files["final_val_loss"].stat().st_size > 0
    assert not [p for p in (tmp_path / "out" / "plots").iterdir() if p.name.endswith(".tmp")]


def test_in_a_sequential_study_a_decided_configuration_stays_paired_with_the_baselines_runs_of_its_seeds(tmp_path):
    # Round 1 decided rope (3 seeds); swiglu stayed open and got seeds 3, 4, and so did the baseline.
    values = {"baseline": [2.00, 2.02, 2.01, 2.03, 2.00], "rope": [1.89, 1.92, 1.90],
              "swiglu": [1.95, 2.06, 2.03, 2.00, 2.04]}
    runs = grid(tmp_path / "runs", values)
    assert build_report([runs]).configurations[1].delta.test == "welch"  # fixed seeds: as before
    (runs / "study.json").write_text(json.dumps({"margin": 0.01, "sequential": {"first": 3, "max_seeds": 10, "step": 2}}))
    report = build_report([runs])
    rope = next(c for c in report.configurations if c.name == "rope")
    assert rope.delta.test == "paired" and "the baseline's runs of those seeds" in rope.delta.why
    same = verdicts_from_diffs([[a - b for a, b in zip(values["rope"], values["baseline"])],
                                [a - b for a, b in zip(values["swiglu"], values["baseline"])]], design=SequentialDesign())
    assert report.verdicts["rope"].delta == pytest.approx(same[0].delta) and report.verdicts["rope"].seeds == 3
    assert [report.verdicts[n].word for n in ("rope", "swiglu")] == [v.word for v in same]


def test_the_star_is_the_verdicts_test_at_a_sequential_studys_per_look_level(tmp_path):
    """A p between the per-look level and 5%: starred and 'helps' in a fixed-seed report, neither in a
    sequential study (whose looks each test at 5%/looks), so the table never shows a star beside 'undecided'."""
    base = [2.00, 2.02, 2.01, 2.03]
    runs = grid(tmp_path / "runs", {"baseline": base, "rope": [b + d for b, d in zip(base, [-0.02, -0.012, -0.025, -0.008])]})
    fixed = build_report([runs])
    rope = next(c for c in fixed.configurations if c.name == "rope")
    assert 0.05 / len(SequentialDesign().looks()) < rope.delta.p_adjusted < 0.05  # the premise
    assert rope.delta.marker == "*" and fixed.verdicts["rope"].word == "helps"
    (runs / "study.json").write_text(json.dumps({"margin": 0.001, "sequential": {"first": 3, "max_seeds": 10, "step": 2}}))
    sequential = build_report([runs])
    rope = next(c for c in sequential.configurations if c.name == "rope")
    assert rope.delta.marker == "" and sequential.verdicts["rope"].word == "undecided"


def test_not_significant_beside_an_interval_clear_of_zero_says_at_which_level_in_the_same_line():
    from pileablate.report.build import _significance
    from pileablate.report.stats import Difference

    sequential = Difference(delta=0.07, why="paired", p=0.0036, ci=(0.03, 0.11), p_adjusted=0.0145, level=0.0125)
    assert _significance(sequential) == ("not significant: Holm-adjusted p not below 1.25%, the sequential design's "
                                         "per-look level; the 95% interval excludes zero for this comparison alone")
    plain = Difference(delta=0.01, why="paired", p=0.2, ci=(-0.01, 0.03), p_adjusted=0.4)
    assert _significance(plain) == "not significant: Holm-adjusted p not below 5%"
    assert _significance(Difference(delta=-0.1, why="paired", p=0.001, ci=(-0.2, -0.05), p_adjusted=0.002)) == \
        "significant: Holm-adjusted p below 5%"
