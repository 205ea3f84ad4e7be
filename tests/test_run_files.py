"""Run files on resume: a torn metrics line is dropped and said; a budget change never passes silently."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pileablate.errors import UserError
from pileablate.runfolder import MetricsLog, check_same_run, read_metrics

ROWS = [{"step": s, "tokens": 100 * s, "train_loss": 5.0 - s / 10} for s in range(1, 7)]


def write_lines(path: Path, rows, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


# -- metrics.jsonl ------------------------------------------------------------------------------

@pytest.mark.parametrize("tail", ['{"step": 7, "tok', '{"step": 7, "tokens": 700', "\x00\x00\x00", '{"step": 7}'[:-1]])
def test_a_torn_last_line_is_left_out_by_the_reader(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    write_lines(path, ROWS, tail)
    assert read_metrics(tmp_path) == ROWS


def test_resume_drops_a_torn_last_line_and_says_so(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_lines(path, ROWS, '{"step": 7, "train_lo')
    log = MetricsLog(tmp_path)
    notes = log.truncate_after(6)
    assert len(notes) == 1 and "torn last line" in notes[0]
    log.write({"step": 7, "train_loss": 1.0})
    log.close()
    assert read_metrics(tmp_path) == ROWS + [{"step": 7, "train_loss": 1.0}]
    assert MetricsLog(tmp_path).truncate_after(7) == []  # nothing left to drop: nothing said


def test_resume_drops_rows_after_the_checkpoint_and_says_how_many(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_lines(path, ROWS, '{"st')
    notes = MetricsLog(tmp_path).truncate_after(4)
    assert read_metrics(tmp_path) == ROWS[:4]
    assert any("torn" in n for n in notes) and any("dropped 2 row(s)" in n and "step 4" in n for n in notes)


def test_a_last_row_without_its_newline_is_kept_and_the_next_row_starts_a_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS).rstrip("\n"))
    log = MetricsLog(tmp_path)
    assert log.truncate_after(6) == []
    log.write({"step": 7})
    log.close()
    assert read_metrics(tmp_path) == ROWS + [{"step": 7}]


def test_a_broken_line_before_the_last_is_a_one_line_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_lines(path, ROWS[:2], "garbage\n" + json.dumps(ROWS[2]) + "\n")
    for read in (lambda: read_metrics(tmp_path), lambda: MetricsLog(tmp_path).truncate_after(9)):
        with pytest.raises(UserError) as err:
            read()
        assert f"{path}:3" in str(err.value) and "\n" not in str(err.value)


def test_the_report_reads_metrics_with_the_same_reader(tmp_path):
    from pileablate.report import runs

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    write_lines(run / "metrics.jsonl", ROWS, '{"step": 7, "tr')
    assert runs.load_run(run).metrics == ROWS
    assert runs.read_metrics is read_metrics


def test_resuming_a_run_whose_last_metrics_line_is_torn_trains_on(tmp_path, bytes_store):
    from test_train_run import losses, nano

    from pileablate.train.trainer import train

    straight = train(nano(tmp_path, bytes_store, name="straight", max_steps=6))
    train(nano(tmp_path, bytes_store, name="torn", max_steps=3))
    run = tmp_path / "runs" / "torn"
    with open(run / "metrics.jsonl", "a") as handle:  # killed while writing step 4's row
        handle.write('{"step": 4, "tokens": 512, "train_lo')
    resumed = train(nano(tmp_path, bytes_store, name="torn", max_steps=6))
    assert resumed["status"] == "finished" and [r["step"] for r in read_metrics(run)] == list(range(1, 7))
    assert losses(run) == losses(Path(straight["run_dir"]))


# -- budgets on resume --------------------------------------------------------------------------

def config(schedule: str = "constant", **budget) -> dict:
    train = {"lr": 1e-3, "max_steps": 100, "max_tokens": None, "time_limit": None, "eval_every": 10}
    train.update(budget)
    return {"name": "r", "model": {"d_model": 64}, "train": train, "schedule": schedule, "tokens_per_step": 512,
            "data": {"dir": "data", "fingerprint": "f" * 64, "tokenizer": {"name": "bytes", "sha256": "a" * 64}}}


@pytest.mark.parametrize("schedule", ["warmup", "cosine"])
@pytest.mark.parametrize("change", [{"max_steps": 200}, {"max_steps": 50}, {"max_tokens": 10**6}, {"time_limit": 60.0}])
def test_a_budget_change_is_refused_when_the_schedule_follows_the_budget(tmp_path, schedule, change):
    old, new = config(schedule), config(schedule, **change)
    with pytest.raises(UserError) as err:
        check_same_run(tmp_path / "r", old, new)
    message = str(err.value)
    assert "\n" not in message and schedule in message and "budget" in message
    assert "new --name" in message and "repeat" in message  # what to do


def test_a_budget_change_extends_a_constant_schedule_run_and_says_so(tmp_path):
    notes = check_same_run(tmp_path / "r", config(), config(max_steps=200, eval_every=5))
    assert len(notes) == 1 and "--max-steps 100 -> 200" in notes[0] and "constant" in notes[0]


def test_the_same_budget_continues_silently(tmp_path):
    for schedule in ("constant", "warmup", "cosine"):
        assert check_same_run(tmp_path / "r", config(schedule), config(schedule, eval_every=50)) == []


def test_other_settings_are_still_refused(tmp_path):
    new = copy.deepcopy(config())
    new["train"]["lr"] = 2e-3
    with pytest.raises(UserError, match="other settings"):
        check_same_run(tmp_path / "r", config(), new)


# -- one error policy -------------------------------------------------------------------------------

def test_every_reader_of_a_run_folder_has_one_error_policy(tmp_path):
    """Absent: None (the report and ablate carry on). Broken: the same one-line error from every reader."""
    from pileablate import runfolder
    from pileablate.ablate.runner import run_state
    from pileablate.report.runs import load_run

    run = tmp_path / "r"
    run.mkdir()
    assert runfolder.read_config(run) is None and runfolder.read_summary(run) is None
    assert runfolder.read_point(tmp_path) is None and runfolder.read_metrics(run) == []
    (run / "summary.json").write_text('{"status": "finis')  # altered by hand: JSON files are written atomically
    messages = []
    for read in (lambda: runfolder.read_summary(run), lambda: load_run(run), lambda: run_state(run)):
        with pytest.raises(UserError) as err:
            read()
        messages.append(str(err.value))
    assert len(set(messages)) == 1
    assert str(run / "summary.json") in messages[0] and "delete or repair" in messages[0] and "\n" not in messages[0]


def test_the_run_folder_writes_atomically_and_reads_back(tmp_path):
    from pileablate import runfolder

    run = tmp_path / "r"
    runfolder.write_config(run, {"name": "r"})
    runfolder.write_summary(run, {"status": "running"})
    runfolder.write_point(tmp_path, {"point": "p"})
    assert runfolder.is_run_dir(run) and not runfolder.is_run_dir(tmp_path)
    assert runfolder.read_config(run) == {"name": "r"} and runfolder.read_summary(run) == {"status": "running"}
    assert runfolder.read_point(tmp_path) == {"point": "p"}
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "summary.json"]  # no temporary left


def test_budget_fields_are_defined_once():
    from pileablate import runfolder
    from pileablate.ablate import runner
    from pileablate.report import runs

    assert runner.BUDGET_FIELDS is runfolder.BUDGET_FIELDS and runs.BUDGET_FIELDS is runfolder.BUDGET_FIELDS
    assert runfolder.same_budget({"max_steps": 10}, {"max_steps": 10.0, "max_tokens": None})
    assert not runfolder.same_budget({"max_steps": 10}, {"max_tokens": 10})


def test_the_report_reads_a_studys_design_through_the_run_folder(tmp_path):
    from pileablate import runfolder
    from pileablate.report.build import read_study

    assert read_study([tmp_path]) == {}
    runfolder.write_study(tmp_path, {"margin": 0.02})
    assert read_study([tmp_path / "none", tmp_path]) == {"margin": 0.02} == runfolder.read_study(tmp_path)
    (tmp_path / runfolder.STUDY_FILE).write_text("{")
    with pytest.raises(UserError, match="delete or repair"):
        read_study([tmp_path])


def test_a_run_of_an_older_version_continues(tmp_path):
    """A setting added since the run was made is not a difference, and pileablate 2's names read as today's."""
    import json

    from pileablate.runfolder import read_config

    run = tmp_path / "r"
    run.mkdir()
    old = config()
    old["train"]["data_dir"] = old["train"].pop("time_limit") or "data"
    old["train"]["time_limit_s"] = None
    (run / "config.json").write_text(json.dumps(old))
    new = copy.deepcopy(config())
    new["train"].update({"data": "data", "mods_files": []})  # mods_files came after the old run
    assert check_same_run(run, read_config(run), new) == []
    new["train"]["data"] = "elsewhere"  # still a resumable change, as it always was
    assert check_same_run(run, read_config(run), new) == []
    new["train"]["lr"] = 5e-3
    with pytest.raises(UserError, match="other settings"):
        check_same_run(run, read_config(run), new)
