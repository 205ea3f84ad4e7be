"""The model on a CUDA device (skipped without one): kernels, mixed precision, guards, cache."""

from __future__ import annotations

import pytest
import torch

from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT
from pileablate.model.guards import check_causality

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

VARIANTS = ["", "all", "all,gqa", "all,mla", "all,moe,mtp", "postnorm"]


def cuda_model(mods: str, **kw) -> GPT:
    torch.manual_seed(0)
    base = dict(n_layer=2, n_head=4, d_model=64, seq_len=64)
    base.update(kw)
    return GPT(build_model_config("nano", mods, 257, **base)).cuda()


@pytest.mark.parametrize("mods", VARIANTS)
def test_guard_passes_on_gpu(mods):
    check_causality(cuda_model(mods))


@pytest.mark.parametrize("mods", VARIANTS)
def test_bf16_autocast_training_step_is_finite(mods):
    model = cuda_model(mods)
    idx = torch.randint(0, 257, (4, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(idx, idx)
        loss = out.loss + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("mods", ["", "rope,gqa", "rope,mla"])
def test_sdpa_matches_math_kernel_on_gpu(mods):
    sdpa = cuda_model(mods).eval()
    ref = cuda_model(mods, kernel="math").eval()
    ref.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 257, (2, 64), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = sdpa(idx).logits.float(), ref(idx).logits.float()
    torch.testing.assert_close(a, b, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("mods", ["", "rope,gqa", "rope,mla"])
def test_cached_chunks_match_full_forward_on_gpu(mods):
    model = cuda_model(mods).eval()
    idx = torch.randint(0, 257, (2, 40), device="cuda")
    with torch.no_grad():
        full = model(idx).logits
        cache = model.new_kv_cache(2, 64)
        parts = [model(idx[:, a:b], kv_cache=cache).logits for a, b in [(0, 17), (17, 18), (18, 40)]]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=2e-3, rtol=2e-3)
