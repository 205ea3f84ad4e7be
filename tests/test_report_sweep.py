"""The report of a sweep (`ablate --sweep`) on synthetic runs whose Δ we choose: grouping by point
(never pooling two points), Holm over every point, the trend sentence (grows, shrinks, changes sign,
within noise, steady, untested) and the scaling figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pileablate.report.build import build_report, markdown
from pileablate.report.stats import Difference, holm
from pileablate.report.trend import trend
from test_report import make_run

PARAMS = {"nano": 100_000, "micro": 800_000, "mini": 2_700_000}


def make_point(root: Path, label: str, deltas: dict, seeds=(0, 1, 2), values=None, axes=("preset",),
               shift: float = 0.0, params: int = 0) -> None:
    """One sweep point's folder: point.json and, per seed, a baseline and each modification whose
    per-seed difference to the baseline is delta + noise × (-1, 0, +1)[seed]."""
    folder = root / label
    folder.mkdir(parents=True)
    values = values or {"preset": label}
    (folder / "point.json").write_text(json.dumps({"point": label, "axes": list(axes), "values": values}))
    params = params or PARAMS.get(values.get("preset"), 100_000)
    made = []
    for i, seed in enumerate(seeds):
        base = 2.0 + shift + 0.01 * seed
        made.append(make_run(folder, f"baseline-s{seed}", seed=seed, final_val=base, params=params))
        for mod, (delta, noise) in deltas.items():
            wiggle = noise * (-1, 0, 1)[i % 3] if len(seeds) > 1 else 0.0
            made.append(make_run(folder, f"{mod}-s{seed}", mods=(mod,), seed=seed, final_val=base + delta + wiggle,
                                 params=params))
    for run_dir in made:  # config.json records the point's settings, as a real sweep's runs do
        config = json.loads((run_dir / "config.json").read_text())
        config["preset"] = values.get("preset", config["preset"])
        config["train"].update({k: v for k, v in values.items() if k in ("max_tokens", "max_steps", "time_limit")})
        (run_dir / "config.json").write_text(json.dumps(config))


def sweep_report(tmp_path, nano: dict, micro: dict, seeds=(0, 1, 2)):
    root = tmp_path / "runs"
    make_point(root, "micro", micro, seeds, shift=-0.3)  # made first: the report orders points by the axis
    make_point(root, "nano", nano, seeds)
    return build_report([root])


@pytest.mark.parametrize("nano, micro, kind, words", [
    ((-0.02, 0.002), (-0.10, 0.002), "grows", "benefit grows with model size (nano → micro)"),
    ((-0.10, 0.002), (-0.02, 0.002), "shrinks", "benefit shrinks"),
    ((+0.02, 0.002), (+0.10, 0.002), "grows", "harm grows"),
    ((+0.05, 0.002), (-0.05, 0.002), "changes sign", "significantly better than the baseline at micro, "
                                                      "significantly worse at nano"),
    ((+0.001, 0.01), (-0.001, 0.01), "within noise", "not significantly different from the baseline anywhere"),
    ((-0.050, 0.002), (-0.052, 0.002), "steady", "helps (significant at nano, micro)"),
])
def test_trend_sentence_says_what_the_intervals_allow(tmp_path, nano, micro, kind, words):
    report = sweep_report(tmp_path, {"rope": nano}, {"rope": micro})
    (series,) = report.scaling.series
    assert series.trend.kind == kind
    assert words in series.trend.sentence
    # the evidence: every point's Δ and interval, in axis order
    sentence = series.trend.sentence
    facts = sentence[sentence.index("(Δ"):]
    assert facts.index("] at nano") < facts.index("] at micro") and facts.count("[") == 2
    text = markdown(report, plot_dir=None)
    assert f"- {sentence}" in text.split("## Does it hold at scale?")[1]


def test_one_seed_per_point_claims_no_trend(tmp_path):
    report = sweep_report(tmp_path, {"rope": (-0.01, 0)}, {"rope": (-0.2, 0)}, seeds=(0,))
    (series,) = report.scaling.series
    assert series.trend.kind == "untested" and "no trend is claimed" in series.trend.sentence
    assert "grows" not in series.trend.sentence and "no interval: one seed" in series.trend.sentence


def test_trend_rules_on_given_differences():
    def d(delta, lo, hi, significant):
        return Difference(delta, "paired", "paired", p=0.001 if significant else 0.5, ci=(lo, hi),
                          p_adjusted=0.001 if significant else 0.5)

    # nowhere significant, but two points' intervals apart: the Δ shifts, no more is claimed
    shifts = trend("x", [("a", d(0.03, 0.001, 0.06, False)), ("b", d(-0.03, -0.06, -0.001, False))])
    assert shifts.kind == "shifts" and "not significantly different from the baseline at any point" in shifts.sentence
    # larger then smaller again, each step beyond the intervals: not one direction
    varies = trend("x", [("a", d(-0.02, -0.03, -0.01, True)), ("b", d(-0.10, -0.11, -0.09, True)),
                         ("c", d(-0.02, -0.03, -0.01, True))])
    assert varies.kind == "varies"
    assert trend("x", [("a", d(-0.1, -0.2, 0.0, True)), ("b", None)]).kind == "no comparison"


def test_points_never_pool_and_holm_runs_over_every_comparison(tmp_path):
    report = sweep_report(tmp_path, {"rope": (-0.02, 0.002), "swiglu": (0.01, 0.004)},
                          {"rope": (-0.10, 0.002), "swiglu": (0.0, 0.004)})
    names = [c.name for c in report.configurations]
    assert names == ["nano/baseline", "nano/rope", "nano/swiglu", "micro/baseline", "micro/rope", "micro/swiglu"]
    by_name = {c.name: c for c in report.configurations}
    # the same run names (baseline-s0 ...) in both folders: each configuration holds its own point's runs
    assert by_name["nano/baseline"].mean("final_val_loss") == pytest.approx(2.01)
    assert by_name["micro/baseline"].mean("final_val_loss") == pytest.approx(1.71)
    assert all(r.path.parent.name == c.point for c in report.configurations for r in c.runs)
    others = [c for c in report.configurations if not c.is_baseline]
    assert [c.delta.p_adjusted for c in others] == pytest.approx(holm([c.delta.p for c in others]))
    assert by_name["micro/rope"].delta.delta == pytest.approx(-0.10)
    text = markdown(report, plot_dir=None)
    assert "all 4 comparisons" in text and "### nano" in text and "### micro" in text


def test_two_axes_give_one_series_per_slice(tmp_path):
    root = tmp_path / "runs"
    for preset in ("nano", "micro"):
        for tokens in (1_000_000, 3_000_000):
            label = f"{preset}-tok{tokens // 1_000_000}M"
            make_point(root, label, {"rope": (-0.05, 0.002)}, values={"preset": preset, "max_tokens": tokens},
                       axes=("preset", "max_tokens"))
    report = build_report([root])
    assert [p.label for p in report.points] == ["nano-tok1M", "nano-tok3M", "micro-tok1M", "micro-tok3M"]
    assert [s.name for s in report.scaling.series] == ["rope (max_tokens=1000000)", "rope (max_tokens=3000000)"]
    for series in report.scaling.series:
        assert [p.values["preset"] for p, _ in series.entries] == ["nano", "micro"]
        assert len({p.values["max_tokens"] for p, _ in series.entries}) == 1


def test_scaling_plot_draws_a_line_a_band_and_the_zero_line(tmp_path):
    from pileablate.report.scaling_plots import baseline_scaling_figure, scaling_delta_figure

    report = sweep_report(tmp_path, {"rope": (-0.02, 0.002), "swiglu": (0.01, 0.004)},
                          {"rope": (-0.10, 0.002), "swiglu": (0.0, 0.004)})
    ax = scaling_delta_figure(report.scaling).axes[0]
    assert ax.get_xscale() == "log"
    labelled = [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]
    assert labelled == ["rope", "swiglu"]
    assert len(ax.collections) == 2  # one 95% band per modification
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.lines)  # the zero line
    rope = next(line for line in ax.lines if line.get_label() == "rope")
    assert list(rope.get_xdata()) == [PARAMS["nano"], PARAMS["micro"]]
    assert list(rope.get_ydata()) == pytest.approx([-0.02, -0.10])
    base = baseline_scaling_figure(report.scaling).axes[0]
    assert base.get_xscale() == "log" and base.get_legend_handles_labels()[1] == ["baseline"]


def test_report_command_on_a_sweep_folder_writes_the_scaling_table(tmp_path):
    from pileablate.cli import app

    report = sweep_report(tmp_path, {"rope": (-0.02, 0.002)}, {"rope": (-0.10, 0.002)})
    assert report.scaling is not None
    result = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--no-plots"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "runs" / "scaling.csv").read_text().splitlines()
    assert lines[0].startswith("point,axes,settings,configuration") and len(lines) == 5
    assert "grows" in lines[2] and "Does it hold at scale?" in result.stdout


def test_a_run_moved_into_another_points_folder_is_refused(tmp_path):
    from pileablate.errors import UserError

    sweep_report(tmp_path, {"rope": (-0.02, 0.002)}, {"rope": (-0.10, 0.002)})
    moved = tmp_path / "runs" / "micro" / "rope-s0"
    config = json.loads((moved / "config.json").read_text())
    config["preset"] = "nano"  # made for the nano point
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="was made with preset nano, but lies in the folder of sweep point micro"):
        build_report([tmp_path / "runs"])
