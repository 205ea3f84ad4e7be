"""The parallel part of `prepare`: read -> parse -> tokenize, on all cores, results kept in order.

One reader thread streams the sources (network/disk reads and zstd decompression release the GIL)
and hands batches of lines to a pool of worker threads, which parse the JSON and tokenize
(tiktoken's Rust core releases the GIL, so threads use every core without copying text between
processes). Results come back in input order, so the store is the same whatever the timing.
Memory is bounded by the queue: at most `depth` batches of about 1 MB are in flight.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import numpy as np

from pileablate.data.reading import LineBatch, SourceError, iter_batches
from pileablate.data.records import held_out, parse_record
from pileablate.data.sources import Source
from pileablate.data.tokenizer import Tokenizer


@dataclass
class Document:
    tokens: np.ndarray  # store dtype, end-of-text appended
    text_bytes: int
    held_out: bool  # hash hold-out says val (only computed for sources of role "mixed")


# Per line: a Document, a skip reason (str), or None (blank line, or a line of another --part).
Item = Union[Document, str, None]


@dataclass
class BatchResult:
    source_index: int
    first_line: int
    items: list = field(default_factory=list)
    source_done: bool = False  # marker: every line of this source has been delivered before this


_M_MMAP_THRESHOLD = -3  # mallopt(3) parameter number in glibc's malloc.h
LARGE_ALLOCATION = 1 << 20


def fix_mmap_threshold() -> bool:
    """Keep glibc returning large blocks (document texts, token arrays) to the OS when freed.

    glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), after which
    documents of a few hundred KB land in the per-thread malloc arenas and fragment them: the resident
    set then creeps up with the amount of input. A fixed threshold (mallopt(3)) keeps memory flat.
    A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION))
    except (OSError, AttributeError):
        return False


def tokenize_batch(batch: LineBatch, tokenizer: Tokenizer, dtype: np.dtype, hash_hold_out: bool) -> BatchResult:
    items: list[Item] = []
    eot = tokenizer.eot_id
    for line in batch.lines:
        if line is None or not line.strip():
            items.append(None)
            continue
        parsed = parse_record(line)
        if isinstance(parsed, str):
            items.append(parsed)
            continue
        text, encoded = parsed
        ids = tokenizer.encode_array(text)
        tokens = np.empty(len(ids) + 1, dtype=dtype)
        tokens[:-1] = ids
        tokens[-1] = eot
        items.append(Document(tokens, len(encoded), held_out(encoded) if hash_hold_out else False))
    return BatchResult(batch.source_index, batch.first_line, items)


class Pipeline:
    """Iterate `BatchResult`s in input order from `sources[start_source]` line `start_line` on."""

    def __init__(
        self,
        sources: list[Source],
        start_source: int,
        start_line: int,
        tokenizer: Tokenizer,
        dtype: np.dtype,
        workers: int,
        keep: Callable[[int], Optional[Callable[[int], bool]]] = lambda i: None,
    ):
        self.sources = sources
        self.start_source = start_source
        self.start_line = start_line
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.workers = max(1, workers)
        self.keep = keep
        self.bytes_read = 0
        self._skip: set[int] = set()
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=2 * self.workers + 2)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pileablate-tokenize")
        self._reader = threading.Thread(target=self._read, name="pileablate-read", daemon=True)

    def skip_source(self, index: int) -> None:
        """Stop reading source `index` (its split is full); the reader moves on to the next one."""
        self._skip.add(index)

    def _count(self, n: int) -> None:
        self.bytes_read += n

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for index in range(self.start_source, len(self.sources)):
                if self._stop.is_set():
                    return
                if index in self._skip:
                    continue
                source = self.sources[index]
                first = self.start_line if index == self.start_source else 0
                batches = iter_batches(source, index, first, self._count, self.keep(index))
                try:
                    for batch in batches:
                        if self._stop.is_set() or index in self._skip:
                            break
                        future = self._pool.submit(tokenize_batch, batch, self.tokenizer, self.dtype, source.role == "mixed")
                        if not self._put(("batch", future)):
                            return
                finally:
                    batches.close()
                if not self._put(("done", index)):
                    return
            self._put(("end", None))
        except BaseException as err:  # handed to the consumer, which raises it in order
            self._put(("error", err))

    def __iter__(self) -> Iterator[BatchResult]:
        fix_mmap_threshold()
        self._reader.start()
        while True:
            kind, value = self._queue.get()
            if kind == "batch":
                yield value.result()
            elif kind == "done":
                yield BatchResult(value, 0, [], source_done=True)
            elif kind == "end":
                return
            else:
                raise value

    def close(self) -> None:
        self._stop.set()
        # Drain so a reader blocked on a full queue sees the stop flag; drop pending work.
        while True:
            try:
                kind, value = self._queue.get_nowait()
                if kind == "batch" and isinstance(value, Future):
                    value.cancel()
            except queue.Empty:
                break
        if self._reader.is_alive():
            self._reader.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Pipeline", "BatchResult", "Document", "SourceError", "tokenize_batch"]
