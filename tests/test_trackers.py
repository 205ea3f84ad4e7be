"""Trackers (TensorBoard, W&B): what they write is read back with each tool's own reader or format.

TensorBoard files are read with TensorBoard's EventAccumulator (the reader behind its dashboard).
W&B offline runs are read from their `.wandb` transaction log (a LevelDB-style log of the protobuf
records W&B uploads on `wandb sync`), with W&B's own protobuf classes.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from pileablate.errors import UserError
from pileablate.trackers import open_tracker, parse_trackers, publish_report
from pileablate.trackers.rows import metric_tag

METRICS = ("tokens", "elapsed_s", "lr", "train_loss", "grad_norm", "tokens_per_s", "epoch", "val_loss",
           "val_bits_per_byte", "mfu", "peak_mem_bytes")


def make_row(step: int, mark: float = 0.0) -> dict:
    """A metrics.jsonl row as the trainer writes it; `mark` tells sessions apart; val every 20 steps."""
    row = {"step": step, "tokens": step * 1024, "elapsed_s": step * 0.5, "lr": 1e-3 * step / 100,
           "train_loss": 5.0 - step / 100 + mark, "grad_norm": 0.5 + mark, "tokens_per_s": 2048.0,
           "epoch": step / 1000, "mfu": 0.3, "peak_mem_bytes": 1_000_000 + step}
    if step % 20 == 0:
        row.update(val_loss=4.9 - step / 100 + mark, val_bits_per_byte=2.0 - step / 1000)
    else:
        row.update(val_loss=None)  # the trainer writes None where a value is missing; not a point
    return row


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=300)


def open_run(kinds, tmp_path: Path, resume_step=0, console=None, name="rope-s0"):
    runs = tmp_path / "runs"
    return open_tracker(kinds, run_dir=runs / name, run_name=name, group="runs", group_dir=runs / "tensorboard",
                        config={"mods": ["rope"], "seed": 0, "train": {"lr": 1e-3, "max_tokens": None}},
                        resume_step=resume_step, is_main=True, console=console or quiet_console())


def next_second() -> None:
    """A resumed session comes seconds later: TensorBoard orders a folder's event files by their names,
    which start with the second they were made in."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)


def tensorboard_run(path: Path):
    """A run folder as TensorBoard's dashboard loads it (plugin_event_accumulator: every summary is a
    tensor, restarts purge what came after them)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, key: str) -> dict[int, float]:
    from tensorboard.util.tensor_util import make_ndarray

    events = acc.Tensors(metric_tag(key))
    steps = [e.step for e in events]
    assert len(steps) == len(set(steps)), f"{key}: a step logged twice: {steps}"
    return {e.step: make_ndarray(e.tensor_proto).item() for e in events}


def hparams(acc) -> dict:
    """The run's row in TensorBoard's HParams table."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content)
    values = data.session_start_info.hparams
    return {k: v.string_value or v.number_value for k, v in values.items()}


def text(acc, tag: str) -> list[str]:
    return [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(f"{tag}/text_summary")]


# ----------------------------------------------------------------------------------------------
def test_parse_trackers_takes_comma_lists_and_repeats():
    assert parse_trackers("tensorboard,wandb") == ("tensorboard", "wandb")
    assert parse_trackers(["wandb", "tensorboard, wandb", "WandB"]) == ("wandb", "tensorboard")
    assert parse_trackers("") == () and parse_trackers(None) == () and parse_trackers(["none"]) == ()


def test_unknown_tracker_is_one_line_listing_the_valid_ones():
    with pytest.raises(UserError) as err:
        parse_trackers("tensorboard,mlflow")
    message = str(err.value)
    assert "mlflow" in message and "tensorboard" in message and "wandb" in message and "\n" not in message


@pytest.mark.parametrize("kind", ["tensorboard", "wandb"])
def test_missing_package_names_the_extra(kind, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, kind, None)  # `import kind` now raises ImportError
    with pytest.raises(UserError) as err:
        open_run([kind], tmp_path)
    assert str(err.value) == f'--tracker {kind} needs the {kind} package: pip install -e ".[{kind}]"'
    assert not (tmp_path / "runs").exists()


def test_no_tracker_or_not_main_process_logs_nothing(tmp_path):
    with open_run((), tmp_path) as tracker:
        tracker.log(make_row(10))
    runs = tmp_path / "runs"
    with open_tracker(["tensorboard"], run_dir=runs / "a", run_name="a", group="runs", group_dir=runs / "tensorboard",
                      config={}, resume_step=0, is_main=False, console=quiet_console()) as tracker:
        tracker.log(make_row(10))
        tracker.summary({"status": "finished"})
    assert not runs.exists()


# ----------------------------------------------------------------------------------------------
def test_tensorboard_holds_every_metric_at_its_steps(tmp_path):
    console = quiet_console()
    with open_run(["tensorboard"], tmp_path, console=console) as tracker:
        for step in range(10, 101, 10):
            tracker.log(make_row(step))
        tracker.summary({"status": "finished", "steps": 100, "final_val_loss": 3.9, "mods": ["rope"]})
    acc = tensorboard_run(tmp_path / "runs" / "tensorboard" / "rope-s0")
    expected = [make_row(step) for step in range(10, 101, 10)]
    for key in METRICS:
        want = {row["step"]: row[key] for row in expected if row.get(key) is not None}
        got = scalars(acc, key)
        assert sorted(got) == sorted(want), key
        assert all(got[s] == pytest.approx(v, rel=1e-6) for s, v in want.items()), key
    assert sorted(scalars(acc, "val_loss")) == [20, 40, 60, 80, 100]
    config = json.loads(text(acc, "config")[0].removeprefix("```json\n").removesuffix("\n```"))
    assert config["mods"] == ["rope"]
    assert hparams(acc) == {"mods": "rope", "seed": 0, "train.lr": 1e-3}  # None (max_tokens) is no hyperparameter
    assert "| final_val_loss | 3.9 |" in text(acc, "summary")[0]
    assert "tensorboard --logdir" in console.file.getvalue()


def test_tensorboard_resume_drops_what_came_after_the_checkpoint(tmp_path):
    tb = tmp_path / "runs" / "tensorboard" / "rope-s0"
    tracker = open_run(["tensorboard"], tmp_path)
    for step in range(10, 51, 10):  # steps 40 and 50 came after the checkpoint at 30, then a crash
        tracker.log(make_row(step, mark=1.0))
    tracker.close()
    next_second()
    with open_run(["tensorboard"], tmp_path, resume_step=30) as tracker:
        for step in range(40, 71, 10):
            tracker.log(make_row(step, mark=2.0))
    loss = scalars(tensorboard_run(tb), "train_loss")
    assert sorted(loss) == [10, 20, 30, 40, 50, 60, 70]
    assert [loss[s] - make_row(s)["train_loss"] for s in sorted(loss)] == pytest.approx([1, 1, 1, 2, 2, 2, 2])
    assert len(text(tensorboard_run(tb), "config")) == 1  # the config is not repeated by a resume

    next_second()
    with open_run(["tensorboard"], tmp_path, resume_step=0) as tracker:  # the run started over
        tracker.log(make_row(10, mark=3.0))
    assert scalars(tensorboard_run(tb), "train_loss") == pytest.approx({10: make_row(10)["train_loss"] + 3})


# ----------------------------------------------------------------------------------------------
@pytest.fixture
def wandb_env(monkeypatch, tmp_path):
    """W&B kept inside tmp_path, quiet, offline. W&B reads its environment once per process (at its
    set-up), so each test starts and ends with a fresh W&B."""
    import wandb

    wandb.teardown()
    for var, sub in (("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_CACHE_DIR", "wandb-cache"),
                     ("WANDB_DATA_DIR", "wandb-data")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "pileablate-tests")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield monkeypatch
    wandb.teardown()


def wandb_records(run_dir: Path, run_id: str, timeout: float = 30.0) -> list:
    """Every record of the offline sessions of `run_id` under run_dir/wandb, oldest first. W&B's service
    writes the log on its own clock after `finish()` returns: wait until each session's exit record is in."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
        sessions = [read_wandb_log(path) for path in files]
        complete = bool(files) and all(any(r.WhichOneof("record_type") == "exit" for r in rs) for rs in sessions)
        if complete or time.monotonic() > deadline:
            assert complete, f"no complete offline run {run_id} in {run_dir / 'wandb'}"
            return [record for records in sessions for record in records]
        time.sleep(0.1)


def read_wandb_log(path: Path) -> list:
    """The records of a `.wandb` file: a header (':W&B', magic, version), then LevelDB-log blocks of
    32 KiB, each record a (crc, length, type) header and a piece of a protobuf Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    block = 32768
    data = path.read_bytes()
    records, pos, pending = [], 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # padding to the end of the block
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            records.append(pb.Record.FromString(pending))
            pending = b""
    return records


def wandb_history(records) -> dict[int, dict]:
    out = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row: dict = {}
            for item in r.history.item:  # media come as nested keys: ("report/x", "width") -> row["report/x"]["width"]
                *parents, leaf = [item.key] if item.key else list(item.nested_key)
                node = row
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = json.loads(item.value_json)
            assert r.history.step.num not in out, f"step {r.history.step.num} sent twice"
            out[r.history.step.num] = {k: v for k, v in row.items() if not k.startswith("_")}
    return out


def wandb_state(run_dir: Path) -> dict:
    return json.loads((run_dir / "wandb" / "pileablate-run.json").read_text())


def test_wandb_offline_run_holds_every_metric_and_the_group(wandb_env, tmp_path):
    console = quiet_console()
    with open_run(["wandb"], tmp_path, console=console) as tracker:
        for step in range(10, 61, 10):
            tracker.log(make_row(step))
        tracker.summary({"status": "finished", "final_val_loss": 4.3, "steps": 60})
    run_dir = tmp_path / "runs" / "rope-s0"
    state = wandb_state(run_dir)
    assert state["last_step"] == 60
    records = wandb_records(run_dir, state["id"])
    history = wandb_history(records)
    assert sorted(history) == [10, 20, 30, 40, 50, 60]
    for step, logged in history.items():
        row = make_row(step)
        assert logged == pytest.approx({metric_tag(k): v for k, v in row.items() if k != "step" and v is not None})
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.run_group, run.display_name, run.project) == ("runs", "rope-s0", "pileablate-tests")
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["mods"] == ["rope"] and config["train"]["lr"] == 1e-3
    summaries = {u.key or "/".join(u.nested_key): json.loads(u.value_json)
                 for r in records if r.WhichOneof("record_type") == "summary" for u in r.summary.update}
    assert summaries["final_val_loss"] == 4.3
    assert "wandb sync" in console.file.getvalue()


def test_wandb_resume_continues_the_same_run_without_repeating_steps(wandb_env, tmp_path):
    tracker = open_run(["wandb"], tmp_path)
    for step in range(10, 51, 10):
        tracker.log(make_row(step, mark=1.0))
    tracker.close()  # steps 40, 50 came after the checkpoint at 30
    next_second()  # W&B names an offline session's folder by its second
    with open_run(["wandb"], tmp_path, resume_step=30) as tracker:
        for step in range(40, 71, 10):
            tracker.log(make_row(step, mark=2.0))
    run_dir = tmp_path / "runs" / "rope-s0"
    state = wandb_state(run_dir)
    files = list((run_dir / "wandb").glob(f"offline-run-*-{state['id']}"))
    assert len(files) == 2  # two sessions of one W&B run id
    history = wandb_history(wandb_records(run_dir, state["id"]))
    assert sorted(history) == [10, 20, 30, 40, 50, 60, 70]
    assert history[60]["loss/train_loss"] == pytest.approx(make_row(60)["train_loss"] + 2)


def test_wandb_unreachable_service_never_stops_the_run(wandb_env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    wandb_env.setenv("WANDB_MODE", "online")
    wandb_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    wandb_env.setenv("WANDB_API_KEY", "x" * 40)
    wandb_env.setenv("WANDB_INIT_TIMEOUT", "1")
    console = quiet_console()
    start = time.monotonic()
    with open_run(["wandb"], tmp_path, console=console) as tracker:
        tracker.log(make_row(10))
        tracker.summary({"status": "finished"})
    assert time.monotonic() - start < 30
    out = console.file.getvalue()
    assert out.count("wandb: could not start") == 1 and "going on without W&B" in out


def test_wandb_error_while_logging_is_said_once(wandb_env, tmp_path):
    console = quiet_console()
    with open_run(["wandb"], tmp_path, console=console) as tracker:
        wandb_tracker = tracker.trackers[0]

        def broken(*args, **kwargs):
            raise ConnectionError("network is down\nsecond line")

        wandb_tracker.run.log = broken
        for step in (10, 20, 30):
            tracker.log(make_row(step))
        tracker.summary({"status": "finished"})
    out = console.file.getvalue()
    assert out.count("wandb: logging failed (ConnectionError: network is down)") == 1


def test_wandb_init_error_is_said_once(wandb_env, tmp_path, monkeypatch):
    import wandb

    def refuse(*args, **kwargs):
        raise wandb.errors.CommError("no route to host")

    monkeypatch.setattr(wandb, "init", refuse)
    console = quiet_console()
    with open_run(["wandb"], tmp_path, console=console) as tracker:
        tracker.log(make_row(10))
    assert console.file.getvalue().count("could not start (CommError: no route to host)") == 1


# ----------------------------------------------------------------------------------------------
TABLE = "| configuration | val loss | Δ |\n|---|---|---|\n| baseline | 4.10 ± 0.01 | — |\n| a\\|b | 4.00 | -0.10 |"


@pytest.fixture
def plot(tmp_path) -> Path:
    import numpy as np
    from PIL import Image

    path = tmp_path / "runs" / "plots" / "loss_vs_tokens.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.full((8, 12, 3), 200, dtype=np.uint8)).save(path)
    return path


def test_report_goes_to_tensorboard_beside_the_runs(tmp_path, plot):
    publish_report(["tensorboard"], tmp_path / "runs", TABLE, [plot, plot.with_suffix(".svg")], quiet_console())
    publish_report(["tensorboard"], tmp_path / "runs", TABLE.replace("4.00", "3.90"), [plot], quiet_console())
    acc = tensorboard_run(tmp_path / "runs" / "tensorboard" / "report")
    (image,) = acc.Tensors("report/loss_vs_tokens")
    width, height, png = image.tensor_proto.string_val
    assert (int(width), int(height)) == (12, 8) and png.startswith(b"\x89PNG")
    assert text(acc, "report/results") == [TABLE.replace("4.00", "3.90")]  # the latest report only


def test_report_goes_to_the_wandb_group(wandb_env, tmp_path, plot):
    from pileablate.trackers.wandb_tracker import markdown_rows

    assert markdown_rows(TABLE) == (["configuration", "val loss", "Δ"],
                                    [["baseline", "4.10 ± 0.01", "—"], ["a|b", "4.00", "-0.10"]])
    publish_report(["wandb"], tmp_path / "runs", TABLE, [plot], quiet_console())
    runs = tmp_path / "runs"
    run_id = json.loads((runs / "wandb" / "pileablate-report.json").read_text())["id"]
    records = wandb_records(runs, run_id)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.run_group, run.display_name) == ("runs", "report")
    (logged,) = wandb_history(records).values()
    assert logged["report/results"]["_type"] == "table-file" and logged["report/results"]["nrows"] == 2
    assert logged["report/loss_vs_tokens"]["_type"] == "image-file"


# ----------------------------------------------------------------------------------------------
# `pileablate train --tracker ...` and `pileablate report --tracker ...` end to end.

def cli(*args):
    from typer.testing import CliRunner

    from pileablate.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_train_option_takes_comma_lists_and_repeats():
    from pileablate.commands.train import train_config_from_args

    cfg = train_config_from_args(["--tracker", "tensorboard", "--tracker", "wandb,tensorboard"])
    assert cfg.trackers == ("tensorboard", "wandb")
    with pytest.raises(UserError, match="unknown tracker"):
        train_config_from_args(["--tracker", "tensorbord"])


def test_train_logs_every_metrics_row_once_across_a_crash_and_a_resume(wandb_env, tmp_path, bytes_store,
                                                                       one_torch_thread):
    """A run logs to TensorBoard and W&B; a crashed session logged steps 5-6 after its checkpoint at 4
    (wrong values); the resumed run shows every step once, with the values metrics.jsonl has."""
    from pileablate.runfolder import read_metrics

    runs = tmp_path / "runs"
    args = ["train", "--data", str(bytes_store), "--runs-dir", str(runs), "--name", "rope-s0", "--mods", "rope",
            "--preset", "nano", "--device", "cpu", "--batch-size", "4", "--eval-tokens", "1024", "--log-every", "1",
            "--eval-every", "3", "--checkpoint-every", "1000", "--tracker", "tensorboard,wandb"]
    first = cli(*args, "--max-steps", "4")
    assert first.exit_code == 0, first.output
    run_dir = runs / "rope-s0"
    next_second()
    with open_tracker(["tensorboard", "wandb"], run_dir=run_dir, run_name="rope-s0", group="runs",
                      group_dir=runs / "tensorboard", config={}, resume_step=4, is_main=True,
                      console=quiet_console()) as crashed:  # the session that died after its checkpoint
        for step in (5, 6):
            crashed.log({"step": step, "tokens": 0, "train_loss": 99.0})
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running", "stop_reason": None}))
    next_second()
    second = cli(*args, "--max-steps", "8")
    assert second.exit_code == 0, second.output

    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 9))
    acc = tensorboard_run(runs / "tensorboard" / "rope-s0")
    for key in ("train_loss", "val_loss", "val_bits_per_byte", "lr", "grad_norm", "tokens", "tokens_per_s"):
        want = {r["step"]: r[key] for r in rows if r.get(key) is not None}
        assert scalars(acc, key) == pytest.approx(want, rel=1e-6), key
    config = json.loads(text(acc, "config")[0].removeprefix("```json\n").removesuffix("\n```"))
    assert config["mods"] == "rope" and len(config["data_fingerprint"]) == 64 and config["params_total"] > 0
    assert "| status | \"finished\" |" in text(acc, "summary")[-1]

    # W&B cannot take a step twice: the resumed session skips what W&B has (5-6, from the crashed
    # session; a real one sent what the resumed session re-trains, as a resume is exact) and sends 7-8.
    history = wandb_history(wandb_records(run_dir, wandb_state(run_dir)["id"]))
    assert sorted(history) == list(range(1, 9))
    for r in rows:
        sent = 99.0 if r["step"] in (5, 6) else r["train_loss"]
        assert history[r["step"]]["loss/train_loss"] == pytest.approx(sent)

    report = cli("report", str(runs), "--tracker", "tensorboard")
    assert report.exit_code == 0, report.output
    acc = tensorboard_run(runs / "tensorboard" / "report")
    assert "| rope |" in text(acc, "report/results")[0]
    assert len(acc.Tensors("report/loss_vs_tokens")) == 1


def test_ablate_sends_its_runs_and_its_report_to_tensorboard(tmp_path, bytes_store, one_torch_thread):
    runs = tmp_path / "runs"
    result = cli("ablate", "--data", str(bytes_store), "--runs-dir", str(runs), "--mods", "rope", "--preset", "nano",
                 "--max-steps", "2", "--eval-every", "2", "--eval-tokens", "1024", "--tracker", "tensorboard")
    assert result.exit_code == 0, (result.output, result.exception)
    for name in ("baseline-s0", "rope-s0"):
        assert tensorboard_run(runs / "tensorboard" / name).Tensors(metric_tag("train_loss"))
    assert "| rope |" in text(tensorboard_run(runs / "tensorboard" / "report"), "report/results")[0]
