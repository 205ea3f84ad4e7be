"""`ablate --tune-lr`: candidate rates, tuning windows kept apart from the validation windows, the
rate each configuration gets, and a real tuned ablation on the nano preset."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pileablate.ablate.tuning import MAX_EXTENSIONS, log_grid, lr_candidates
from pileablate.cli import app
from pileablate.errors import UserError
from pileablate.train.data_loader import tuning_window_starts, val_window_starts


def test_auto_is_five_log_spaced_rates_around_the_default():
    assert lr_candidates("auto", 1e-3) == (1e-4, 0.000316, 1e-3, 0.00316, 1e-2)
    assert lr_candidates("3", 6e-4) == (6e-5, 6e-4, 6e-3)
    assert lr_candidates("3e-3, 1e-3", 1.0) == (1e-3, 3e-3)
    assert log_grid(1e-3, 1) == (1e-3,)


@pytest.mark.parametrize("spec, message", [("0", "2 to 15 points"), ("-1e-3", "must be positive"),
                                           ("1e-3,fast", "not a learning rate"), ("1e-3,0.001", "listed twice"),
                                           ("0.0", "must be positive"), ("nan", "must be positive")])
def test_bad_rates_are_one_line_errors(spec, message):
    with pytest.raises(UserError, match=message) as err:
        lr_candidates(spec, 1e-3)
    assert "\n" not in str(err.value)


def test_tuning_windows_never_overlap_the_validation_windows():
    for num_tokens, seq_len, eval_tokens in [(100_000, 64, 4096), (10_000, 128, 2048), (5_000, 64, 2000)]:
        val = val_window_starts(num_tokens, seq_len, eval_tokens)
        tune = tuning_window_starts(num_tokens, seq_len, eval_tokens)
        assert len(tune) == len(val)
        scored = {t for s in val for t in range(s + 1, s + seq_len + 1)}  # the targets a report scores
        assert not scored & {t for s in tune for t in range(s + 1, s + seq_len + 1)}
        assert tune.max() + seq_len < num_tokens
    with pytest.raises(UserError, match="cannot hold"):
        tuning_window_starts(1000, 64, 1000)


def ablate(*args):
    return CliRunner().invoke(app, ["ablate", *args], catch_exceptions=True)


def test_tune_lr_with_lr_is_refused_before_any_run(bytes_store, tmp_path):
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "r"), "--tune-lr", "auto", "--lr", "1e-3")
    assert isinstance(result.exception, UserError) and "drop --lr" in str(result.exception)
    result = ablate("--data", str(bytes_store), "--runs-dir", str(tmp_path / "r"), "--tune-lr", "1e-3,x")
    assert isinstance(result.exception, UserError) and "not a learning rate" in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_a_tuned_ablation_reports_each_configuration_at_its_chosen_rate(bytes_store, tmp_path, one_torch_thread):
    runs = tmp_path / "runs"
    args = ["--data", str(bytes_store), "--runs-dir", str(runs), "--preset", "nano", "--mods", "rope",
            "--max-steps", "6", "--eval-every", "3", "--eval-tokens", "2048", "--tune-lr", "1e-4,3e-3",
            "--tune-budget", "0.5"]
    dry = ablate(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "tune-rope-lr0.003-s1000" in dry.stdout and "2 runs after 4 tuning runs" in dry.output

    result = ablate(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    for label in ("baseline", "rope"):
        losses = {}
        for lr in ("0.0001", "0.003"):
            config = json.loads((runs / f"tune-{label}-lr{lr}-s1000" / "config.json").read_text())
            summary = json.loads((runs / f"tune-{label}-lr{lr}-s1000" / "summary.json").read_text())
            assert config["role"] == "tuning" and config["seed"] == 1000 and config["train"]["max_steps"] == 3
            losses[float(lr)] = summary["final_val_loss"]
        reported = json.loads((runs / f"{label}-s0" / "config.json").read_text())
        assert reported["role"] == "report" and reported["train"]["max_steps"] == 6
        tried = {}
        for folder in runs.glob(f"tune-{label}-lr*-s1000"):  # the grid and its extensions at an edge
            summary = json.loads((folder / "summary.json").read_text())
            tried[json.loads((folder / "config.json").read_text())["train"]["lr"]] = (
                summary["final_val_loss"] if summary["status"] == "finished" else float("inf"))
        assert reported["train"]["lr"] == min(tried, key=tried.get)
        assert reported["train"]["lr"] not in (min(tried), max(tried)) or len(tried) == 2 + MAX_EXTENSIONS

    again = ablate(*args)
    assert again.exit_code == 0 and "skipped" in again.output
