"""The step clock counts the device's work, so time budgets, tokens/s and MFU are device time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from pileablate.train.clock import StepClock, device_sync
from pileablate.train.config import TrainConfig
from pileablate.runfolder import read_metrics
from pileablate.train.trainer import train


class QueuedDevice:
    """A device like a GPU: launching work returns at once, the work runs when someone synchronises.

    `now()` is the host clock: launching costs a millisecond, a synchronisation waits for what is queued.
    """

    def __init__(self) -> None:
        self.host_time = 0.0
        self.queued_s = 0.0

    def launch(self, work_s: float) -> None:
        self.host_time += 0.001
        self.queued_s += work_s

    def synchronize(self) -> None:
        self.host_time += self.queued_s
        self.queued_s = 0.0

    def now(self) -> float:
        return self.host_time


def test_step_clock_counts_the_steps_device_work_not_its_launches():
    device = QueuedDevice()
    clock = StepClock(device.synchronize, device.now)
    clock.start()
    device.launch(2.0)  # a step whose kernels take 2 s on the device
    assert clock.stop() == pytest.approx(2.001)


def test_work_queued_before_the_step_is_not_charged_to_it():
    device = QueuedDevice()
    clock = StepClock(device.synchronize, device.now)
    device.launch(5.0)  # e.g. evaluation's kernels, still running when the step starts
    clock.start()
    device.launch(1.0)
    assert clock.stop() == pytest.approx(1.001)


def test_stop_without_start_is_a_bug_not_a_zero():
    clock = StepClock(lambda: None)
    with pytest.raises(RuntimeError):
        clock.stop()


def test_on_the_cpu_the_clock_is_plain_wall_time():
    device_sync(torch.device("cpu"))()  # a no-op that can be called
    clock = StepClock.for_device(torch.device("cpu"))
    clock.start()
    time.sleep(0.05)
    assert 0.05 <= clock.stop() < 5


def _fake_device_clock(monkeypatch, seconds_per_step: float) -> None:
    """Every synchronisation finds `seconds_per_step` of device work queued (on top of the real time)."""
    offset = [0.0]

    def synchronize() -> None:
        offset[0] += seconds_per_step

    monkeypatch.setattr(StepClock, "for_device",
                        classmethod(lambda cls, device: cls(synchronize, lambda: time.perf_counter() + offset[0])))


def test_the_trainers_time_budget_and_tokens_per_s_are_device_time(tmp_path, bytes_store, monkeypatch):
    # Each step's kernels take 100 s "on the device"; only a clock that waits for the device sees them.
    _fake_device_clock(monkeypatch, 100.0)
    summary = train(TrainConfig(data=bytes_store, runs_dir=tmp_path / "runs", preset="nano", device="cpu",
                                batch_size=4, eval_every=1000, eval_tokens=1024, log_every=1, time_limit=250,
                                max_steps=5))  # without the device time it would run to step 5
    assert summary["stop_reason"] == "time_limit" and summary["steps"] == 3
    assert 300 <= summary["elapsed_s"] < 330
    rows = read_metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(4 * 64 / 110 < r["tokens_per_s"] <= 4 * 64 / 100 for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_step_clock_waits_for_queued_kernels():
    device = torch.device("cuda")
    clock = StepClock.for_device(device)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    clock.start()
    begin.record()
    torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU spinning, queued in microseconds
    end.record()
    host_s = clock.stop()
    end.synchronize()
    device_s = begin.elapsed_time(end) / 1000
    assert device_s > 0.01 and host_s >= 0.99 * device_s
