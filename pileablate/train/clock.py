"""The step clock: training time as the device spends it, not as Python queues it.

CUDA (and MPS) run asynchronously: a step's Python code returns once its kernels are queued, and the
GPU works them off later, at the next operation that waits for a result (a `.item()` of a metrics
row, an all-reduce). A clock read right after the step would count the launches, not the work: time
budgets overrun, tokens/s and MFU come out inflated, and a modification that synchronises inside its
forward (MoE's `.tolist()` of expert counts) is charged its full cost while the others are not.

So the clock waits for the device at both ends of what it times: at the start (work queued before
the step, e.g. by evaluation, is not charged to it) and at the end (the step's own work is). Why a
synchronisation and not CUDA events: the budget is checked after every step, so the elapsed time is
needed at once; an event pair would have to be waited on just the same (`event.synchronize()`), or
read a step late. A synchronisation is one call, gives host wall time between two idle-device points
(what a time budget means), and works alike for CUDA, MPS and the CPU (where it is a no-op). Its
cost is the overlap of one step's tail with the next step's first launches: microseconds per step
once batches are prefetched (data_loader.BatchPrefetcher).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that returns once all work queued on `device` is done (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


class StepClock:
    """Times steps on the device: `start()` before a step, `stop() -> seconds` after it."""

    def __init__(self, sync: Callable[[], None], now: Callable[[], float] = time.perf_counter):
        self._sync = sync
        self._now = now
        self._started: Optional[float] = None

    @classmethod
    def for_device(cls, device: torch.device) -> "StepClock":
        return cls(device_sync(device))

    def start(self) -> None:
        self._sync()  # what was queued before the step is not the step's
        self._started = self._now()

    def stop(self) -> float:
        """Seconds since `start()`, once the device has finished the work queued since then."""
        if self._started is None:
            raise RuntimeError("StepClock.stop() without start()")
        self._sync()
        elapsed = self._now() - self._started
        self._started = None
        return elapsed
