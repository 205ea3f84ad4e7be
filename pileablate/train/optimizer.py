"""The optimizer and the learning-rate schedule of a run, from the components its modifications choose.

`make_optimizer(model, cfg, device)` and `make_schedule(cfg)` are the one place the trainer asks; the
components (adamw, adam, muon; constant, warmup, cosine) are registered in `pileablate/mods/`.

A param group may carry `lr_scale`: its rate is the schedule's rate times that (Muon's matrices run at
MUON_LR_SCALE x --lr), so `--tune-lr` moves every group together and `learning_rates` records each.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

# Muon's usual rate is 0.02 (Jordan et al. 2024) where AdamW's is 1e-3 on small models: 20x.
MUON_LR_SCALE = 20.0


def make_optimizer(model: nn.Module, cfg, device: torch.device):
    """The optimizer component `cfg.mods` chooses (AdamW for the baseline), built for `model`."""
    from pileablate.model.registry import trainer_component

    return trainer_component(cfg.mods, "optimizer").build(model, cfg, device)


def make_schedule(cfg):
    """The schedule component `cfg.mods` chooses (constant for the baseline): (step, fraction) -> lr.
    Its `.kind` is the component's name (config.json's "schedule")."""
    from pileablate.model.registry import trainer_component

    chosen = trainer_component(cfg.mods, "schedule")
    built = chosen.build(cfg)
    if not hasattr(built, "kind"):  # a user's plain function
        built = _Named(chosen.name, built)
    return built


class _Named:
    def __init__(self, kind: str, fn) -> None:
        self.kind, self.fn = kind, fn

    def __call__(self, step: int, progress: float) -> float:
        return self.fn(step, progress)


def schedule(kind: str, cfg):
    """One of the built-in schedules of train/schedule.py with the run's rates and warmup."""
    from pileablate.train.config import WARMUP_MAX_FRACTION
    from pileablate.train.schedule import Schedule

    return Schedule(kind, cfg.lr, cfg.min_lr, cfg.warmup_steps, WARMUP_MAX_FRACTION)


def set_learning_rate(optimizer, lr: float) -> None:
    """Every group at `lr` times its lr_scale (1 unless the optimizer gave it another)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def learning_rates(optimizer, lr: float) -> dict[str, float]:
    """Optimizer name -> the peak rate its groups use at the run's `lr` (what config.json records)."""
    rates: dict[str, float] = {}
    for part in getattr(optimizer, "optimizers", (optimizer,)):
        for group in part.param_groups:
            rates[type(part).__name__.lower()] = lr * group.get("lr_scale", 1.0)
    return rates


def _fused(device: torch.device) -> Any:
    # The fused kernel (one pass over all parameters) on CUDA and CPU: on a CPU it is ~4x faster than
    # the default per-tensor loop, which matters for small models where the step is a large share.
    return True if device.type in ("cuda", "cpu") else None


def adamw(model, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) with decay on matrices only (the baseline)."""
    groups = model.param_groups(cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=_fused(device))


def adam(model, cfg, device: torch.device) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) with coupled L2: weight_decay * w is added to the gradient, on matrices only."""
    groups = model.param_groups(cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=_fused(device))


def hidden_matrices(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(2-D weights inside the blocks, everything else): embeddings, the tied head, biases and gains
    are the second list, as the speedrun splits them."""
    outside = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    outside.add(id(model.lm_head.weight))
    params = [p for p in model.parameters() if p.requires_grad]
    hidden = [p for p in params if p.dim() == 2 and id(p) not in outside]
    ids = {id(p) for p in hidden}
    return hidden, [p for p in params if id(p) not in ids]


def muon(model, cfg, device: torch.device) -> "Chained":
    """torch.optim.Muon on the hidden matrices at MUON_LR_SCALE x lr (decoupled decay), AdamW on the rest."""
    hidden, rest = hidden_matrices(model)
    muon_part = torch.optim.Muon([{"params": hidden, "lr_scale": MUON_LR_SCALE}], lr=cfg.lr * MUON_LR_SCALE,
                                 weight_decay=cfg.weight_decay)
    matrices = [p for p in rest if p.dim() >= 2]
    others = [p for p in rest if p.dim() < 2]
    adam_part = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=_fused(device),
    )
    return Chained([muon_part, adam_part])


class Chained:
    """Several optimizers stepped as one (what the trainer, the loss scaler and checkpoints see)."""

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.optimizers for group in part.param_groups]

    @property
    def state(self) -> dict:
        return {k: v for part in self.optimizers for k, v in part.state.items()}

    def step(self, closure=None) -> None:
        for part in self.optimizers:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.optimizers:
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"chained": [part.state_dict() for part in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for part, part_state in zip(self.optimizers, state["chained"], strict=True):
            part.load_state_dict(part_state)
