"""The `learned` position component: GPT-2's absolute position embeddings (transformer.wpe)."""

from __future__ import annotations

import torch
from torch import nn

from pileablate.errors import UserError


class LearnedPositions(nn.Embedding):
    """One learned vector per position up to seq_len, added to the token embeddings."""

    def __init__(self, config) -> None:
        super().__init__(config.seq_len, config.d_model)

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        end = ctx.start + ctx.length
        if end > self.num_embeddings:
            raise UserError(f"{end} positions exceed the model's context of {self.num_embeddings} tokens "
                            "(learned positions); crop the input")
        return x + self.weight[ctx.start:end]
