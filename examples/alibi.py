"""alibi: no position embeddings; each head adds a linear penalty on distance to its attention scores.

    pileablate mods --mods-file examples/alibi.py
    pileablate train --mods-file examples/alibi.py --mods alibi,gqa

A score hook: score + m_h * (kv_idx - q_idx), m_h = 2^(-8(h+1)/n_head). It composes with every
attention (mha, gqa's grouping, a user's) and with masks; FlexAttention fuses it on GPUs.
"""

import torch
from torch import nn

from pileablate.mods import Modification, register, register_component


class AlibiBias(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        n = config.n_head
        slopes = torch.tensor([2.0 ** (-8.0 * (i + 1) / n) for i in range(n)])
        self.register_buffer("slopes", slopes, persistent=False)  # follows the model's device

    def forward(self, score, b, h, q_idx, kv_idx):
        return score + self.slopes[h] * (kv_idx - q_idx)


class NoPositions(nn.Module):
    def forward(self, x, ctx):
        return x


register_component("score", "alibi", AlibiBias, "score + m_h * (kv - q), geometric slopes per head")
register_component("position", "alibi", lambda config: NoPositions(), "none: positions come from the score bias")
register(Modification(
    "alibi", "attention with linear biases (ALiBi) instead of position embeddings",
    fills={"position": "alibi", "score": "alibi"}, reference="Press et al. 2022 (ALiBi)",
))
