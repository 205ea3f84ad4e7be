"""Benchmark what checking a token store costs: hashing its parts, and the per-batch vocabulary check.

Measured side by side in one run, on a store prepared here (the Python standard library's source,
`bytes` tokenizer, `--tokens` train tokens):

1. hashing: MB/s of sha256 over the part files, of the token-id pass (largest id per part), and of a
   whole `verify_store` with an empty memo; then the time `verify_store` takes when the memo vouches
   for every part (what each training start pays after the first);
2. per batch: `TrainWindows.micro_batch` with the id check and without it (the check replaced by the
   identity), `--rounds` interleaved rounds of `--batches` micro-batches each, plus the check alone.

Medians are reported. Targets: no difference side by side in gathering a batch (the check alone a few
microseconds, against milliseconds for a training step); a start with a vouched-for store in milliseconds.
Usage: .venv/bin/python benchmarks/verify_bench.py [--tokens 8M] [--batch-size 16] [--seq-len 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.stores import prepare_for_tests  # noqa: E402

from pileablate.data import verify  # noqa: E402
from pileablate.data.store import TokenSplit  # noqa: E402
from pileablate.train import data_loader  # noqa: E402
from pileablate.units import parse_count  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def hashing(store: Path) -> None:
    parts = sorted(store.glob("*/part-*.arrow"))
    size = sum(p.stat().st_size for p in parts)
    for p in parts:  # page cache warm, as for a store just prepared or used
        p.read_bytes()
    sha = statistics.median(_timed(lambda: [verify.sha256_file(p) for p in parts]) for _ in range(3))
    ids = statistics.median(_timed(lambda: [verify.max_token_id(p) for p in parts]) for _ in range(3))
    (store / verify.MEMO).unlink(missing_ok=True)
    cold = _timed(lambda: verify.verify_store(store))
    warm = statistics.median(_timed(lambda: verify.verify_store(store)) for _ in range(5))
    print(f"store: {len(parts)} parts, {size / 1e6:.1f} MB")
    print(f"sha256:            {size / sha / 1e6:8.0f} MB/s")
    print(f"token-id pass:     {size / ids / 1e6:8.0f} MB/s")
    print(f"verify (no memo):  {size / cold / 1e6:8.0f} MB/s  ({cold * 1e3:.0f} ms)")
    print(f"verify (memo):     {warm * 1e3:8.2f} ms  (every start after the first)")


def per_batch(store: Path, batch_size: int, seq_len: int, rounds: int, batches: int) -> None:
    split = TokenSplit(store / "train")
    windows = data_loader.TrainWindows(split, seq_len, data_loader.BatchLayout(batch_size, 1), seed=0)
    checked = data_loader.refuse_foreign_ids

    def gather(with_check: bool) -> float:
        data_loader.refuse_foreign_ids = checked if with_check else (lambda rows, split, starts: rows)
        try:
            return _timed(lambda: [windows.micro_batch(step, 0) for step in range(batches)]) / batches
        finally:
            data_loader.refuse_foreign_ids = checked

    gather(True)  # warm-up
    on, off = [], []
    for r in range(rounds):
        for with_check in ((True, False) if r % 2 == 0 else (False, True)):
            (on if with_check else off).append(gather(with_check))
    starts = windows.starts(0)[:batch_size]
    rows = np.stack([split.window(int(s), seq_len + 1) for s in starts])
    alone = statistics.median(_timed(lambda: [checked(rows, split, starts) for _ in range(1000)]) / 1000
                              for _ in range(5))
    a, b = statistics.median(on), statistics.median(off)
    print(f"micro-batch {batch_size}x{seq_len + 1}: {a * 1e6:.0f} us with the id check, {b * 1e6:.0f} us without "
          f"({a / b:.3f}x); the check alone {alone * 1e6:.1f} us ({alone / b:.2%} of a batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="8M")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "data"
        prepare_for_tests(store, train_tokens=parse_count(args.tokens, "--tokens"), val_tokens=100_000)
        hashing(store)
        per_batch(store, args.batch_size, args.seq_len, args.rounds, args.batches)


if __name__ == "__main__":
    main()
