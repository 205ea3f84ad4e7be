"""adam: Adam with coupled L2 weight decay (added to the gradient), against the baseline's AdamW."""

from pileablate.model.registry import Modification, register, register_component


def _adam(model, cfg, device):
    from pileablate.train.optimizer import adam

    return adam(model, cfg, device)


register_component("optimizer", "adam", _adam, "Adam, L2 decay in the gradient on matrices only")
register(Modification(
    "adam", "Adam with coupled L2 weight decay (--weight-decay in the gradient) instead of AdamW's decoupled decay",
    fills={"optimizer": "adam"}, incompatible=frozenset({"muon"}), reference="Kingma & Ba 2015; Loshchilov & Hutter 2019",
))
