"""relu2: the squared-ReLU MLP c_proj(relu(c_fc x)^2): GPT-2's MLP with another activation.

Same parameter names and count as the GELU MLP (so no matching is needed with it alone).
"""

import torch
import torch.nn.functional as F

from pileablate.model.mlp import GeluMLP
from pileablate.mods import Modification, register, register_component


class ReluSquaredMLP(GeluMLP):
    """GPT-2's MLP layers (same names, same size) with relu(x)^2 for the GELU."""

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        return self.dropout(self.c_proj(F.relu(self.c_fc(x)).square()))


register_component("mlp", "relu2", lambda config, hidden: ReluSquaredMLP(config.d_model, hidden, config.bias, config.dropout),
                   "c_proj(relu(c_fc x)^2), 4 x d_model wide")
register(Modification(
    "relu2", "squared-ReLU MLP c_proj(relu(c_fc x)^2) instead of GELU", fills={"mlp": "relu2"},
    incompatible=frozenset({"swiglu"}), reference="So et al. 2021 (Primer); Jordan et al. 2024 (modded-nanogpt)",
))
