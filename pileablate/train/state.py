"""Where a run is and how its loop ends: the counters a checkpoint saves (`Progress`), the budget they
are measured against, what is due after a step, the training loss between two rows, and the two ways a
run is not trained to its end (`RunFailed`, `AlreadyFinished`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import torch

from pileablate.errors import UserError
from pileablate.train.config import TrainConfig
from pileablate.train.schedule import budget_progress


class RunFailed(UserError):
    """The run stopped because its numbers cannot be trusted (guard, non-finite or implausible loss).

    The summary (status "failed") is written before this is raised and is available as `.summary`.
    """

    exit_code = 1

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


class AlreadyFinished(Exception):
    """The run of this name has already reached this budget: there is nothing to build or train."""

    def __init__(self, summary: dict):
        super().__init__(summary.get("name"))
        self.summary = summary


@dataclass
class Progress:
    """Counters saved in the checkpoint: where the run is."""

    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0  # training time only (evaluation and checkpoint writing excluded)
    best_val_loss: Optional[float] = None
    last_val_loss: Optional[float] = None
    last_train_loss: Optional[float] = None
    flags: list = field(default_factory=list)

    def to_state(self) -> dict:
        return dataclasses.asdict(self)

    def fraction(self, cfg: TrainConfig) -> float:
        """How much of the budget is used (0..1): what warmup and cosine follow."""
        return budget_progress(self.step, self.tokens, self.elapsed_s, cfg.max_steps, cfg.max_tokens, cfg.time_limit)


def budget_reached(p: Progress, cfg: TrainConfig) -> Optional[str]:
    if cfg.max_steps is not None and p.step >= cfg.max_steps:
        return "max_steps"
    if cfg.max_tokens is not None and p.tokens >= cfg.max_tokens:
        return "max_tokens"
    if cfg.time_limit is not None and p.elapsed_s >= cfg.time_limit:
        return "time_limit"
    return None


@dataclass
class Ending:
    """How the loop ended: "finished", "stopped" (interrupted; resumable) or "failed" (with why)."""

    status: str
    stop_reason: Optional[str]
    failure: Optional[str] = None


@dataclass
class Due:
    """What the loop does after a step: write a metrics row, evaluate, checkpoint."""

    row: bool
    evaluation: bool
    checkpoint: bool


@dataclass
class LossInterval:
    """The training loss summed on the device between two metrics rows, so a step never waits for it."""

    loss: torch.Tensor
    steps: int
    start_tokens: int
    start_elapsed_s: float

    @classmethod
    def starting_at(cls, p: Progress, device: torch.device) -> "LossInterval":
        return cls(torch.zeros((), dtype=torch.float32, device=device), 0, p.tokens, p.elapsed_s)

    def add(self, step_loss: torch.Tensor) -> None:
        self.loss += step_loss
        self.steps += 1

    def tokens_per_s(self, p: Progress) -> float:
        return (p.tokens - self.start_tokens) / max(1e-9, p.elapsed_s - self.start_elapsed_s)
