"""warmup: linear learning-rate warmup, then constant."""

from pileablate.model.registry import Modification, register, register_component


def _warmup(cfg):
    from pileablate.train.optimizer import schedule

    return schedule("warmup", cfg)


register_component("schedule", "warmup", _warmup, "linear ramp over the warmup, then constant")
register(Modification(
    "warmup", "linear learning-rate warmup, then constant", fills={"schedule": "warmup"},
    reference="Goyal et al. 2017; Vaswani et al. 2017",
))
