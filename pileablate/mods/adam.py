"""adam: Adam with coupled L2 weight decay (added to the gradient), against the baseline's AdamW."""

import torch

from pileablate.mods import Modification, decay_groups, fused, register, register_component


def _adam(model, cfg, device):
    """Adam (Kingma & Ba 2015) with coupled L2: weight_decay * w is added to the gradient, on matrices only."""
    return torch.optim.Adam(decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            fused=fused(device))


register_component("optimizer", "adam", _adam, "Adam, L2 decay in the gradient on matrices only")
register(Modification(
    "adam", "Adam with coupled L2 weight decay (--weight-decay in the gradient) instead of AdamW's decoupled decay",
    fills={"optimizer": "adam"}, incompatible=frozenset({"muon"}), reference="Kingma & Ba 2015; Loshchilov & Hutter 2019",
))
