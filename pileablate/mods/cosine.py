"""cosine: warmup, then cosine decay to the minimum learning rate over the run's budget."""

from pileablate.model.registry import Modification, register, register_component


def _cosine(cfg):
    from pileablate.train.optimizer import schedule

    return schedule("cosine", cfg)


register_component("schedule", "cosine", _cosine, "warmup ramp times a half-cosine to min_lr over the budget")
register(Modification(
    "cosine", "warmup, then cosine decay to the minimum learning rate over the run's budget",
    fills={"schedule": "cosine"}, supersedes=frozenset({"warmup"}), reference="Loshchilov & Hutter 2017 (SGDR)",
))
