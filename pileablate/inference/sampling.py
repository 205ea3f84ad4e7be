"""Turning next-token logits into a distribution and drawing from it.

`SamplingConfig` is the whole sampling policy. `probabilities()` applies it to logits and returns a
proper distribution: plain decoding samples from it, and speculative decoding compares the target's and
the draft's *processed* distributions, so the tokens it emits follow exactly this distribution
(Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding", sec. 3.5 on
modified sampling rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pileablate.errors import UserError


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (always the most likely token)."""
    top_k: Optional[int] = None
    """Keep only the k most likely tokens before sampling (None or 0: no limit)."""
    top_p: Optional[float] = None
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches p (None or 1: off)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"--temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise UserError(f"--top-k must be a positive number of tokens (0 means no limit), got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def probabilities(logits: torch.Tensor, config: SamplingConfig, vocab_size: Optional[int] = None) -> torch.Tensor:
    """Distribution over the vocabulary for each row of `logits` (..., V_padded), in float32.

    `vocab_size` masks the padding ids (the model's vocabulary is padded to a multiple of 64 for speed;
    those ids are not tokens and must never be emitted). Greedy decoding returns one-hot rows, which
    makes speculative decoding's acceptance rule reduce to "accept while the argmaxes agree".
    """
    logits = logits.float()
    if vocab_size is not None and vocab_size < logits.shape[-1]:
        logits = logits.clone()
        logits[..., vocab_size:] = float("-inf")
    if config.greedy:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(torch.float32)
    logits = logits / config.temperature
    if config.top_k:
        k = min(config.top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if config.top_p is not None and config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        # Drop a token when the tokens strictly more likely than it already reach top_p; the most
        # likely token therefore always survives (Holtzman et al. 2020, "The Curious Case of Neural
        # Text Degeneration").
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= config.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token id per row of `probs` (..., V), as a long tensor of shape (...)."""
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
    return ids.reshape(probs.shape[:-1])
