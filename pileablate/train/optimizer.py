"""The optimizer and the learning-rate schedule of a run, from the components its modifications choose.

`make_optimizer(model, cfg, device)` and `make_schedule(cfg)` are the one place the trainer asks; the
components (adamw, adam, muon, a user's; constant, warmup, cosine, a user's) are registered by
`pileablate/mods/` and users' files.

A param group may carry `lr_scale`: its rate is the schedule's rate times that (Muon's matrices run at
20 x --lr), so `--tune-lr` moves every group together and `learning_rates` records each.
"""

from __future__ import annotations

import torch
from torch import nn

from pileablate.registry import trainer_component


def make_optimizer(model: nn.Module, cfg, device: torch.device):
    """The optimizer component `cfg.mods` chooses (AdamW for the baseline), built for `model`."""
    return trainer_component(cfg.mods, "optimizer").build(model, cfg, device)


class NamedSchedule:
    """A schedule component's (step, budget fraction) -> rate, with `.kind`, the component's name
    (config.json's "schedule")."""

    def __init__(self, kind: str, fn) -> None:
        self.kind, self.fn = kind, fn

    def __call__(self, step: int, progress: float) -> float:
        return self.fn(step, min(max(progress, 0.0), 1.0))


def make_schedule(cfg) -> NamedSchedule:
    """The schedule component `cfg.mods` chooses (constant for the baseline). A schedule is a pure
    function of (optimizer step, fraction of the budget used), so resuming needs no state of its own."""
    chosen = trainer_component(cfg.mods, "schedule")
    return NamedSchedule(chosen.name, chosen.build(cfg))


def set_learning_rate(optimizer, lr: float) -> None:
    """Every group at `lr` times its lr_scale (1 unless the optimizer gave it another)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def learning_rates(optimizer, lr: float) -> dict[str, float]:
    """Optimizer name -> the peak rate its groups use at the run's `lr` (what config.json records)."""
    rates: dict[str, float] = {}
    for part in getattr(optimizer, "optimizers", (optimizer,)):  # a Chained optimizer's parts
        for group in part.param_groups:
            rates[type(part).__name__.lower()] = lr * group.get("lr_scale", 1.0)
    return rates
