"""Guards run before training: a model that can see the future, or starts far from chance, does not train.

The hand-rolled setup this project replaces once reported 0.086 nats/token because a modification
leaked future tokens. Here every model, as configured, is probed first.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterator, Optional

import torch

from pileablate.errors import UserError
from pileablate.model.config import ModelConfig
from pileablate.registry import config_without

# Max |change| allowed in an fp32 logit at positions <= t when tokens after t change, relative to
# (1 + max |logit|). Exact causality gives 0 up to reordering of fp32 sums (MoE experts see
# different batches); a real leak at initialisation moves logits by ~1e-3 and more.
CAUSALITY_RTOL = 1e-5

# An untrained model predicts close to uniformly: loss ~ ln(vocab). Allowed band:
# [ln(real vocab) - INITIAL_LOSS_TOL, ln(padded vocab) + INITIAL_LOSS_TOL] nats; the padded rows
# (never targets) take a share of the probability at init, so up to ln(padded) is expected.
INITIAL_LOSS_TOL = 1.0

# The initial-loss check looks at PROBE_WINDOWS windows of at most PROBE_TOKENS tokens of the first
# batch: at initialisation every position predicts close to uniformly, so 512 real tokens pin the
# initial loss to a few hundredths of a nat (the band is 1 nat wide). A full micro-batch would cost
# far more for nothing: for the medium preset with the GPT-2 vocabulary its logits alone are
# 16 x 1024 x 50304 fp32 = 3.3 GB.
PROBE_WINDOWS = 2
PROBE_TOKENS = 256
# The causality probe reads the whole context (a leak may reach back only from far positions), at
# this many positions t spread evenly from the first to the last.
PROBE_POSITIONS = 6

MODES = ("eval", "training")


@contextlib.contextmanager
def _exact_fp32(model: torch.nn.Module, mode: str = "eval") -> Iterator[torch.nn.Module]:
    """The model in `mode` ("training": dropout at zero, every other training-only path taken), fp32
    weights, no autocast, no TF32; everything restored afterwards."""
    was_training = model.training
    low_precision = any(p.dtype != torch.float32 for p in model.parameters())
    # A copy for training mode: a training forward may update state (running statistics, a user's
    # buffers), and the model about to train must start from exactly what was initialised.
    probe = copy.deepcopy(model).float() if low_precision or mode == "training" else model
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device_type = next(model.parameters()).device.type
    try:
        probe.train(mode == "training")
        if mode == "training":
            _without_dropout(probe)
        with torch.no_grad(), torch.autocast(device_type=device_type, enabled=False):
            yield probe
    finally:
        model.train(was_training)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision(precision)


def _without_dropout(model: torch.nn.Module) -> None:
    """Dropout off in a training-mode copy: random masks would move outputs without any leak."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0


def _outputs(model: torch.nn.Module, idx: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Every output a leak could reach: next-token logits and each extra head's. The same random
    draws for every call, so a module with training-only noise compares like with like."""
    with torch.random.fork_rng(devices=[idx.device] if idx.device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model(idx)
    return {"next-token logits": out.logits, **out.extra_logits}


def _moved(a: torch.Tensor, b: torch.Tensor) -> Optional[float]:
    a, b = a.float(), b.float()
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    return None if diff <= CAUSALITY_RTOL * (1.0 + a.abs().max().item()) else diff


def probe_positions(length: int) -> list[int]:
    """PROBE_POSITIONS positions t spread over 0 .. length-2 (tokens after t are changed)."""
    last = length - 2
    if last < 0:
        return []
    return sorted({round(i * last / (PROBE_POSITIONS - 1)) for i in range(PROBE_POSITIONS)})


def _find_leak(model: torch.nn.Module, mode: str, batch_size: int, seed: int) -> Optional[str]:
    """None if causal in `mode`; else what changed (which output, at which position, in which mode)."""
    cfg = model.config
    device = next(model.parameters()).device
    vocab = cfg.real_vocab_size
    gen = torch.Generator().manual_seed(seed)
    length = cfg.seq_len
    idx = torch.randint(0, vocab, (batch_size, length), generator=gen)
    base = _outputs(model, idx.to(device), seed)
    for t in probe_positions(length):
        changed = idx.clone()
        # Every later token changes (to a different id): a leak from any future position shows.
        changed[:, t + 1:] = (idx[:, t + 1:] + torch.randint(1, max(2, vocab), idx[:, t + 1:].shape, generator=gen)) % vocab
        other = _outputs(model, changed.to(device), seed)
        for name, ref in base.items():
            diff = _moved(ref[:, : t + 1], other[name][:, : t + 1])
            if diff is not None:
                return f"{name} at position {t} changed by {diff:.2e} when only tokens after it changed ({mode} mode)"
    if batch_size > 1:
        # Across the batch: another sequence's tokens must not reach this one's outputs at all.
        changed = idx.clone()
        changed[1:] = (idx[1:] + 1) % vocab
        other = _outputs(model, changed.to(device), seed)
        for name, ref in base.items():
            diff = _moved(ref[:1], other[name][:1])
            if diff is not None:
                return f"{name} of sequence 0 changed by {diff:.2e} when only other sequences of the batch changed ({mode} mode)"
    return None


def find_leak(model: torch.nn.Module, batch_size: int = PROBE_WINDOWS, seed: int = 0) -> Optional[str]:
    """What leaks, in eval mode or in training mode (the mode training runs in), or None."""
    for mode in MODES:
        with _exact_fp32(model, mode) as probe:
            leak = _find_leak(probe, mode, batch_size, seed)
        if leak is not None:
            return leak
    return None


def check_causality(model: torch.nn.Module, batch_size: int = PROBE_WINDOWS, seed: int = 0) -> None:
    """Raise UserError unless changing tokens after position t leaves every output at <= t unchanged,
    and changing other sequences of the batch leaves a sequence's outputs unchanged.

    Probes the model as configured, in exact fp32, on random tokens over its whole context, in eval
    and in training mode (dropout at zero), for t spread from the start to the end, checking the
    next-token logits and every extra head. On a leak, each active modification is removed in turn
    from a fresh model of the same config; those whose removal makes it causal are named (all active
    ones if no single removal does).
    """
    leak = find_leak(model, batch_size, seed)
    if leak is None:
        return
    cfg: ModelConfig = model.config
    active = cfg.mods
    culprits = [name for name in active if _causal_without(cfg, name, model, batch_size, seed)]
    if not active:
        blame = "the baseline model itself (no modification active)"
    else:
        blame = "modification(s) " + ", ".join(culprits or active)
    raise UserError(f"causality guard failed: {leak}; the model can see the future. At fault: {blame}. Not training it")


def _causal_without(cfg: ModelConfig, name: str, model: torch.nn.Module, batch_size: int, seed: int) -> bool:
    from pileablate.model.gpt import GPT

    torch.manual_seed(seed)
    candidate = GPT(config_without(cfg, name)).to(next(model.parameters()).device)
    return find_leak(candidate, batch_size, seed) is None


# The context of the check each configuration of a study passes before any of its runs (nano-sized, so
# it costs seconds on a CPU; each run's own guard then probes the real model on its device).
PREFLIGHT_MAX_CONTEXT = 1024


def check_configuration(mods, mod_options, seq_len: int, label: str) -> None:
    """The causality probe of a configuration's modifications together, on a nano model over the run's
    context (at most PREFLIGHT_MAX_CONTEXT): UserError naming the configuration, before any tuning run
    could blame a leak on the learning rate."""
    from pileablate.model.build import build_model_config
    from pileablate.model.gpt import GPT

    cfg = build_model_config("nano", mods, 257, seq_len=min(seq_len, PREFLIGHT_MAX_CONTEXT), mod_options=mod_options)
    if not cfg.mods:
        return  # the baseline and trainer-only modifications: the model every test suite run probes
    with torch.random.fork_rng():
        torch.manual_seed(0)
        probe = GPT(cfg)
    try:
        check_causality(probe)
    except UserError as err:
        raise UserError(f"configuration '{label}': {err}; no run of the study was started") from None


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
