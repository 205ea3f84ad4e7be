"""One training run: `train(cfg) -> summary`.

The loop is nanoGPT's (AdamW, gradient accumulation, clipping, autocast): `training_loop` below reads
top to bottom as batch, forward, backward, clip, step, then the row, the evaluation and the checkpoint
when due. `build.py` builds the run whole; `session.py` holds the named pieces the loop calls: the budget that
drives the schedule, the same data for every modification, guards before the first step, honest-loss
checks, atomic checkpoints with exact resume (`pileablate.runfolder`), and DDP under torchrun.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import torch
from rich.console import Console

from pileablate import runlock
from pileablate.console import stderr_console
from pileablate.trackers import Trackers, group_name, open_tracker, tensorboard_dir
from pileablate.train.clock import StepClock
from pileablate.train.config import DEFAULT_TOKENS_PER_PARAM, TrainConfig, validate
from pileablate.train.crash import recording_crashes
from pileablate.train.display import LiveDisplay
from pileablate.train.distributed import dist_info_from_env, init_distributed, shutdown_distributed
from pileablate.train.hardware import autocast_context, pick_device
from pileablate.train.build import open_session
from pileablate.train.passes import budget_tokens, describe_passes, repeat_warning
from pileablate.train.session import Session
from pileablate.train.state import AlreadyFinished, Ending, LossInterval, RunFailed, budget_reached


def train(cfg: TrainConfig, console: Optional[Console] = None) -> dict:
    """Run (or continue) one training run; returns its summary (also in RUNS/<name>/summary.json).

    Raises UserError for bad input (RunHeld when another process is training this run), and RunFailed
    (a UserError, with `.summary`) when the run fails a guard, produces a non-finite or implausible loss,
    or crashes (its traceback in RUNS/<name>/error.txt).
    """
    validate(cfg)
    info = dist_info_from_env()
    device = pick_device(cfg.device, info)
    init_distributed(info, device)
    finished = False
    try:
        with runlock.claims():  # the run folder open_session claims is released however the run ends
            try:
                session = open_session(cfg, info, device, console or stderr_console())
            except AlreadyFinished as done:
                summary = done.summary
            else:
                with recording_crashes(session):
                    summary = run_to_end(session)
        finished = True
        return summary
    finally:
        shutdown_distributed(wait_for_peers=finished)


def run_to_end(s: Session) -> dict:
    """Train until the budget, an interrupt or a failure; then checkpoint, summarise and say how it ended."""
    print_header(s)
    with open_run_tracker(s) as tracker:  # closed however the run ends (a failure, a second Ctrl-C)
        ending = training_loop(s, tracker)
        s.metrics.close()
        peak_mem = torch.cuda.max_memory_allocated(s.device) if s.device.type == "cuda" else None
        summary = s.write_summary(ending.status, ending.stop_reason, peak_mem)
        tracker.summary(summary)
    if ending.failure:
        raise RunFailed(ending.failure, summary)
    if ending.status == "stopped":
        s.say(f"[yellow]stopped at step {s.progress.step}[/yellow]; checkpoint saved. Continue with the same command "
              f"(or 'pileablate train --name {s.cfg.name} --runs-dir {s.cfg.runs_dir} --resume' plus its options)")
    else:
        s.say(f"finished: {ending.stop_reason} after {s.progress.step} steps · val loss {summary['final_val_loss']:.4f} "
              f"({summary['val_bits_per_byte']:.3f} bits/byte) · {s.run_dir}")
    return summary


def open_run_tracker(s: Session) -> Trackers:
    """The run's live curves (--tracker), on the main process, grouped by runs folder; a resumed
    run continues its own curves from its checkpoint's step."""
    cfg = s.cfg
    return open_tracker(cfg.trackers, run_dir=s.run_dir, run_name=cfg.name, group=group_name(cfg.runs_dir),
                        group_dir=tensorboard_dir(cfg.runs_dir), config=s.tracker_config(),
                        resume_step=s.progress.step, is_main=s.info.is_main, console=s.console)


def training_loop(s: Session, tracker: Trackers) -> Ending:
    cfg, p, optimizer, scaler = s.cfg, s.progress, s.optimizer, s.scaler
    interval = LossInterval.starting_at(p, s.device)
    lr = s.set_lr()
    clock = StepClock.for_device(s.device)  # waits for the device: time budgets count GPU work, not launches
    with StopRequest() as stop, LiveDisplay(s.console, enabled=s.info.is_main) as live, s.prefetch_batches() as batches:
        while True:
            reason = budget_reached(p, cfg)
            if reason or s.stop_now(stop.requested):
                return end_between_rows(s, tracker, interval, lr, "finished" if reason else "stopped",
                                        reason or "interrupted")

            clock.start()
            lr = s.set_lr()
            step_loss = torch.zeros((), dtype=torch.float32, device=s.device)
            for micro, (x, y) in enumerate(batches.next_step()):
                with s.gradient_sync(micro):
                    with autocast_context(s.device, s.precision):
                        out = s.train_model(x, y)
                        loss = out.loss if out.aux_loss is None else out.loss + out.aux_loss
                    scaler.scale(loss / cfg.grad_accum).backward()
                step_loss += out.loss.detach().float()
            grad_norm = s.clip_gradients()  # None when --grad-clip 0
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            interval.add(step_loss / cfg.grad_accum)
            p.step += 1
            p.tokens += s.tokens_per_step
            p.elapsed_s += clock.stop()

            due = s.due_after_step(stop.requested)
            if due.row:
                row, failure = s.training_row(interval, lr, grad_norm)
                if not failure:
                    if due.evaluation:
                        failure = s.record_eval(row, s.evaluate())
                    s.write_row(row, tracker)
                interval = LossInterval.starting_at(p, s.device)
                s.show(live, lr)
                if failure:
                    return Ending("failed", p.flags[-1], failure)  # non_finite_loss or implausible_loss
            if due.checkpoint:
                s.save()


def end_between_rows(s: Session, tracker: Trackers, interval: LossInterval, lr: float, status: str,
                     stop_reason: str) -> Ending:
    """The last row (when the run ended between two rows) and the last checkpoint."""
    p = s.progress
    if interval.steps and s.last_row_step != p.step:
        row, failure = s.training_row(interval, lr, None)
        if failure:
            return Ending("failed", "non_finite_loss", failure)
        s.write_row(row, tracker)
    if p.step != s.last_ckpt_step:
        s.save()
    return Ending(status, stop_reason)


def print_header(s: Session) -> None:
    cfg, p = s.cfg, s.progress
    default_budget = s.plan.default_budget
    budget = []
    if cfg.time_limit:
        budget.append(f"{cfg.time_limit:g}s")
    if cfg.max_tokens:
        budget.append(f"{cfg.max_tokens:,} tokens"
                      + (f" (default: {DEFAULT_TOKENS_PER_PARAM} per parameter)" if default_budget else ""))
    if cfg.max_steps:
        budget.append(f"{cfg.max_steps:,} steps")
    s.say(
        f"[bold]{'resuming' if s.resuming else 'training'}[/bold] {s.run_dir} · preset {cfg.preset}"
        + (f" ({cfg.preset_reason})" if cfg.preset_reason else "") + " · "
        f"mods {','.join(cfg.mods) or 'baseline'} · {s.counts.total / 1e6:.2f}M params "
        f"({s.counts.active / 1e6:.2f}M active) · {s.device} {s.precision}"
        + (f" · {s.info.world_size} processes" if s.info.enabled else "")
    )
    s.say(
        f"tokens/step {s.tokens_per_step:,} = batch {cfg.batch_size} x seq {s.model_cfg.seq_len} x accum "
        f"{cfg.grad_accum} x {s.info.world_size} process(es) · lr {cfg.lr:g} ({s.schedule_kind}) · budget "
        f"{' or '.join(budget)} · train data {s.data.windows.split.num_tokens:,} tokens"
        + (f" · from step {p.step}" if s.resuming else "")
    )
    tokens, train_tokens = budget_tokens(cfg.max_tokens, cfg.max_steps, s.tokens_per_step), s.data.windows.split.num_tokens
    if tokens is not None:
        s.say(f"data: the budget is {describe_passes(tokens, train_tokens)}")
    warning = repeat_warning(tokens, train_tokens, default_budget)
    if warning:
        s.say(f"[yellow]warning:[/yellow] {warning}")


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
