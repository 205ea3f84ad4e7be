"""Training and validation windows taken from the memory-mapped token store.

Training: every optimizer step draws `global_windows` random windows of `seq_len + 1` tokens (inputs
and their next-token targets) from the train split's token stream, from a generator seeded by
(seed, step) alone. So:
- the data order depends only on --seed and the data: runs that differ in modifications see the same
  batches, step for step;
- the data position is just the step number: resuming at step s continues exactly;
- processes of a distributed run each take a disjoint slice of the same global set of windows, so the
  global batch is the one a single process with the whole batch would see.
Windows may cross document boundaries (documents end with end-of-text, as in GPT-2/nanoGPT). Only the
windows are read from the memory map; the split is never loaded.

Validation: `eval_tokens // seq_len` windows spread evenly over the held-out split, a function of the
data and seq_len only: the same set for every run on the same data.

Prefetching: `BatchPrefetcher` hands the training loop each step's micro-batches on the device, gathered
ahead of the step on CUDA (see the class), and exactly the windows above.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from pileablate.data.store import TokenSplit
from pileablate.errors import UserError


@dataclass(frozen=True)
class BatchLayout:
    """How one optimizer step's windows are split: micro-steps x processes x windows per micro-batch."""

    batch_size: int  # windows per micro-batch per process
    grad_accum: int
    world_size: int = 1
    rank: int = 0

    @property
    def global_windows(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    def slice_for(self, micro_step: int) -> slice:
        """This process's windows of micro-step `micro_step` within the step's global windows."""
        start = (micro_step * self.world_size + self.rank) * self.batch_size
        return slice(start, start + self.batch_size)


def verify_training_data(data_dir, info, console=None) -> None:
    """The store checked against its manifest before training (see pileablate.data.verify): rank 0 does it
    (hashing only parts whose files changed since last time), every rank raises the same one-line error."""
    from pileablate.data.verify import store_problem
    from pileablate.train.distributed import share_from_main

    problem = share_from_main(store_problem(data_dir, console) if info.is_main else None, info)
    if problem:
        raise UserError(problem)


def refuse_foreign_ids(rows: np.ndarray, split: TokenSplit, starts) -> np.ndarray:
    """`rows` (windows starting at `starts`), refused when one holds an id outside the vocabulary: the
    model would index past its embedding. One vectorised max per batch (benchmarks/verify_bench.py)."""
    vocab = split.vocab_size
    if vocab is not None and rows.size and int(rows.max()) >= vocab:
        bad = int(np.argmax(rows.max(axis=1) >= vocab))
        column = int(np.argmax(rows[bad] >= vocab))
        where = split.part_at(int(starts[bad]) + column)
        raise UserError(f"{where}: token id {int(rows[bad, column])} is outside the tokenizer's vocabulary of {vocab} "
                        f"ids; check the store with 'pileablate prepare --verify {split.directory.parent}'")
    return rows


class TrainWindows:
    """Random training windows, addressed by (step, micro-step): stateless, hence exactly resumable."""

    def __init__(self, split: TokenSplit, seq_len: int, layout: BatchLayout, seed: int):
        if split.num_tokens < seq_len + 2:
            raise UserError(f"the train split has {split.num_tokens} tokens, fewer than one window of "
                            f"{seq_len + 1}; prepare more data or lower --seq-len")
        self.split = split
        self.seq_len = seq_len
        self.layout = layout
        self.seed = seed

    def starts(self, step: int) -> np.ndarray:
        """Start offsets of all the step's global windows (identical on every process)."""
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, self.split.num_tokens - self.seq_len, size=self.layout.global_windows)

    def micro_batch(self, step: int, micro_step: int, starts: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) int64 tensors of shape (batch_size, seq_len) for this process."""
        if starts is None:
            starts = self.starts(step)
        mine = starts[self.layout.slice_for(micro_step)]
        rows = refuse_foreign_ids(np.stack([self.split.window(int(s), self.seq_len + 1) for s in mine]), self.split, mine)
        rows = rows.astype(np.int64)
        # Separate contiguous inputs and targets: strided views cost the embedding and the loss a few %.
        return torch.from_numpy(np.ascontiguousarray(rows[:, :-1])), torch.from_numpy(np.ascontiguousarray(rows[:, 1:]))

    def epochs(self, tokens: int) -> float:
        """Passes over the training split that `tokens` training tokens amount to."""
        return tokens / self.split.num_tokens


def val_window_starts(num_tokens: int, seq_len: int, eval_tokens: int) -> np.ndarray:
    """Evenly spread, non-overlapping window starts over the val split (deterministic)."""
    available = (num_tokens - 1) // seq_len
    if available < 1:
        raise UserError(f"the val split has {num_tokens} tokens, fewer than one window of {seq_len + 1}; "
                        "prepare more validation data or lower --seq-len")
    count = max(1, min(eval_tokens // seq_len, available))
    # Spread `count` windows over the `available` non-overlapping slots, evenly.
    slots = np.floor(np.arange(count) * (available / count)).astype(np.int64)
    return slots * seq_len


def tuning_window_starts(num_tokens: int, seq_len: int, eval_tokens: int) -> np.ndarray:
    """Windows for choosing a learning rate: as many as the validation windows, evenly spread over the
    slots those leave free, so that no token a report scores is ever used to choose something."""
    available = (num_tokens - 1) // seq_len
    taken = set((val_window_starts(num_tokens, seq_len, eval_tokens) // seq_len).tolist())
    free = np.array([slot for slot in range(available) if slot not in taken], dtype=np.int64)
    count = len(taken)
    if len(free) < count:
        raise UserError(f"the val split ({num_tokens:,} tokens) cannot hold {count} tuning windows apart from the "
                        f"{count} validation windows; lower --eval-tokens or prepare more validation data")
    return free[np.floor(np.arange(count) * (len(free) / count)).astype(np.int64)] * seq_len


class ValWindows:
    """The fixed validation windows (or, for a learning-rate tuning run, the tuning windows disjoint from
    them), materialised once (eval_tokens is small)."""

    def __init__(self, split: TokenSplit, seq_len: int, eval_tokens: int, tuning: bool = False):
        starts = tuning_window_starts if tuning else val_window_starts
        self.starts = starts(split.num_tokens, seq_len, eval_tokens)
        rows = refuse_foreign_ids(np.stack([split.window(int(s), seq_len + 1) for s in self.starts]), split, self.starts)
        self.data = torch.from_numpy(rows.astype(np.int64))

    @property
    def num_tokens(self) -> int:
        return int(self.data.shape[0] * (self.data.shape[1] - 1))

    def batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        """(inputs, targets) batches of this process's share of the windows (round-robin by rank)."""
        mine = self.data[rank::world_size]
        for i in range(0, mine.shape[0], batch_size):
            chunk = mine[i : i + batch_size]
            yield chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


class BatchPrefetcher:
    """Each step's micro-batches on the training device, prepared ahead of the step.

    `next_step()` returns `[(inputs, targets)] * grad_accum` for steps start_step, start_step + 1, ...:
    exactly `windows.micro_batch(step, micro)`, moved to the device.

    On CUDA a background thread gathers the next steps' windows from the memory map into pinned host
    buffers allocated once and reused (pinning is a costly allocation, not something to do per
    micro-batch), and `next_step()` only queues their non-blocking copies to the GPU: the gather
    happens while the GPU computes, and the device never waits for the memory map. A buffer is refilled
    only once the copies out of it have completed (a CUDA event recorded after them).

    Elsewhere the windows are gathered when asked, in the calling thread: on a CPU, gathering a step
    costs well under 1% of computing it, and a thread would compete with PyTorch's own for the cores.
    `background=True` forces the thread (tests use it to check the threaded path on a CPU).
    """

    def __init__(self, windows: TrainWindows, device: torch.device, start_step: int, grad_accum: int,
                 background: bool | None = None, ahead: int = 2):
        self.windows = windows
        self.device = device
        self.grad_accum = grad_accum
        self.step = start_step  # the step next_step() returns next
        self._thread: threading.Thread | None = None
        if not (device.type == "cuda" if background is None else background):
            return
        shape = (grad_accum, windows.layout.batch_size, windows.seq_len)
        self._free: queue.Queue = queue.Queue()
        for _ in range(ahead):
            self._free.put(_PinnedSlot(shape, pin=device.type == "cuda"))
        self._ready: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(start_step,), name="batch-prefetch", daemon=True)
        self._thread.start()

    def next_step(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The micro-batches of step `self.step`, on the device; then moves on to the following step."""
        step = self.step
        self.step += 1
        if self._thread is None:
            starts = self.windows.starts(step)
            return [tuple(t.to(self.device) for t in self.windows.micro_batch(step, micro, starts))
                    for micro in range(self.grad_accum)]
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        filled_step, slot = item
        assert filled_step == step, (filled_step, step)
        batches = [(self._copy(slot.x[m]), self._copy(slot.y[m])) for m in range(self.grad_accum)]
        slot.mark_copied(self.device)
        self._free.put(slot)
        return batches

    def close(self) -> None:
        """Stop the background thread (if any); safe to call twice."""
        if self._thread is not None:
            self._closing.set()
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _copy(self, host: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return host.to(self.device, non_blocking=True)
        return host.to(self.device, copy=True)  # never a view of a buffer that will be refilled

    def _produce(self, step: int) -> None:
        try:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            while not self._closing.is_set():
                try:
                    slot = self._free.get(timeout=0.1)
                except queue.Empty:
                    continue
                slot.wait_until_copied()
                starts = self.windows.starts(step)
                for micro in range(self.grad_accum):
                    x, y = self.windows.micro_batch(step, micro, starts)
                    slot.x[micro].copy_(x)
                    slot.y[micro].copy_(y)
                self._ready.put((step, slot))
                step += 1
        except BaseException as err:  # the consumer re-raises it from next_step()
            self._ready.put(err)


class _PinnedSlot:
    """Host buffers for one step's micro-batches (pinned on CUDA), and when the copies out of them end."""

    def __init__(self, shape: tuple[int, int, int], pin: bool):
        self.x = torch.empty(shape, dtype=torch.int64, pin_memory=pin)
        self.y = torch.empty(shape, dtype=torch.int64, pin_memory=pin)
        self._copied = None  # torch.cuda.Event, recorded after the copies were queued

    def mark_copied(self, device: torch.device) -> None:
        if device.type == "cuda":
            self._copied = torch.cuda.Event()
            self._copied.record()

    def wait_until_copied(self) -> None:
        if self._copied is not None:
            self._copied.synchronize()
            self._copied = None
