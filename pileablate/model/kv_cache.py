"""Key/value cache for incremental decoding.

Each layer's attention owns the layout of its entry (attention.py): multi-head and grouped-query
attention store keys and values of the kv-heads only; latent attention stores the compressed latent and
the small shared rotary key. So `nbytes()` shows the memory each variant really needs per token.
Buffers are allocated once for `max_len` tokens; `length` says how many are valid.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, layers: list[dict[str, torch.Tensor]], batch_size: int, max_len: int) -> None:
        self.layers = layers
        self.batch_size = batch_size
        self.max_len = max_len
        self.length = 0

    def truncate(self, n: int) -> None:
        """Forget every token after the first n (speculative decoding drops rejected draft tokens)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {n}")
        self.length = n

    def nbytes(self) -> int:
        """Bytes allocated for all layers (batch_size * max_len tokens)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.values())

    def bytes_per_token(self) -> float:
        """Cache bytes one token of one sequence occupies, all layers together."""
        return self.nbytes() / (self.batch_size * self.max_len)

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, max_len={self.max_len}, batch_size={self.batch_size}, nbytes={self.nbytes()})"
