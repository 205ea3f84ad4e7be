"""`pileablate prepare`: stream a corpus into a memory-mapped token store (resumable).

The options are `PrepareConfig`'s fields (pileablate.options), and --verify, which prepares nothing.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from pileablate.data.config import PrepareConfig
from pileablate.options import from_command_line, parameters, with_parameters
from pileablate.slurm_options import SlurmOptions

_VERIFY = inspect.Parameter("verify", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
    None, "--verify", metavar="DIR", show_default=False,
    help="Check the prepared store in DIR against its manifest (every part's sha256, structure and token ids), print "
         "one line per damaged part and exit 1 if any; prepares nothing."))


@with_parameters(parameters(PrepareConfig), parameters(SlurmOptions), [_VERIFY], context=True)
def prepare(ctx: typer.Context, verify: Optional[Path] = None, **options) -> None:
    """Stream a corpus (The Pile, the offline sample, files, URLs) into memory-mapped token files.

    Examples: 'pileablate prepare --rows 1M' (The Pile, GPT-2 tokens, into data/);
    'pileablate prepare --source sample --tokenizer bytes' (offline). Interrupted? Run the same
    command again: it continues from the last committed chunk.
    'pileablate prepare --verify data' checks a store for damage; '--dry-run' estimates the tokens, disk
    and time first; '--emit slurm --array-tasks 30' writes a job array of --task K/30 prepares.
    """
    if verify is not None:
        from pileablate.data.verify import report_store

        raise typer.Exit(report_store(verify))
    from pileablate.console import stderr_console, stdout_console
    from pileablate.data.prepare import prepare as run_prepare

    cfg = PrepareConfig(**from_command_line(PrepareConfig, options))
    if cfg.emit is not None:
        _emit_slurm(cfg, SlurmOptions(**from_command_line(SlurmOptions, options)), ctx)
        return
    if cfg.dry_run:
        from pileablate.data.estimate import print_estimate

        print_estimate(cfg, stdout_console())
        return
    run_prepare(cfg, console=stderr_console(), summary_console=stdout_console())


# What the array's tasks do not repeat: the array's own options, and what makes a command prepare nothing.
_HERE_ONLY = ("emit", "array_tasks", "dry_run", "task")


def _emit_slurm(cfg: PrepareConfig, slurm: SlurmOptions, ctx: typer.Context) -> None:
    from dataclasses import fields

    from pileablate.console import stderr_console
    from pileablate.data.slurm_array import write_scripts
    from pileablate.errors import UserError
    from pileablate.options import as_args

    if cfg.emit != "slurm":
        raise UserError(f"--emit {cfg.emit!r}: only 'slurm' is supported")
    if cfg.task is not None:
        raise UserError("--emit slurm writes the tasks' --task K/N itself; drop --task (and give N as --array-tasks)")
    prepared = {f.name for f in fields(PrepareConfig)} - set(_HERE_ONLY)
    args = as_args(ctx.command, ctx, keep=lambda name: name in prepared)
    if "--out" not in args:  # the default, made absolute: a task may start anywhere
        args += ["--out", str(cfg.out.resolve())]
    files = write_scripts(cfg, args, cfg.array_tasks, slurm)
    console = stderr_console()
    for path in files:
        console.print(f"wrote {path}", highlight=False)
    console.print(f"submit with: bash {files[-1]}", highlight=False)
