"""The GPT baseline: presets, parameter counts, forward contract, kernels, init, optimiser groups."""

from __future__ import annotations

import math

import pytest
import torch

from pileablate.errors import UserError
from pileablate.model.build import PRESETS, build_model_config, pad_vocab
from pileablate.model.config import ModelConfig
from pileablate.model.gpt import GPT, ModelOutput


def tiny(mods="", **kw) -> ModelConfig:
    base = dict(n_layer=2, n_head=4, d_model=32, seq_len=16)
    base.update(kw)
    return build_model_config("nano", mods, 61, **base)


def gpt2_params(vocab: int, n_layer: int, d: int, seq_len: int) -> int:
    """GPT-2 with tied embeddings: wte + wpe + per block (2 LayerNorms, qkv, proj, 4x MLP) + ln_f."""
    per_block = 2 * (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return vocab * d + seq_len * d + n_layer * per_block + 2 * d


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_param_counts_match_gpt2_formula(preset):
    cfg = build_model_config(preset, "", 50257)
    p = PRESETS[preset]
    expected = gpt2_params(50304, p["n_layer"], p["d_model"], p["seq_len"])
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_params() == {"total": expected, "active": expected}


def test_small_preset_is_gpt2_124m():
    with torch.device("meta"):
        model = GPT(build_model_config("small", "", 50257))
    assert model.num_params()["total"] == 124_475_904  # nanoGPT: "number of parameters: 124.47M" (wpe incl.)


def test_vocab_padded_to_multiple_of_64_and_real_vocab_kept():
    cfg = build_model_config("nano", "", 257)
    assert cfg.vocab_size == 320 and cfg.data_vocab_size == 257 and cfg.real_vocab_size == 257
    assert pad_vocab(50257) == 50304 and pad_vocab(64) == 64


def test_overrides_none_ignored_and_applied():
    cfg = build_model_config("nano", "", 257, n_layer=None, d_model=96, n_head=3, seq_len=None)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.seq_len) == (2, 96, 3, 64)


def test_config_round_trips_through_asdict():
    import dataclasses
    import json

    cfg = build_model_config("micro", "all,moe,mtp,mla", 257, n_experts=4)
    again = ModelConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(preset="huge"), "valid: nano"),
        (dict(d_model=30, n_head=4), "divisible"),
        (dict(bogus=3), "unknown model option"),
    ],
)
def test_bad_config_is_user_error(kwargs, needle):
    preset = kwargs.pop("preset", "nano")
    with pytest.raises(UserError, match=needle):
        build_model_config(preset, "", 257, **kwargs)


def test_forward_contract_shapes_and_loss():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 61, (3, 16))
    out = model(idx, idx)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 16, 64)
    ref = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 64), idx.reshape(-1))
    assert torch.allclose(out.loss, ref)
    assert out.aux_loss.item() == 0.0 and out.aux == {}
    assert model(idx).loss is None


def test_ignore_index_minus_one_is_skipped():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 61, (1, 16))
    targets = idx.clone()
    targets[:, 8:] = -1
    full = model(idx, idx).logits
    ref = torch.nn.functional.cross_entropy(full[:, :8].reshape(-1, 64), idx[:, :8].reshape(-1))
    assert torch.allclose(model(idx, targets).loss, ref)


@pytest.mark.parametrize("mods", ["", "rope", "gqa", "mla", "mla,rope"])
def test_sdpa_and_math_kernels_agree(mods):
    torch.manual_seed(0)
    sdpa = GPT(tiny(mods))
    math_model = GPT(tiny(mods, kernel="math"))
    math_model.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 61, (2, 16))
    torch.testing.assert_close(sdpa(idx).logits, math_model(idx).logits, atol=1e-5, rtol=1e-5)


def test_gpt2_initialisation_and_weight_tying():
    torch.manual_seed(0)
    cfg = build_model_config("mini", "", 257)
    model = GPT(cfg)
    assert model.lm_head.weight is model.transformer.wte.weight
    block = model.transformer.h[0]
    assert abs(block.attn.c_attn.weight.std().item() - 0.02) < 0.002
    resid = 0.02 / math.sqrt(2 * cfg.n_layer)
    assert abs(block.attn.c_proj.weight.std().item() - resid) < 0.1 * resid
    assert abs(block.mlp.c_proj.weight.std().item() - resid) < 0.1 * resid
    assert block.attn.c_attn.bias.abs().max().item() == 0.0


def test_param_groups_decay_matrices_only():
    model = GPT(tiny("moe"))
    groups = model.param_groups(0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_learned_positions_reject_sequences_past_context():
    model = GPT(tiny())
    with pytest.raises(UserError, match="context"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_nano_learns_a_repeated_sequence_quickly():
    torch.manual_seed(0)
    model = GPT(tiny())
    opt = torch.optim.AdamW(model.param_groups(0.0), lr=3e-3)
    idx = torch.randint(0, 61, (4, 16))
    first = None
    for _ in range(30):
        loss = model(idx[:, :-1], idx[:, 1:]).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_flops_per_token_is_six_n_active_plus_attention():
    cfg = build_model_config("micro", "moe", 257)
    with torch.device("meta"):
        model = GPT(cfg)
    n = model.num_params()["active"]
    assert model.flops_per_token() == 6 * n + 12 * 4 * 4 * 32 * 128
    assert model.flops_per_token(seq_len=64) == 6 * n + 12 * 4 * 4 * 32 * 64
