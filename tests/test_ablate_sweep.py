"""`ablate --sweep`: axes parsed with the train options' own grammar, the points and their folders,
one-line errors before anything runs, the plan and its cost, and one real sweep over d_model on the
nano preset (folders, no mixing of points, the scaling table, plots and sentences, re-run skips)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pileablate.ablate import Ablation, default_grid
from pileablate.ablate.axes import exact_count, exact_seconds, parse_axis, points, sweep_from_grid_file
from pileablate.ablate.study import Study
from pileablate.cli import app
from pileablate.errors import UserError
from pileablate.train.config import TrainConfig

TINY = ["--preset", "nano", "--max-steps", "4", "--eval-every", "2", "--log-every", "1", "--eval-tokens", "2048"]


def ablate(*args: str):
    return CliRunner().invoke(app, ["ablate", *args], catch_exceptions=True)


def test_axis_values_parse_with_the_train_options_grammar():
    assert parse_axis("preset=nano,micro").values == ("nano", "micro")
    assert parse_axis("max_tokens=1M,2.5M,300k").values == (1_000_000, 2_500_000, 300_000)
    assert parse_axis("max-tokens=1M,3M").field == "max_tokens"
    assert parse_axis("time_limit=90s,5m").values == (90.0, 300.0)
    assert parse_axis("time_limit=90s,5m").field == "time_limit"
    assert parse_axis("d_model=32, 48").values == (32, 48)
    assert parse_axis("n_layer=2,4").values == (2, 4)


def test_points_are_the_product_with_exact_folder_labels():
    axes = [parse_axis("preset=nano,micro"), parse_axis("max_tokens=1M,1500k")]
    got = [(p.label, p.values) for p in points(axes)]
    assert got == [("nano-tok1M", {"preset": "nano", "max_tokens": 1_000_000}),
                   ("nano-tok1500k", {"preset": "nano", "max_tokens": 1_500_000}),
                   ("micro-tok1M", {"preset": "micro", "max_tokens": 1_000_000}),
                   ("micro-tok1500k", {"preset": "micro", "max_tokens": 1_500_000})]
    assert [p.label for p in points([parse_axis("d_model=32,48")])] == ["d32", "d48"]
    assert exact_count(1_234_567) == "1234567" and exact_count(2_000_000_000) == "2G"
    assert exact_seconds(90) == "90s" and exact_seconds(5400) == "90m" and exact_seconds(1.5) == "1.5s"


@pytest.mark.parametrize("spec, message", [
    ("preset=nano", "two or more values"),
    ("data=a,b", "--data cannot vary across a grid"),
    ("runs-dir=a,b", "--runs-dir cannot vary across a grid"),
    ("device=cpu,cuda", "--device cannot vary across a grid"),
    ("lr=1e-3,3e-3", "--tune-lr"),
    ("warmup_steps=1,2", "not an axis"),
    ("max_tokens=1M,lots", "not a count"),
    ("time_limit=5m,soon", "not a duration"),
    ("d_model=32,4.5", "not a positive whole number"),
    ("preset=nano,huge", "unknown preset"),
    ("max_tokens=1M,1000k", "listed twice"),
    ("preset", "use OPTION=V1,V2"),
])
def test_bad_axes_are_one_line_errors(spec, message):
    with pytest.raises(UserError, match=message) as err:
        parse_axis(spec)
    assert "\n" not in str(err.value)


def test_grid_file_sweep_table(tmp_path):
    from pileablate.ablate.plan import grid_from_toml

    path = tmp_path / "grid.toml"
    path.write_text('seeds = 2\n[sweep]\npreset = ["nano", "micro"]\nmax_tokens = "1M,3M"\n[[config]]\nmods = []\n')
    assert grid_from_toml(path)[1] == 2  # the [[config]] reader accepts the [sweep] table
    axes = sweep_from_grid_file(path)
    assert [(a.field, a.values) for a in axes] == [("preset", ("nano", "micro")), ("max_tokens", (1_000_000, 3_000_000))]
    path.write_text('[sweep]\npreset = ["nano"]\n[[config]]\nmods = []\n')
    with pytest.raises(UserError, match="two or more values"):
        sweep_from_grid_file(path)


def _sweep(axes, tune_lrs=(), tune_spec=None, **base) -> Study:
    cfg = TrainConfig(data=Path("data"), runs_dir=Path("runs"), **base)
    return Study(Ablation(cfg, default_grid("rope"), [0, 1], tune_lrs=tune_lrs), [parse_axis(a) for a in axes],
                 tune_spec=tune_spec)


def test_each_point_is_the_whole_grid_in_its_own_folder_with_its_own_tuned_rates():
    from pileablate.ablate.tuning import lr_candidates

    sweep = _sweep(["preset=nano,small"], tune_lrs=(1.0,), tune_spec="3", max_tokens=1000)
    nano, small = (sweep.at(p) for p in sweep.points)
    assert nano.base.preset == "nano" and nano.base.runs_dir == Path("runs/nano")
    assert small.base.runs_dir == Path("runs/small") and small.base.max_tokens == 1000
    # 'auto' and N centre on each point's own default rate: the optimum moves with size
    assert nano.tune_lrs == lr_candidates("3", 1e-3) and small.tune_lrs == lr_candidates("3", 6e-4)
    assert [e.label for e in nano.experiments] == [e.label for e in small.experiments] == ["baseline", "rope"]
    assert nano.seeds == small.seeds == [0, 1]


def test_a_swept_option_given_also_as_a_train_option_is_refused():
    with pytest.raises(UserError, match="both set d_model"):
        _sweep(["d_model=32,48"], d_model=64)
    with pytest.raises(UserError, match="both set max_tokens"):
        _sweep(["max_tokens=1M,3M"], max_tokens=2000)


def test_runs_are_ordered_seeds_outermost_across_points_and_tagged_with_their_point():
    sweep = _sweep(["d_model=32,48"], max_steps=3)
    plan = sweep.report_plan()
    assert [p.title for p in plan] == ["d32/baseline-s0", "d32/rope-s0", "d48/baseline-s0", "d48/rope-s0",
                                       "d32/baseline-s1", "d32/rope-s1", "d48/baseline-s1", "d48/rope-s1"]
    # --task K/N: the N tasks of a job array cover the whole sweep exactly once
    shares = [_task_share(sweep, k, 3) for k in (1, 2, 3)]
    assert sorted(t for share in shares for t in share) == sorted(p.title for p in plan)


def _task_share(sweep: Study, k: int, n: int) -> list[str]:
    import dataclasses

    task = Study(dataclasses.replace(sweep.ablation, task=(k, n)), sweep.axes)
    return [p.title for p in task.share(task.report_plan())]


def test_tokens_per_run_for_the_cost_estimate():
    from pileablate.ablate.cost import Cost, tokens_per_run

    assert tokens_per_run(TrainConfig(preset="nano", max_steps=10)) == 10 * 8 * 64
    assert tokens_per_run(TrainConfig(preset="micro", max_tokens=1000, max_steps=10)) == 1000
    assert tokens_per_run(TrainConfig(preset="nano", time_limit=60)) is None
    cost = Cost("nano", params=100, tokens_per_run=1000, runs=4, tuning_runs=2, tuning_fraction=0.5)
    assert cost.tokens == 5000 and cost.params_x_tokens == 500_000


def test_dry_run_gives_each_point_its_default_budget_and_a_cost(bytes_store, tmp_path):
    from pileablate.ablate.runner import baseline_params
    from pileablate.report.fmt import format_count
    from pileablate.train.config import DEFAULT_TOKENS_PER_PARAM

    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "runs"), "--mods", "rope",
                    "--sweep", "d_model=32,48", "--preset", "nano", "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, (result.output, result.exception)
    for d in (32, 48):
        default = DEFAULT_TOKENS_PER_PARAM * baseline_params(TrainConfig(preset="nano", d_model=d), 257)
        assert f"{format_count(default)} tokens (default)" in result.stdout  # each size its own budget
        assert f"d{d}/rope-s1" in result.stdout
    assert "(default)" in result.stdout and "params × tokens" in result.stdout and "all points" in result.stdout
    assert "8 runs" in result.stderr and "tokens per parameter" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--sweep", "d_model=30,32", "--mods", "rope"], "rope needs an even head dimension"),
    (["--sweep", "preset=nano,micro", "--sweep", "preset=mini,small"], "given twice"),
    (["--sweep", "seed=0,1"], "--seed cannot vary"),
])
def test_bad_sweeps_fail_before_anything_runs(bytes_store, tmp_path, args, message):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "runs"), "--preset", "nano", *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "runs").exists()


def test_a_point_folder_that_holds_something_else_is_refused(bytes_store, tmp_path):
    runs = tmp_path / "runs"
    (runs / "d32").mkdir(parents=True)
    (runs / "d32" / "config.json").write_text("{}")  # a run someone made there
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--sweep", "d_model=32,48", *TINY]
    result = ablate(*args)
    assert isinstance(result.exception, UserError) and "is a run's folder" in str(result.exception)
    (runs / "d32" / "config.json").unlink()
    (runs / "d32" / "point.json").write_text(json.dumps({"point": "d32", "axes": ["n_head"], "values": {"n_head": 4}}))
    result = ablate(*args)
    assert isinstance(result.exception, UserError) and "another sweep's point" in str(result.exception)
    assert not (runs / "d48").exists()


@pytest.fixture(scope="module")
def sweep_runs(bytes_store, tmp_path_factory):
    """Eight nano runs of four steps: two points x (baseline, rope) x two seeds (the intervals need two)."""
    import torch

    runs = tmp_path_factory.mktemp("sweep") / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--sweep", "d_model=32,48",
            "--seeds", "2", *TINY]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_torch_thread fixture: tiny models on a shared 2-core machine
    try:
        result = ablate(*args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, (result.output, result.exception)
    return runs, args, result


def test_sweep_puts_each_points_runs_in_its_folder_with_the_points_settings(sweep_runs):
    runs, _, result = sweep_runs
    for d in (32, 48):
        point = json.loads((runs / f"d{d}" / "point.json").read_text())
        assert point["values"] == {"d_model": d} and point["axes"] == ["d_model"]
        for name in ("baseline-s0", "baseline-s1", "rope-s0", "rope-s1"):
            config = json.loads((runs / f"d{d}" / name / "config.json").read_text())
            assert config["model"]["d_model"] == d and config["train"]["max_steps"] == 4
    assert "run 8/8: d48/rope-s1" in result.stderr


def test_sweep_report_never_pools_two_points(sweep_runs):
    from pileablate.report.build import build_report

    runs, _, _ = sweep_runs
    report = build_report([runs])  # `pileablate report RUNS` finds the nested runs
    by_name = {c.name: c for c in report.configurations}
    assert set(by_name) == {"d32/baseline", "d32/rope", "d48/baseline", "d48/rope"}
    for name, config in by_name.items():
        point = name.split("/")[0]
        assert {r.path.parent.name for r in config.runs} == {point} and len(config.runs) == 2
        losses = [json.loads((runs / point / f"{name.split('/')[1]}-s{s}" / "summary.json").read_text())["final_val_loss"]
                  for s in (0, 1)]
        assert config.mean("final_val_loss") == pytest.approx(sum(losses) / 2)
    rope = by_name["d48/rope"]
    assert rope.delta.delta == pytest.approx(rope.mean("final_val_loss") - by_name["d48/baseline"].mean("final_val_loss"))
    assert rope.delta.why.startswith("paired")


def test_sweep_writes_the_scaling_table_plots_and_one_sentence_per_modification(sweep_runs):
    runs, _, result = sweep_runs
    with (runs / "scaling.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["point"], r["configuration"]) for r in rows] == [
        ("d32", "baseline"), ("d32", "rope"), ("d48", "baseline"), ("d48", "rope")]
    assert float(rows[0]["x"]) < float(rows[2]["x"]) and rows[0]["x_measure"] == "parameters"
    rope_trends = {r["trend"] for r in rows if r["configuration"] == "rope"}
    assert len(rope_trends) == 1 and rope_trends <= {"changes sign", "within noise", "shifts", "grows", "shrinks",
                                                     "varies", "steady"}
    for stem in ("scaling_delta", "baseline_scaling"):
        assert (runs / "plots" / f"{stem}.png").is_file() and (runs / "plots" / f"{stem}.svg").is_file()
    text = (runs / "report.md").read_text()
    section = text.split("## Does it hold at scale?")[1].split("## Results")[0]
    assert section.count("- **rope**") == 1 and "at d32" in section and "at d48" in section
    assert "### d32" in text and "### d48" in text
    assert "Does it hold at scale?" in result.stdout


def test_rerunning_a_sweep_skips_every_finished_run(sweep_runs):
    runs, args, _ = sweep_runs
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/summary.json")}
    again = ablate(*args)
    assert again.exit_code == 0, again.output
    assert again.stderr.count("skipped") == 8
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*/summary.json")} == before


def test_a_sweep_publishes_its_report_to_the_trackers_as_an_ablation_does(sweep_runs, monkeypatch):
    from pileablate.report import build

    runs, args, _ = sweep_runs
    published = []
    monkeypatch.setattr(build, "publish_to_trackers",
                        lambda report, files, trackers, runs_dir: published.append((tuple(trackers), runs_dir)))
    again = ablate(*args, "--tracker", "tensorboard")
    assert again.exit_code == 0, (again.output, again.exception)
    assert published == [(("tensorboard",), runs)]
