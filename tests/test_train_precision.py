"""Precision: `auto` picks what the GPU computes natively; fp16 trains through a loss scaler whose state
is checkpointed, and a step with inf/NaN gradients is skipped. The fp16 path runs on the CPU too
(autocast fp16 and GradScaler("cpu")), so it is tested here on every machine, and on the GPU when
there is one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pileablate.errors import UserError
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT
from pileablate.runfolder import load_checkpoint, save_checkpoint
from pileablate.train.config import TrainConfig
from pileablate.train.hardware import pick_precision
from pileablate.runfolder import read_metrics
from pileablate.train.trainer import train

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("capability, expected", [
    ((6, 1), "fp16"),  # Pascal
    ((7, 0), "fp16"),  # V100
    ((7, 5), "fp16"),  # T4, RTX 20xx
    ((8, 0), "bf16"),  # A100
    ((8, 9), "bf16"),  # L4, L40S, RTX 40xx
    ((9, 0), "bf16"),  # H100, H200
])
def test_auto_precision_is_bf16_only_where_the_gpu_computes_it_natively(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # What torch.cuda.is_bf16_supported() says by default on all of these: emulation counts as support.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert pick_precision("auto", torch.device("cuda", 0)) == expected


def test_auto_precision_is_fp32_off_the_gpu_and_an_explicit_choice_is_kept(monkeypatch):
    assert pick_precision("auto", torch.device("cpu")) == "fp32"
    assert pick_precision("auto", torch.device("mps")) == "fp32"
    assert pick_precision("fp16", torch.device("cpu")) == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert pick_precision("bf16", torch.device("cuda", 0)) == "bf16"  # asked for (emulated, slow): given
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(UserError, match="no bf16 support"):
        pick_precision("bf16", torch.device("cuda", 0))


def _fp16_setup(device: str):
    torch.manual_seed(0)
    model = GPT(build_model_config("nano", "", 257, n_layer=1, d_model=32, seq_len=16)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    return model, optimizer, torch.amp.GradScaler(device)


def _fp16_step(model, optimizer, scaler, device: str, poison: bool = False) -> None:
    idx = torch.randint(0, 257, (2, 16), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.autocast(device, dtype=torch.float16):
        loss = model(idx, idx.roll(-1, 1)).loss
    if poison:
        loss = loss * float("nan")  # what an fp16 overflow in the backward pass leaves in the gradients
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_step_with_non_finite_gradients_is_skipped_and_the_scale_backs_off(device):
    model, optimizer, scaler = _fp16_setup(device)
    _fp16_step(model, optimizer, scaler, device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()]
    scale = scaler.get_scale()
    _fp16_step(model, optimizer, scaler, device, poison=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(optimizer.state[p]["exp_avg"], m) for p, m in zip(model.parameters(), moments))
    assert scaler.get_scale() == scale / 2
    _fp16_step(model, optimizer, scaler, device)  # training goes on at the lower scale
    assert not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert scaler.get_scale() == scale / 2


@pytest.mark.parametrize("device", DEVICES)
def test_scaler_state_round_trips_through_a_checkpoint(tmp_path, device):
    model, optimizer, scaler = _fp16_setup(device)
    for poison in (False, True, False, False):
        _fp16_step(model, optimizer, scaler, device, poison)
    save_checkpoint(tmp_path, {"scaler": scaler.state_dict()})
    restored = torch.amp.GradScaler(device)
    restored.load_state_dict(load_checkpoint(tmp_path)["scaler"])  # weights_only=True
    assert restored.state_dict() == scaler.state_dict()
    assert restored.get_scale() == 2.0 ** 15 and restored.state_dict()["_growth_tracker"] == 2


class _NonFiniteGradient(torch.autograd.Function):
    """The identity forward; a NaN gradient backward: an fp16 overflow, with a finite loss."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _overflow_at_training_call(monkeypatch, call: int) -> None:
    """The model's `call`-th training forward (1-based; guards and evaluation do not count) overflows."""
    original = GPT.forward
    seen = [0]

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training and torch.is_grad_enabled():
            seen[0] += 1
            if seen[0] == call:
                return dataclasses.replace(out, loss=_NonFiniteGradient.apply(out.loss))
        return out

    monkeypatch.setattr(GPT, "forward", forward)


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_run_skips_an_overflowing_step_and_resumes_with_its_scaler_state(tmp_path, bytes_store, monkeypatch, device):
    def cfg(name, steps):
        return TrainConfig(data=bytes_store, runs_dir=tmp_path / "runs", name=name, preset="nano", device=device,
                           precision="fp16", n_layer=1, d_model=32, batch_size=4, max_steps=steps, eval_every=1000,
                           eval_tokens=1024,
                           log_every=1, checkpoint_every="1000")

    _overflow_at_training_call(monkeypatch, 2)
    whole = train(cfg("whole", 4))
    _overflow_at_training_call(monkeypatch, 2)
    train(cfg("split", 2))
    monkeypatch.undo()
    split = train(cfg("split", 4))  # continues from the step-2 checkpoint, scaler state included

    rows = read_metrics(Path(whole["run_dir"]))
    assert rows[1]["grad_norm"] is None and all(r["grad_norm"] is not None for r in rows[:1] + rows[2:])
    assert [r["train_loss"] for r in read_metrics(Path(split["run_dir"]))] == [r["train_loss"] for r in rows]
    states = [load_checkpoint(Path(s["run_dir"]))["scaler"] for s in (whole, split)]
    # Backed off at step 2, then 2 good steps: a scaler rebuilt on resume would be back at 2**16.
    assert states[0] == states[1] and states[0]["scale"] == 2.0 ** 15 and states[0]["_growth_tracker"] == 2
