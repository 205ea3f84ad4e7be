"""Resume: kill `prepare` (kill -9 or Ctrl-C) mid-run, rerun the same command, get the same store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import jsonl, zstd_frames
from test_prepare import make_texts

from pileablate.data.manifest import read_manifest
from pileablate.data.store import TokenSplit


def _command(url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "pileablate", "prepare", "--source", url, "--tokenizer", "bytes",
            "--out", str(out), "--chunk-tokens", "40k", "--val-rows", "300"]


def _wait_for_commit(process: subprocess.Popen, state: Path, timeout: float = 30.0) -> dict:
    """Wait until the run has committed at least one chunk (and is still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "prepare finished before it could be interrupted"
        if state.is_file():
            data = json.loads(state.read_text())
            if data["splits"]["train"]["parts"]:
                return data
        time.sleep(0.02)
    raise AssertionError("no chunk committed in time")


def _tokens(out: Path) -> dict:
    return {split: TokenSplit(out / split).window(0, TokenSplit(out / split).num_tokens) for split in ("train", "val")}


@pytest.fixture
def slow_source(http_server):
    """About 1.5 MB of JSON lines, zstd in several frames; the "slow" route stops half-way until the
    test releases it, so the run is always interrupted mid-file, however loaded the machine."""
    body = zstd_frames(jsonl({"text": t} for t in make_texts(12_000, 21)), frames=6)
    http_server.routes["/slow/corpus.jsonl.zst"] = body
    http_server.routes["/fast/corpus.jsonl.zst"] = body
    http_server.hold["/slow/corpus.jsonl.zst"] = (len(body) // 2, threading.Event())
    return http_server


@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_run_continues_to_the_identical_store(tmp_path, slow_source, how):
    server = slow_source
    reference = tmp_path / "reference"
    done = subprocess.run(_command(server.url("/fast/corpus.jsonl.zst"), reference), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "interrupted"
    slow_url = server.url("/slow/corpus.jsonl.zst")
    process = subprocess.Popen(_command(slow_url, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = _wait_for_commit(process, out / ".prepare" / "state.json")
    process.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert not (out / "manifest.json").exists()
    if how == "ctrl-c":
        assert process.returncode == 130 and "Traceback" not in stderr
        assert stderr.rstrip().split("\n")[-1].startswith("error: interrupted")
    else:
        assert process.returncode == -signal.SIGKILL
    assert not json.loads((out / ".prepare" / "state.json").read_text())["done"]
    assert len(state["splits"]["train"]["parts"]) >= 1

    # The slow route now serves the whole file at once: only the URL matters to the rerun.
    server.hold.pop("/slow/corpus.jsonl.zst")[1].set()
    again = subprocess.run(_command(slow_url, out), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout + again.stderr

    got, want = read_manifest(out), read_manifest(reference)
    assert got["complete"] and got["splits"]["train"]["rows"] > 0
    for split in ("train", "val"):
        assert [(p["file"], p["rows"], p["tokens"], p["sha256"]) for p in got["splits"][split]["parts"]] == [
            (p["file"], p["rows"], p["tokens"], p["sha256"]) for p in want["splits"][split]["parts"]
        ]
    assert got["fingerprint"] == want["fingerprint"]
    a, b = _tokens(out), _tokens(reference)
    for split in a:
        np.testing.assert_array_equal(a[split], b[split])
    assert len(want["splits"]["train"]["parts"]) > len(state["splits"]["train"]["parts"])
    assert not list(out.rglob("*.tmp"))


def test_rerun_after_completion_changes_nothing(tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl({"text": t} for t in make_texts(500)))
    out = tmp_path / "data"
    from pileablate.cli import main

    for _ in range(2):
        with pytest.raises(SystemExit) as exit_:
            main(["prepare", "-s", str(src), "-t", "bytes", "-o", str(out), "--chunk-tokens", "5k"])
        assert exit_.value.code in (0, None)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        main(["prepare", "-s", str(src), "-t", "bytes", "-o", str(out), "--chunk-tokens", "5k"])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp
    assert "already prepared" in capsys.readouterr().out
    assert os.listdir(out / "train")
