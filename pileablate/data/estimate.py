"""`prepare --dry-run`: what a prepare will cost (tokens, disk, time), from a measured sample.

The first train (or mixed) source is read for up to `SAMPLE_BYTES` of input, as prepare reads it (the
same download, decompression, record parsing and tokenizer), and three ratios are measured: tokens
per input byte, tokens per document, and the input bytes per second the sample was read and parsed
at (download and decompression: one process per task does that) beside the tokenizer's tokens per CPU
second (shared by the task's workers). The whole input is scaled by the sizes the sources announce,
and cut at the --rows/--tokens limits. Nothing is written. Every number is an estimate from one
sample: sources of other kinds of text (the Pile's subsets differ) tokenize at other rates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from pileablate.data.config import PrepareConfig, available_cores, parse_task
from pileablate.errors import UserError

SAMPLE_BYTES = 8 << 20   # input read from the first source
HOLD_OUT_SHARE = 0.05    # what the hash hold-out sends to val (records.HOLD_OUT_PER_10000)
OFFSET_BYTES = 4         # per document: the Arrow list offset beside its tokens


@dataclass(frozen=True)
class Sample:
    """What reading the start of one source measured."""

    source: str
    input_bytes: int   # as the source is stored (compressed bytes of a .zst)
    documents: int
    tokens: int        # end-of-text tokens included, as the store holds them
    read_s: float      # wall time to read and parse it (download and decompression included)
    tokenize_s: float  # CPU time of the tokenizer

    def per_byte(self) -> float:
        return self.tokens / max(1, self.input_bytes)

    def per_document(self) -> float:
        return self.tokens / max(1, self.documents)


def measure(source, tokenizer, limit: int = SAMPLE_BYTES) -> Sample:
    """Read `source` as prepare does until `limit` input bytes (or its end), then tokenize what was read."""
    from pileablate.data.reading import iter_lines
    from pileablate.data.records import parse_record

    seen = [0]

    def count(n: int) -> None:
        seen[0] += n

    texts = []
    started = time.monotonic()
    for line in iter_lines(source, count):
        parsed = parse_record(line)
        if isinstance(parsed, tuple):
            texts.append(parsed[0])
        if seen[0] >= limit:
            break
    read_s = time.monotonic() - started
    started = time.process_time()
    tokens = sum(len(tokenizer.encode_array(text)) + 1 for text in texts)
    return Sample(source.display_name, seen[0], len(texts), tokens, read_s, time.process_time() - started)


@dataclass(frozen=True)
class Estimate:
    sample: Sample
    input_bytes: int         # of the sources whose size is known
    unknown_sizes: int       # sources that announce none (not counted)
    train_tokens: float
    val_tokens: float
    documents: float
    disk_bytes: float
    read_bytes: float        # the input that will be read (limits stop it early)
    seconds: float
    tasks: int
    workers: int


def estimate(cfg: PrepareConfig, sources, tokenizer, sample: Sample) -> Estimate:
    """Scale the sample to the sources' sizes, cut at the limits, and time it at --task N and --workers."""
    from pileablate.data.store import dtype_for_vocab

    known = [s for s in sources if s.size is not None]
    if not known:
        raise UserError("no source announces its size, so nothing can be scaled; --dry-run needs local files or "
                        "URLs that send Content-Length")
    per_byte, per_doc = sample.per_byte(), sample.per_document()
    val_input = sum(s.size for s in known if s.role == "val")
    train_input = sum(s.size for s in known if s.role == "train")
    mixed_input = sum(s.size for s in known if s.role == "mixed")
    train = (train_input + mixed_input * (1 - HOLD_OUT_SHARE)) * per_byte
    val = (val_input + mixed_input * HOLD_OUT_SHARE) * per_byte
    train = _cut(train, cfg.tokens, cfg.rows, per_doc)
    val = _cut(val, cfg.val_tokens, cfg.val_rows, per_doc)
    # The input read: all of it, unless a limit ends the train split early (val shards are read whole).
    full_train = (train_input + mixed_input * (1 - HOLD_OUT_SHARE)) * per_byte
    read = val_input + (train_input + mixed_input) * (min(1.0, train / full_train) if full_train else 0.0)
    itemsize = 2 if dtype_for_vocab(tokenizer.n_vocab) == "uint16" else 4
    documents = (train + val) / per_doc
    tasks = parse_task(cfg.task)[1] if cfg.task else 1
    workers = cfg.workers or available_cores()
    # A task reads its share of the input in one process, while its workers tokenize: the slower of the two.
    read_rate = sample.input_bytes / max(sample.read_s, 1e-9)
    tokenize_rate = sample.tokens / max(sample.tokenize_s, 1e-9) * workers
    seconds = max(read / tasks / read_rate, (train + val) / tasks / tokenize_rate)
    return Estimate(sample, sum(s.size for s in known), len(sources) - len(known), train, val, documents,
                    (train + val) * itemsize + documents * OFFSET_BYTES, read, seconds, tasks, workers)


def _cut(tokens: float, max_tokens: Optional[int], max_rows: Optional[int], per_doc: float) -> float:
    limits = [tokens] + ([max_tokens] if max_tokens is not None else []) + \
             ([max_rows * per_doc] if max_rows is not None else [])
    return min(limits)


def print_estimate(cfg: PrepareConfig, console) -> Estimate:
    """The dry run of `prepare`: measure, estimate, print; nothing written."""
    from pileablate.data.sources import resolve_sources
    from pileablate.data.tokenizer import load_tokenizer
    from pileablate.report.fmt import format_bytes as _size, format_count as _count, format_seconds

    tokenizer = load_tokenizer(cfg.tokenizer)
    sources = resolve_sources(cfg.sources)
    first = next((s for s in sources if s.role != "val"), sources[0])
    result = estimate(cfg, sources, tokenizer, measure(first, tokenizer))
    s = result.sample
    unknown = f" ({result.unknown_sizes} more of unknown size, not counted)" if result.unknown_sizes else ""
    console.print(f"dry run: {len(sources)} source(s), {_size(result.input_bytes)} of input{unknown}; nothing is "
                  "written", highlight=False)
    console.print(f"measured on the first {_size(s.input_bytes)} of {s.source}: {s.documents:,} documents, "
                  f"{s.tokens:,} tokens ({s.per_byte():.3g} per input byte, {s.per_document():,.0f} per document); "
                  f"read at {_size(s.input_bytes / max(s.read_s, 1e-9))}/s, tokenized at "
                  f"{s.tokens / max(s.tokenize_s, 1e-9):,.0f} tokens per CPU second", highlight=False)
    console.print(f"estimate: ~{_count(result.train_tokens)} train and ~{_count(result.val_tokens)} val tokens in "
                  f"~{_count(result.documents)} documents, ~{_size(result.disk_bytes)} on disk; reading "
                  f"{_size(result.read_bytes)} takes ~{format_seconds(result.seconds)} with {result.tasks} task(s) × "
                  f"{result.workers} worker(s) at the measured rates", highlight=False)
    return result

