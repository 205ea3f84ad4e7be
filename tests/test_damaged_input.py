"""Damaged data and impossible numbers never become a result (issue #21): damaged copies of a small store
are refused in one line naming the file, before any run folder is made; NaN and infinities are refused
by every float option; export's output errors are one line and its files share one mode."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from pileablate.data.store import TokenSplit, write_part
from pileablate.data.verify import MEMO, verify_store
from pileablate.errors import UserError

PART = "train/part-00000.arrow"
NANO = ["--preset", "nano", "--device", "cpu", "--batch-size", "2", "--eval-tokens", "512", "--max-steps", "2"]


@pytest.fixture
def store(tmp_path, bytes_store) -> Path:
    """A private copy of the test store, to damage."""
    copy = tmp_path / "data"
    shutil.copytree(bytes_store, copy, ignore=shutil.ignore_patterns(MEMO))
    return copy


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from pileablate.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def train(capsys, data: Path, runs: Path, *extra) -> tuple[int, str, str]:
    return run_cli(capsys, "train", "--data", data, "--runs-dir", runs, *NANO, *extra)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("damage", ["truncated", "zeroed header", "zeroed footer"])
def test_a_part_that_cannot_be_read_is_named_in_one_line_and_no_run_starts(capsys, tmp_path, store, damage):
    part = store / PART
    data = part.read_bytes()
    if damage == "truncated":
        part.write_bytes(data[: len(data) // 2])
    elif damage == "zeroed header":
        part.write_bytes(bytes(64) + data[64:])
    else:
        part.write_bytes(data[:-64] + bytes(64))
    code, _, err = train(capsys, store, tmp_path / "runs")
    assert_one_line(code, err, str(part), "damaged token part", "rebuild it: delete")
    assert not (tmp_path / "runs").exists()
    # Opened directly (a benchmark, a tool), the part is named too.
    with pytest.raises(UserError, match="damaged token part"):
        TokenSplit(store / "train")


def test_one_flipped_byte_in_a_part_is_refused_before_the_first_step(capsys, tmp_path, store):
    part = store / PART
    flip_byte(part, part.stat().st_size // 2)  # in the middle of the token stream: still readable Arrow
    assert TokenSplit(store / "train").num_tokens > 0  # the structure alone does not show it
    code, _, err = train(capsys, store, tmp_path / "runs")
    assert_one_line(code, err, str(part), "sha256", "rebuild it: delete")
    assert not (tmp_path / "runs").exists()  # no config.json, no metrics: not one step

    code, out, _ = run_cli(capsys, "prepare", "--verify", store)
    assert code == 1 and f"damaged: {part}" in out and "1 of 2 parts damaged" in out


def test_a_sound_store_verifies_and_trains(capsys, tmp_path, store):
    code, out, _ = run_cli(capsys, "prepare", "--verify", store)
    assert code == 0 and "all 2 parts match manifest.json" in out
    code, _, err = train(capsys, store, tmp_path / "runs")
    assert code == 0, err


def test_a_missing_part_is_named(capsys, tmp_path, store):
    (store / PART).unlink()
    code, _, err = train(capsys, store, tmp_path / "runs")
    assert_one_line(code, err, str(store / PART), "missing", "rebuild it: delete")


def test_parts_that_disagree_with_the_manifest_are_one_line(capsys, tmp_path, store):
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["splits"]["train"]["parts"][0]["tokens"] += 7  # the file is intact, the manifest says otherwise
    (store / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = train(capsys, store, tmp_path / "runs")
    assert_one_line(code, err, str(store / PART), "disagree with its manifest")
    assert not (tmp_path / "runs").exists()


def _store_with_id(tmp_path: Path, token: int) -> Path:
    """A store whose manifest matches its part exactly (sha256 included), the part holding `token`."""
    from pileablate.data.verify import sha256_file

    data = tmp_path / "foreign"
    docs = [np.append(np.arange(200) % 256, 256), np.array([1, 2, token, 3, 256]), np.arange(300) % 256]
    splits = {}
    for split in ("train", "val"):
        rows, tokens = write_part(data / split / "part-00000.arrow", docs, "uint16")
        splits[split] = {"parts": [{"file": f"{split}/part-00000.arrow", "rows": rows, "tokens": tokens,
                                    "sha256": sha256_file(data / split / "part-00000.arrow")}]}
    (data / "manifest.json").write_text(json.dumps({"format_version": 1, "vocab_size": 257, "splits": splits}))
    return data


def test_an_id_outside_the_vocabulary_is_found_by_verification(tmp_path):
    data = _store_with_id(tmp_path, 300)
    check = verify_store(data)
    problems = check.problems
    assert len(problems) == 2 and "token id 300" in problems[0] and "vocabulary of 257" in problems[0]
    assert check.summary().startswith(problems[0]) and "and 1 more damaged part: 'pileablate prepare --verify" in check.summary()
    assert verify_store(_store_with_id(tmp_path / "ok", 255)).problems == []


def test_no_batch_carries_an_id_outside_the_vocabulary(tmp_path):
    from pileablate.train.data_loader import BatchLayout, TrainWindows, ValWindows

    data = _store_with_id(tmp_path, 300)
    split = TokenSplit(data / "train")
    windows = TrainWindows(split, 16, BatchLayout(64, 1), seed=0)  # 64 windows of 17 over 506 tokens: one hits it
    with pytest.raises(UserError, match=rf"{data / PART}: token id 300 is outside the tokenizer's vocabulary"):
        windows.micro_batch(0, 0)
    with pytest.raises(UserError, match="token id 300"):
        ValWindows(split, 16, 10_000)
    clean = TokenSplit(_store_with_id(tmp_path / "ok", 255) / "train")
    x, _ = TrainWindows(clean, 16, BatchLayout(64, 1), seed=0).micro_batch(0, 0)
    assert int(x.max()) < 257


def test_a_part_is_hashed_once_per_file_state(tmp_path, store):
    first = verify_store(store)
    assert first.problems == [] and all(p.hashed for p in first.parts)
    again = verify_store(store)
    assert again.problems == [] and not any(p.hashed for p in again.parts)  # the memo vouched for them
    part = store / PART
    st = part.stat()
    time.sleep(0.05)  # past the clock tick of the copy: the change of ctime is visible
    flip_byte(part, st.st_size // 2)
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: the inode's ctime moved
    check = verify_store(store)
    assert [p.hashed for p in check.parts] == [True, False] and "sha256" in check.problems[0]
    # `prepare --verify` hashes everything: bit rot leaves a file's state as it was.
    assert all(p.hashed for p in verify_store(store, rehash=True).parts)


def test_a_store_whose_memo_cannot_be_written_is_verified_every_time(store):
    (store / MEMO).mkdir()  # stands for a read-only store: the memo cannot be replaced
    for _ in range(2):
        check = verify_store(store)
        assert check.problems == [] and all(p.hashed for p in check.parts)


def test_under_torchrun_only_rank_0_hashes(monkeypatch, store):
    import pileablate.data.verify as verify
    import pileablate.train.distributed as distributed
    from pileablate.train.data_loader import verify_training_data
    from pileablate.train.distributed import DistInfo

    def rank0_says(value, info):
        assert value is None  # rank 1 offers nothing of its own
        return "rank 0 found damage"

    monkeypatch.setattr(verify, "verify_store", lambda *a, **k: pytest.fail("rank 1 hashed the store"))
    monkeypatch.setattr(distributed, "share_from_main", rank0_says)
    with pytest.raises(UserError, match="rank 0 found damage"):
        verify_training_data(store, DistInfo(rank=1, world_size=2), None)


# -- numbers -------------------------------------------------------------------------------------------


def _float_options() -> list[tuple[str, str]]:
    import typer.main

    from pileablate.cli import app

    group = typer.main.get_command(app)
    found = [(name, param.opts[0]) for name, command in group.commands.items() for param in command.params
             if param.type_descriptor.annotation is float]
    assert len(found) >= 9  # train's six, ablate's --tune-budget, generate's two (and any added since)
    return found


@pytest.mark.parametrize("command, option", _float_options())
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_option_refuses_non_finite_numbers(capsys, tmp_path, bytes_store, command, option, value):
    args = {"train": ["--data", bytes_store, "--runs-dir", tmp_path / "runs", *NANO],
            "ablate": ["--data", bytes_store, "--runs-dir", tmp_path / "runs", "--preset", "nano", "--dry-run"],
            "generate": [tmp_path / "run"]}.get(command, [tmp_path / "runs"])
    code, _, err = run_cli(capsys, command, *args, f"{option}={value}")
    assert_one_line(code, err, option, "must be a finite number")
    assert not (tmp_path / "runs").exists()


def test_train_lr_nan_leaves_nothing_and_the_plain_command_then_runs(capsys, tmp_path, bytes_store):
    runs = tmp_path / "runs"
    code, _, err = train(capsys, bytes_store, runs, "--lr", "nan")
    assert_one_line(code, err, "--lr nan")
    assert not runs.exists()
    code, _, err = train(capsys, bytes_store, runs)
    assert code == 0, err
    assert json.loads((runs / "baseline-s0" / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("option", ["--lr", "--beta2", "--weight-decay"])
def test_train_options_given_through_ablate_refuse_infinity(capsys, tmp_path, bytes_store, option):
    code, _, err = run_cli(capsys, "ablate", "--data", bytes_store, "--runs-dir", tmp_path / "runs", "--preset",
                           "nano", "--dry-run", option, "inf")
    assert_one_line(code, err, f"{option} inf")
    assert not (tmp_path / "runs").exists()


def test_tune_lr_refuses_infinity(capsys, tmp_path, bytes_store):
    code, _, err = run_cli(capsys, "ablate", "--data", bytes_store, "--runs-dir", tmp_path / "runs", "--preset",
                           "nano", "--dry-run", "--tune-lr", "1e-3,inf")
    assert_one_line(code, err, "--tune-lr")


# -- export -------------------------------------------------------------------------------------------


def _fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    return run


def test_export_to_an_unwritable_place_is_one_line(capsys, tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run_cli(capsys, "export", _fake_run(tmp_path), "--out", tmp_path / "a-file" / "hf")
    assert_one_line(code, err, "--out", "a-file is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_export_into_a_read_only_folder_is_one_line(capsys, tmp_path):
    pytest.importorskip("transformers")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = run_cli(capsys, "export", _fake_run(tmp_path), "--out", locked / "hf")
    assert_one_line(code, err, "not writable")


def test_a_failed_export_write_is_one_line_and_leaves_no_new_file(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    from pileablate.export import hf
    from test_export_hf import make_model

    def disk_full(self, out_dir, **kwargs):
        (Path(out_dir) / "config.json").write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(hf.build_hf_model(make_model(""))), "save_pretrained", disk_full)
    with pytest.raises(UserError, match="No space left on device"):
        hf.export_hf(make_model(""), tmp_path / "hf")
    assert list((tmp_path / "hf").iterdir()) == []


def test_exported_files_share_one_mode(tmp_path):
    pytest.importorskip("transformers")
    from pileablate.export.hf import export_hf
    from test_export_hf import make_model

    export_hf(make_model(""), tmp_path / "hf", eot_id=256)
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "hf").iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o666 & ~mask}, modes


def test_ablate_refuses_a_damaged_store_once_before_any_run(capsys, tmp_path, store):
    flip_byte(store / PART, (store / PART).stat().st_size // 2)
    code, _, err = run_cli(capsys, "ablate", "--data", store, "--runs-dir", tmp_path / "runs", "--mods", "rope",
                           *NANO)
    assert code == 2 and f"error: {store / PART}: its sha256" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*/config.json"))  # no run started


def test_a_manifest_that_does_not_describe_its_parts_is_one_line(capsys, tmp_path, store):
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["splits"]["train"]["parts"][0]["file"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "prepare", "--verify", store)
    assert_one_line(code, err, "manifest.json does not describe its parts")


def test_verifications_that_start_together_hash_each_part_once(monkeypatch, store):
    import threading

    import pileablate.data.verify as verify

    hashed, real = [], verify.sha256_file

    def slow_sha(path, advance=lambda n: None):
        hashed.append(path.name)
        time.sleep(0.2)  # long enough for the other process to arrive meanwhile
        return real(path, advance)

    monkeypatch.setattr(verify, "sha256_file", slow_sha)
    checks = []
    threads = [threading.Thread(target=lambda: checks.append(verify_store(store))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hashed) == 2 and all(c.problems == [] for c in checks)  # two parts, hashed once each
