"""`Session`: one run being trained, fully built (`pileablate.train.build.open_session`), and the
named pieces the loop in `trainer.py` calls around its steps: the learning rate, the gradient sync and
clipping, what is due after a step, the metrics rows, the evaluation and its honest-loss checks, the
checkpoint and the summary."""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console

from pileablate import runfolder
from pileablate.model.config import ModelConfig
from pileablate.runfolder import MetricsLog
from pileablate.train.checkpoint import checkpoint_state
from pileablate.train.config import TrainConfig
from pileablate.train.data_loader import BatchPrefetcher
from pileablate.train.distributed import DistInfo, reduce_max, reduce_sum
from pileablate.train.hardware import autocast_context
from pileablate.train.metrics import MIN_PLAUSIBLE_BITS_PER_BYTE, bits_per_byte
from pileablate.train.optimizer import NamedSchedule, set_learning_rate
from pileablate.train.plan import ParamCounts, RunPlan
from pileablate.train.record import run_identity, run_summary
from pileablate.train.run_data import RunData
from pileablate.train.state import Due, LossInterval, Progress, budget_reached


@dataclass
class Session:
    """One run being trained, fully built: its settings, model, data, optimizer, files and counters."""

    plan: RunPlan               # what the run is, resolved once (settings, model, parameter counts)
    info: DistInfo
    device: torch.device
    console: Console
    precision: str
    model: torch.nn.Module      # the weights (what is checkpointed and evaluated)
    train_model: torch.nn.Module  # what the training step calls: the model, compiled and/or DDP-wrapped
    run_dir: Path
    data: RunData
    schedule: NamedSchedule
    schedule_kind: str
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    metrics: MetricsLog
    progress: Progress
    resuming: bool
    guards: dict
    checkpoint_steps: Optional[int]      # --checkpoint-every as steps ...
    checkpoint_seconds: Optional[float]  # ... or as a duration
    flops_per_token: float
    peak_flops_per_s: Optional[float]    # of the GPU at this precision (for MFU); None on CPU
    # Where the loop is between rows and checkpoints.
    last_ckpt_step: int = 0
    last_ckpt_time: float = field(default_factory=time.monotonic)
    last_row_step: int = 0
    stop_agreed: bool = False
    last_tokens_per_s: Optional[float] = None  # none before the first row

    @property
    def cfg(self) -> TrainConfig:
        """The resolved settings (defaults filled): what config.json records."""
        return self.plan.settings

    @property
    def model_cfg(self) -> ModelConfig:
        return self.plan.model

    @property
    def counts(self) -> ParamCounts:
        return self.plan.params

    @property
    def tokens_per_step(self) -> int:
        return self.data.tokens_per_step

    # -- messages --------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if self.info.is_main:
            self.console.print(message, highlight=False)

    # -- one step's pieces -----------------------------------------------------------------------
    def prefetch_batches(self) -> BatchPrefetcher:
        """Each step's micro-batches on the device, from the current step on, prepared ahead of the step
        (the same for every modification). Close it (`with`) when the loop ends."""
        return BatchPrefetcher(self.data.windows, self.device, self.progress.step, self.cfg.grad_accum)

    def set_lr(self) -> float:
        lr = self.schedule(self.progress.step, self.progress.fraction(self.cfg))
        set_learning_rate(self.optimizer, lr)
        return lr

    def gradient_sync(self, micro: int):
        """DDP all-reduces gradients on the last micro-batch of a step only."""
        last = micro == self.cfg.grad_accum - 1
        return nullcontext() if (not self.info.enabled or last) else self.train_model.no_sync()

    def clip_gradients(self) -> Optional[torch.Tensor]:
        """The global gradient norm, clipped to --grad-clip; nothing to do (None) when clipping is off."""
        if not self.cfg.grad_clip:
            return None
        self.scaler.unscale_(self.optimizer)
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)

    def due_after_step(self, stop_requested: bool) -> Due:
        """What is due now. Clocks and signals differ per rank: they are reduced to their maximum so
        that every rank decides alike."""
        p, cfg = self.progress, self.cfg
        ckpt_due = self.checkpoint_seconds is not None and time.monotonic() - self.last_ckpt_time >= self.checkpoint_seconds
        if self.info.enabled:
            p.elapsed_s, any_stop, any_due = reduce_max([p.elapsed_s, float(stop_requested), float(ckpt_due)],
                                                        self.info, self.device)
            self.stop_agreed, ckpt_due = bool(any_stop), bool(any_due)
        evaluation = p.step % cfg.eval_every == 0 or budget_reached(p, cfg) is not None
        checkpoint = ckpt_due or (self.checkpoint_steps is not None and p.step - self.last_ckpt_step >= self.checkpoint_steps)
        return Due(row=p.step % cfg.log_every == 0 or evaluation or checkpoint, evaluation=evaluation, checkpoint=checkpoint)

    def stop_now(self, stop_requested: bool) -> bool:
        """An interrupt ends the run; under DDP only once every rank has agreed on it (due_after_step)."""
        return self.stop_agreed if self.info.enabled else stop_requested

    def show(self, live, lr: float) -> None:
        p = self.progress
        live.update(progress=p.fraction(self.cfg), step=p.step, train_loss=p.last_train_loss, val_loss=p.last_val_loss,
                    lr=lr, tokens_per_s=self.last_tokens_per_s, elapsed_s=p.elapsed_s,
                    epoch=self.data.windows.epochs(p.tokens))

    def tracker_config(self) -> dict:
        """The hyperparameters a tracker shows beside the curves: what tells an ablation's runs apart."""
        cfg = self.cfg
        return {**dataclasses.asdict(run_identity(cfg)), "mods": ",".join(cfg.mods) or "baseline",
                "lr": cfg.lr, "min_lr": cfg.min_lr, "schedule": self.schedule_kind, "warmup_steps": cfg.warmup_steps,
                "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "tokens_per_step": self.tokens_per_step,
                "seq_len": self.model_cfg.seq_len, "params_total": self.counts.total,
                "params_active": self.counts.active, "budget": runfolder.budget_of(cfg),
                "data_fingerprint": self.data.fingerprint, "precision": self.precision, "world_size": self.info.world_size}

    # -- metrics rows and evaluation -------------------------------------------------------------
    def training_row(self, interval: LossInterval, lr: float, grad_norm: Optional[torch.Tensor]) -> tuple[dict, Optional[str]]:
        """A metrics row with the mean training loss since the last row (over all ranks), and why the run
        must stop if that loss is not finite (the row is then not to be written)."""
        p = self.progress
        mean_loss = reduce_sum([(interval.loss / interval.steps).item()], self.info, self.device)[0] / self.info.world_size
        if not math.isfinite(mean_loss):
            p.flags.append("non_finite_loss")
            return {}, (f"the training loss became {mean_loss} by step {p.step}; the run is stopped and its last good "
                        f"checkpoint (step {self.last_ckpt_step}) kept. Try a lower --lr, --precision bf16/fp32, or --grad-clip 1")
        p.last_train_loss = mean_loss
        norm = None if grad_norm is None else float(grad_norm)
        if norm is not None and not math.isfinite(norm):
            norm = None  # fp16 steps skipped by the loss scaler; JSON has no inf
        row = {"step": p.step, "tokens": p.tokens, "elapsed_s": p.elapsed_s, "lr": lr, "train_loss": mean_loss,
               "grad_norm": norm, "tokens_per_s": interval.tokens_per_s(p), "epoch": self.data.windows.epochs(p.tokens)}
        if self.device.type == "cuda":
            row["peak_mem_bytes"] = torch.cuda.max_memory_allocated(self.device)
            if self.peak_flops_per_s:
                row["mfu"] = self.flops_per_token * row["tokens_per_s"] / (self.peak_flops_per_s * self.info.world_size)
        return row, None

    def write_row(self, row: dict, tracker) -> None:
        """The row to metrics.jsonl and the live trackers."""
        self.metrics.write(row)
        tracker.log(row)
        self.last_row_step, self.last_tokens_per_s = self.progress.step, row["tokens_per_s"]

    def evaluate(self) -> float:
        """Mean next-token loss over the fixed validation windows (shared out across ranks)."""
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        with torch.no_grad():
            for x, y in self.data.val.batches(self.cfg.batch_size * 2, self.info.rank, self.info.world_size):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                with autocast_context(self.device, self.precision):
                    loss = self.model(x, y).loss
                total += loss.double() * x.numel()
                count += x.numel()
        self.model.train()
        loss_sum, n = reduce_sum([total.item(), float(count)], self.info, self.device)
        return loss_sum / n

    def record_eval(self, row: dict, val_loss: float) -> Optional[str]:
        """The validation loss into the row and the counters; why the run must stop if it is not finite
        or implausibly low."""
        p = self.progress
        if not math.isfinite(val_loss):
            row["val_loss"] = None
            p.flags.append("non_finite_loss")
            return f"the validation loss became {val_loss} at step {p.step}; the run is stopped"
        bpb = bits_per_byte(val_loss, self.data.val_bytes_per_token)
        row["val_loss"], row["val_bits_per_byte"] = val_loss, bpb
        p.last_val_loss = val_loss  # kept as evidence; an implausible value never becomes the best
        if bpb < MIN_PLAUSIBLE_BITS_PER_BYTE:
            p.flags.append("implausible_loss")
            return (f"validation loss {val_loss:.4f} nats/token = {bpb:.3f} bits/byte at step {p.step} is below the "
                    f"plausibility floor of {MIN_PLAUSIBLE_BITS_PER_BYTE} bits/byte: the model sees what it predicts "
                    "(a causality leak or validation data in training); the run is marked failed")
        p.best_val_loss = val_loss if p.best_val_loss is None else min(p.best_val_loss, val_loss)
        return None

    # -- checkpoint and summary ------------------------------------------------------------------
    def save(self) -> None:
        if self.info.is_main:
            runfolder.save_checkpoint(self.run_dir, checkpoint_state(self.model, self.optimizer, self.scaler,
                                                                     self.precision, self.progress.to_state()))
        self.last_ckpt_time, self.last_ckpt_step = time.monotonic(), self.progress.step

    def write_summary(self, status: str, stop_reason: Optional[str], peak_mem: Optional[int] = None) -> dict:
        summary = run_summary(self.cfg, self.counts, self.run_dir, self.data, self.progress, self.guards, status,
                              stop_reason, peak_mem)
        if self.info.is_main:
            runfolder.write_summary(self.run_dir, summary)
        return summary
