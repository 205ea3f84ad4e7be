"""A full disk costs nothing: the write that fails is one line naming the file (exit 2), no file is
left half written, and the same command run again gives what an undisturbed run gives.

The disk fills in a monkeypatch: ENOSPC at the fsync of a part being written (as a filesystem with
delayed allocation reports it), and half-way through writing a checkpoint."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pileablate.cli import main
from pileablate.data.manifest import read_manifest
from pileablate.runfolder import read_metrics

NO_SPACE = "no space left on device writing {path}; free space and run the same command again (it resumes)"


def _run(args: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of the command in this process."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def _fill_disk_at(monkeypatch, suffix: str, nth: int) -> list[str]:
    """os.fsync of the `nth` file whose name ends with `suffix` fails with ENOSPC; returns those names."""
    fsync, seen = os.fsync, []

    def full(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith(suffix):
            seen.append(name)
            if len(seen) == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    return seen


def test_prepare_on_a_full_disk_is_one_line_and_resumes_to_the_same_store(tmp_path, capsys, monkeypatch):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see which file is synced")

    def prepare(out: Path) -> list[str]:
        return ["prepare", "--source", "sample", "--tokenizer", "bytes", "--out", str(out), "--tokens", "300k",
                "--val-tokens", "20k", "--chunk-tokens", "40k", "--workers", "1"]

    reference = tmp_path / "reference"
    assert _run(prepare(reference), capsys)[0] == 0
    out = tmp_path / "data"
    with monkeypatch.context() as patch:
        seen = _fill_disk_at(patch, ".arrow.tmp", nth=3)
        code, err = _run(prepare(out), capsys)
    failed = Path(seen[-1][:-len(".tmp")])
    assert code == 2
    assert err.splitlines()[-1] == f"error: {NO_SPACE.format(path=failed)}"  # after the progress display
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not failed.exists() and not list(out.rglob("*.tmp"))  # nothing half written

    assert _run(prepare(out), capsys)[0] == 0
    got, want = read_manifest(out), read_manifest(reference)
    assert got["fingerprint"] == want["fingerprint"]
    assert got["splits"] == want["splits"]


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_run_resumes_to_the_same_numbers(tmp_path, bytes_store,
                                                                                         capsys, monkeypatch):
    import torch

    def train(runs: Path) -> list[str]:
        return ["train", "--data", str(bytes_store), "--runs-dir", str(runs), "--preset", "nano", "--device", "cpu",
                "--batch-size", "4", "--eval-tokens", "1024", "--max-steps", "12", "--eval-every", "4",
                "--log-every", "1", "--checkpoint-every", "3", "--mods", "rope"]

    reference = tmp_path / "reference"
    assert _run(train(reference), capsys)[0] == 0

    runs = tmp_path / "runs"
    checkpoint = runs / "rope-s0" / "ckpt" / "latest.pt"
    save, saved = torch.save, []

    def half_then_full(obj, f, *args, **kwargs):
        saved.append(obj["progress"]["step"])
        if len(saved) == 2:  # the disk fills half-way through the second checkpoint (step 6)
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, f, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", half_then_full)
        code, err = _run(train(runs), capsys)
    assert code == 2
    assert err.splitlines()[-1] == f"error: {NO_SPACE.format(path=checkpoint)}"
    assert "Traceback" not in err
    assert torch.load(checkpoint, weights_only=True)["progress"]["step"] == 3  # the last whole checkpoint
    assert [p.name for p in checkpoint.parent.iterdir()] == ["latest.pt"]  # the half-written one is gone
    assert json.loads((runs / "rope-s0" / "summary.json").read_text())["status"] == "running"  # not "crashed"

    assert _run(train(runs), capsys)[0] == 0  # the same command resumes
    want, got = read_metrics(reference / "rope-s0"), read_metrics(runs / "rope-s0")
    assert [r["step"] for r in got] == list(range(1, 13))
    assert [(r["train_loss"], r.get("val_loss")) for r in got] == [(r["train_loss"], r.get("val_loss")) for r in want]


def test_a_full_disk_in_a_jobs_worker_reaches_the_parent_as_the_same_error(tmp_path, monkeypatch):
    """`ablate --jobs N`: the worker says which write failed (a run left resumable, not failed) and the
    parent raises it as its own, for the CLI's one line."""
    from pileablate.ablate import parallel
    from pileablate.train.config import TrainConfig

    target = tmp_path / "runs" / "rope-s0" / "ckpt" / "latest.pt"

    def full(cfg, console=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr("pileablate.train.trainer.train", full)
    code, reason = parallel._train_one(TrainConfig(), str(tmp_path / "train.log"))
    assert code == parallel.WRITE_FAILED
    assert OSError(*reason).filename == str(target) and OSError(*reason).errno == errno.ENOSPC
