"""Mixture-of-experts MLP: top-k token routing (Shazeer et al. 2017) with the Switch Transformer
load-balancing loss (Fedus et al. 2021).

Routing is dropless (no expert capacity): a capacity limit drops tokens depending on which other
tokens in the batch, later positions included, chose the same expert, which would leak the future into
earlier positions' outputs. Each expert is the dense MLP type in force (GELU or SwiGLU) with its hidden
width divided by experts_per_token, so the parameters a token activates match the dense MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pileablate.model.mlp import make_mlp


class MoE(nn.Module):
    def __init__(self, config, layer: int = 0) -> None:
        super().__init__()
        self.n_experts, self.experts_per_token = config.n_experts, config.experts_per_token
        self.aux_weight = config.moe_aux_weight
        self.router = nn.Linear(config.d_model, self.n_experts, bias=False)
        # Each expert is the dense MLP shrunk by experts_per_token, so active params per token match dense.
        hidden = max(1, config.ffn_hidden // self.experts_per_token)
        self.experts = nn.ModuleList(make_mlp(config, hidden) for _ in range(self.n_experts))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For tokens x (N, D): (weights (N, k) summing to 1 per token, expert ids (N, k), probs (N, E)).

        The weights are a softmax over the chosen experts' logits (Mixtral); probs, the softmax over all
        experts, feed the balance loss.
        """
        logits = self.router(x).float()
        top_logits, experts = logits.topk(self.experts_per_token, dim=-1)
        return F.softmax(top_logits, dim=-1), experts, F.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        """Output like x; the balance loss goes to ctx ("moe_balance", weighted by moe_aux_weight). It
        is E * sum_e f_e * P_e: f_e the share of routing slots given to expert e, P_e its mean router
        probability; 1.0 when perfectly balanced."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, experts, probs = self.route(flat)
        out = torch.zeros_like(flat)
        # Group the (token, slot) assignments by expert with one sort and one host sync.
        assigned = experts.reshape(-1)
        order = assigned.argsort(stable=True)
        token_of = order // self.experts_per_token
        weight_of = weights.reshape(-1)[order].to(flat.dtype)
        counts = torch.bincount(assigned, minlength=self.n_experts).tolist()
        begin = 0
        for expert, n in zip(self.experts, counts):
            # While training an idle expert still runs (on zero rows) so every parameter gets a
            # gradient, as DistributedDataParallel requires; in inference it is skipped.
            if n or torch.is_grad_enabled():
                token = token_of[begin : begin + n]
                out.index_add_(0, token, expert(flat[token]) * weight_of[begin : begin + n, None])
            begin += n
        share = F.one_hot(experts, self.n_experts).sum(dim=(0, 1)).float() / experts.numel()
        balance = self.n_experts * (share * probs.mean(dim=0)).sum()
        if ctx is not None:
            ctx.add_loss("moe_balance", balance, self.aux_weight)
        return out.view(shape)

    def inactive_params(self) -> int:
        """Parameters a token does not use: the experts it is not routed to."""
        per_expert = sum(p.numel() for p in self.experts[0].parameters())
        return (self.n_experts - self.experts_per_token) * per_expert
