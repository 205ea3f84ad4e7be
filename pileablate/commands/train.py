"""`pileablate train`: one run, baseline plus --mods, under a time/token/step budget; resumable.

Every option is a `TrainConfig` field and its help is the field's documentation. `ablate` reuses this
command's own parser through `train_config_from_args`, so every train option passes through.
"""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from pileablate.errors import UserError
from pileablate.train.config import AUTO_PRESET, TrainConfig, field_default as _d, field_help as _h

_P = "Model"  # rich help panels
_O = "Optimisation"
_B = "Budget (the first reached ends the run)"
_E = "Evaluation, logging, checkpoints"
_H = "Hardware"


def train(
    mods: str = typer.Option("", "--mods", help=_h("mods")),
    mods_file: Optional[List[str]] = typer.Option(None, "--mods-file", metavar="FILE", help=_h("mods_files")),
    preset: str = typer.Option(AUTO_PRESET, "--preset", help=_h("preset")),
    data: str = typer.Option(str(_d("data_dir")), "--data", help=_h("data_dir")),
    runs_dir: str = typer.Option(str(_d("runs_dir")), "--runs-dir", help=_h("runs_dir")),
    name: Optional[str] = typer.Option(None, "--name", help=_h("name")),
    seed: int = typer.Option(_d("seed"), "--seed", help=_h("seed")),
    n_layer: Optional[int] = typer.Option(None, "--n-layer", help=_h("n_layer"), rich_help_panel=_P),
    n_head: Optional[int] = typer.Option(None, "--n-head", help=_h("n_head"), rich_help_panel=_P),
    d_model: Optional[int] = typer.Option(None, "--d-model", help=_h("d_model"), rich_help_panel=_P),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help=_h("seq_len"), rich_help_panel=_P),
    kv_heads: Optional[int] = typer.Option(None, "--kv-heads", help=_h("kv_heads"), rich_help_panel=_P),
    kv_latent_dim: Optional[int] = typer.Option(None, "--kv-latent-dim", help=_h("kv_latent_dim"), rich_help_panel=_P),
    experts: Optional[int] = typer.Option(None, "--experts", help=_h("experts"), rich_help_panel=_P),
    top_k: Optional[int] = typer.Option(None, "--top-k", help=_h("top_k"), rich_help_panel=_P),
    mtp_depth: Optional[int] = typer.Option(None, "--mtp-depth", help=_h("mtp_depth"), rich_help_panel=_P),
    match_params: bool = typer.Option(_d("match_params"), "--match-params/--no-match-params", help=_h("match_params"), rich_help_panel=_P),
    lr: Optional[float] = typer.Option(None, "--lr", help=_h("lr"), rich_help_panel=_O),
    min_lr: Optional[float] = typer.Option(None, "--min-lr", help=_h("min_lr"), rich_help_panel=_O),
    weight_decay: float = typer.Option(_d("weight_decay"), "--weight-decay", help=_h("weight_decay"), rich_help_panel=_O),
    beta1: float = typer.Option(_d("beta1"), "--beta1", help=_h("beta1"), rich_help_panel=_O),
    beta2: float = typer.Option(_d("beta2"), "--beta2", help=_h("beta2"), rich_help_panel=_O),
    grad_clip: float = typer.Option(_d("grad_clip"), "--grad-clip", help=_h("grad_clip"), rich_help_panel=_O),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=_h("batch_size"), rich_help_panel=_O),
    grad_accum: int = typer.Option(_d("grad_accum"), "--grad-accum", help=_h("grad_accum"), rich_help_panel=_O),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help=_h("warmup_steps"), rich_help_panel=_O),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", metavar="DURATION", help=_h("time_limit_s"), rich_help_panel=_B),
    max_tokens: Optional[str] = typer.Option(None, "--max-tokens", metavar="N", help=_h("max_tokens"), rich_help_panel=_B),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help=_h("max_steps"), rich_help_panel=_B),
    eval_every: int = typer.Option(_d("eval_every"), "--eval-every", help=_h("eval_every"), rich_help_panel=_E),
    eval_tokens: str = typer.Option(str(_d("eval_tokens")), "--eval-tokens", metavar="N", help=_h("eval_tokens"), rich_help_panel=_E),
    log_every: int = typer.Option(_d("log_every"), "--log-every", help=_h("log_every"), rich_help_panel=_E),
    checkpoint_every: str = typer.Option(_d("checkpoint_every"), "--checkpoint-every", metavar="STEPS|DURATION", help=_h("checkpoint_every"), rich_help_panel=_E),
    tracker: Optional[List[str]] = typer.Option(None, "--tracker", metavar="NAME", help=_h("trackers"), rich_help_panel=_E),
    device: str = typer.Option(_d("device"), "--device", help=_h("device"), rich_help_panel=_H),
    precision: str = typer.Option(_d("precision"), "--precision", help=_h("precision"), rich_help_panel=_H),
    compile: bool = typer.Option(False, "--compile", help=_h("compile"), rich_help_panel=_H),
    tuning: bool = typer.Option(False, "--tuning", help=_h("tuning"), hidden=True),  # set by ablate, not a person
    resume: bool = typer.Option(False, "--resume", help=_h("resume")),
) -> None:
    """Train one model (baseline plus --mods) under a time/token/step budget; resumable.

    Writes RUNS_DIR/NAME/{config.json, metrics.jsonl, summary.json, ckpt/latest.pt}. Distributed:
    torchrun --nproc_per_node=N -m pileablate train ... (global batch = batch-size x grad-accum x N).
    """
    cfg = _config(**locals())
    from pileablate.train.trainer import train as run_training

    summary = run_training(cfg)
    status = summary.get("status")
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one result line
        typer.echo(f"{summary['run_dir']}\t{status}\t{summary.get('stop_reason')}\tsteps={summary.get('steps')}\t"
                   f"val_loss={summary.get('final_val_loss')}\tval_bpb={summary.get('val_bits_per_byte')}")
    if status == "stopped":
        raise typer.Exit(130)  # interrupted (SIGINT/SIGTERM): checkpoint saved, not finished


def _config(*, mods, mods_file, preset, data, runs_dir, name, seed, n_layer, n_head, d_model, seq_len, kv_heads, kv_latent_dim,
            experts, top_k, mtp_depth, match_params, lr, min_lr, weight_decay, beta1, beta2, grad_clip, batch_size, grad_accum,
            warmup_steps, time_limit, max_tokens, max_steps, eval_every, eval_tokens, log_every, checkpoint_every,
            tracker, device, precision, compile, tuning, resume) -> TrainConfig:
    """Command-line values -> a validated TrainConfig (budget strings parsed, one-line errors)."""
    from pileablate.model.registry import resolve_mods
    from pileablate.mods_files import load_mods_files
    from pileablate.train.config import validate
    from pileablate.units import parse_count, parse_duration

    mods_files = load_mods_files(mods_file or ())  # before --mods names the modifications they register
    cfg = TrainConfig(
        data_dir=data, runs_dir=runs_dir, name=name, mods=resolve_mods(mods), mods_files=mods_files, preset=preset, seed=seed,
        n_layer=n_layer, n_head=n_head, d_model=d_model, seq_len=seq_len, kv_heads=kv_heads,
        kv_latent_dim=kv_latent_dim, experts=experts, top_k=top_k, mtp_depth=mtp_depth, match_params=match_params,
        lr=lr, min_lr=min_lr, weight_decay=weight_decay, beta1=beta1, beta2=beta2, grad_clip=grad_clip,
        batch_size=batch_size, grad_accum=grad_accum, warmup_steps=warmup_steps,
        time_limit_s=parse_duration(time_limit) if time_limit is not None else None,
        max_tokens=parse_count(max_tokens, "--max-tokens") if max_tokens is not None else None,
        max_steps=max_steps, eval_every=eval_every, eval_tokens=parse_count(eval_tokens, "--eval-tokens"),
        log_every=log_every, checkpoint_every=checkpoint_every, trackers=tuple(tracker or ()), device=device,
        precision=precision, compile=compile, tuning=tuning, resume=resume,
    )
    validate(cfg)
    return cfg


def _command():
    """The train command as a Click command (its own parser, shared with `ablate`)."""
    import typer.main

    from pileablate.units import refuse_non_finite

    app = typer.Typer(add_completion=False)
    app.command()(train)
    return refuse_non_finite(typer.main.get_command(app))


def train_config_from_args(args: list[str]) -> TrainConfig:
    """Parse `pileablate train` options (e.g. ["--mods", "rope", "--time-limit", "10m"]) into a TrainConfig.

    Uses the train command's own parser, so every train option (and its errors) is accepted exactly
    as on the command line. Bad options raise UserError.
    """
    command = _command()
    try:
        ctx = command.make_context("pileablate train", list(args))
    except _parse_errors() as err:
        raise UserError(f"train option: {err.format_message()}") from None
    with ctx:
        return _config(**ctx.params)


def _parse_errors() -> tuple:
    """Click's usage errors (typer vendors its own Click since 0.20; older versions use click's)."""
    classes = [getattr(typer, "TyperException", None)]
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(c for c in classes if c is not None and issubclass(c, Exception) and c.__name__ != "Exit")
