"""What one forward pass hands every block, attention and hook: `Context`.

A block knows its layer index (`ctx.layer`, and `build(config, layer)` at construction) and can read
and write `ctx.state`, a dict that lives for one forward pass and is shared by all blocks: the first
layer's values for a value residual, the earlier layers' outputs for a DenseFormer-style average. The
position component may leave a rotation for attention (`ctx.rotate`), the attention hooks in force are
`ctx.hooks`, and auxiliary losses (MoE balance, extra heads) are added with `ctx.add_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch


@dataclass
class Context:
    start: int  # position of the first token of this forward (cached decoding: the tokens already seen)
    length: int  # tokens in this forward
    cache: Any = None  # the model's KVCache, or None
    layer: int = 0  # the block being run (the GPT sets it before each block)
    rotate: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # (..., T, D) -> rotated, from the position component
    hooks: Any = None  # model.attention.AttentionHooks when a score or mask hook is active
    state: dict = field(default_factory=dict)  # per forward, shared by all blocks
    losses: dict = field(default_factory=dict)  # name -> ([values], weight)

    @property
    def layer_cache(self) -> Optional[dict]:
        """This layer's KV-cache entry (None without a cache, or for a block beyond the cached ones)."""
        if self.cache is None or self.layer >= len(self.cache.layers):
            return None
        return self.cache.layers[self.layer]

    def add_loss(self, name: str, value: torch.Tensor, weight: float = 1.0) -> None:
        """An auxiliary loss: the model adds weight * (mean of the values added under `name`) to
        aux_loss and logs the mean as `name`."""
        self.losses.setdefault(name, ([], weight))[0].append(value)
