"""Rotary position embeddings (Su et al. 2021, RoFormer) in Llama's "rotate half" layout.

A vector's first and second halves form the (real, imaginary) pairs: pair i rotates by
position * theta^(-2i/dim). Queries and keys rotated this way give attention scores that depend only
on the offset between positions. The layout matches Hugging Face Llama, so exported weights need no
permutation.
"""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    def __init__(self, dim: int, max_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.dim, self.theta = dim, theta
        # Not persistent: derived from the config, so checkpoints hold weights only.
        cos, sin = self._table(torch.arange(max_len, dtype=torch.float32))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _inv_freq(self, device=None) -> torch.Tensor:
        return 1.0 / (self.theta ** (torch.arange(0, self.dim, 2, dtype=torch.int64, device=device).float() / self.dim))

    def _table(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Always fp32 (the buffers follow model.to(dtype); a bf16 inv_freq would blur far positions).
        freqs = torch.outer(positions.float(), self._inv_freq(positions.device))
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def forward(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (length, dim), for positions start .. start+length-1 (fp32 unless the model
        was cast; apply_rotary casts to the activations' dtype, as Hugging Face Llama does)."""
        end = start + length
        if end <= self.cos.shape[0]:
            return self.cos[start:end], self.sin[start:end]
        return self._table(torch.arange(start, end, device=self.cos.device, dtype=torch.float32))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, dim) by positions whose (cos, sin) are (T, dim)."""
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class RotaryPositions(nn.Module):
    """The `rope` position component: adds nothing to the embeddings and hands attention a rotation
    (`ctx.rotate`) for any width it asks for among the head dim and mla's rotary part."""

    def __init__(self, config) -> None:
        super().__init__()
        dims = sorted({config.head_dim, config.rope_dim})
        # Not a ModuleDict keyed by width: the tables are derived, never in a checkpoint.
        self.tables = nn.ModuleList(Rotary(dim, config.seq_len, config.rope_theta) for dim in dims)

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        tables = {table.dim: table(ctx.start, ctx.length) for table in self.tables}
        ctx.rotate = lambda t: apply_rotary(t, *tables[t.shape[-1]])
        return x
