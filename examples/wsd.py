"""wsd: warmup-stable-decay, the peak rate until the last wsd.decay of the budget, then linear to --min-lr.

    pileablate mods --mods-file examples/wsd.py
    pileablate train --mods-file examples/wsd.py --mods wsd --mod-option wsd.decay=0.1

A schedule is f(step, budget fraction) -> rate, from the run's settings: cfg.lr, cfg.min_lr and
cfg.warmup_steps (with the built-in warmup ramp, `warmup_factor`), and its own options.
"""

from pileablate.mods import Modification, Option, options_of, register, register_component, warmup_factor


def _wsd(cfg):
    decay = options_of(cfg, "wsd").decay

    def rate(step, progress):
        ramp = warmup_factor(cfg, step, progress)
        into_decay = (progress - (1 - decay)) / decay if decay > 0 else 0.0
        return (cfg.lr + (cfg.min_lr - cfg.lr) * min(max(into_decay, 0.0), 1.0)) * ramp

    return rate


register_component("schedule", "wsd", _wsd, "warmup, constant, linear decay over the last wsd.decay")
register(Modification(
    "wsd", "warmup-stable-decay schedule: linear decay to --min-lr over the last wsd.decay of the budget",
    fills={"schedule": "wsd"}, options={"decay": Option(0.2, "share of the budget spent decaying")},
    reference="Hu et al. 2024 (MiniCPM); Hägele et al. 2024",
))
