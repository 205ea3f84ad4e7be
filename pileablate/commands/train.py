"""`pileablate train`: one run, baseline plus --mods, under a time/token/step budget; resumable.

The options are `TrainConfig`'s fields (pileablate.options makes them): the field's name is the option,
its documentation the help. `ablate` takes the same options for every run of its grid.
"""

from __future__ import annotations

import os

import typer

from pileablate.errors import UserError
from pileablate.options import from_command_line, parameters, with_parameters
from pileablate.train.config import TrainConfig


@with_parameters(parameters(TrainConfig))
def train(**options) -> None:
    """Train one model (baseline plus --mods) under a time/token/step budget; resumable.

    Writes RUNS_DIR/NAME/{config.json, metrics.jsonl, summary.json, ckpt/latest.pt}. Distributed:
    torchrun --nproc_per_node=N -m pileablate train ... (global batch = batch-size x grad-accum x N).
    """
    cfg = train_config(options)
    from pileablate.train.trainer import train as run_training

    summary = run_training(cfg)
    status = summary.get("status")
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one result line
        typer.echo(f"{summary['run_dir']}\t{status}\t{summary.get('stop_reason')}\tsteps={summary.get('steps')}\t"
                   f"val_loss={summary.get('final_val_loss')}\tval_bpb={summary.get('val_bits_per_byte')}")
    if status == "stopped":
        raise typer.Exit(130)  # interrupted (SIGINT/SIGTERM): checkpoint saved, not finished


def train_config(options: dict) -> TrainConfig:
    """What the command line gave -> a validated TrainConfig (budget strings parsed, one-line errors).

    The --mods-file files are loaded first: --mods may name the modifications they register."""
    from pileablate.mods_files import load_mods_files
    from pileablate.registry import parse_mod_options, resolve_mods
    from pileablate.train.config import validate

    values = from_command_line(TrainConfig, options)
    values["mods_files"] = load_mods_files(values.get("mods_files", ()))
    values["mods"] = resolve_mods(values.get("mods") or "")
    parse_mod_options(values.get("mod_options", ()), values["mods"])  # an unknown or mistyped option: one line, now
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def _command():
    """The train command as a Click command (its own parser)."""
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
        return train_config(ctx.params)


def _parse_errors() -> tuple:
    """Click's usage errors (typer vendors its own Click since 0.20; older versions use click's)."""
    classes = [getattr(typer, "TyperException", None)]
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(c for c in classes if c is not None and issubclass(c, Exception) and c.__name__ != "Exit")
