"""muon: torch.optim.Muon for the hidden weight matrices, AdamW for embeddings, head, biases and gains.

Muon's rate is its own: MUON_LR_SCALE x --lr (0.02 at the small presets' 1e-3, Muon's usual rate), given
to its param group as `lr_scale`, so `--tune-lr` scales both rates together and the run records each.
"""

import torch

from pileablate.mods import Chained, Modification, fused, hidden_matrices, register, register_component

# Muon's usual rate is 0.02 (Jordan et al. 2024) where AdamW's is 1e-3 on small models: 20x.
MUON_LR_SCALE = 20.0


def _muon(model, cfg, device):
    """torch.optim.Muon on the hidden matrices at MUON_LR_SCALE x lr (decoupled decay), AdamW on the rest."""
    hidden, rest = hidden_matrices(model)
    muon_part = torch.optim.Muon([{"params": hidden, "lr_scale": MUON_LR_SCALE}], lr=cfg.lr * MUON_LR_SCALE,
                                 weight_decay=cfg.weight_decay)
    matrices = [p for p in rest if p.dim() >= 2]
    others = [p for p in rest if p.dim() < 2]
    adam_part = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused(device),
    )
    return Chained([muon_part, adam_part])


register_component("optimizer", "muon", _muon, "Muon (Newton-Schulz orthogonalised momentum) + AdamW")
register(Modification(
    "muon", "Muon for hidden weight matrices (lr 20 x --lr), AdamW for embeddings, head and gains",
    fills={"optimizer": "muon"}, incompatible=frozenset({"adam"}),
    reference="Jordan et al. 2024 (Muon, modded-nanogpt); Liu et al. 2025 (Muon is scalable)",
))
