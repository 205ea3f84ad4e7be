"""warmup: linear learning-rate warmup, then constant (Goyal et al. 2017; GPT-2/3).

The ramp goes from ~0 to --lr over --warmup-steps or the first 10% of the budget, whichever ends first.
"""

from pileablate.mods import Modification, register, register_component, warmup_factor


def _warmup(cfg):
    return lambda step, progress: cfg.lr * warmup_factor(cfg, step, progress)


register_component("schedule", "warmup", _warmup, "linear ramp over the warmup, then constant")
register(Modification(
    "warmup", "linear learning-rate warmup, then constant", fills={"schedule": "warmup"},
    reference="Goyal et al. 2017; Vaswani et al. 2017",
))
