"""benchmarks/gpu_check.py (pileablate.tools.gpu_check): one line and exit 0 without CUDA; its store, runs and table work (on the CPU)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    from pileablate.tools import gpu_check

    return gpu_check


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPT.parent.parent), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "no CUDA GPU" in done.stdout


def test_the_synthetic_store_has_gpt2s_vocabulary_and_a_run_is_measured_from_its_files(tmp_path, gpu_check):
    from pileablate.data.manifest import read_manifest
    from pileablate.data.store import TokenSplit

    data = gpu_check.make_token_store(tmp_path / "data", train_tokens=50_000, val_tokens=5_000, doc_tokens=1000)
    manifest = read_manifest(data)
    assert manifest["vocab_size"] == 50257 and manifest["splits"]["train"]["tokens"] == 50_000
    train = TokenSplit(data / "train")
    tokens = train.window(0, train.num_tokens)
    assert tokens.max() == 50256 and tokens.dtype.name == "uint16" and train.num_documents == 50
    # A short CPU run through the script's own command line, measured from the run's files (a small
    # vocabulary: the GPT-2 one would make a CPU test slow for nothing).
    data = gpu_check.make_token_store(tmp_path / "small", vocab_size=1000, train_tokens=20_000, val_tokens=20_000)
    args = argparse.Namespace(preset="nano", steps=2, warmup=1, device="cpu")
    check = gpu_check.run_training(data, tmp_path / "runs", "baseline", "", False, args, deadline=time.monotonic() + 300)
    assert check.ok, "\n".join(check.log)
    assert check.precision == "fp32" and check.tokens_per_s > 0 and check.mfu is None and check.compile_s is None
    assert not (tmp_path / "runs" / "baseline" / "ckpt").exists()
    failed = gpu_check.Check("small moe --compile", note="exit 1")
    table = gpu_check.format_table([check, failed]).splitlines()
    assert len(table) == 3 and table[0].split()[:2] == ["check", "result"]
    assert " ok " in table[1] and "FAIL: exit 1" in table[2]


def test_the_guard_timing_passes_a_sound_model_and_reports_its_time(gpu_check):
    check = gpu_check.time_guards("nano", "cpu", vocab_size=1000, limit_s=600)
    assert check.ok and check.note == f"{check.wall_s:.2f}s"
    assert not gpu_check.time_guards("nano", "cpu", vocab_size=1000, limit_s=0).ok  # too slow is a failure
