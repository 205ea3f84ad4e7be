"""Benchmark `pileablate prepare`: throughput against bare tiktoken, and memory against input size.

Measured side by side in one run, on the same documents (the Python standard library's source as
Pile records, in a multi-frame .jsonl.zst file), with a real byte-level BPE learned offline here
(tiktoken cannot download its encodings on this machine):

1. ceiling: tokens/s of `tiktoken.Encoding.encode_ordinary_batch` over the documents already in
   memory, one thread per core;
2. prepare: end-to-end tokens/s of `prepare` on the file (read, decompress, parse, tokenize, write
   Arrow parts, manifest), in a fresh process;
3. peak RSS of `prepare` (its process's VmHWM) on the input and on 10x the input.

Throughput is timed on `--copies` copies of the stdlib (about 9 M tokens each, so a timed run lasts
several seconds rather than two), after one untimed warm-up, in `--repeats` interleaved rounds whose
order rotates; medians are reported, with every run and the CPU-seconds each side spent, because on
a shared or virtual machine the speed of the same work swings by tens of percent from run to run.

Targets: prepare >= 0.8x the ceiling; RSS(10x) <= 1.15x RSS(1x) and < 1 GiB.
Usage: .venv/bin/python benchmarks/prepare_bench.py [--copies 4] [--repeats 7] [--scale 10] [--vocab 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the BPE learner lives with the tests
from helpers.bpe import learn_bpe, write_tiktoken_file  # noqa: E402

from pileablate.data.config import available_cores  # noqa: E402
from pileablate.data.sources import sample_files, stdlib_dir  # noqa: E402
from pileablate.data.tokenizer import load_tokenizer  # noqa: E402

FRAME_BYTES = 8 << 20  # like the Pile's files: many frames per file

RUN_PREPARE = """
import json, os, sys, time
from pathlib import Path
from pileablate.data.config import PrepareConfig
from pileablate.data.prepare import prepare
source, tokenizer, out, workers = sys.argv[1:5]
start, cpu = time.perf_counter(), os.times()
m = prepare(PrepareConfig(sources=[source], tokenizer=tokenizer, out=Path(out), val_rows=None,
                          workers=int(workers) or None))
seconds = time.perf_counter() - start
cpu_seconds = sum(os.times()[:2]) - sum(cpu[:2])
rows = sum(s["rows"] for s in m["splits"].values())
tokens = sum(s["tokens"] for s in m["splits"].values())
# VmHWM: this process's peak resident set since exec (ru_maxrss would also count the parent's
# memory at fork time).
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "rows": rows, "text_tokens": tokens - rows,
                  "peak_rss_bytes": hwm}))
"""


def documents() -> list[str]:
    texts = []
    for path in sample_files():
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            texts.append(text)
    return texts


def corpus(texts: list[str], copies: int) -> Iterator[str]:
    """The documents of a `copies`-times input; copy i of a text is prefixed so copies differ."""
    if copies == 1:
        yield from texts
        return
    for copy in range(copies):
        for text in texts:
            yield f"# copy {copy}\n{text}"


def write_corpus(path: Path, texts: list[str], copies: int) -> int:
    """`corpus(texts, copies)` as JSON lines, zstd in frames of FRAME_BYTES."""
    compressor = zstandard.ZstdCompressor(level=3)
    size = 0
    with open(path, "wb") as f:
        buffer = bytearray()
        for body in corpus(texts, copies):
            buffer += json.dumps({"text": body, "meta": {"pile_set_name": "Github"}}).encode() + b"\n"
            if len(buffer) >= FRAME_BYTES:
                f.write(compressor.compress(bytes(buffer)))
                size += len(buffer)
                buffer.clear()
        if buffer:
            f.write(compressor.compress(bytes(buffer)))
            size += len(buffer)
    return size


def run_prepare(source: Path, tokenizer: Path, out: Path, workers: int = 0) -> dict:
    """prepare in a fresh process, which reports its time, CPU time, tokens and its own peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-c", RUN_PREPARE, str(source), str(tokenizer), str(out), str(workers)],
                          capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"prepare failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(work) -> tuple[float, float, int]:
    """(seconds, CPU-seconds of this process, tokens) of work() -> tokens."""
    started, cpu = time.perf_counter(), os.times()
    tokens = work()
    return time.perf_counter() - started, sum(os.times()[:2]) - sum(cpu[:2]), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the stdlib in the throughput input")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved throughput runs of each side (median kept)")
    parser.add_argument("--scale", type=int, default=10, help="the large input of the memory test is this many copies")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size learned for the benchmark")
    parser.add_argument("--workers", type=int, default=0, help="prepare's --workers (0: its default)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pileablate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cores = available_cores()
    bench_started = time.perf_counter()

    texts = documents()
    bpe = work / f"stdlib-{args.vocab}.tiktoken"
    if not bpe.exists():
        started = time.perf_counter()
        train = [p.read_text(encoding="utf-8", errors="ignore") for p in sorted(stdlib_dir().glob("*.py"))]
        write_tiktoken_file(learn_bpe(train, args.vocab), bpe)
        print(f"learned a {args.vocab}-token byte-level BPE on {sum(map(len, train)) / 1e6:.1f} MB of stdlib "
              f"source in {time.perf_counter() - started:.0f} s -> {bpe}", file=sys.stderr)
    encoding = load_tokenizer(str(bpe)).encoding
    small, large = work / "x1.jsonl.zst", work / f"x{args.scale}.jsonl.zst"
    throughput_file = work / f"x{args.copies}.jsonl.zst"
    small_bytes = write_corpus(small, texts, 1)
    large_bytes = write_corpus(large, texts, args.scale)
    throughput_bytes = write_corpus(throughput_file, texts, args.copies) if args.copies not in (1, args.scale) else (
        small_bytes if args.copies == 1 else large_bytes)
    docs = list(corpus(texts, args.copies))  # exactly the documents in throughput_file, in memory

    def ceiling() -> int:
        return sum(len(t) for t in encoding.encode_ordinary_batch(docs, num_threads=cores))

    def numpy_path() -> int:
        # The call prepare itself makes (no Python list per document), threaded the same way.
        with ThreadPoolExecutor(cores) as pool:
            return sum(len(a) for a in pool.map(lambda t: encoding.encode_to_numpy(t, disallowed_special=()), docs))

    def end_to_end() -> tuple[float, float, int]:
        result = run_prepare(throughput_file, bpe, work / "out-throughput", args.workers)
        return result["seconds"], result["cpu_seconds"], result["text_tokens"]

    sides = {
        "ceiling": lambda: timed(ceiling),
        "numpy": lambda: timed(numpy_path),
        "prepare": end_to_end,
    }
    # One untimed round: thread pools, page faults of the first large allocations, file cache.
    tokens = {name: run()[2] for name, run in sides.items()}
    assert len(set(tokens.values())) == 1, f"the sides saw different tokens: {tokens}"
    tokens = tokens["ceiling"]
    rates = {name: [] for name in sides}
    cpu_per_token = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.repeats):
        for name in names[r % 3:] + names[: r % 3]:  # rotate so no side always runs first in a round
            seconds, cpu_seconds, counted = sides[name]()
            assert counted == tokens, (name, counted, tokens)
            rates[name].append(tokens / seconds)
            cpu_per_token[name].append(cpu_seconds / tokens)
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{n} {rates[n][-1] / 1e6:.2f}" for n in names)
              + " M tokens/s", file=sys.stderr)
    result_small = run_prepare(small, bpe, work / "out-x1", args.workers)
    result_large = run_prepare(large, bpe, work / f"out-x{args.scale}", args.workers)
    rss_small, rss_large = result_small["peak_rss_bytes"], result_large["peak_rss_bytes"]

    # Medians over interleaved repeats: on a shared or virtual machine single runs swing by tens of percent.
    med = {name: statistics.median(values) for name, values in rates.items()}
    ratio = med["prepare"] / med["ceiling"]
    paired = statistics.median(p / c for p, c in zip(rates["prepare"], rates["ceiling"]))
    cpu_med = {name: statistics.median(values) * 1e6 for name, values in cpu_per_token.items()}
    rss_ratio = rss_large / rss_small
    rows = [
        ("documents", f"{len(texts):,} (Python stdlib source), {small_bytes / 1e6:.1f} MB of JSON lines", ""),
        ("throughput input", f"{args.copies} copies: {len(docs):,} documents, {throughput_bytes / 1e6:.0f} MB, "
                             f"{tokens / 1e6:.1f} M tokens", ""),
        ("tokenizer", f"byte-level BPE, {args.vocab:,} tokens, learned offline", ""),
        ("cores", str(cores), ""),
        ("ceiling: tiktoken encode_ordinary_batch, in memory", f"{med['ceiling'] / 1e6:.2f} M tokens/s", ""),
        ("prepare end to end (.jsonl.zst -> Arrow)", f"{med['prepare'] / 1e6:.2f} M tokens/s", ""),
        ("prepare / ceiling (medians)", f"{ratio:.2f}", "PASS" if ratio >= 0.8 else "MISS (target >= 0.80)"),
        ("prepare / ceiling (median of per-round ratios)", f"{paired:.2f}", ""),
        ("bare tiktoken encode_to_numpy, threaded, in memory", f"{med['numpy'] / 1e6:.2f} M tokens/s", ""),
        ("prepare / that (what the pipeline itself costs)", f"{med['prepare'] / med['numpy']:.2f}", ""),
        ("CPU-seconds per M tokens: ceiling, numpy, prepare",
         f"{cpu_med['ceiling']:.2f}, {cpu_med['numpy']:.2f}, {cpu_med['prepare']:.2f}", ""),
        (f"peak RSS, 1x input ({small_bytes / 1e6:.0f} MB)", f"{rss_small / 2**20:.0f} MiB", ""),
        (f"peak RSS, {args.scale}x input ({large_bytes / 1e6:.0f} MB, "
         f"{result_large['text_tokens'] / 1e6:.0f} M tokens)", f"{rss_large / 2**20:.0f} MiB",
         "PASS" if rss_large < 2**30 else "MISS (target < 1 GiB)"),
        (f"RSS {args.scale}x / 1x", f"{rss_ratio:.2f}", "PASS" if rss_ratio <= 1.15 else "MISS (target <= 1.15)"),
        ("runs (M tokens/s): ceiling", " ".join(f"{x / 1e6:.2f}" for x in rates["ceiling"]), ""),
        ("runs (M tokens/s): prepare", " ".join(f"{x / 1e6:.2f}" for x in rates["prepare"]), ""),
        ("runs (M tokens/s): encode_to_numpy", " ".join(f"{x / 1e6:.2f}" for x in rates["numpy"]), ""),
        ("benchmark time", f"{time.perf_counter() - bench_started:.0f} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:<28} {verdict}".rstrip())
    print(json.dumps({"ceiling_tokens_per_s": med["ceiling"], "prepare_tokens_per_s": med["prepare"],
                      "ratio": ratio, "paired_ratio": paired, "rss_1x": rss_small, f"rss_{args.scale}x": rss_large,
                      "rss_ratio": rss_ratio, "numpy_path_tokens_per_s": med["numpy"],
                      "cpu_seconds_per_m_tokens": cpu_med, "tokens_per_run": tokens, "all_runs": rates}))


if __name__ == "__main__":
    main()
