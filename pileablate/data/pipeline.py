"""The parallel part of `prepare`: read -> parse -> tokenize in worker processes, results in input order.

One reader thread streams the sources (network/disk reads and zstd decompression release the GIL)
and hands batches of lines to a pool of worker *processes*, each with its own interpreter and its
own copy of the tokenizer: JSON parsing, the hold-out hash and the per-document bookkeeping hold a
Python lock, so threads of one process stop scaling at a few cores, while processes do not. A
worker sends back one token array per batch (not one object per document), so what crosses
between processes is about the size of the text in and of the tokens out.

Results come back in input order (futures are consumed in the order they were submitted), so the
store is the same whatever the number of workers and the timing. Memory is bounded: at most
`depth` batches (of about 256 kB of text each) are in flight, submitted but not yet consumed.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import numpy as np

from pileablate.data.reading import LineBatch, iter_batches
from pileablate.data.records import held_out, parse_record
from pileablate.data.sources import Source
from pileablate.data.tokenizer import Tokenizer
from pileablate.errors import UserError


@dataclass
class Document:
    tokens: np.ndarray  # store dtype, end-of-text appended
    text_bytes: int
    held_out: bool  # hash hold-out says val (only computed for sources of role "mixed")


# Per line: a Document, a skip reason (str), or None (blank line, or a line of another --task).
Item = Union[Document, str, None]


@dataclass
class BatchResult:
    source_index: int
    first_line: int
    items: list = field(default_factory=list)
    source_done: bool = False  # marker: every line of this source has been delivered before this


@dataclass
class EncodedBatch:
    """What a worker sends back for a batch: every document's tokens in one array, and per line
    None, a skip reason, or (tokens, text bytes, held out) of a document."""

    source_index: int
    first_line: int
    tokens: np.ndarray
    lines: list
    seconds: dict  # CPU seconds this batch cost the worker, by step (see WORKER_STEPS)

    def result(self) -> BatchResult:
        items: list[Item] = []
        start = 0
        for line in self.lines:
            if isinstance(line, tuple):
                n, text_bytes, hold = line
                items.append(Document(self.tokens[start:start + n], text_bytes, hold))
                start += n
            else:
                items.append(line)
        return BatchResult(self.source_index, self.first_line, items)


WORKER_STEPS = ("parse", "hash", "tokenize", "pack")


@dataclass
class Profile:
    """Where the time of a run went (CPU seconds), for `benchmarks/prepare_bench.py`."""

    worker: dict = field(default_factory=lambda: dict.fromkeys(WORKER_STEPS, 0.0))  # summed over workers
    read: float = 0.0  # reader thread: read, decompress, split into lines, hand to the pool
    write: float = 0.0  # main thread: take results in order, route documents, write and commit parts
    commit: float = 0.0  # of `write`: closing part files (fsync, sha256 of each part read back)
    main: float = 0.0  # the whole main process (all its threads) while the pipeline ran
    batches: int = 0
    max_in_flight: int = 0  # most batches submitted and not yet consumed at any time


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


def encode_batch(batch: LineBatch, tokenizer: Tokenizer, dtype: np.dtype, hash_hold_out: bool) -> EncodedBatch:
    """Parse, hash and tokenize the lines of a batch (in a worker process)."""
    clock = time.thread_time
    spent = dict.fromkeys(WORKER_STEPS, 0.0)
    lines: list = []
    arrays: list[np.ndarray] = []
    eot = np.array([tokenizer.eot_id], dtype=dtype)
    for line in batch.lines:
        if line is None or not line.strip():
            lines.append(None)
            continue
        t0 = clock()
        parsed = parse_record(line)
        t1 = clock()
        spent["parse"] += t1 - t0
        if isinstance(parsed, str):
            lines.append(parsed)
            continue
        text, encoded = parsed
        hold = held_out(encoded) if hash_hold_out else False
        t2 = clock()
        ids = tokenizer.encode_array(text)
        t3 = clock()
        spent["hash"] += t2 - t1
        spent["tokenize"] += t3 - t2
        arrays += (ids, eot)
        lines.append((len(ids) + 1, len(encoded), hold))
    t4 = clock()
    # One array for the whole batch: one buffer to send back instead of an object per document.
    tokens = np.concatenate(arrays, dtype=dtype, casting="unsafe") if arrays else np.empty(0, dtype=dtype)
    spent["pack"] += clock() - t4
    return EncodedBatch(batch.source_index, batch.first_line, tokens, lines, spent)


# -- the worker processes ---------------------------------------------------------------------------
_worker: dict = {}


def _exit_with(main_pid: int) -> None:
    """End this worker when the main process ends, however it ends (kill -9 included).

    A worker killed with its parent would otherwise wait for work forever, holding the terminal's (or a
    caller's) stdout and stderr open. A pidfd becomes readable when the process exits.
    """
    try:
        pidfd = os.pidfd_open(main_pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: ask every second instead
        pidfd = None

    def watch() -> None:
        import select

        while True:
            if pidfd is not None:
                select.select([pidfd], [], [])
                os._exit(1)
            time.sleep(1.0)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="pileablate-watch-main", daemon=True).start()


def _start_worker(tokenizer: Tokenizer, dtype: np.dtype, main_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops the pool
    _exit_with(main_pid)
    fix_mmap_threshold()
    _worker.update(tokenizer=tokenizer, dtype=dtype)


def _encode_in_worker(batch: LineBatch, hash_hold_out: bool) -> EncodedBatch:
    return encode_batch(batch, _worker["tokenizer"], _worker["dtype"], hash_hold_out)


def _process_context():
    """forkserver: workers fork from a small server that has imported this module once (cheap to
    start, unlike spawn, and safe in a process with threads, unlike fork). The server is started
    with SIGINT blocked, which its workers inherit: a Ctrl-C that lands while a worker starts up
    cannot print a traceback from it; the main process handles Ctrl-C and stops the pool."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    from multiprocessing import forkserver

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return context


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
        profile: Optional[Profile] = None,
    ):
        self.sources = sources
        self.start_source = start_source
        self.start_line = start_line
        self.workers = max(1, workers)
        self.keep = keep
        self.bytes_read = 0
        self.profile = profile if profile is not None else Profile()
        # Batches submitted and not yet consumed: the queue's size, one the reader holds while it waits
        # for room, one the consumer is taking.
        self.depth = 2 * self.workers + 2
        self.bound = self.depth + 2
        self._in_flight = 0
        self._started: Optional[float] = None
        self._lock = threading.Lock()
        self._skip: set[int] = set()
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=_process_context(), initializer=_start_worker,
                                         initargs=(tokenizer, np.dtype(dtype), os.getpid()))
        self._reader = threading.Thread(target=self._read, name="pileablate-read", daemon=True)

    def skip_source(self, index: int) -> None:
        """Stop reading source `index` (its split is full); the reader moves on to the next one."""
        self._skip.add(index)

    def _count(self, n: int) -> None:
        self.bytes_read += n

    def _flight(self, change: int) -> None:
        with self._lock:
            self._in_flight += change
            self.profile.max_in_flight = max(self.profile.max_in_flight, self._in_flight)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _submit(self, batch: LineBatch, source: Source) -> Future:
        self._flight(+1)
        self.profile.batches += 1
        return self._pool.submit(_encode_in_worker, batch, source.role == "mixed")

    def _read(self) -> None:
        started = time.thread_time()
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
                        if not self._put(("batch", self._submit(batch, source))):
                            return
                finally:
                    batches.close()
                if not self._put(("done", index)):
                    return
            self._put(("end", None))
        except BaseException as err:  # handed to the consumer, which raises it in order
            self._put(("error", err))
        finally:
            self.profile.read += time.thread_time() - started

    def _result(self, future: Future) -> BatchResult:
        try:
            encoded = future.result()
        except BrokenProcessPool:
            raise UserError(
                "a tokenizer worker process died (killed, or out of memory); what was committed is kept: "
                "run the same command again to continue (fewer --workers use less memory)"
            ) from None
        finally:
            self._flight(-1)
        for step, seconds in encoded.seconds.items():
            self.profile.worker[step] += seconds
        return encoded.result()

    def __iter__(self) -> Iterator[BatchResult]:
        fix_mmap_threshold()
        self._started = time.process_time()
        self._reader.start()
        while True:
            kind, value = self._queue.get()
            if kind == "batch":
                yield self._result(value)
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
        if self._started is not None:
            self.profile.main += time.process_time() - self._started
            self._started = None


__all__ = ["Pipeline", "BatchResult", "Document", "EncodedBatch", "Profile", "encode_batch"]
