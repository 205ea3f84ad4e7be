"""Speculative decoding's acceptance rule (Leviathan et al. 2023; Chen et al. 2023, "Accelerating
Large Language Model Decoding with Speculative Sampling").

A cheap draft model proposes k tokens d_1..d_k with distributions q_1..q_k; the target model scores
all of them in one forward pass, giving p_1..p_{k+1}. Draft token d_i is accepted with probability
min(1, p_i(d_i) / q_i(d_i)); at the first rejection a replacement is drawn from norm(max(0, p_i - q_i))
and the round ends; when all k are accepted a bonus token is drawn from p_{k+1}. Every emitted token
then follows the target's distribution exactly, whatever the draft proposes: the draft changes only
the speed.
"""

from __future__ import annotations

from typing import Optional

import torch

from pileablate.inference.sampling import sample


def accept_drafts(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    draft_tokens: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> tuple[int, int]:
    """Apply the acceptance rule to one round.

    target_probs: (k + 1, V) p_1..p_{k+1}; draft_probs: (k, V) q_1..q_k; draft_tokens: (k,) d_1..d_k.
    Returns (number of drafts accepted, the token emitted after them): the round emits
    d_1..d_accepted followed by that token.
    """
    k = draft_tokens.shape[0]
    if k:
        positions = torch.arange(k, device=draft_tokens.device)
        p = target_probs[positions, draft_tokens]
        q = draft_probs[positions, draft_tokens]
        u = torch.rand(k, generator=generator, device=draft_tokens.device)
        # u < min(1, p/q) written as u*q < p, so a vanishing q cannot divide by zero.
        accepted = (u * q < p).tolist()
    else:
        accepted = []
    for i, ok in enumerate(accepted):
        if not ok:
            residual = (target_probs[i] - draft_probs[i]).clamp_min(0.0)
            total = residual.sum()
            # p == q up to rounding leaves no residual mass; rejection then has probability ~0, and
            # sampling from p is the limit of the rule.
            dist = residual / total if total > 1e-12 else target_probs[i]
            return i, int(sample(dist, generator))
    return k, int(sample(target_probs[k], generator))
