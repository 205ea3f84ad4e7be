"""What modifications build with, beside the model's own parts: the optimizer helpers and the warmup
ramp the built-ins use, public through `pileablate.mods` for users' files. Nothing here knows the trainer.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

# Warmup (linear, from 0) lasts `warmup_steps` optimizer steps, or this share of the budget, whichever
# comes first: with a time budget the number of steps is not known in advance.
WARMUP_MAX_FRACTION = 0.1


def warmup_factor(cfg, step: int, progress: float) -> float:
    """The linear warmup ramp in (0, 1] at 0-based optimizer step `step`, with `progress` (0..1) of the
    budget used: it ends at cfg.warmup_steps or at WARMUP_MAX_FRACTION of the budget."""
    by_steps = (step + 1) / cfg.warmup_steps if cfg.warmup_steps > 0 else 1.0
    by_budget = progress / WARMUP_MAX_FRACTION
    return min(1.0, max(by_steps, by_budget))


def fused(device: torch.device) -> Any:
    """Adam(W)'s fused kernel (one pass over all parameters) on CUDA and CPU: on a CPU it is ~4x faster
    than the per-tensor loop, which matters for small models where the step is a large share."""
    return True if device.type in ("cuda", "cpu") else None


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two param groups: decay on matrices (Linear weights, embeddings, router), none on biases and
    norm gains (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def hidden_matrices(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(2-D weights inside the blocks, everything else): embeddings, the tied head, biases and gains
    are the second list, as the modded-nanogpt speedrun splits them."""
    outside = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    outside.add(id(model.lm_head.weight))
    params = [p for p in model.parameters() if p.requires_grad]
    hidden = [p for p in params if p.dim() == 2 and id(p) not in outside]
    ids = {id(p) for p in hidden}
    return hidden, [p for p in params if id(p) not in ids]


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
