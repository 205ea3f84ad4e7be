"""Everything one training run holds while it trains, and the pieces the loop calls around its steps.

`open_session` builds it: the model (seeded), the resolved settings, the run folder (new, or an existing
run continued after checking it is the same run), the guards on the fresh model (on the training
device), the optimizer, the loss scaler and, when resuming, the checkpoint's state. `Session` then
offers what the loop in `trainer.py` needs around its steps: the batches prefetched, the metrics row,
evaluation, checkpoints and the summary.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import torch
from rich.console import Console

from pileablate import __version__
from pileablate.errors import UserError
from pileablate.train import config as tc
from pileablate.train.checkpoint import checkpoint_path, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pileablate.train.config import TrainConfig
from pileablate.train.data_loader import BatchLayout, BatchPrefetcher, TrainWindows, ValWindows
from pileablate.train.distributed import DistInfo, reduce_max, reduce_sum, share_from_main
from pileablate.train.hardware import autocast_context, configure_backends, pick_precision
from pileablate.train.metrics import MIN_PLAUSIBLE_BITS_PER_BYTE, MetricsLog, bits_per_byte, peak_flops
from pileablate.jsonfile import read_json, write_json_atomic
from pileablate.train.run_files import check_same_run
from pileablate.train.schedule import Schedule, budget_progress
from pileablate.train.trackers import Trackers, group_name, open_tracker, tensorboard_dir


class RunFailed(UserError):
    """The run stopped because its numbers cannot be trusted (guard, non-finite or implausible loss).

    The summary (status "failed") is written before this is raised and is available as `.summary`.
    """

    exit_code = 1

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
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
        return budget_progress(self.step, self.tokens, self.elapsed_s, cfg.max_steps, cfg.max_tokens, cfg.time_limit_s)


def budget_reached(p: Progress, cfg: TrainConfig) -> Optional[str]:
    if cfg.max_steps is not None and p.step >= cfg.max_steps:
        return "max_steps"
    if cfg.max_tokens is not None and p.tokens >= cfg.max_tokens:
        return "max_tokens"
    if cfg.time_limit_s is not None and p.elapsed_s >= cfg.time_limit_s:
        return "time_limit"
    return None


@dataclass
class Ending:
    """How the loop ended: "finished", "stopped" (interrupted; resumable) or "failed" (with why)."""

    status: str
    stop_reason: Optional[str]
    failure: Optional[str] = None


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


@dataclass
class Session:
    """One run being trained: its settings, model, data, optimizer, files and counters."""

    cfg: TrainConfig            # resolved (defaults filled): what config.json records
    requested: TrainConfig      # as given (to tell a default budget from a chosen one)
    info: DistInfo
    device: torch.device
    console: Console
    precision: str
    model: torch.nn.Module
    model_cfg: object
    counts: dict
    run_dir: Path
    windows: TrainWindows
    val: ValWindows
    val_bytes_per_token: float
    schedule: Schedule
    schedule_kind: str
    tokens_per_step: int
    progress: Progress
    resuming: bool
    guards: dict
    metrics: MetricsLog
    optimizer: Optional[torch.optim.Optimizer] = None
    scaler: Optional[torch.amp.GradScaler] = None
    train_model: Optional[torch.nn.Module] = None
    last_ckpt_step: int = 0
    last_ckpt_time: float = field(default_factory=time.monotonic)
    last_row_step: int = 0
    stop_agreed: bool = False
    last_tokens_per_s: Optional[float] = None
    checkpoint_steps: Optional[int] = None      # --checkpoint-every as steps ...
    checkpoint_seconds: Optional[float] = None  # ... or as a duration
    flops_per_token: float = 0.0
    peak_flops_per_s: Optional[float] = None    # of the GPU at this precision (for MFU); None on CPU
    fingerprint: str = ""                       # the data's identity (manifest fingerprint)
    tracker: Trackers = field(default_factory=Trackers)  # live curves (TensorBoard, W&B); none by default

    # -- messages --------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if self.info.is_main:
            self.console.print(message, highlight=False)

    # -- one step's pieces -----------------------------------------------------------------------
    def prefetch_batches(self) -> BatchPrefetcher:
        """Each step's micro-batches on the device, from the current step on, prepared ahead of the step
        (the same for every modification). Close it (`with`) when the loop ends."""
        return BatchPrefetcher(self.windows, self.device, self.progress.step, self.cfg.grad_accum)

    def set_lr(self) -> float:
        lr = self.schedule(self.progress.step, self.progress.fraction(self.cfg))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def gradient_sync(self, micro: int):
        """DDP all-reduces gradients on the last micro-batch of a step only."""
        from contextlib import nullcontext

        last = micro == self.cfg.grad_accum - 1
        return nullcontext() if (not self.info.enabled or last) else self.train_model.no_sync()

    def after_step(self, stop_requested: bool) -> tuple[bool, bool, bool]:
        """(write a metrics row, evaluate, checkpoint) now. Clocks and signals differ per rank: they are
        reduced to their maximum so that every rank decides alike."""
        p, cfg = self.progress, self.cfg
        ckpt_steps, ckpt_seconds = self.checkpoint_steps, self.checkpoint_seconds
        ckpt_due = ckpt_seconds is not None and time.monotonic() - self.last_ckpt_time >= ckpt_seconds
        if self.info.enabled:
            p.elapsed_s, any_stop, any_due = reduce_max([p.elapsed_s, float(stop_requested), float(ckpt_due)],
                                                        self.info, self.device)
            self.stop_agreed, ckpt_due = bool(any_stop), bool(any_due)
        evaluate = p.step % cfg.eval_every == 0 or budget_reached(p, cfg) is not None
        checkpoint = ckpt_due or (ckpt_steps is not None and p.step - self.last_ckpt_step >= ckpt_steps)
        row = p.step % cfg.log_every == 0 or evaluate or checkpoint
        return row, evaluate, checkpoint

    def stop_now(self, stop_requested: bool) -> bool:
        """An interrupt ends the run; under DDP only once every rank has agreed on it (after_step)."""
        return self.stop_agreed if self.info.enabled else stop_requested

    def show(self, live, lr: float) -> None:
        p = self.progress
        live.update(progress=p.fraction(self.cfg), step=p.step, train_loss=p.last_train_loss, val_loss=p.last_val_loss,
                    lr=lr, tokens_per_s=self.last_tokens_per_s, elapsed_s=p.elapsed_s, epoch=self.windows.epochs(p.tokens))

    def open_tracker(self) -> Trackers:
        """The run's live curves (--tracker), on the main process, grouped by runs folder; a resumed
        run continues its own curves from its checkpoint's step."""
        cfg = self.cfg
        self.tracker = open_tracker(cfg.trackers, run_dir=self.run_dir, run_name=cfg.name, group=group_name(cfg.runs_dir),
                                    group_dir=tensorboard_dir(cfg.runs_dir), config=self.tracker_config(),
                                    resume_step=self.progress.step, is_main=self.info.is_main, console=self.console)
        return self.tracker

    def tracker_config(self) -> dict:
        """The hyperparameters a tracker shows beside the curves: what tells an ablation's runs apart."""
        cfg = self.cfg
        return {"mods": ",".join(cfg.mods) or "baseline", "preset": cfg.preset, "seed": cfg.seed, "role": role_of(cfg),
                "lr": cfg.lr, "min_lr": cfg.min_lr, "schedule": self.schedule_kind, "warmup_steps": cfg.warmup_steps,
                "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "tokens_per_step": self.tokens_per_step,
                "seq_len": self.model_cfg.seq_len, "params_total": self.counts["total"],
                "params_active": self.counts["active"],
                "budget": {"time_limit_s": cfg.time_limit_s, "max_tokens": cfg.max_tokens, "max_steps": cfg.max_steps},
                "data_fingerprint": self.fingerprint, "precision": self.precision, "world_size": self.info.world_size}

    # -- metrics, evaluation, checkpoints --------------------------------------------------------
    def write_row(self, interval: LossInterval, lr: float, grad_norm: Optional[float], evaluate: bool) -> Optional[str]:
        """The one metrics.jsonl row writer: mean training loss since the last row (all ranks), and the
        validation loss when due. Returns why the run must stop (non-finite or implausible loss), if so."""
        p = self.progress
        mean_loss = reduce_sum([(interval.loss / interval.steps).item()], self.info, self.device)[0] / self.info.world_size
        if not math.isfinite(mean_loss):
            p.flags.append("non_finite_loss")
            return (f"the training loss became {mean_loss} by step {p.step}; the run is stopped and its last good "
                    f"checkpoint (step {self.last_ckpt_step}) kept. Try a lower --lr, --precision bf16/fp32, or --grad-clip 1")
        p.last_train_loss = mean_loss
        if grad_norm is not None and not math.isfinite(grad_norm):
            grad_norm = None  # fp16 steps skipped by the loss scaler; JSON has no inf
        row = {"step": p.step, "tokens": p.tokens, "elapsed_s": p.elapsed_s, "lr": lr, "train_loss": mean_loss,
               "grad_norm": grad_norm, "tokens_per_s": interval.tokens_per_s(p), "epoch": self.windows.epochs(p.tokens)}
        failure = self.record_eval(row, self.evaluate()) if evaluate else None
        if self.device.type == "cuda":
            row["peak_mem_bytes"] = torch.cuda.max_memory_allocated(self.device)
            if self.peak_flops_per_s:
                row["mfu"] = self.flops_per_token * row["tokens_per_s"] / (self.peak_flops_per_s * self.info.world_size)
        self.metrics.write(row)
        self.tracker.log(row)
        self.last_row_step, self.last_tokens_per_s = p.step, row["tokens_per_s"]
        return failure

    def evaluate(self) -> float:
        """Mean next-token loss over the fixed validation windows (shared out across ranks)."""
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        with torch.no_grad():
            for x, y in self.val.batches(self.cfg.batch_size * 2, self.info.rank, self.info.world_size):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                with autocast_context(self.device, self.precision):
                    loss = self.model(x, y).loss
                total += loss.double() * x.numel()
                count += x.numel()
        self.model.train()
        loss_sum, n = reduce_sum([total.item(), float(count)], self.info, self.device)
        return loss_sum / n

    def record_eval(self, row: dict, val_loss: float) -> Optional[str]:
        p = self.progress
        if not math.isfinite(val_loss):
            row["val_loss"] = None
            p.flags.append("non_finite_loss")
            return f"the validation loss became {val_loss} at step {p.step}; the run is stopped"
        bpb = bits_per_byte(val_loss, self.val_bytes_per_token)
        row["val_loss"], row["val_bits_per_byte"] = val_loss, bpb
        p.last_val_loss = val_loss  # kept as evidence; an implausible value never becomes the best
        if bpb < MIN_PLAUSIBLE_BITS_PER_BYTE:
            p.flags.append("implausible_loss")
            return (f"validation loss {val_loss:.4f} nats/token = {bpb:.3f} bits/byte at step {p.step} is below the "
                    f"plausibility floor of {MIN_PLAUSIBLE_BITS_PER_BYTE} bits/byte: the model sees what it predicts "
                    "(a causality leak or validation data in training); the run is marked failed")
        p.best_val_loss = val_loss if p.best_val_loss is None else min(p.best_val_loss, val_loss)
        return None

    def save(self) -> None:
        if self.info.is_main:
            save_checkpoint(checkpoint_path(self.run_dir), {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.precision == "fp16" else {},
                "progress": self.progress.to_state(), "rng": rng_state(),
            })
        self.last_ckpt_time, self.last_ckpt_step = time.monotonic(), self.progress.step

    def write_summary(self, status: str, stop_reason: Optional[str], peak_mem: Optional[int] = None) -> dict:
        p = self.progress
        summary = {
            **summary_identity(self.cfg, self.counts, self.run_dir), "status": status, "stop_reason": stop_reason,
            "steps": p.step, "tokens": p.tokens, "elapsed_s": p.elapsed_s,
            "final_train_loss": p.last_train_loss, "final_val_loss": p.last_val_loss, "best_val_loss": p.best_val_loss,
            "val_bits_per_byte": None, "epochs": self.windows.epochs(p.tokens),
            "tokens_per_s": p.tokens / p.elapsed_s if p.elapsed_s > 0 else None,
            "peak_mem_bytes": peak_mem, "guards": self.guards, "flags": sorted(set(p.flags)),
        }
        if p.last_val_loss is not None and math.isfinite(p.last_val_loss):
            summary["val_bits_per_byte"] = bits_per_byte(p.last_val_loss, self.val_bytes_per_token)
        if self.info.is_main:
            write_json_atomic(self.run_dir / "summary.json", summary)
        return summary


def role_of(cfg: TrainConfig) -> str:
    """"tuning": a run that chooses a learning rate (scored on the tuning windows, never reported);
    "report": a run whose loss on the validation windows is what reports compare."""
    return "tuning" if cfg.tuning else "report"


def summary_identity(cfg: TrainConfig, counts: dict, run_dir: Path) -> dict:
    """What a summary says the run is, whatever became of it."""
    return {
        "name": cfg.name, "mods": list(cfg.mods), "seed": cfg.seed, "preset": cfg.preset, "role": role_of(cfg),
        "lr": cfg.lr, "params_total": counts["total"], "params_active": counts["active"],
        "budget": {"time_limit_s": cfg.time_limit_s, "max_tokens": cfg.max_tokens, "max_steps": cfg.max_steps},
        "run_dir": str(run_dir),
    }


# ---------------------------------------------------------------------------------------------
# Building the session.

def resolve_config(cfg: TrainConfig, mods: tuple[str, ...], params_active: int) -> TrainConfig:
    """Fill the per-preset and budget defaults (the values config.json records)."""
    from pileablate.model.registry import SEED_MODS

    defaults = tc.preset_defaults(cfg.preset)
    lr = cfg.lr if cfg.lr is not None else defaults["lr"]
    no_budget = cfg.max_steps is None and cfg.max_tokens is None and cfg.time_limit_s is None
    return dataclasses.replace(
        cfg,
        mods=mods,
        name=cfg.name or tc.default_run_name(mods, cfg.seed, SEED_MODS),
        lr=lr,
        min_lr=cfg.min_lr if cfg.min_lr is not None else lr / 10,
        batch_size=cfg.batch_size if cfg.batch_size is not None else defaults["batch_size"],
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps is not None else tc.DEFAULT_WARMUP_STEPS,
        max_tokens=tc.DEFAULT_TOKENS_PER_PARAM * params_active if no_budget else cfg.max_tokens,
    )


def make_optimizer(model, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) with decay on matrices only. The fused kernel (one pass over
    all parameters) on CUDA and CPU: on a CPU it is ~4x faster than the default per-tensor loop, which
    matters for small models where the optimizer step is a large share of the step."""
    groups = model.param_groups(cfg.weight_decay)
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)


def open_session(requested: TrainConfig, info: DistInfo, device: torch.device, console: Console) -> Union[Session, dict]:
    """A session ready for its first (or next) step, or the summary of a run that is already finished."""
    from pileablate.data.manifest import read_manifest
    from pileablate.data.store import TokenSplit
    from pileablate.model.config import build_model_config
    from pileablate.model.gpt import GPT
    from pileablate.model.registry import resolve_mods, trainer_changes

    mods = resolve_mods(requested.mods)
    manifest = read_manifest(requested.data_dir)
    for split in ("train", "val"):
        if not (requested.data_dir / split).is_dir():
            raise UserError(f"{requested.data_dir} has no {split} split; run 'pileablate prepare' again")
    model_cfg = build_model_config(requested.preset, mods, manifest["vocab_size"], match_params=requested.match_params,
                                   **requested.model_overrides())
    precision = pick_precision(requested.precision, device)
    configure_backends(device)
    torch.manual_seed(requested.seed)
    model = GPT(model_cfg)
    counts = model.num_params()
    cfg = resolve_config(requested, mods, counts["active"])
    layout = BatchLayout(cfg.batch_size, cfg.grad_accum, info.world_size, info.rank)
    val_stats = manifest["splits"]["val"]
    schedule_kind = trainer_changes(mods).get("schedule", "constant")
    session = Session(
        cfg=cfg, requested=requested, info=info, device=device, console=console, precision=precision,
        model=model, model_cfg=model_cfg, counts=counts, run_dir=cfg.runs_dir / cfg.name,
        windows=TrainWindows(TokenSplit(cfg.data_dir / "train"), model_cfg.seq_len, layout, cfg.seed),
        val=ValWindows(TokenSplit(cfg.data_dir / "val"), model_cfg.seq_len, cfg.eval_tokens, tuning=cfg.tuning),
        val_bytes_per_token=val_stats["bytes"] / max(1, val_stats["tokens"]),
        schedule=Schedule(schedule_kind, cfg.lr, cfg.min_lr, cfg.warmup_steps, tc.WARMUP_MAX_FRACTION),
        schedule_kind=schedule_kind, tokens_per_step=layout.global_windows * model_cfg.seq_len,
        progress=Progress(), resuming=False, guards={},
        metrics=MetricsLog(cfg.runs_dir / cfg.name / "metrics.jsonl", enabled=info.is_main),
        fingerprint=manifest["fingerprint"],
    )
    state, finished = _continue_or_start(session, manifest)
    if finished is not None:
        return finished
    model.to(device)  # the guards run where the model trains
    session.guards = _run_guards(session)
    _start_training_state(session, state)
    return session


def _run_config(s: Session, manifest: dict) -> dict:
    """config.json: everything that defines the run, and where it ran."""
    cfg, device = s.cfg, s.device
    return {
        "name": cfg.name, "mods": list(cfg.mods), "seed": cfg.seed, "preset": cfg.preset, "role": role_of(cfg),
        "model": dataclasses.asdict(s.model_cfg), "train": cfg.to_json(),
        "data": {"dir": str(cfg.data_dir), "fingerprint": manifest["fingerprint"],
                 "tokenizer": manifest["tokenizer"], "vocab_size": manifest["vocab_size"],
                 "val_bytes_per_token": s.val_bytes_per_token},
        "schedule": s.schedule_kind, "tokens_per_step": s.tokens_per_step, "world_size": s.info.world_size,
        "hardware": {"device": str(device), "precision": s.precision, "torch": torch.__version__,
                     "threads": torch.get_num_threads(),  # CPU threads change a loss's last digits
                     "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type},
        "pileablate_version": __version__, "created": datetime.now(timezone.utc).isoformat(),
    }


def _continue_or_start(s: Session, manifest: dict) -> tuple[Optional[dict], Optional[dict]]:
    """An existing run of this name is continued (if it is the same run) or reported finished.
    Returns (the checkpoint state to resume from or None, the summary of a run already finished or None)."""
    cfg = s.cfg
    run_config = _run_config(s, manifest)
    config_file, ckpt_file = s.run_dir / "config.json", checkpoint_path(s.run_dir)
    if config_file.exists():
        old = read_json(config_file)
        for note in check_same_run(s.run_dir, old, run_config):
            s.say(f"[yellow]note:[/yellow] {note}")
        run_config["created"] = old.get("created", run_config["created"])
        s.resuming = ckpt_file.exists()
    elif cfg.resume:
        raise UserError(f"no run '{cfg.name}' in {cfg.runs_dir} to resume; drop --resume to start it")

    state = None
    if s.resuming:
        state = load_checkpoint(ckpt_file)
        s.progress = Progress(**state["progress"])
        summary_file = s.run_dir / "summary.json"
        summary = read_json(summary_file) if summary_file.exists() else {}
        if budget_reached(s.progress, cfg) and summary.get("status") == "finished":
            further = ("pass a new --name to train it with another budget (its schedule follows the budget)"
                       if s.schedule_kind != "constant" else "raise its budget to train further, or pass a new --name")
            s.say(f"run '{cfg.name}' is already finished ({summary.get('steps')} steps, "
                  f"{summary.get('tokens'):,} tokens, stop: {summary.get('stop_reason')}); {further}")
            return None, summary
    if s.info.is_main:
        s.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_file, run_config)
    return state, None


def _run_guards(s: Session) -> dict:
    """Causality and initial-loss checks on the freshly initialised model, before any step (and before
    loading weights): a model that sees what it predicts never trains. They run on the training device
    on a small slice of the first batch (`guards.probe_slice`); under torchrun rank 0 runs them and
    every rank acts on its verdict."""
    guards = _guard_verdict(s.model, s.windows) if s.info.is_main else None
    guards = share_from_main(guards, s.info)
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)  # the peak memory reported is the training's
    if "error" in guards:
        s.guards = guards
        s.progress = Progress(flags=["guard_failed"])
        summary = s.write_summary("failed", "guard_failed")
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


def _start_training_state(s: Session, state: Optional[dict]) -> None:
    """Optimizer and loss scaler, the checkpoint's state when resuming, the metrics file cut back to
    the checkpoint, and the compiled / DDP-wrapped model the loop calls."""
    cfg = s.cfg
    torch.manual_seed(cfg.seed)  # training randomness independent of what the guards drew
    s.optimizer = make_optimizer(s.model, cfg, s.device)
    s.scaler = torch.amp.GradScaler(s.device.type, enabled=s.precision == "fp16")
    if state is not None:
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        if s.precision == "fp16" and state.get("scaler"):
            s.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    if s.info.is_main:
        if s.resuming:
            for note in s.metrics.truncate_after(s.progress.step):
                s.say(f"[yellow]note:[/yellow] {note}")
        elif s.metrics.path.exists():
            s.metrics.path.unlink()  # a session that died before its first checkpoint
    s.last_ckpt_step = s.last_row_step = s.progress.step
    s.checkpoint_steps, s.checkpoint_seconds = tc.parse_checkpoint_every(cfg.checkpoint_every)
    s.flops_per_token = s.model.flops_per_token()
    if s.device.type == "cuda":
        s.peak_flops_per_s = peak_flops(torch.cuda.get_device_name(s.device), s.precision)
    s.write_summary("running", None)

    s.train_model = torch.compile(s.model) if cfg.compile else s.model
    if s.info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        s.train_model = DistributedDataParallel(s.train_model,
                                                device_ids=[s.device.index] if s.device.type == "cuda" else None)
