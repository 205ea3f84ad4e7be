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

_VERIFY = inspect.Parameter("verify", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
    None, "--verify", metavar="DIR", show_default=False,
    help="Check the prepared store in DIR against its manifest (every part's sha256, structure and token ids), print "
         "one line per damaged part and exit 1 if any; prepares nothing."))


@with_parameters(parameters(PrepareConfig), [_VERIFY])
def prepare(verify: Optional[Path] = None, **options) -> None:
    """Stream a corpus (The Pile, the offline sample, files, URLs) into memory-mapped token files.

    Examples: 'pileablate prepare --rows 1M' (The Pile, GPT-2 tokens, into data/);
    'pileablate prepare --source sample --tokenizer bytes' (offline). Interrupted? Run the same
    command again: it continues from the last committed chunk.
    'pileablate prepare --verify data' checks a store for damage; '--dry-run' estimates the tokens, disk
    and time first.
    """
    if verify is not None:
        from pileablate.data.verify import report_store

        raise typer.Exit(report_store(verify))
    from pileablate.console import stderr_console, stdout_console
    from pileablate.data.prepare import prepare as run_prepare

    cfg = PrepareConfig(**from_command_line(PrepareConfig, options))
    if cfg.dry_run:
        from pileablate.data.estimate import print_estimate

        print_estimate(cfg, stdout_console())
        return
    run_prepare(cfg, console=stderr_console(), summary_console=stdout_console())
