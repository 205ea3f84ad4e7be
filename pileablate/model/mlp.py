"""Position-wise feed-forward layers: GPT-2's GELU MLP and SwiGLU (Shazeer 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeluMLP(nn.Module):
    """c_proj(gelu(c_fc x)), the tanh GELU approximation GPT-2 was trained with ("gelu_new")."""

    def __init__(self, d_model: int, hidden: int, bias: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x). Names follow Llama: w1 = gate_proj, w3 = up_proj, w2 = down_proj."""

    def __init__(self, d_model: int, hidden: int, bias: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, hidden, bias=bias)
        self.w3 = nn.Linear(d_model, hidden, bias=bias)
        self.w2 = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


def make_mlp(config, hidden: int | None = None) -> nn.Module:
    """The mlp component the config names (registry), `hidden` wide (default config.ffn_hidden)."""
    from pileablate.registry import component

    return component("mlp", config.mlp).build(config, config.ffn_hidden if hidden is None else hidden)


class _WithoutContext(nn.Module):
    """A user's MLP whose forward takes x alone, as the `dense` feedforward (which passes ctx too)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        return self.mlp(x)


def dense_feedforward(config, layer: int = 0) -> nn.Module:
    """The `dense` feedforward: the mlp in force itself (so its weights keep GPT-2's and Llama's names)."""
    import inspect

    mlp = make_mlp(config)
    takes_context = len(inspect.signature(mlp.forward).parameters) >= 2
    return mlp if takes_context else _WithoutContext(mlp)
