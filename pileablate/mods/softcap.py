"""softcap: logits soft-capped by tanh, cap * tanh(logits / cap), before the loss and sampling.

The cap is 30, Gemma 2's final-logit cap and the modded-nanogpt speedrun's first one. Computed in fp32.
"""

import torch
from torch import nn

from pileablate.mods import Modification, register, register_component

CAP = 30.0


class SoftCap(nn.Module):
    def __init__(self, cap: float = CAP) -> None:
        super().__init__()
        self.cap = cap

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.cap * torch.tanh(logits.float() / self.cap)


register_component("head", "softcap", lambda config: SoftCap(), f"{CAP:g} * tanh(logits / {CAP:g})")
register(Modification(
    "softcap", f"tanh soft-capping of the output logits at {CAP:g}", fills={"head": "softcap"},
    reference="Bello et al. 2016; Gemma Team 2024 (Gemma 2); Jordan et al. 2024 (modded-nanogpt)",
))
