"""`ablate --seeds auto` (rounds of seeds for the undecided), study.json, bad input, and tuning that
extends its grid at an edge: the round rule as a pure function, then whole studies over a fake
trainer (a known loss surface) and fake verdicts, so no model trains here."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from pileablate.ablate.ablation import AblationInterrupted
from pileablate.ablate.rounds import first_counts, next_counts
from pileablate.ablate.tuning import next_rate
from pileablate.cli import app
from pileablate.errors import UserError

LOOKS = [3, 5, 7, 9, 10]
TINY = ["--preset", "nano", "--max-steps", "4", "--eval-every", "2", "--eval-tokens", "2048"]


def ablate(*args: str):
    return CliRunner().invoke(app, ["ablate", *args], catch_exceptions=True)


def test_the_first_round_gives_every_configuration_and_the_baseline_the_first_look():
    groups = [("baseline", ["rope", "cosine"])]
    assert first_counts(groups, LOOKS) == {"baseline": 3, "rope": 3, "cosine": 3}


def test_only_the_undecided_get_seeds_up_to_the_next_look_and_the_baseline_follows():
    groups = [("baseline", ["rope", "cosine", "swiglu", "all"])]
    counts = {"baseline": 3, "rope": 3, "cosine": 3, "swiglu": 3, "all": 3}
    words = {"rope": "helps", "cosine": "undecided", "swiglu": "no effect", "all": "untested"}
    assert next_counts(counts, words, LOOKS, groups) == {"baseline": 5, "rope": 3, "cosine": 5, "swiglu": 3, "all": 3}
    counts = {"baseline": 9, "rope": 3, "cosine": 9, "swiglu": 3, "all": 5}
    words = {"rope": "helps", "cosine": "undecided", "swiglu": "hurts", "all": "undecided"}
    assert next_counts(counts, words, LOOKS, groups) == {"baseline": 10, "rope": 3, "cosine": 10, "swiglu": 3, "all": 7}


def test_the_study_stops_when_nothing_is_undecided_or_the_last_look_is_reached():
    groups = [("baseline", ["rope", "cosine"])]
    counts = {"baseline": 10, "rope": 10, "cosine": 5}
    assert next_counts(counts, {"rope": "undecided", "cosine": "helps"}, LOOKS, groups) == counts


def test_each_point_of_a_sweep_has_its_own_baseline_and_a_point_without_one_adds_nothing():
    groups = [("nano/baseline", ["nano/rope"]), ("micro/baseline", ["micro/rope"]), (None, ["tiny/rope"])]
    counts = {k: 3 for k in ("nano/baseline", "nano/rope", "micro/baseline", "micro/rope", "tiny/rope")}
    words = {"nano/rope": "helps", "micro/rope": "undecided"}
    assert next_counts(counts, words, LOOKS, groups) == {**counts, "micro/baseline": 5, "micro/rope": 5}


def test_a_rate_at_an_edge_extends_the_grid_one_step_that_way_twice_at_most():
    grid = (1e-3, 3e-3)
    assert next_rate(grid, 3e-3, grid) == 9e-3
    assert next_rate((1e-3, 3e-3, 1e-2), 1e-3, (1e-3, 3e-3, 1e-2)) == 0.000333
    assert next_rate((1e-3, 3e-3, 1e-2), 3e-3, (1e-3, 3e-3, 1e-2)) is None  # inside: nothing to extend
    assert next_rate((1e-3, 3e-3, 9e-3), 9e-3, grid) == 0.027
    assert next_rate((1e-3, 3e-3, 9e-3, 0.027), 0.027, grid) is None  # two extensions spent
    assert next_rate((1e-3,), 1e-3, (1e-3,)) is None  # one rate: no ratio to step by


# ---- whole studies over a fake trainer ------------------------------------------------------------

def fake_loss(cfg) -> float:
    """A known surface: best rate 2e-2 for every configuration; rope 0.1 better; seeds add noise."""
    rope = 0.1 if "rope" in cfg.mods else 0.0
    lr = cfg.lr if cfg.lr is not None else 1e-3
    return 3.0 + (math.log10(lr) - math.log10(2e-2)) ** 2 - rope + 0.001 * (cfg.seed % 7)


@pytest.fixture
def fake_runs(monkeypatch, bytes_store):
    """Train = write the run's config.json and summary.json; the report is recorded, not built."""
    from pileablate.ablate import run
    from pileablate.ablate.runner import data_identity
    from pileablate.runfolder import BUDGET_FIELDS
    from pileablate.train import trainer

    _, fingerprint = data_identity(bytes_store)
    trained, reports = [], []

    def fake_train(cfg, console=None):
        run = cfg.runs_dir / cfg.name
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps({"data": {"fingerprint": fingerprint},
                                                     "train": {k: getattr(cfg, k) for k in BUDGET_FIELDS}}))
        summary = {"name": cfg.name, "status": "finished", "steps": 4, "final_val_loss": fake_loss(cfg)}
        (run / "summary.json").write_text(json.dumps(summary))
        trained.append(cfg.name)
        return summary

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(run, "report_folders", lambda runs_dir, folders, what, trackers=(): reports.append(
        sorted(f.name for f in folders)))
    return trained, reports


def fake_verdicts(monkeypatch, rule):
    """verdict_words from `rule(label, finished seeds)`: the report's verdicts stand in."""
    from pileablate.ablate import phases

    def words(study, folders):
        seeds: dict[str, int] = {}
        for folder in folders:
            summary = folder / "summary.json"
            if not folder.name.startswith("tune-") and summary.is_file():
                label = folder.name.rsplit("-s", 1)[0]
                seeds[label] = seeds.get(label, 0) + 1
        return {label: rule(label, n) for label, n in seeds.items() if label != "baseline"}

    monkeypatch.setattr(phases, "verdict_words", words)


def rule(label: str, seeds: int) -> str:
    return {"rope": "helps", "cosine": "undecided" if seeds < 7 else "hurts"}.get(label, "undecided")


def test_seeds_auto_adds_seeds_only_where_the_answer_is_open_and_a_rerun_trains_nothing(
        fake_runs, monkeypatch, bytes_store, tmp_path):
    trained, reports = fake_runs
    fake_verdicts(monkeypatch, rule)
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope,cosine,swiglu", "--seeds", "auto",
            "--max-seeds", "9", "--margin", "0.02", *TINY]
    result = ablate(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    seeds = {label: sorted(int(p.name.rsplit("-s", 1)[1]) for p in runs.glob(f"{label}-s*"))
             for label in ("baseline", "rope", "cosine", "swiglu", "cosine+rope+swiglu")}
    assert seeds == {"baseline": list(range(9)), "rope": [0, 1, 2], "cosine": list(range(7)),
                     "swiglu": list(range(9)), "cosine+rope+swiglu": list(range(9))}
    assert len(trained) == len(set(trained)) == 9 + 3 + 7 + 9 + 9  # no run trained twice
    assert "round 2: 5 seeds for baseline, cosine, swiglu, cosine+rope+swiglu" in result.stderr
    assert "after round 3: cosine hurts, rope helps" in result.stderr and "round 5" not in result.stderr
    assert json.loads((runs / "study.json").read_text()) == {
        "margin": 0.02, "sequential": {"first": 3, "max_seeds": 9, "step": 2}}
    assert reports[-1] == sorted(p.name for p in runs.iterdir() if p.is_dir())  # one report over every run

    trained.clear()
    again = ablate(*args)
    assert again.exit_code == 0, again.output
    assert trained == [] and again.stderr.count("skipped") == 9 * 3 + 3 + 7


def test_an_interrupted_round_is_continued_by_the_same_command(fake_runs, monkeypatch, bytes_store, tmp_path):
    from pileablate.train import trainer

    trained, _ = fake_runs
    fake_verdicts(monkeypatch, rule)
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope,cosine", "--seeds", "auto",
            "--max-seeds", "5", *TINY]
    train = trainer.train

    def stop_in_round_two(cfg, console=None):
        if cfg.name == "cosine-s3":
            return {"name": cfg.name, "status": "stopped"}
        return train(cfg, console)

    monkeypatch.setattr(trainer, "train", stop_in_round_two)
    result = ablate(*args)
    assert isinstance(result.exception, AblationInterrupted) and "Re-run the same command" in str(result.exception)
    assert "round 2" in result.stderr and not (runs / "cosine-s3" / "summary.json").exists()
    assert not (runs / "cosine-s4").exists()
    done = list(trained)
    monkeypatch.setattr(trainer, "train", train)
    assert ablate(*args).exit_code == 0
    assert not set(trained[len(done):]) & set(done) and "cosine-s3" in trained[len(done):]
    assert all((runs / f"{label}-s{s}" / "summary.json").is_file() for label in ("baseline", "cosine", "cosine+rope")
               for s in range(5))
    assert not (runs / "rope-s3").exists()


def test_a_chosen_rate_at_the_grid_edge_is_tuned_beyond_it(fake_runs, bytes_store, tmp_path):
    """Best rate 2e-2 on the fake surface; the grid 1e-3,3e-3 extends to 9e-3 and 0.027, where the
    choice (0.027, nearer 2e-2 than 9e-3 on a log scale) is the one the reported runs use."""
    trained, reports = fake_runs
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--tune-lr", "1e-3,3e-3", *TINY]
    result = ablate(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    for label in ("baseline", "rope"):
        tried = sorted(p.name for p in runs.glob(f"tune-{label}-lr*"))
        assert tried == [f"tune-{label}-lr{lr}-s1000" for lr in ("0.001", "0.003", "0.009", "0.027")]
    assert "one step beyond" in result.stderr
    assert {n for n in reports[-1] if n.startswith("tune-")} == {p.name for p in runs.glob("tune-*")}  # listed
    trained.clear()
    assert ablate(*args).exit_code == 0 and trained == []  # extension runs are resumable like the others


def test_a_job_array_task_cannot_extend_the_grid_alone(fake_runs, bytes_store, tmp_path):
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--tune-lr", "1e-3,3e-3", *TINY]
    assert ablate(*args, "--stage", "tune", "--task", "1/1").exit_code == 0
    result = ablate(*args, "--stage", "train", "--task", "1/2")
    assert isinstance(result.exception, UserError) and "without --task and with --stage tune" in str(result.exception)
    assert ablate(*args, "--stage", "tune").exit_code == 0  # one process extends it
    assert ablate(*args, "--stage", "train", "--task", "1/2").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["--seeds", "auto", "--max-seeds", "2"], "--max-seeds 3 or more"),
    (["--margin", "0"], "positive, finite number"),
    (["--margin", "-0.01"], "positive, finite number"),
    # NaN and infinities are refused where every float option is parsed (cli.py), before the study sees them.
    (["--margin", "nan"], "must be a finite number"),
    (["--margin", "inf"], "must be a finite number"),
    (["--seeds", "auto", "--task", "1/2"], "--task needs fixed seeds"),
    (["--seeds", "auto", "--emit", "slurm"], "--emit slurm needs fixed seeds"),
    (["--max-seeds", "5"], "goes with --seeds auto"),
    (["--seeds", "some"], "or auto"),
])
def test_bad_study_options_are_one_line_errors_before_anything_is_written(bytes_store, tmp_path, args, message):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "runs"), *TINY, *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "runs").exists()


def test_another_sequential_design_in_the_same_folder_is_refused(fake_runs, monkeypatch, bytes_store, tmp_path):
    fake_verdicts(monkeypatch, lambda label, n: "helps")
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--seeds", "auto", *TINY]
    assert ablate(*args).exit_code == 0
    before = (runs / "study.json").read_text()
    result = ablate(*args, "--max-seeds", "5")
    assert isinstance(result.exception, UserError) and "another design" in str(result.exception)
    assert (runs / "study.json").read_text() == before


def test_dry_run_with_seeds_auto_shows_the_first_round_and_the_most_it_can_cost(bytes_store, tmp_path):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "runs"), "--mods", "rope",
                    "--seeds", "auto", "--max-seeds", "5", "--max-tokens", "10k", "--preset", "nano", "--dry-run")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "first round: 6 runs" in result.stdout and "rope-s2" in result.stdout and "rope-s3" not in result.stdout
    assert "at most 10 runs and 100k tokens" in result.stdout
    assert "3 to 5 seeds (--seeds auto)" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_real_seeds_auto_study_stops_where_its_report_says_and_report_reproduces_it(
        bytes_store, tmp_path, one_torch_thread):
    """Tiny real runs and the report's own verdicts: every seed the study added went to an undecided
    comparison, and `pileablate report` over the folder (reading study.json) gives the same verdict."""
    from pileablate.report.build import build_report

    runs = tmp_path / "runs"
    result = ablate("--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--seeds", "auto",
                    "--max-seeds", "5", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    n = len(list(runs.glob("rope-s*")))
    verdict = build_report([runs]).verdicts["rope"]
    assert len(list(runs.glob("baseline-s*"))) == n in (3, 5) and verdict.seeds == n
    if n == 3:
        assert verdict.word != "undecided" and "round 2" not in result.stderr
    else:
        assert "after round 1: rope undecided" in result.stderr
    assert f"after round {1 if n == 3 else 2}: rope {verdict.word}" in result.stderr
