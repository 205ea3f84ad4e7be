"""Batches prepared ahead of the step are exactly the batches the windows define, in order."""

from __future__ import annotations

import threading

import pytest
import torch

from pileablate.data.store import TokenSplit
from pileablate.train.data_loader import BatchLayout, BatchPrefetcher, TrainWindows


def _windows(bytes_store, grad_accum: int) -> TrainWindows:
    # Rank 1 of 2: each process prefetches its own slice of the step's windows.
    return TrainWindows(TokenSplit(bytes_store / "train"), 32, BatchLayout(4, grad_accum, 2, 1), seed=3)


@pytest.mark.parametrize("background", [False, True], ids=["in-line", "thread"])
@pytest.mark.parametrize("grad_accum", [1, 3])
def test_prefetched_steps_are_the_direct_micro_batches_in_order(bytes_store, background, grad_accum):
    windows = _windows(bytes_store, grad_accum)
    steps = range(5, 15)  # more steps than buffers: each buffer is refilled several times
    with BatchPrefetcher(windows, torch.device("cpu"), 5, grad_accum, background=background) as prefetcher:
        got = [prefetcher.next_step() for _ in steps]  # all kept: none may change when a buffer is refilled
    for step, batches in zip(steps, got):
        assert len(batches) == grad_accum
        for micro, (x, y) in enumerate(batches):
            want_x, want_y = windows.micro_batch(step, micro)
            assert x.dtype == torch.int64 and torch.equal(x, want_x) and torch.equal(y, want_y)


def test_the_background_thread_ends_on_close(bytes_store):
    prefetcher = BatchPrefetcher(_windows(bytes_store, 2), torch.device("cpu"), 0, 2, background=True)
    prefetcher.next_step()
    prefetcher.close()
    prefetcher.close()
    assert not any(t.name == "batch-prefetch" and t.is_alive() for t in threading.enumerate())


def test_a_failure_while_prefetching_is_raised_by_the_step_that_needs_it(bytes_store, monkeypatch):
    windows = _windows(bytes_store, 1)
    original = windows.micro_batch

    def micro_batch(step, micro, starts=None):
        if step == 2:
            raise OSError("the memory map went away")
        return original(step, micro, starts)

    monkeypatch.setattr(windows, "micro_batch", micro_batch)
    with BatchPrefetcher(windows, torch.device("cpu"), 0, 1, background=True) as prefetcher:
        prefetcher.next_step()
        prefetcher.next_step()
        with pytest.raises(OSError, match="memory map"):
            prefetcher.next_step()


def test_on_the_cpu_batches_are_gathered_in_line_without_a_thread(bytes_store):
    with BatchPrefetcher(_windows(bytes_store, 1), torch.device("cpu"), 0, 1) as prefetcher:
        assert prefetcher._thread is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_prefetch_copies_from_reused_pinned_buffers_exactly(bytes_store):
    windows = _windows(bytes_store, 2)
    device = torch.device("cuda")
    with BatchPrefetcher(windows, device, 7, 2) as prefetcher:
        assert prefetcher._thread is not None
        got = [prefetcher.next_step() for _ in range(8)]
        torch.cuda.synchronize()
    for step, batches in zip(range(7, 15), got):
        for micro, (x, y) in enumerate(batches):
            want_x, want_y = windows.micro_batch(step, micro)
            assert x.device.type == "cuda" and torch.equal(x.cpu(), want_x) and torch.equal(y.cpu(), want_y)
