"""Data repetition is a setting: a budget's passes over the train split are said before a run starts,
a run that saw its data more than once is flagged in the report, and a budget beyond any use is refused."""

from __future__ import annotations

import json
import random

import pytest
from conftest import jsonl
from test_generate_cli import cli

from pileablate.data.config import PrepareConfig
from pileablate.data.prepare import prepare
from pileablate.errors import UserError
from pileablate.train.passes import MAX_PASSES, budget_tokens, check_passes, describe_passes, repeat_warning


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A store of about 12k train tokens: 40 steps of 4 windows of 64 tokens are more than one pass."""
    rng = random.Random(0)
    words = "def return class import self for in if else while yield lambda".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 15))) for _ in range(400)]
    root = tmp_path_factory.mktemp("tiny")
    (root / "docs.jsonl").write_bytes(jsonl([{"text": t} for t in texts]))
    manifest = prepare(PrepareConfig(sources=[str(root / "docs.jsonl")], out=root / "data", tokenizer="bytes",
                                     val_rows=None, workers=1))
    return root / "data", manifest["splits"]["train"]["tokens"]


def test_passes_are_counted_from_the_first_limit_reached():
    assert budget_tokens(1000, None, 256) == 1000
    assert budget_tokens(None, 10, 256) == 2560 and budget_tokens(5000, 10, 256) == 2560
    assert budget_tokens(None, None, 256) is None  # a time budget: tokens depend on the hardware
    assert describe_passes(500, 1000) == "0.50 passes over the train split (500 of 1,000 tokens)"
    assert repeat_warning(1000, 1000, False) is None  # one pass exactly repeats nothing
    assert "1.5 times" in repeat_warning(1500, 1000, False)
    assert "default budget" in repeat_warning(1500, 1000, True) and "--max-tokens 1000" in repeat_warning(1500, 1000, True)
    check_passes(MAX_PASSES * 1000, 1000)  # at the limit: allowed
    with pytest.raises(UserError, match="beyond any use"):
        check_passes(MAX_PASSES * 1000 + 1, 1000)


def test_a_run_beyond_one_pass_is_warned_before_it_starts_and_flagged_in_the_report(tmp_path, capsys, tiny_store):
    data, train_tokens = tiny_store
    steps = train_tokens // 256 * 2  # about two passes
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "train", "--data", str(data), "--runs-dir", str(runs), "--preset", "nano",
                           "--device", "cpu", "--batch-size", "4", "--max-steps", str(steps), "--eval-every", "1000",
                           "--eval-tokens", "1024", "--log-every", "5")
    assert code == 0, err
    lines = err.splitlines()
    said = next(i for i, line in enumerate(lines) if "passes over the train split" in line and "warning" in line)
    finished = next(i for i, line in enumerate(lines) if line.startswith("finished"))
    assert said < finished and f"{2 * (train_tokens // 256) * 256 / train_tokens:.2f} passes" in lines[said]
    summary = json.loads((runs / "baseline-s0" / "summary.json").read_text())
    assert summary["epochs"] > 1

    code, out, err = cli(capsys, "report", str(runs))
    assert code == 0, err
    assert "repeated data" in " ".join(out.split())
    assert "repeated data" in (runs / "report.md").read_text()


def test_a_budget_beyond_any_use_is_refused_before_anything_is_written(tmp_path, capsys, tiny_store):
    data, _ = tiny_store
    code, _, err = cli(capsys, "train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--preset",
                           "nano", "--device", "cpu", "--max-tokens", "1e99")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: a budget of 1e+99 tokens")
    assert not (tmp_path / "runs" / "baseline-s0" / "config.json").exists()


def test_ablate_dry_run_at_the_largest_budget_allowed_prints_counts_people_read(tmp_path, tiny_store):
    from typer.testing import CliRunner

    from pileablate.cli import app

    data, train_tokens = tiny_store
    result = CliRunner().invoke(app, ["ablate", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--preset",
                                      "nano", "--seeds", "auto", "--max-tokens", str(MAX_PASSES * train_tokens),
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    import re

    # counts with units, never '1e+90G' (params x tokens, a FLOP-like product, stays in scientific notation)
    assert not re.search(r"e\+\d+[kMGT]", result.output) and re.search(r"\d(\.\d+)?T\b", result.output)
    assert "passes over the train split" in result.output and "warning:" in result.output
