"""Benchmark `pileablate prepare`: throughput against bare tiktoken, and memory against input size.

Measured side by side in one run, on the same documents (the Python standard library's source as
Pile records, in a multi-frame .jsonl.zst file), with a real byte-level BPE learned offline here
(tiktoken cannot download its encodings on this machine):

1. ceiling: tokens/s of `tiktoken.Encoding.encode_ordinary_batch` over the documents already in
   memory, one thread per core;
2. prepare: end-to-end tokens/s of `prepare` on the file (read, decompress, parse, tokenize, write
   Arrow parts, manifest), in a fresh process;
3. peak RSS of `prepare` (its process's VmHWM) on the input and on 10x the input.

Targets: prepare >= 0.8x the ceiling; RSS(10x) <= 1.15x RSS(1x) and < 1 GiB.
Usage: .venv/bin/python benchmarks/prepare_bench.py [--scale 10] [--vocab 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zstandard

from pileablate.data.bpe import learn_bpe, write_tiktoken_file
from pileablate.data.config import available_cores
from pileablate.data.sources import sample_files, stdlib_dir
from pileablate.data.tokenizer import load_tokenizer

FRAME_BYTES = 8 << 20  # like the Pile's files: many frames per file

RUN_PREPARE = """
import json, sys, time
from pathlib import Path
from pileablate.data.config import PrepareConfig
from pileablate.data.prepare import prepare
source, tokenizer, out = sys.argv[1:4]
start = time.perf_counter()
m = prepare(PrepareConfig(sources=[source], tokenizer=tokenizer, out=Path(out), val_rows=None))
seconds = time.perf_counter() - start
rows = sum(s["rows"] for s in m["splits"].values())
tokens = sum(s["tokens"] for s in m["splits"].values())
# VmHWM: this process's peak resident set since exec (ru_maxrss would also count the parent's
# memory at fork time).
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
print(json.dumps({"seconds": seconds, "rows": rows, "text_tokens": tokens - rows, "peak_rss_bytes": hwm}))
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


def write_corpus(path: Path, texts: list[str], copies: int) -> int:
    """JSON lines, zstd in frames of FRAME_BYTES; copy i of a text is prefixed so copies differ."""
    compressor = zstandard.ZstdCompressor(level=3)
    size = 0
    with open(path, "wb") as f:
        buffer = bytearray()
        for copy in range(copies):
            for text in texts:
                body = text if copies == 1 else f"# copy {copy}\n{text}"
                buffer += json.dumps({"text": body, "meta": {"pile_set_name": "Github"}}).encode() + b"\n"
                if len(buffer) >= FRAME_BYTES:
                    f.write(compressor.compress(bytes(buffer)))
                    size += len(buffer)
                    buffer.clear()
        if buffer:
            f.write(compressor.compress(bytes(buffer)))
            size += len(buffer)
    return size


def run_prepare(source: Path, tokenizer: Path, out: Path) -> dict:
    """prepare in a fresh process, which reports its time, tokens and its own peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-c", RUN_PREPARE, str(source), str(tokenizer), str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"prepare failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10, help="the large input is this many copies of the small one")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size learned for the benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved throughput runs of each side (median kept)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pileablate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cores = available_cores()

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
    small_bytes = write_corpus(small, texts, 1)
    large_bytes = write_corpus(large, texts, args.scale)

    ceiling, numpy_path, end_to_end = [], [], []
    for r in range(args.repeats):
        started = time.perf_counter()
        tokens = sum(len(t) for t in encoding.encode_ordinary_batch(texts, num_threads=cores))
        ceiling.append(tokens / (time.perf_counter() - started))
        # The call prepare itself makes (no Python list per document), threaded the same way.
        started = time.perf_counter()
        with ThreadPoolExecutor(cores) as pool:
            arrays = list(pool.map(lambda t: encoding.encode_to_numpy(t, disallowed_special=()), texts))
        numpy_path.append(sum(len(a) for a in arrays) / (time.perf_counter() - started))
        del arrays
        result = run_prepare(small, bpe, work / f"out-x1-{r}")
        assert result["text_tokens"] == tokens, (result, tokens)
        end_to_end.append(result["text_tokens"] / result["seconds"])
        rss_small = result["peak_rss_bytes"]
    result_large = run_prepare(large, bpe, work / f"out-x{args.scale}")
    rss_large = result_large["peak_rss_bytes"]

    # Medians over interleaved repeats: on a shared machine single runs swing by tens of percent.
    best_ceiling, best_prepare, best_numpy = (statistics.median(x) for x in (ceiling, end_to_end, numpy_path))
    ratio = best_prepare / best_ceiling
    rss_ratio = rss_large / rss_small
    rows = [
        ("documents", f"{len(texts):,} (Python stdlib source), {small_bytes / 1e6:.1f} MB of JSON lines", ""),
        ("tokenizer", f"byte-level BPE, {args.vocab:,} tokens, learned offline", ""),
        ("cores", str(cores), ""),
        ("ceiling: tiktoken encode_ordinary_batch, in memory", f"{best_ceiling / 1e6:.2f} M tokens/s", ""),
        ("prepare end to end (.jsonl.zst -> Arrow)", f"{best_prepare / 1e6:.2f} M tokens/s", ""),
        ("prepare / ceiling", f"{ratio:.2f}", "PASS" if ratio >= 0.8 else "MISS (target >= 0.80)"),
        ("bare tiktoken encode_to_numpy, threaded, in memory", f"{best_numpy / 1e6:.2f} M tokens/s", ""),
        ("prepare / that (what the pipeline itself costs)", f"{best_prepare / best_numpy:.2f}", ""),
        (f"peak RSS, 1x input ({small_bytes / 1e6:.0f} MB)", f"{rss_small / 2**20:.0f} MiB", ""),
        (f"peak RSS, {args.scale}x input ({large_bytes / 1e6:.0f} MB, "
         f"{result_large['text_tokens'] / 1e6:.0f} M tokens)", f"{rss_large / 2**20:.0f} MiB",
         "PASS" if rss_large < 2**30 else "MISS (target < 1 GiB)"),
        (f"RSS {args.scale}x / 1x", f"{rss_ratio:.2f}", "PASS" if rss_ratio <= 1.15 else "MISS (target <= 1.15)"),
        ("runs (M tokens/s): ceiling", " ".join(f"{x / 1e6:.2f}" for x in ceiling), ""),
        ("runs (M tokens/s): prepare", " ".join(f"{x / 1e6:.2f}" for x in end_to_end), ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:<28} {verdict}".rstrip())
    print(json.dumps({"ceiling_tokens_per_s": best_ceiling, "prepare_tokens_per_s": best_prepare,
                      "ratio": ratio, "rss_1x": rss_small, f"rss_{args.scale}x": rss_large, "rss_ratio": rss_ratio,
                      "numpy_path_tokens_per_s": best_numpy,
                      "all_runs": {"ceiling": ceiling, "numpy_path": numpy_path, "prepare": end_to_end}}))


if __name__ == "__main__":
    main()
