"""The KV cache: cached decoding equals uncached for every attention variant, and holds only what it must."""

from __future__ import annotations

import pytest
import torch

from pileablate.errors import UserError
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT

VARIANTS = ["", "rope", "gqa", "gqa,rope", "mla", "mla,rope", "all", "all,mla,moe,mtp", "postnorm,gqa"]


def tiny(mods="", **kw):
    base = dict(n_layer=2, n_head=4, d_model=32, seq_len=24)
    base.update(kw)
    return build_model_config("nano", mods, 61, **base)


def greedy(model: GPT, prompt: torch.Tensor, steps: int, cache: bool) -> list[int]:
    tokens = prompt.clone()
    kv = model.new_kv_cache(prompt.shape[0], model.config.seq_len) if cache else None
    feed = tokens
    for _ in range(steps):
        logits = model(feed, kv_cache=kv).logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], dim=1)
        feed = nxt if cache else tokens
    return tokens[0].tolist()


@pytest.mark.parametrize("mods", VARIANTS)
def test_cached_greedy_decoding_equals_uncached(mods):
    torch.manual_seed(0)
    model = GPT(tiny(mods)).eval()
    prompt = torch.randint(0, 61, (1, 5))
    with torch.inference_mode():
        assert greedy(model, prompt, 18, cache=True) == greedy(model, prompt, 18, cache=False)


@pytest.mark.parametrize("mods", VARIANTS)
def test_cached_chunks_give_the_full_forward_logits(mods):
    """Prefill, multi-token chunks (speculative verification) and single tokens all match."""
    torch.manual_seed(0)
    model = GPT(tiny(mods)).eval()
    idx = torch.randint(0, 61, (2, 24))
    with torch.no_grad():
        full = model(idx).logits
        cache = model.new_kv_cache(2, 24)
        pieces = [model(idx[:, a:b], kv_cache=cache).logits for a, b in [(0, 7), (7, 8), (8, 13), (13, 24)]]
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mods", ["", "gqa,rope", "mla,rope"])
def test_truncate_then_refeed_matches_a_fresh_cache(mods):
    torch.manual_seed(0)
    model = GPT(tiny(mods)).eval()
    idx = torch.randint(0, 61, (1, 12))
    wrong = torch.randint(0, 61, (1, 4))
    with torch.no_grad():
        cache = model.new_kv_cache(1, 24)
        model(idx[:, :8], kv_cache=cache)
        model(wrong, kv_cache=cache)  # a rejected draft
        cache.truncate(8)
        assert cache.length == 8
        after = model(idx[:, 8:], kv_cache=cache).logits
        full = model(idx).logits[:, 8:]
    torch.testing.assert_close(after, full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        cache.truncate(13)


def test_cache_bytes_per_token_reflect_each_attention_variant():
    def per_token(mods, **kw):
        model = GPT(tiny(mods, **kw))
        return model.new_kv_cache(1, 24, dtype=torch.float32).bytes_per_token()

    layers, d = 2, 32
    mha = per_token("")
    assert mha == layers * 2 * d * 4  # keys + values, every head, fp32
    assert per_token("gqa", n_kv_head=1) == mha / 4  # one of four kv heads
    assert per_token("gqa", n_kv_head=2) == mha / 2
    assert per_token("mla", kv_latent_dim=8) == layers * 8 * 4  # the latent only
    cfg = tiny("mla,rope", kv_latent_dim=8)
    assert per_token("mla,rope", kv_latent_dim=8) == layers * (8 + cfg.rope_dim) * 4  # + shared rope key
    model = GPT(tiny(""))
    cache = model.new_kv_cache(3, 10, dtype=torch.bfloat16)
    assert cache.nbytes() == 3 * 10 * layers * 2 * d * 2


def test_cache_overflow_and_batch_mismatch_are_clear_errors():
    model = GPT(tiny("rope")).eval()
    cache = model.new_kv_cache(1, 6)
    with torch.no_grad():
        model(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)
        with pytest.raises(UserError, match="KV cache"):
            model(torch.zeros(1, 2, dtype=torch.long), kv_cache=cache)
        with pytest.raises(ValueError, match="batch"):
            model(torch.zeros(2, 1, dtype=torch.long), kv_cache=model.new_kv_cache(1, 6))


def test_rope_cache_can_run_past_trained_context_learned_cannot():
    torch.manual_seed(0)
    rope = GPT(tiny("rope", seq_len=8)).eval()
    with torch.no_grad():
        cache = rope.new_kv_cache(1, 12)
        idx = torch.randint(0, 61, (1, 12))
        steps = torch.cat([rope(idx[:, i : i + 1], kv_cache=cache).logits for i in range(12)], dim=1)
        torch.testing.assert_close(steps, rope(idx).logits, atol=1e-5, rtol=1e-5)
    learned = GPT(tiny("", seq_len=8)).eval()
    cache = learned.new_kv_cache(1, 12)
    with torch.no_grad():
        learned(torch.zeros(1, 4, dtype=torch.long), kv_cache=cache)
        with pytest.raises(UserError, match="context of 8"):
            learned(torch.zeros(1, 6, dtype=torch.long), kv_cache=cache)
