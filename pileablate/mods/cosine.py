"""cosine: warmup, then cosine decay to the minimum learning rate over the run's budget.

The warmup ramp times a half-cosine from --lr down to --min-lr over the whole budget (Loshchilov &
Hutter 2017, "SGDR"; the GPT-3 / Chinchilla recipe). The cosine runs over the whole budget rather than
from the end of warmup because with a time budget the warmup's share is not known in advance; during
a 10% warmup the difference is below 2.5% of --lr. A time-limited run reaches --min-lr as its time
runs out, whatever its speed (the budget fraction is that of the budget that ends the run first).
"""

import math

from pileablate.mods import Modification, register, register_component, warmup_factor


def _cosine(cfg):
    def rate(step: int, progress: float) -> float:
        decayed = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))
        return decayed * warmup_factor(cfg, step, progress)

    return rate


register_component("schedule", "cosine", _cosine, "warmup ramp times a half-cosine to min_lr over the budget")
register(Modification(
    "cosine", "warmup, then cosine decay to the minimum learning rate over the run's budget",
    fills={"schedule": "cosine"}, supersedes=frozenset({"warmup"}), reference="Loshchilov & Hutter 2017 (SGDR)",
))
