"""One training run: `train(cfg) -> summary`.

The loop is nanoGPT's (AdamW, gradient accumulation, clipping, autocast), with what a fair, long,
interruptible comparison needs around it: a budget in steps, tokens or time that drives the schedule;
the same data for every modification; guards before the first step; honest-loss checks; atomic
checkpoints with exact resume; and DDP under torchrun.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console

from pileablate import __version__
from pileablate.errors import UserError
from pileablate.train import config as tc
from pileablate.train.checkpoint import checkpoint_path, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pileablate.train.config import TrainConfig
from pileablate.train.data_loader import BatchLayout, TrainWindows, ValWindows
from pileablate.train.display import LiveDisplay
from pileablate.train.distributed import DistInfo, dist_info_from_env, init_distributed, reduce_max, reduce_sum, shutdown_distributed
from pileablate.train.hardware import autocast_context, configure_backends, pick_device, pick_precision
from pileablate.train.metrics import MIN_PLAUSIBLE_BITS_PER_BYTE, MetricsLog, bits_per_byte, peak_flops
from pileablate.train.run_files import check_same_run, read_json, write_json_atomic
from pileablate.train.schedule import Schedule, budget_progress


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


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and returns. A second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.signum is not None


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


def budget_reached(p: Progress, cfg: TrainConfig) -> Optional[str]:
    if cfg.max_steps is not None and p.step >= cfg.max_steps:
        return "max_steps"
    if cfg.max_tokens is not None and p.tokens >= cfg.max_tokens:
        return "max_tokens"
    if cfg.time_limit_s is not None and p.elapsed_s >= cfg.time_limit_s:
        return "time_limit"
    return None


def train(cfg: TrainConfig, console: Optional[Console] = None) -> dict:
    """Run (or continue) one training run; returns its summary (also in RUNS/<name>/summary.json).

    Raises UserError for bad input, and RunFailed (a UserError, with `.summary`) when the run fails a
    guard or produces a non-finite or implausible loss.
    """
    tc.validate(cfg)
    info = dist_info_from_env()
    device = pick_device(cfg.device, info)
    init_distributed(info, device)
    finished = False
    try:
        summary = _Trainer(cfg, info, device, console or Console(stderr=True)).run()
        finished = True
        return summary
    finally:
        shutdown_distributed(wait_for_peers=finished)


class _Trainer:
    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device, console: Console):
        self.info = info
        self.device = device
        self.console = console
        self.requested = cfg
        self.raw_cfg = cfg

    # ------------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if self.info.is_main:
            self.console.print(message, highlight=False)

    def run(self) -> dict:
        from pileablate.data.manifest import read_manifest
        from pileablate.data.store import TokenSplit
        from pileablate.model.config import build_model_config
        from pileablate.model.gpt import GPT
        from pileablate.model.registry import resolve_mods, trainer_changes

        cfg, info, device = self.raw_cfg, self.info, self.device
        mods = resolve_mods(cfg.mods)
        manifest = read_manifest(cfg.data_dir)
        for split in ("train", "val"):
            if not (cfg.data_dir / split).is_dir():
                raise UserError(f"{cfg.data_dir} has no {split} split; run 'pileablate prepare' again")
        overrides = {k: getattr(cfg, k) for k in ("n_layer", "n_head", "d_model", "seq_len", "kv_heads",
                                                   "kv_latent_dim", "experts", "top_k", "mtp_depth")}
        model_cfg = build_model_config(cfg.preset, mods, manifest["vocab_size"], **overrides)
        precision = pick_precision(cfg.precision, device)
        configure_backends(device)

        torch.manual_seed(cfg.seed)
        model = GPT(model_cfg)
        counts = model.num_params()
        cfg = resolve_config(cfg, mods, counts["active"])
        self.cfg = cfg
        run_dir = cfg.runs_dir / cfg.name
        layout = BatchLayout(cfg.batch_size, cfg.grad_accum, info.world_size, info.rank)
        tokens_per_step = layout.global_windows * model_cfg.seq_len
        val_split = manifest["splits"]["val"]
        val_bytes_per_token = val_split["bytes"] / max(1, val_split["tokens"])
        schedule_kind = trainer_changes(mods).get("schedule", "constant")
        schedule = Schedule(schedule_kind, cfg.lr, cfg.min_lr, cfg.warmup_steps, tc.WARMUP_MAX_FRACTION)

        run_config = {
            "name": cfg.name, "mods": list(mods), "seed": cfg.seed, "preset": cfg.preset,
            "model": dataclasses.asdict(model_cfg), "train": cfg.to_json(),
            "data": {"dir": str(cfg.data_dir), "fingerprint": manifest["fingerprint"],
                     "tokenizer": manifest["tokenizer"], "vocab_size": manifest["vocab_size"],
                     "val_bytes_per_token": val_bytes_per_token},
            "schedule": schedule_kind, "tokens_per_step": tokens_per_step, "world_size": info.world_size,
            "hardware": {"device": str(device), "precision": precision, "torch": torch.__version__,
                         "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type},
            "pileablate_version": __version__, "created": datetime.now(timezone.utc).isoformat(),
        }

        # An existing run of this name is continued (if it is the same run) or reported finished.
        config_file, ckpt_file = run_dir / "config.json", checkpoint_path(run_dir)
        resuming = False
        if config_file.exists():
            old = read_json(config_file)
            check_same_run(run_dir, old, run_config)
            run_config["created"] = old.get("created", run_config["created"])
            resuming = ckpt_file.exists()
        elif cfg.resume:
            raise UserError(f"no run '{cfg.name}' in {cfg.runs_dir} to resume; drop --resume to start it")

        train_split, val_split_store = TokenSplit(cfg.data_dir / "train"), TokenSplit(cfg.data_dir / "val")
        windows = TrainWindows(train_split, model_cfg.seq_len, layout, cfg.seed)
        val = ValWindows(val_split_store, model_cfg.seq_len, cfg.eval_tokens)
        self.summary_base = {
            "name": cfg.name, "mods": list(mods), "seed": cfg.seed, "preset": cfg.preset,
            "params_total": counts["total"], "params_active": counts["active"],
            "budget": {"time_limit_s": cfg.time_limit_s, "max_tokens": cfg.max_tokens, "max_steps": cfg.max_steps},
            "run_dir": str(run_dir),
        }
        self.run_dir = run_dir
        self.val_bytes_per_token = val_bytes_per_token

        progress, state = Progress(), None
        if resuming:
            state = load_checkpoint(ckpt_file)
            progress = Progress(**state["progress"])
            summary_file = run_dir / "summary.json"
            summary = read_json(summary_file) if summary_file.exists() else {}
            if budget_reached(progress, cfg) and summary.get("status") == "finished":
                self.say(f"run '{cfg.name}' is already finished ({summary.get('steps')} steps, "
                         f"{summary.get('tokens'):,} tokens, stop: {summary.get('stop_reason')}); "
                         "raise its budget to train further, or pass a new --name")
                return summary

        metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=info.is_main)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(config_file, run_config)

        # Guards: on the freshly initialised model, before any step (and before loading weights).
        guards = self._guards(model, windows)

        torch.manual_seed(cfg.seed)  # training randomness independent of what the guards drew
        model.to(device)
        optimizer = make_optimizer(model, cfg, device)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if precision == "fp16" and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            del state

        if info.is_main:
            if resuming:
                metrics.truncate_after(progress.step)
            elif (run_dir / "metrics.jsonl").exists():
                (run_dir / "metrics.jsonl").unlink()  # a session that died before its first checkpoint
        self._write_summary(progress, "running", None, guards, windows, None)

        train_model = torch.compile(model) if cfg.compile else model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)

        self._header(model_cfg, counts, precision, tokens_per_step, train_split.num_tokens, schedule_kind, progress, resuming)
        ckpt_steps, ckpt_seconds = tc.parse_checkpoint_every(cfg.checkpoint_every)
        peak = peak_flops(torch.cuda.get_device_name(device), precision) if device.type == "cuda" else None
        fpt = model.flops_per_token()

        def save(p: Progress) -> None:
            if info.is_main:
                save_checkpoint(ckpt_file, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if precision == "fp16" else {},
                    "progress": p.to_state(), "rng": rng_state(),
                })

        def evaluate() -> float:
            model.eval()
            total = torch.zeros((), dtype=torch.float64, device=device)
            count = 0
            with torch.no_grad():
                for x, y in val.batches(cfg.batch_size * 2, info.rank, info.world_size):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    with autocast_context(device, precision):
                        loss = model(x, y).loss
                    total += loss.double() * x.numel()
                    count += x.numel()
            model.train()
            loss_sum, n = reduce_sum([total.item(), float(count)], info, device)
            return loss_sum / n

        status, stop_reason, failure = "running", None, None
        interval_loss = torch.zeros((), dtype=torch.float32, device=device)
        interval_steps, interval_tokens, interval_elapsed = 0, progress.tokens, progress.elapsed_s
        last_ckpt_time, last_ckpt_step = time.monotonic(), progress.step
        last_row_step = progress.step
        lr = schedule(progress.step, 0.0)
        stopper, stop_agreed = StopRequest(), False
        with stopper, LiveDisplay(self.console, enabled=info.is_main) as live:
            while True:
                reason = budget_reached(progress, cfg)
                if reason:
                    status, stop_reason = "finished", reason
                    break
                if (stop_agreed if info.enabled else stopper.requested):
                    status, stop_reason = "stopped", "interrupted"
                    break

                t0 = time.perf_counter()
                frac = budget_progress(progress.step, progress.tokens, progress.elapsed_s,
                                       cfg.max_steps, cfg.max_tokens, cfg.time_limit_s)
                lr = schedule(progress.step, frac)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                starts = windows.starts(progress.step)
                step_loss = torch.zeros((), dtype=torch.float32, device=device)
                for micro in range(cfg.grad_accum):
                    x, y = windows.micro_batch(progress.step, micro, starts)
                    if device.type == "cuda":
                        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
                    else:
                        x, y = x.to(device), y.to(device)
                    last_micro = micro == cfg.grad_accum - 1
                    sync = nullcontext() if (not info.enabled or last_micro) else train_model.no_sync()
                    with sync:
                        with autocast_context(device, precision):
                            out = train_model(x, y)
                            loss = out.loss + out.aux_loss if out.aux_loss is not None else out.loss
                        scaler.scale(loss / cfg.grad_accum).backward()
                    step_loss += out.loss.detach().float()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                step_loss /= cfg.grad_accum
                interval_loss += step_loss
                interval_steps += 1
                progress.step += 1
                progress.tokens += tokens_per_step
                progress.elapsed_s += time.perf_counter() - t0

                # What happens after this step (logging, evaluation, checkpoint) must agree across ranks.
                # Clocks and signals differ per rank: take the maximum so every rank decides alike.
                ckpt_due = ckpt_seconds is not None and time.monotonic() - last_ckpt_time >= ckpt_seconds
                if info.enabled:
                    progress.elapsed_s, any_stop, any_due = reduce_max(
                        [progress.elapsed_s, float(stopper.requested), float(ckpt_due)], info, device)
                    stop_agreed, ckpt_due = bool(any_stop), bool(any_due)
                eval_now = progress.step % cfg.eval_every == 0
                end_next = budget_reached(progress, cfg) is not None
                ckpt_now = ckpt_due or (ckpt_steps is not None and progress.step - last_ckpt_step >= ckpt_steps)
                row_now = progress.step % cfg.log_every == 0 or eval_now or ckpt_now or end_next
                if not row_now:
                    continue

                mean_loss = reduce_sum([(interval_loss / interval_steps).item()], info, device)[0] / info.world_size
                if not math.isfinite(mean_loss):
                    status, stop_reason, failure = "failed", "non_finite_loss", (
                        f"the training loss became {mean_loss} by step {progress.step}; the run is stopped and its last "
                        f"good checkpoint (step {last_ckpt_step}) kept. Try a lower --lr, --precision bf16/fp32, or --grad-clip 1")
                    progress.flags.append("non_finite_loss")
                    break
                progress.last_train_loss = mean_loss
                row = self._row(progress, lr, mean_loss, float(grad_norm), windows,
                                (progress.tokens - interval_tokens) / max(1e-9, progress.elapsed_s - interval_elapsed))
                interval_loss.zero_()
                interval_steps, interval_tokens, interval_elapsed = 0, progress.tokens, progress.elapsed_s
                if eval_now or end_next:
                    failure = self._record_eval(progress, row, evaluate(), val_bytes_per_token)
                if device.type == "cuda":
                    row["peak_mem_bytes"] = torch.cuda.max_memory_allocated(device)
                    if peak:
                        row["mfu"] = fpt * row["tokens_per_s"] / (peak * info.world_size)
                metrics.write(row)
                last_row_step = progress.step
                live.update(progress=budget_progress(progress.step, progress.tokens, progress.elapsed_s, cfg.max_steps,
                                                     cfg.max_tokens, cfg.time_limit_s),
                            step=progress.step, train_loss=mean_loss, val_loss=progress.last_val_loss, lr=lr,
                            tokens_per_s=row["tokens_per_s"], elapsed_s=progress.elapsed_s, epoch=row["epoch"])
                if failure:
                    status, stop_reason = "failed", progress.flags[-1]  # non_finite_loss or implausible_loss
                    break
                if ckpt_now:
                    save(progress)
                    last_ckpt_time, last_ckpt_step = time.monotonic(), progress.step

            if status in ("finished", "stopped"):
                if interval_steps and last_row_step != progress.step:  # an interrupt between rows
                    mean_loss = reduce_sum([(interval_loss / interval_steps).item()], info, device)[0] / info.world_size
                    if math.isfinite(mean_loss):
                        progress.last_train_loss = mean_loss
                        metrics.write(self._row(progress, lr, mean_loss, None, windows,
                                                (progress.tokens - interval_tokens) / max(1e-9, progress.elapsed_s - interval_elapsed)))
                    else:
                        status, stop_reason = "failed", "non_finite_loss"
                        progress.flags.append("non_finite_loss")
                        failure = f"the training loss became {mean_loss}; the last good checkpoint (step {last_ckpt_step}) is kept"
                if status != "failed" and progress.step != last_ckpt_step:
                    save(progress)
        metrics.close()

        summary = self._write_summary(progress, status, stop_reason, guards, windows,
                                      torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None)
        if failure:
            raise RunFailed(failure, summary)
        if status == "stopped":
            self.say(f"[yellow]stopped at step {progress.step}[/yellow]; checkpoint saved. Continue with the same "
                     f"command (or 'pileablate train --name {cfg.name} --runs-dir {cfg.runs_dir} --resume' plus its options)")
        else:
            self.say(f"finished: {stop_reason} after {progress.step} steps · val loss {summary['final_val_loss']:.4f} "
                     f"({summary['val_bits_per_byte']:.3f} bits/byte) · {run_dir}")
        return summary

    # ------------------------------------------------------------------------------------------
    def _guards(self, model, windows: TrainWindows) -> dict:
        from pileablate.model.guards import check_causality, check_initial_loss

        x, y = windows.micro_batch(0, 0)
        guards: dict = {"causality": None, "initial_loss": None}
        try:
            check_causality(model)
            guards["causality"] = "passed"
            guards["initial_loss"] = check_initial_loss(model, x, y)
        except UserError as err:
            guards = {"causality": guards["causality"] or "failed",
                      "initial_loss": "failed" if guards["causality"] else None, "error": str(err)}
            summary = self._write_summary(Progress(flags=["guard_failed"]), "failed", "guard_failed", guards, windows, None)
            raise RunFailed(f"guard failed before training: {err}", summary) from None
        return guards

    def _row(self, p: Progress, lr: float, train_loss: float, grad_norm, windows: TrainWindows, tokens_per_s: float) -> dict:
        if grad_norm is not None and not math.isfinite(grad_norm):
            grad_norm = None  # fp16 steps skipped by the loss scaler; JSON has no inf
        return {"step": p.step, "tokens": p.tokens, "elapsed_s": p.elapsed_s, "lr": lr,
                "train_loss": train_loss, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
                "epoch": windows.epochs(p.tokens)}

    def _record_eval(self, p: Progress, row: dict, val_loss: float, val_bytes_per_token: float) -> Optional[str]:
        bpb = bits_per_byte(val_loss, val_bytes_per_token)
        if not math.isfinite(val_loss):
            row["val_loss"] = None
            p.flags.append("non_finite_loss")
            return f"the validation loss became {val_loss} at step {p.step}; the run is stopped"
        row["val_loss"], row["val_bits_per_byte"] = val_loss, bpb
        p.last_val_loss = val_loss  # kept as evidence; an implausible value never becomes the best
        if bpb < MIN_PLAUSIBLE_BITS_PER_BYTE:
            p.flags.append("implausible_loss")
            return (f"validation loss {val_loss:.4f} nats/token = {bpb:.3f} bits/byte at step {p.step} is below the "
                    f"plausibility floor of {MIN_PLAUSIBLE_BITS_PER_BYTE} bits/byte: the model sees what it predicts "
                    "(a causality leak or validation data in training); the run is marked failed")
        p.best_val_loss = val_loss if p.best_val_loss is None else min(p.best_val_loss, val_loss)
        return None

    def _write_summary(self, p: Progress, status: str, stop_reason, guards: dict, windows: TrainWindows, peak_mem) -> dict:
        summary = {
            **self.summary_base, "status": status, "stop_reason": stop_reason,
            "steps": p.step, "tokens": p.tokens, "elapsed_s": p.elapsed_s,
            "final_train_loss": p.last_train_loss, "final_val_loss": p.last_val_loss, "best_val_loss": p.best_val_loss,
            "val_bits_per_byte": None, "epochs": windows.epochs(p.tokens),
            "tokens_per_s": p.tokens / p.elapsed_s if p.elapsed_s > 0 else None,
            "peak_mem_bytes": peak_mem, "guards": guards, "flags": sorted(set(p.flags)),
        }
        if p.last_val_loss is not None and math.isfinite(p.last_val_loss):
            summary["val_bits_per_byte"] = bits_per_byte(p.last_val_loss, self.val_bytes_per_token)
        if self.info.is_main:
            write_json_atomic(self.run_dir / "summary.json", summary)
        return summary

    def _header(self, model_cfg, counts, precision, tokens_per_step, train_tokens, schedule_kind, p: Progress, resuming: bool) -> None:
        cfg = self.cfg
        budget = []
        if cfg.time_limit_s:
            budget.append(f"{cfg.time_limit_s:g}s")
        if cfg.max_tokens:
            default = (self.requested.max_tokens is None and self.requested.max_steps is None
                       and self.requested.time_limit_s is None)
            budget.append(f"{cfg.max_tokens:,} tokens" + (f" (default: {tc.DEFAULT_TOKENS_PER_PARAM} per parameter)" if default else ""))
        if cfg.max_steps:
            budget.append(f"{cfg.max_steps:,} steps")
        mods = ",".join(cfg.mods) or "baseline"
        self.say(
            f"[bold]{'resuming' if resuming else 'training'}[/bold] {self.run_dir} · preset {cfg.preset} · mods {mods} · "
            f"{counts['total'] / 1e6:.2f}M params ({counts['active'] / 1e6:.2f}M active) · {self.device} {precision}"
            + (f" · {self.info.world_size} processes" if self.info.enabled else "")
        )
        self.say(
            f"tokens/step {tokens_per_step:,} = batch {cfg.batch_size} x seq {model_cfg.seq_len} x accum {cfg.grad_accum}"
            f" x {self.info.world_size} process(es) · lr {cfg.lr:g} ({schedule_kind}) · budget {' or '.join(budget)}"
            f" · train data {train_tokens:,} tokens"
            + (f" · from step {p.step}" if resuming else "")
        )
