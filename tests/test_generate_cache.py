"""KV-cached decoding against the uncached reference, on real models of every attention variant."""

from __future__ import annotations

import pytest
import torch

from pileablate.inference.decode import DecodeStats, decode
from pileablate.inference.sampling import SamplingConfig
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT

GREEDY = SamplingConfig(temperature=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")
VARIANTS = ["", "gqa", "mla"]


def make_model(mods: str, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    # A wider init than GPT-2's 0.02 gives peaked next-token distributions, so greedy choices are
    # decided by clear margins rather than by float rounding between two code paths.
    cfg = build_model_config("nano", mods, 257, init_std=overrides.pop("init_std", 0.3), **overrides)
    return GPT(cfg).eval()


PROMPT = [256] + list(b"def main():")


@pytest.mark.parametrize("rope", [False, True], ids=["learned", "rope"])
@pytest.mark.parametrize("attention", VARIANTS, ids=["mha", "gqa", "mla"])
def test_cached_and_uncached_greedy_decoding_give_identical_tokens(attention, rope):
    mods = ",".join(m for m in (attention, "rope" if rope else "") if m)
    model = make_model(mods)
    # 100 new tokens on a 64-token context: the window jumps, and the cache is rebuilt, twice.
    stats = DecodeStats()
    cached = list(decode(model, PROMPT, 100, GREEDY, vocab_size=257, stats=stats))
    uncached = list(decode(model, PROMPT, 100, GREEDY, vocab_size=257, use_cache=False))
    assert cached == uncached
    assert len(set(cached)) > 3  # a real sequence, not one token repeated
    assert stats.window_shifts >= 2


@pytest.mark.parametrize("mods", ["moe", "mtp", "moe,mtp,rope,rmsnorm,swiglu", "postnorm", "mla,rope,swiglu"])
def test_cached_decoding_matches_uncached_with_other_modifications(mods):
    model = make_model(mods)
    cached = list(decode(model, PROMPT, 40, GREEDY, vocab_size=257))
    assert cached == list(decode(model, PROMPT, 40, GREEDY, vocab_size=257, use_cache=False))


@pytest.mark.parametrize("attention", VARIANTS, ids=["mha", "gqa", "mla"])
def test_cached_logits_equal_a_full_forward(attention):
    # Chunks of different sizes through the cache, including after a truncate (speculative rollback).
    model = make_model(attention + ",rope" if attention else "rope")
    idx = torch.randint(0, 257, (1, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx).logits[0]
        cache = model.new_kv_cache(1, 64)
        model(idx[:, :30], kv_cache=cache)
        cache.truncate(12)
        pieces = [model(idx[:, 12:13], kv_cache=cache).logits[0], model(idx[:, 13:20], kv_cache=cache).logits[0],
                  model(idx[:, 20:40], kv_cache=cache).logits[0]]
    torch.testing.assert_close(torch.cat(pieces), full[12:40], atol=1e-5, rtol=1e-5)


def test_gqa_and_mla_caches_hold_less_than_multi_head():
    sizes = {}
    for mods in ("", "gqa", "mla"):
        model = make_model(mods)
        sizes[mods or "mha"] = model.new_kv_cache(1, 64).nbytes()
    cfg = make_model("gqa").config
    assert sizes["gqa"] * cfg.n_head // cfg.kv_heads == sizes["mha"]
    assert sizes["mla"] < sizes["mha"]


@pytest.mark.parametrize("mods", ["", "gqa,rope", "mla", "mla,rope,rmsnorm,swiglu"])
def test_speculative_greedy_with_a_smaller_draft_equals_the_targets_greedy(mods):
    target = make_model(mods, seed=0)
    draft = make_model("", seed=1, n_layer=1, d_model=32)
    plain = list(decode(target, PROMPT, 90, GREEDY, vocab_size=257))
    stats = DecodeStats()
    spec = list(decode(target, PROMPT, 90, GREEDY, vocab_size=257, draft=draft, draft_tokens=4, stats=stats))
    assert spec == plain
    assert stats.drafted > 0


def test_speculative_with_the_target_as_its_own_draft_accepts_everything():
    target = make_model("rope")
    stats = DecodeStats()
    spec = list(decode(target, PROMPT, 40, GREEDY, vocab_size=257, draft=target, draft_tokens=4, stats=stats))
    assert spec == list(decode(target, PROMPT, 40, GREEDY, vocab_size=257))
    assert stats.acceptance_rate == 1.0
    assert stats.target_forward_passes < 40 / 4
