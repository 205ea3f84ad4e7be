"""One training run, built whole: `open_session` makes a `Session` ready for its first (or next) step.

Everything a run holds is built once, in one place and in order (torchtitan's way): the plan
(`plan.plan_run`: the settings, the model config, the parameter counts), the model (seeded), the data
windows, the run folder (new, or an existing run continued after checking it is the same run), the
optimizer, the guards on the fresh model (on the training device), the loss scaler, the checkpoint's
state when resuming, and the model the loop calls (compiled, DDP-wrapped). A run that has already
reached its budget is not built: `open_session` raises `AlreadyFinished` with its summary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console

from pileablate import runfolder, runlock
from pileablate.errors import UserError
from pileablate.runfolder import MetricsLog
from pileablate.train import config as tc
from pileablate.train.checkpoint import restore_checkpoint
from pileablate.train.config import TrainConfig
from pileablate.train.data_loader import TrainWindows, verify_training_data
from pileablate.train.distributed import DistInfo, share_from_main
from pileablate.train.hardware import configure_backends, pick_precision
from pileablate.train.metrics import peak_flops
from pileablate.train.optimizer import learning_rates, make_optimizer, make_schedule
from pileablate.train.passes import budget_tokens, check_passes
from pileablate.train.plan import ParamCounts
from pileablate.train.record import run_config, run_summary
from pileablate.train.run_data import RunData
from pileablate.train.session import Session
from pileablate.train.state import AlreadyFinished, Progress, RunFailed, budget_reached


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
    check_passes(budget_tokens(cfg.max_tokens, cfg.max_steps, data.tokens_per_step), data.windows.split.num_tokens)
    schedule = make_schedule(cfg)
    schedule_kind = schedule.kind
    run_dir = cfg.runs_dir / cfg.name
    if info.is_main:  # one process per run folder, before anything in it is read (RunHeld otherwise)
        runlock.claim(run_dir)
    model.to(device)  # the guards run where the model trains
    # Built once, before the guards: an optimizer draws no random numbers, and config.json records the
    # rate of each of its groups.
    optimizer = make_optimizer(model, cfg, device)
    config = run_config(plan, data, schedule_kind, precision, info, device, learning_rates(optimizer, cfg.lr))
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
