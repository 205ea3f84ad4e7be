"""Causal self-attention: multi-head / grouped-query (one module) and multi-head latent attention,
and the attention hooks (score modifications and masks) modifications add.

Without a hook every variant attends with `F.scaled_dot_product_attention(is_causal=True)` (flash
kernels where available) or, with `kernel="math"`, the explicit softmax(q k^T / sqrt(d) + mask) v
reference. With a score or mask hook active (ALiBi, soft-capping, a sliding window) it attends with
FlexAttention on CUDA (`torch.nn.attention.flex_attention`: the hooks compile into one fused kernel)
and with the explicit reference elsewhere (FlexAttention has no backward pass on CPUs) and for cached
decoding; the two agree (tests/test_model_hooks.py; on a GPU, benchmarks/gpu_check.py). Causality is
always part of the mask, so no hook can open the future. Each variant owns its KV-cache layout (`new_cache`).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pileablate.model.norms import make_norm

_SDPA_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def _causal_mask(t: int, s: int, device) -> Optional[torch.Tensor]:
    """Boolean (t, s) mask for t new queries after s - t cached keys; None when is_causal suffices."""
    if t == s or t == 1:
        return None
    offset = s - t
    return torch.arange(s, device=device)[None, :] <= (offset + torch.arange(t, device=device)[:, None])


class AttentionHooks(nn.Module):
    """The score and mask hooks in force, composed: scores in order, masks and causality together.

    Hooks that are modules (ALiBi's slopes) are registered here, so they follow the model's device."""

    def __init__(self, scores: Sequence[Callable], masks: Sequence[Callable]) -> None:
        super().__init__()
        self._scores, self._masks = list(scores), list(masks)
        self.parts = nn.ModuleList(h for h in (*scores, *masks) if isinstance(h, nn.Module))
        self._block_masks: dict = {}

    @property
    def has_scores(self) -> bool:
        return bool(self._scores)

    def score_mod(self, score, b, h, q_idx, kv_idx):
        for fn in self._scores:
            score = fn(score, b, h, q_idx, kv_idx)
        return score

    def mask_mod(self, b, h, q_idx, kv_idx):
        allowed = q_idx >= kv_idx
        for fn in self._masks:
            allowed = allowed & fn(b, h, q_idx, kv_idx)
        return allowed

    def block_mask(self, length: int, device: torch.device):
        """FlexAttention's block mask for `length` queries over as many keys (made once per length)."""
        from torch.nn.attention.flex_attention import create_block_mask

        if torch.compiler.is_compiling():
            return create_block_mask(self.mask_mod, None, None, length, length, device=device)
        key = (length, str(device))
        if key not in self._block_masks:
            self._block_masks[key] = create_block_mask(self.mask_mod, None, None, length, length, device=device)
        return self._block_masks[key]


def make_hooks(config) -> Optional[AttentionHooks]:
    """The attention hooks the config names (registry), or None when there are none."""
    from pileablate.registry import component

    scores = [component("score", name).build(config) for name in config.scores]
    masks = [component("mask", name).build(config) for name in config.masks]
    return AttentionHooks(scores, masks) if scores or masks else None


_flex = None


def _flex_attention():
    """FlexAttention, compiled once (eagerly it is an unfused reference); under torch.compile the
    model's own compilation fuses it."""
    global _flex
    from torch.nn.attention.flex_attention import flex_attention

    if torch.compiler.is_compiling():
        return flex_attention
    if _flex is None:
        _flex = torch.compile(flex_attention, dynamic=False)
    return _flex


def _hooked(q, k, v, hooks: AttentionHooks, dropout_p: float) -> torch.Tensor:
    t, s = q.shape[-2], k.shape[-2]
    groups = q.shape[1] // k.shape[1]
    if q.device.type == "cuda" and t == s and dropout_p == 0.0:
        return _flex_attention()(q, k, v, score_mod=hooks.score_mod if hooks.has_scores else None,
                                 block_mask=hooks.block_mask(t, q.device), enable_gqa=groups > 1)
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    b, h = q.shape[0], q.shape[1]
    device = q.device
    # Index tensors that broadcast to (B, H, T, S): the hooks see absolute positions, as FlexAttention's.
    b_idx = torch.arange(b, device=device).view(b, 1, 1, 1)
    h_idx = torch.arange(h, device=device).view(1, h, 1, 1)
    q_idx = torch.arange(s - t, s, device=device).view(1, 1, t, 1)
    kv_idx = torch.arange(s, device=device).view(1, 1, 1, s)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if hooks.has_scores:
        att = hooks.score_mod(att, b_idx, h_idx, q_idx, kv_idx)
    att = att.masked_fill(~hooks.mask_mod(b_idx, h_idx, q_idx, kv_idx), float("-inf"))
    att = F.softmax(att, dim=-1)
    if dropout_p > 0:
        att = F.dropout(att, p=dropout_p)
    return att @ v


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx=None, kernel: str = "sdpa",
           dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention of q (B, H, T, D) over k (B, Hkv, S, D), v (B, Hkv, S, Dv), S >= T, with the
    hooks in force (`ctx.hooks`).

    The T queries are the last T positions of the S keys. Query head h reads kv head
    h // (H // Hkv) (repeat_interleave layout, as Hugging Face Llama and SDPA's enable_gqa).
    """
    hooks = getattr(ctx, "hooks", None)
    if hooks is not None:
        return _hooked(q, k, v, hooks, dropout_p)
    t, s = q.shape[-2], k.shape[-2]
    groups = q.shape[1] // k.shape[1]
    mask = _causal_mask(t, s, q.device)
    # SDPA's enable_gqa (torch >= 2.5) only reaches the flash and math kernels; on GPUs, expanding the
    # kv heads keeps every fused kernel (and GQA's timing honest) at the cost of a temporary copy.
    if kernel == "math" or (groups > 1 and not (_SDPA_GQA and q.device.type == "cpu")):
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
    if kernel == "math":
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        if t > 1:
            allowed = mask if mask is not None else torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
            att = att.masked_fill(~allowed, float("-inf"))
        att = F.softmax(att, dim=-1)
        if dropout_p > 0:
            att = F.dropout(att, p=dropout_p)
        return att @ v
    extra = {"enable_gqa": True} if groups > 1 and k.shape[1] != q.shape[1] else {}
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None and t > 1, **extra
    )


class CausalSelfAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017); with n_kv_head < n_head grouped-query attention
    (Ainslie et al. 2023; n_kv_head = 1 is multi-query attention, Shazeer 2019).

    c_attn projects to [q (n_head*hd) | k (kv*hd) | v (kv*hd)]; with kv = n_head this is GPT-2's c_attn.
    A variant overrides one step: `qkv` (the projections: a value residual mixes v there), the rest is
    shared (qk-norm, the position component's rotation, the cache, the hooks).
    """

    def __init__(self, config, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.c_attn = nn.Linear(config.d_model, (self.n_head + 2 * self.n_kv) * self.head_dim, bias=config.bias)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.d_model, bias=config.bias)
        self.kernel = config.kernel
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.qk_norm = config.qk_norm

    def new_cache(self, batch_size: int, max_len: int, device, dtype) -> dict[str, torch.Tensor]:
        shape = (batch_size, self.n_kv, max_len, self.head_dim)
        return {"k": torch.zeros(shape, device=device, dtype=dtype), "v": torch.zeros(shape, device=device, dtype=dtype)}

    def qkv(self, x: torch.Tensor, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, n_head, T, hd), keys and values (B, n_kv, T, hd) of the new tokens."""
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.c_attn(x).split([self.n_head * hd, self.n_kv * hd, self.n_kv * hd], dim=-1)
        return (q.view(b, t, self.n_head, hd).transpose(1, 2), k.view(b, t, self.n_kv, hd).transpose(1, 2),
                v.view(b, t, self.n_kv, hd).transpose(1, 2))

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x, ctx)
        if self.qk_norm:  # qknorm: before the rotation, as modded-nanogpt and OLMo 2
            q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        if ctx.rotate is not None:
            q, k = ctx.rotate(q), ctx.rotate(k)
        cache = ctx.layer_cache
        if cache is not None:
            start, end = ctx.start, ctx.start + t
            cache["k"][:, :, start:end] = k
            cache["v"][:, :, start:end] = v
            k = cache["k"][:, :, :end].to(q.dtype)
            v = cache["v"][:, :, :end].to(q.dtype)
        y = attend(q, k, v, ctx, self.kernel, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, self.n_head * self.head_dim)
        return self.resid_dropout(self.c_proj(y))


class LatentAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-V2, DeepSeek-AI 2024, section 2.1).

    Keys and values are up-projected from a low-rank latent c = norm(W_dkv x) of width kv_latent_dim,
    which is all the KV cache keeps. RoPE cannot be applied to the up-projected keys without
    un-compressing the cache, so with `rope` on a separate rotary query part (per head) and rotary key
    part (one, shared by all heads, computed from x) are concatenated to the content parts.
    Attention stays token-to-token and causal; this is not the Perceiver-style latent array.
    """

    def __init__(self, config, layer: int = 0) -> None:
        from pileablate.registry import component

        super().__init__()
        self.layer = layer
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.latent = config.latent_dim
        # A rotary position component (rope, a user's variant) gets the decoupled rotary part.
        self.rope_dim = config.rope_dim if "rotary" in component("position", config.position).traits else 0
        h, hd, r = self.n_head, self.head_dim, self.rope_dim
        self.q_proj = nn.Linear(config.d_model, h * (hd + r), bias=config.bias)
        self.kv_down = nn.Linear(config.d_model, self.latent + r, bias=config.bias)  # [latent | rotary key]
        self.kv_norm = make_norm(config, self.latent)
        self.kv_up = nn.Linear(self.latent, h * 2 * hd, bias=config.bias)  # per head [k content | v]
        self.c_proj = nn.Linear(h * hd, config.d_model, bias=config.bias)
        self.kernel = config.kernel
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def new_cache(self, batch_size: int, max_len: int, device, dtype) -> dict[str, torch.Tensor]:
        cache = {"latent": torch.zeros(batch_size, max_len, self.latent, device=device, dtype=dtype)}
        if self.rope_dim:
            cache["k_rope"] = torch.zeros(batch_size, 1, max_len, self.rope_dim, device=device, dtype=dtype)
        return cache

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        b, t, _ = x.shape
        h, hd, r = self.n_head, self.head_dim, self.rope_dim
        q = self.q_proj(x).view(b, t, h, hd + r).transpose(1, 2)
        c, k_rope = self.kv_down(x).split([self.latent, r], dim=-1)
        c = self.kv_norm(c)
        k_rope = k_rope.view(b, t, 1, r).transpose(1, 2)
        if r:
            q_nope, q_rope = q.split([hd, r], dim=-1)
            q = torch.cat((q_nope, ctx.rotate(q_rope)), dim=-1)
            k_rope = ctx.rotate(k_rope)
        cache = ctx.layer_cache
        if cache is not None:
            start, end = ctx.start, ctx.start + t
            cache["latent"][:, start:end] = c
            c = cache["latent"][:, :end].to(q.dtype)
            if r:
                cache["k_rope"][:, :, start:end] = k_rope
                k_rope = cache["k_rope"][:, :, :end].to(q.dtype)
        s = c.shape[1]
        k_nope, v = self.kv_up(c).view(b, s, h, 2 * hd).transpose(1, 2).split([hd, hd], dim=-1)
        k = torch.cat((k_nope, k_rope.expand(b, h, s, r)), dim=-1) if r else k_nope
        y = attend(q, k, v, ctx, self.kernel, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, h * hd)
        return self.resid_dropout(self.c_proj(y))


def make_attention(config, layer: int = 0) -> nn.Module:
    """The attention component the config names (registry), for block `layer`."""
    from pileablate.registry import component

    return component("attention", config.attention).build(config, layer)
