"""One training run, built whole: `open_session` makes a `Session` ready for its first (or next) step.

Everything a run holds is built in one place, in order: the resolved settings, the model (seeded), the
data windows, the run folder (new, or an existing run continued after checking it is the same run), the
guards on the fresh model (on the training device), the optimizer, the loss scaler, the checkpoint's
state when resuming, and the model the loop calls (compiled, DDP-wrapped). A run that has already
reached its budget is not built: `open_session` raises `AlreadyFinished` with its summary. `Session`
then offers the pieces the loop in `trainer.py` calls around its steps; the loop itself shows when it
evaluates, checkpoints and logs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console

from pileablate import __version__, runfolder, runlock
from pileablate.errors import UserError
from pileablate.model.config import ModelConfig
from pileablate.runfolder import MetricsLog
from pileablate.train import config as tc
from pileablate.train.checkpoint import checkpoint_state, restore_checkpoint
from pileablate.train.config import TrainConfig
from pileablate.train.data_loader import BatchLayout, BatchPrefetcher, TrainWindows, ValWindows, verify_training_data
from pileablate.train.distributed import DistInfo, reduce_max, reduce_sum, share_from_main
from pileablate.train.hardware import autocast_context, configure_backends, pick_precision
from pileablate.train.metrics import MIN_PLAUSIBLE_BITS_PER_BYTE, bits_per_byte, peak_flops
from pileablate.train.plan import ParamCounts, RunPlan
from pileablate.train.optimizer import NamedSchedule, learning_rates, make_optimizer, make_schedule, set_learning_rate
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


@dataclass(frozen=True)
class RunData:
    """The prepared data a run reads: its training windows (the same for every modification of a seed),
    the fixed validation (or tuning) windows, and what converts nats/token to bits/byte."""

    windows: TrainWindows
    val: ValWindows
    val_bytes_per_token: float
    fingerprint: str  # the manifest's: the data's identity
    tokenizer: dict

    @classmethod
    def open(cls, cfg: TrainConfig, seq_len: int, manifest: dict, info: DistInfo) -> "RunData":
        from pileablate.data.store import TokenSplit

        layout = BatchLayout(cfg.batch_size, cfg.grad_accum, info.world_size, info.rank)
        val_stats = manifest["splits"]["val"]
        return cls(windows=TrainWindows(TokenSplit(cfg.data / "train"), seq_len, layout, cfg.seed),
                   val=ValWindows(TokenSplit(cfg.data / "val"), seq_len, cfg.eval_tokens, tuning=cfg.tuning),
                   val_bytes_per_token=val_stats["bytes"] / max(1, val_stats["tokens"]),
                   fingerprint=manifest["fingerprint"], tokenizer=manifest["tokenizer"])

    @property
    def tokens_per_step(self) -> int:
        return self.windows.layout.global_windows * self.windows.seq_len


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
        return {**run_identity(cfg), "mods": ",".join(cfg.mods) or "baseline",
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


def role_of(cfg: TrainConfig) -> str:
    """"tuning": a run that chooses a learning rate (scored on the tuning windows, never reported);
    "report": a run whose loss on the validation windows is what reports compare."""
    return "tuning" if cfg.tuning else "report"


def run_identity(cfg: TrainConfig) -> dict:
    """What config.json, summary.json and the trackers all say the run is."""
    return {"name": cfg.name, "mods": list(cfg.mods), "seed": cfg.seed, "preset": cfg.preset, "role": role_of(cfg)}


def run_summary(cfg: TrainConfig, counts: ParamCounts, run_dir: Path, data: RunData, p: Progress, guards: dict,
                status: str, stop_reason: Optional[str], peak_mem: Optional[int] = None) -> dict:
    """summary.json: what the run is and how it stands, whatever became of it."""
    finite_val = p.last_val_loss is not None and math.isfinite(p.last_val_loss)
    return {
        **run_identity(cfg), "lr": cfg.lr, "params_total": counts.total, "params_active": counts.active,
        "budget": runfolder.budget_of(cfg), "run_dir": str(run_dir),
        "status": status, "stop_reason": stop_reason, "steps": p.step, "tokens": p.tokens, "elapsed_s": p.elapsed_s,
        "final_train_loss": p.last_train_loss, "final_val_loss": p.last_val_loss, "best_val_loss": p.best_val_loss,
        "val_bits_per_byte": bits_per_byte(p.last_val_loss, data.val_bytes_per_token) if finite_val else None,
        "epochs": data.windows.epochs(p.tokens), "tokens_per_s": p.tokens / p.elapsed_s if p.elapsed_s > 0 else None,
        "peak_mem_bytes": peak_mem, "guards": guards, "flags": sorted(set(p.flags)),
    }


# ---------------------------------------------------------------------------------------------
# Building the session.

def open_session(requested: TrainConfig, info: DistInfo, device: torch.device, console: Console) -> Session:
    """The run, fully built and ready for its first (or next) step.

    Raises AlreadyFinished (with its summary) when the run of this name has already reached this budget,
    RunFailed when the fresh model fails its guards, UserError for settings that cannot work."""
    from pileablate.data.manifest import read_manifest
    from pileablate.model.gpt import GPT
    from pileablate.train.plan import plan_run

    say = console.print if info.is_main else (lambda *a, **k: None)
    manifest = read_manifest(requested.data)
    for split in ("train", "val"):
        if not (requested.data / split).is_dir():
            raise UserError(f"{requested.data} has no {split} split; run 'pileablate prepare' again")
    verify_training_data(requested.data, info, console)  # before any run folder is made
    plan = plan_run(requested, manifest["vocab_size"])
    cfg, model_cfg = plan.settings, plan.model
    precision = pick_precision(cfg.precision, device)
    configure_backends(device)
    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg)
    data = RunData.open(cfg, model_cfg.seq_len, manifest, info)
    schedule = make_schedule(cfg)
    schedule_kind = schedule.kind
    run_dir = cfg.runs_dir / cfg.name
    if info.is_main:  # one process per run folder, before anything in it is read (RunHeld otherwise)
        runlock.claim(run_dir)
    model.to(device)  # the guards run where the model trains
    # Built once, before the guards: an optimizer draws no random numbers, and config.json records the
    # rate of each of its groups.
    optimizer = make_optimizer(model, cfg, device)
    config = _run_config(cfg, model_cfg, data, schedule_kind, precision, info, device)
    config["learning_rates"] = learning_rates(optimizer, cfg.lr)
    resuming = _continue_or_start(run_dir, config, cfg, info, say)

    guards = _run_guards(model, cfg, plan.params, run_dir, data, info, device)
    torch.manual_seed(cfg.seed)  # training randomness independent of what the guards drew
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    progress = Progress(**restore_checkpoint(runfolder.load_checkpoint(run_dir), model, optimizer, scaler, precision)) \
        if resuming else Progress()
    metrics = _open_metrics(run_dir, progress.step if resuming else None, info, say)
    checkpoint_steps, checkpoint_seconds = tc.parse_checkpoint_every(cfg.checkpoint_every)
    session = Session(
        plan=plan, info=info, device=device, console=console, precision=precision,
        model=model, train_model=_training_model(model, cfg, info, device),
        run_dir=run_dir, data=data, schedule=schedule,
        schedule_kind=schedule_kind, optimizer=optimizer, scaler=scaler, metrics=metrics, progress=progress,
        resuming=resuming, guards=guards, checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds,
        flops_per_token=model.flops_per_token(),
        peak_flops_per_s=peak_flops(torch.cuda.get_device_name(device), precision) if device.type == "cuda" else None,
        last_ckpt_step=progress.step, last_row_step=progress.step,
    )
    session.write_summary("running", None)
    return session


def _run_config(cfg: TrainConfig, model_cfg, data: RunData, schedule_kind: str, precision: str, info: DistInfo,
                device: torch.device) -> dict:
    """config.json: everything that defines the run, and where it ran."""
    return {
        **run_identity(cfg), "model": dataclasses.asdict(model_cfg), "train": cfg.to_json(),
        "data": {"dir": str(cfg.data), "fingerprint": data.fingerprint, "tokenizer": data.tokenizer,
                 "vocab_size": model_cfg.vocab_size, "val_bytes_per_token": data.val_bytes_per_token},
        "schedule": schedule_kind, "tokens_per_step": data.tokens_per_step, "world_size": info.world_size,
        "hardware": {"device": str(device), "precision": precision, "torch": torch.__version__,
                     "threads": torch.get_num_threads(),  # CPU threads change a loss's last digits
                     "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type},
        "pileablate_version": __version__, "created": datetime.now(timezone.utc).isoformat(),
    }


def _continue_or_start(run_dir: Path, config: dict, cfg: TrainConfig, info: DistInfo, say) -> bool:
    """Write config.json for this session; True when an existing run is continued from its checkpoint.

    An existing run of this name must be the same run (runfolder.check_same_run); one that has already
    reached this budget raises AlreadyFinished."""
    old = runfolder.read_config(run_dir)
    resuming = False
    if old is not None:
        for note in runfolder.check_same_run(run_dir, old, config):
            say(f"[yellow]note:[/yellow] {note}", highlight=False)
        config["created"] = old.get("created", config["created"])
        resuming = runfolder.checkpoint_path(run_dir).exists()
    elif cfg.resume:
        raise UserError(f"no run '{cfg.name}' in {cfg.runs_dir} to resume; drop --resume to start it")
    summary = (runfolder.read_summary(run_dir) or {}) if resuming else {}
    reached = Progress(step=summary.get("steps") or 0, tokens=summary.get("tokens") or 0,
                       elapsed_s=summary.get("elapsed_s") or 0.0)
    if summary.get("status") == "finished" and budget_reached(reached, cfg):
        further = ("pass a new --name to train it with another budget (its schedule follows the budget)"
                   if config["schedule"] != "constant" else "raise its budget to train further, or pass a new --name")
        say(f"run '{cfg.name}' is already finished ({summary.get('steps')} steps, {summary.get('tokens'):,} tokens, "
            f"stop: {summary.get('stop_reason')}); {further}", highlight=False)
        raise AlreadyFinished(summary)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        runfolder.write_config(run_dir, config)
    return resuming


def _run_guards(model, cfg: TrainConfig, counts: ParamCounts, run_dir: Path, data: RunData, info: DistInfo,
                device: torch.device) -> dict:
    """Causality and initial-loss checks on the freshly initialised model, before any step (and before
    loading weights): a model that sees what it predicts never trains. They run on the training device
    on a small slice of the first batch (`guards.probe_slice`); under torchrun rank 0 runs them and
    every rank acts on its verdict."""
    guards = _guard_verdict(model, data.windows) if info.is_main else None
    guards = share_from_main(guards, info)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the peak memory reported is the training's
    if "error" in guards:
        summary = run_summary(cfg, counts, run_dir, data, Progress(flags=["guard_failed"]), guards, "failed",
                              "guard_failed")
        if info.is_main:
            runfolder.write_summary(run_dir, summary)
        raise RunFailed(f"guard failed before training: {guards['error']}", summary)
    return guards


def _guard_verdict(model: torch.nn.Module, windows: TrainWindows) -> dict:
    """{"causality": "passed"|"failed", "initial_loss": float|"failed"|None[, "error": why]}."""
    from pileablate.model.guards import check_causality, check_initial_loss, probe_slice

    guards: dict = {"causality": None, "initial_loss": None}
    try:
        check_causality(model)
        guards["causality"] = "passed"
        guards["initial_loss"] = check_initial_loss(model, *probe_slice(*windows.micro_batch(0, 0)))
    except UserError as err:
        return {"causality": guards["causality"] or "failed",
                "initial_loss": "failed" if guards["causality"] else None, "error": str(err)}
    return guards


def _open_metrics(run_dir: Path, resume_step: Optional[int], info: DistInfo, say) -> MetricsLog:
    """The run's metrics.jsonl, cut back to the checkpoint when resuming (rows after it are trained
    again), or started over (rows of a session that died before its first checkpoint)."""
    metrics = MetricsLog(run_dir, enabled=info.is_main)
    if resume_step is None:
        metrics.start_over()
    for note in metrics.truncate_after(resume_step) if resume_step is not None else ():
        say(f"[yellow]note:[/yellow] {note}", highlight=False)
    return metrics


def _training_model(model: torch.nn.Module, cfg: TrainConfig, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """What the training step calls: the model, compiled (--compile) and wrapped for DDP (torchrun)."""
    # PILEABLATE_COMPILE_BACKEND: another torch.compile backend ("eager" traces without generating code:
    # the test suite checks on a CPU that a model compiles, which is where users' files broke).
    backend = os.environ.get("PILEABLATE_COMPILE_BACKEND", "inductor")
    train_model = torch.compile(model, backend=backend) if cfg.compile else model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)
    return train_model
