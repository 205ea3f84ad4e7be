"""Guards: no model that sees the future, or starts far from chance, gets to train."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pileablate.errors import UserError
from pileablate.model import attention, gpt, moe
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT
from pileablate.model.guards import check_causality, check_initial_loss, initial_loss_band
from pileablate.registry import SEED_MODS

EXTRAS = ["gqa", "mla", "moe", "mtp", "postnorm", "qknorm", "softcap", "muon", "adam"]


def tiny(mods="", **kw):
    base = dict(n_layer=2, n_head=2, d_model=16, seq_len=12, n_experts=3)
    base.update(kw)
    return build_model_config("nano", mods, 37, **base)


def build(mods="", **kw) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny(mods, **kw))


@pytest.mark.parametrize("combo", [c for r in range(6) for c in itertools.combinations(SEED_MODS, r)], ids=",".join)
def test_causality_guard_passes_every_seed_combination(combo):
    check_causality(build(",".join(combo)))


@pytest.mark.parametrize("extra", EXTRAS)
@pytest.mark.parametrize("with_seeds", [False, True], ids=["alone", "with-all"])
def test_causality_guard_passes_each_extra_with_and_without_seed_mods(extra, with_seeds):
    check_causality(build(extra + (",all" if with_seeds else "")))


def test_causality_guard_passes_the_extras_combined():
    check_causality(build("all,mla,moe,mtp,postnorm", mtp_depth=3))
    check_causality(build("all,gqa,moe,mtp", n_kv_head=1))


def _future_leak(x: torch.Tensor) -> torch.Tensor:
    """What a Perceiver-style latent or a capacity-dropping router does: mix in later positions."""
    return x.mean(dim=1, keepdim=True).expand_as(x)


def test_guard_names_mla_when_latent_attention_leaks(monkeypatch):
    original = attention.LatentAttention.forward
    monkeypatch.setattr(attention.LatentAttention, "forward", lambda self, x, *a, **k: original(self, x, *a, **k) + _future_leak(x))
    check_causality(build("rope"))  # other attention is untouched
    with pytest.raises(UserError) as err:
        check_causality(build("rope,swiglu,mla"))
    msg = str(err.value)
    assert "At fault: modification(s) mla." in msg and "next-token logits" in msg and "\n" not in msg


def test_guard_names_moe_when_routing_leaks(monkeypatch):
    original = moe.MoE.forward

    def leaky(self, x, ctx=None):
        return original(self, x, ctx) + _future_leak(x)

    monkeypatch.setattr(moe.MoE, "forward", leaky)
    with pytest.raises(UserError, match=r"At fault: modification\(s\) moe\."):
        check_causality(build("all,moe"))


def test_guard_checks_mtp_heads_and_names_mtp(monkeypatch):
    from pileablate.mods import mtp

    original = mtp.MTPHead.forward

    def leaky(self, h, ctx):
        return original(self, h, ctx) + _future_leak(h)

    monkeypatch.setattr(mtp.MTPHead, "forward", leaky)
    with pytest.raises(UserError, match=r"mtp head t\+2 at position \d+ changed.*At fault: modification\(s\) mtp\."):
        check_causality(build("rope,mtp"))


def test_guard_blames_the_baseline_when_no_mod_is_active(monkeypatch):
    real = attention.attend
    monkeypatch.setattr(attention, "attend", lambda q, k, v, *a: real(q.flip(2), k, v, *a).flip(2))
    with pytest.raises(UserError, match="baseline model itself"):
        check_causality(build(""))


def test_guard_restores_training_mode_and_leaves_low_precision_weights_alone():
    model = build("all").to(torch.bfloat16).train()
    check_causality(model)
    assert model.training and model.lm_head.weight.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def real_batch(bytes_store):
    from pileablate.data.store import TokenSplit

    split = TokenSplit(bytes_store / "train")
    w = torch.from_numpy(split.window(1000, 4 * 64 + 1).astype(np.int64))
    return w[:-1].view(4, 64), w[1:].view(4, 64)


@pytest.mark.parametrize("mods", ["", "all", "all,mla,moe,mtp,postnorm"])
def test_initial_loss_near_ln_vocab_on_real_data(real_batch, mods):
    torch.manual_seed(0)
    model = GPT(build_model_config("nano", mods, 257))
    loss = check_initial_loss(model, *real_batch)
    assert abs(loss - math.log(257)) < 0.5


def test_initial_loss_check_catches_broken_init_and_a_model_that_sees_its_answer(real_batch):
    torch.manual_seed(0)
    model = GPT(build_model_config("nano", "", 257))
    with torch.no_grad():
        model.lm_head.weight.mul_(100)  # a broken initialisation: wildly confident logits
    with pytest.raises(UserError, match="initial loss check failed.*ln\\(257\\)"):
        check_initial_loss(model, *real_batch)
    torch.manual_seed(0)
    cheat = GPT(build_model_config("nano", "", 257))
    with torch.no_grad():
        cheat.lm_head.weight.mul_(10)
    x, _ = real_batch
    with pytest.raises(UserError, match="initial loss"):  # targets == inputs: tied embeddings read them off
        check_initial_loss(cheat, x, x)


def test_initial_loss_band_uses_real_vocab_below_and_padded_above():
    low, high = initial_loss_band(build_model_config("nano", "", 257))
    assert math.isclose(low, math.log(257) - 1.0) and math.isclose(high, math.log(320) + 1.0)


def _leaky_block(monkeypatch, leak) -> None:
    original = gpt.Block.forward
    monkeypatch.setattr(gpt.Block, "forward", lambda self, x, ctx: original(self, x, ctx) + leak(self, x))


def test_the_causality_probe_reaches_the_end_of_the_context(monkeypatch):
    """A leak that only shows past position 300 of 512 (a bug in long-range attention) is caught: the
    probe reads the whole context, at positions spread to its end."""
    def late_leak(self, x: torch.Tensor) -> torch.Tensor:
        leak = torch.zeros_like(x)
        leak[:, 300:-1] = x[:, 301:]  # from position 300 on, each position sees the next token
        return leak

    _leaky_block(monkeypatch, late_leak)
    with pytest.raises(UserError, match="baseline model itself"):
        check_causality(build("", seq_len=512))


def test_a_leak_only_in_training_mode_is_caught(monkeypatch):
    """The post's 0.086 nats/token: a training path that forgot the mask, which eval mode never takes."""
    _leaky_block(monkeypatch, lambda self, x: _future_leak(x) if self.training else torch.zeros_like(x))
    with pytest.raises(UserError, match=r"\(training mode\).*baseline model itself"):
        check_causality(build(""))


def test_a_leak_across_the_batch_is_caught(monkeypatch):
    """Statistics over the whole batch (a batch norm) let other sequences reach a sequence's outputs."""
    _leaky_block(monkeypatch, lambda self, x: x.mean(dim=0, keepdim=True).expand_as(x))
    with pytest.raises(UserError, match="other sequences of the batch"):
        check_causality(build(""))


def test_training_noise_is_not_taken_for_a_leak(monkeypatch):
    """A module that draws random numbers in training mode draws the same ones in every probe."""
    _leaky_block(monkeypatch, lambda self, x: 0.1 * torch.randn_like(x) if self.training else torch.zeros_like(x))
    check_causality(build(""))


def test_the_guards_probe_a_small_slice_of_the_batch():
    from pileablate.model.guards import PROBE_TOKENS, PROBE_WINDOWS, probe_slice

    x = torch.arange(16 * 1024).view(16, 1024)
    px, py = probe_slice(x, x + 1)
    assert px.shape == py.shape == (PROBE_WINDOWS, PROBE_TOKENS) == (2, 256)
    assert torch.equal(px, x[:2, :256]) and torch.equal(py, x[:2, :256] + 1)
    short = torch.zeros(8, 64, dtype=torch.long)
    assert probe_slice(short, short)[0].shape == (2, 64)


def _combinable_pairs():
    from pileablate.registry import REGISTRY, incompatible_with

    model_mods = [m for m in REGISTRY.values() if m.target == "model" and m.origin == "built-in"]
    return [(a.name, b.name) for i, a in enumerate(model_mods) for b in model_mods[i + 1:]
            if b.name not in incompatible_with(a.name)]


@pytest.mark.parametrize("pair", _combinable_pairs(), ids=",".join)
def test_causality_guard_passes_every_combinable_pair_of_model_modifications(pair):
    check_causality(build(",".join(pair)))
