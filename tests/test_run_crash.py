"""A crash inside a run is recorded: summary.json says failed (crashed, with the exception), the
traceback is kept in the run folder, the command says so in one line, and `ablate` goes on."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pileablate import runlock
from pileablate.cli import app

TINY = ["--preset", "nano", "--device", "cpu", "--batch-size", "4", "--eval-tokens", "1024", "--max-steps", "6",
        "--eval-every", "3", "--log-every", "2"]


@pytest.fixture
def rope_crashes_at_its_first_evaluation(monkeypatch):
    """A bug that surfaces mid-run (after 3 steps), only in runs with rope."""
    from pileablate.train.session import Session

    evaluate = Session.evaluate

    def crashing(self):
        if "rope" in self.cfg.mods:
            raise RuntimeError("boom in a user's forward\nsecond line of the message")
        return evaluate(self)

    monkeypatch.setattr(Session, "evaluate", crashing)


def test_a_crash_is_recorded_and_said_in_one_line(tmp_path, bytes_store, capsys, rope_crashes_at_its_first_evaluation):
    from pileablate.cli import main

    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", *TINY])
    err = capsys.readouterr().err
    run_dir = runs / "rope-s0"
    assert exit_info.value.code == 1
    assert err.splitlines()[-1] == (f"error: run rope-s0 crashed at step 3 (RuntimeError: boom in a user's forward); "
                                    f"the traceback is in {run_dir / 'error.txt'} ('pileablate --debug ...' shows it "
                                    "here)")
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["stop_reason"], summary["steps"]) == ("failed", "crashed", 3)
    assert summary["error"] == "RuntimeError: boom in a user's forward"
    traceback = (run_dir / "error.txt").read_text()
    assert traceback.startswith("Traceback") and "second line of the message" in traceback and "crashing" in traceback
    assert runlock.holder(run_dir) is None


def test_ablate_goes_on_after_a_crash_and_lists_the_run_as_failed(tmp_path, bytes_store,
                                                                  rope_crashes_at_its_first_evaluation):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["ablate", "--data", str(bytes_store), "--runs-dir", str(runs),
                                      "--mods", "rope,swiglu", *TINY], catch_exceptions=True)
    assert result.exit_code == 1, result.output
    assert "2 of 4 runs failed (rope-s0, rope+swiglu-s0)" in str(result.exception)  # all = rope + swiglu
    for name in ("baseline-s0", "swiglu-s0", "rope+swiglu-s0"):
        status = json.loads((runs / name / "summary.json").read_text())["status"]
        assert status == ("failed" if "rope" in name else "finished"), name  # swiglu trained after rope crashed
    report = (runs / "report.md").read_text()
    assert "failed (crashed)" in report
    assert "swiglu" in report
