"""Resume from the command line never changes a run silently: a torn metrics line is dropped and
said; a budget change is refused under warmup/cosine and said under a constant schedule."""

from __future__ import annotations

from typer.testing import CliRunner

from pileablate.cli import app
from pileablate.errors import UserError
from pileablate.runfolder import read_metrics

NANO = ["--preset", "nano", "--device", "cpu", "--batch-size", "4", "--eval-tokens", "1024", "--log-every", "1",
        "--eval-every", "2"]


def train(*args):
    return CliRunner().invoke(app, ["train", *args], catch_exceptions=True)


def test_a_larger_budget_extends_a_constant_run_says_so_and_drops_a_torn_line(bytes_store, tmp_path, one_torch_thread):
    common = ["--data", str(bytes_store), "--runs-dir", str(tmp_path), "--name", "r", *NANO]
    assert train(*common, "--max-steps", "4").exit_code == 0
    metrics = tmp_path / "r" / "metrics.jsonl"
    with metrics.open("a") as fh:
        fh.write('{"step": 5, "tokens": 12')  # a crash mid-write
    result = train(*common, "--max-steps", "6")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "torn last line" in result.output and "max_steps" in result.output.replace("-", "_")
    assert [row["step"] for row in read_metrics(tmp_path / "r")] == [1, 2, 3, 4, 5, 6]


def test_a_budget_change_is_refused_when_the_schedule_follows_the_budget(bytes_store, tmp_path, one_torch_thread):
    common = ["--data", str(bytes_store), "--runs-dir", str(tmp_path), "--name", "c", "--mods", "cosine", *NANO]
    assert train(*common, "--max-steps", "4").exit_code == 0
    result = train(*common, "--max-steps", "8")
    assert isinstance(result.exception, UserError), result.output
    assert "cosine" in str(result.exception) and "\n" not in str(result.exception)
