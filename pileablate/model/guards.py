"""Guards run before training: a model that can see the future, or starts far from chance, does not train.

The hand-rolled setup this project replaces once reported 0.086 nats/token because a modification
leaked future tokens. Here every model, as configured, is probed first.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Iterator, Optional

import torch

from pileablate.errors import UserError
from pileablate.model.config import ModelConfig
from pileablate.model.registry import REGISTRY, mods_in_config

# Max |change| allowed in an fp32 logit at positions <= t when tokens after t change, relative to
# (1 + max |logit|). Exact causality gives 0 up to reordering of fp32 sums (MoE experts see
# different batches); a real leak at initialisation moves logits by ~1e-3 and more.
CAUSALITY_RTOL = 1e-5

# An untrained model predicts close to uniformly: loss ~ ln(vocab). Allowed band:
# [ln(real vocab) - INITIAL_LOSS_TOL, ln(padded vocab) + INITIAL_LOSS_TOL] nats; the padded rows
# (never targets) take a share of the probability at init, so up to ln(padded) is expected.
INITIAL_LOSS_TOL = 1.0

# The guards probe PROBE_WINDOWS windows of at most PROBE_TOKENS tokens, on the training device. At
# initialisation every position predicts close to uniformly, so 512 real tokens pin the initial loss
# to a few hundredths of a nat (the band is 1 nat wide), and 256 positions let the causality probe
# see leaks that only reach back a long way. A full micro-batch would cost far more for nothing: for
# the medium preset with the GPT-2 vocabulary its logits alone are 16 x 1024 x 50304 fp32 = 3.3 GB.
PROBE_WINDOWS = 2
PROBE_TOKENS = 256


@contextlib.contextmanager
def _exact_fp32(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode, fp32 weights, no autocast, no TF32; everything restored afterwards."""
    was_training = model.training
    low_precision = any(p.dtype != torch.float32 for p in model.parameters())
    probe = copy.deepcopy(model).float() if low_precision else model
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device_type = next(model.parameters()).device.type
    try:
        probe.eval()
        with torch.no_grad(), torch.autocast(device_type=device_type, enabled=False):
            yield probe
    finally:
        model.train(was_training)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision(precision)


def _find_leak(model: torch.nn.Module, seq_len: int, batch_size: int, seed: int) -> Optional[str]:
    """None if causal; else what changed (which output, at which position)."""
    cfg = model.config
    device = next(model.parameters()).device
    vocab = cfg.real_vocab_size
    gen = torch.Generator().manual_seed(seed)
    t_len = min(seq_len, cfg.seq_len)
    idx = torch.randint(0, vocab, (batch_size, t_len), generator=gen)
    base = model(idx.to(device))
    outputs = {"next-token logits": base.logits, **{f"mtp head t+{j + 2}": lg for j, lg in enumerate(base.mtp_logits)}}
    for t in sorted({0, t_len // 2, t_len - 2}):
        if t < 0 or t + 1 >= t_len:
            continue
        changed = idx.clone()
        # Every later token changes (to a different id): a leak from any future position shows.
        changed[:, t + 1:] = (idx[:, t + 1:] + torch.randint(1, max(2, vocab), idx[:, t + 1:].shape, generator=gen)) % vocab
        out = model(changed.to(device))
        others = {"next-token logits": out.logits, **{f"mtp head t+{j + 2}": lg for j, lg in enumerate(out.mtp_logits)}}
        for name, ref in outputs.items():
            a, b = ref[:, : t + 1].float(), others[name][:, : t + 1].float()
            diff = (a - b).abs().max().item()
            if not diff <= CAUSALITY_RTOL * (1.0 + a.abs().max().item()):
                return f"{name} at position {t} changed by {diff:.2e} when only tokens after it changed"
    return None


def check_causality(model: torch.nn.Module, seq_len: int = PROBE_TOKENS, batch_size: int = PROBE_WINDOWS,
                    seed: int = 0) -> None:
    """Raise UserError unless changing tokens after position t leaves every output at <= t unchanged.

    Probes the model as configured, in exact fp32, on random tokens, for t at the start, middle and
    end, checking the next-token logits and every multi-token-prediction head. On a leak, each active
    modification is removed in turn from a fresh model of the same config; those whose removal makes
    it causal are named (all active ones if no single removal does).
    """
    with _exact_fp32(model) as probe:
        leak = _find_leak(probe, seq_len, batch_size, seed)
    if leak is None:
        return
    cfg: ModelConfig = model.config
    active = mods_in_config(cfg)
    culprits = [name for name in active if _causal_without(cfg, name, model, seq_len, batch_size, seed)]
    if not active:
        blame = "the baseline model itself (no modification active)"
    else:
        blame = "modification(s) " + ", ".join(culprits or active)
    raise UserError(f"causality guard failed: {leak}; the model can see the future. At fault: {blame}. Not training it")


def _causal_without(cfg: ModelConfig, name: str, model: torch.nn.Module, seq_len: int, batch_size: int, seed: int) -> bool:
    from pileablate.model.gpt import GPT

    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    reduced = dataclasses.replace(cfg, **{k: defaults[k] for k in REGISTRY[name].changes})
    torch.manual_seed(seed)
    candidate = GPT(reduced).to(next(model.parameters()).device)
    with _exact_fp32(candidate) as probe:
        return _find_leak(probe, seq_len, batch_size, seed) is None


def probe_slice(idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of a batch the guards look at: its first PROBE_WINDOWS windows, first PROBE_TOKENS tokens."""
    return idx[:PROBE_WINDOWS, :PROBE_TOKENS], targets[:PROBE_WINDOWS, :PROBE_TOKENS]


def initial_loss_band(config: ModelConfig) -> tuple[float, float]:
    return (math.log(config.real_vocab_size) - INITIAL_LOSS_TOL, math.log(config.vocab_size) + INITIAL_LOSS_TOL)


def check_initial_loss(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> float:
    """The untrained model's next-token loss on a real batch; UserError when outside initial_loss_band.

    Chance level is ln(vocab): an untrained model far below it has a leak or a broken loss, far above
    it a broken initialisation.
    """
    with _exact_fp32(model) as probe:
        device = next(probe.parameters()).device
        loss = probe(idx.to(device), targets.to(device)).loss.item()
    low, high = initial_loss_band(model.config)
    if not low <= loss <= high:
        expected = math.log(model.config.real_vocab_size)
        raise UserError(
            f"initial loss check failed: the untrained model's loss is {loss:.3f} nats, expected about "
            f"ln({model.config.real_vocab_size}) = {expected:.3f} (allowed {low:.2f}..{high:.2f}); this is a bug in the model"
            " or the data, not a result. Not training it"
        )
    return loss
