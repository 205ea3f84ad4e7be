"""muon: torch.optim.Muon for the hidden weight matrices, AdamW for embeddings, head, biases and gains.

Muon's rate is its own: MUON_LR_SCALE x --lr (0.02 at the small presets' 1e-3, Muon's usual rate),
so `--tune-lr` scales both rates together and the run records each (train/optimizer.py).
"""

from pileablate.model.registry import Modification, register, register_component


def _muon(model, cfg, device):
    from pileablate.train.optimizer import muon

    return muon(model, cfg, device)


register_component("optimizer", "muon", _muon, "Muon (Newton-Schulz orthogonalised momentum) + AdamW")
register(Modification(
    "muon", "Muon for hidden weight matrices (lr 20 x --lr), AdamW for embeddings, head and gains",
    fills={"optimizer": "muon"}, incompatible=frozenset({"adam"}),
    reference="Jordan et al. 2024 (Muon, modded-nanogpt); Liu et al. 2025 (Muon is scalable)",
))
