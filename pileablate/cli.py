"""The `pileablate` command line: a thin Typer app over the package.

Each command lives in `pileablate/commands/<name>.py` and imports its heavy dependencies (torch,
pyarrow) inside the function, so `pileablate --help` stays instant.
"""

from __future__ import annotations

import inspect
import sys
from typing import Optional

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup

from pileablate import __version__
from pileablate.commands import ablate, export, generate, mods, prepare, report, train
from pileablate.errors import UserError
from pileablate.units import refuse_non_finite


class _CheckedGroup(TyperGroup):
    """The command group, with every float option of every command refusing NaN and infinities (one
    place for all: `units.refuse_non_finite`), however the group is built (main(), typer's CliRunner)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        refuse_non_finite(self)


app = typer.Typer(
    cls=_CheckedGroup,
    name="pileablate",
    help="Which modern Transformer modifications actually help, on real data, under an equal budget?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

class _Command(TyperCommand):
    """A command whose --help shows plain type names (INTEGER, PATH; nothing for a flag, where typer
    writes <bool> and <list[Path]>) and its text as written: square brackets are not rich markup, so
    "pip install 'pileablate[hf]'" keeps its extra."""

    def format_help(self, ctx, formatter) -> None:
        if not getattr(self, "_plain", False):
            self._plain = True
            self.help = escape(self.help or "")
        for param in self.get_params(ctx):
            _plain_param(param)
        super().format_help(ctx, formatter)


_PLAIN_TYPES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "bool": None}


def _plain_param(param) -> None:
    if getattr(param, "_plain", False):
        return
    param._plain = True
    if getattr(param, "help", None):
        param.help = escape(param.help)
    if isinstance(param, TyperArgument) or getattr(param, "is_flag", False):
        param.display_type_rich = lambda ctx: None  # an argument's metavar names it; a flag takes no value
    elif param.metavar is None:
        param.display_type_rich = lambda ctx, typed=param.display_type: _plain_type(typed(ctx))


def _plain_type(typed: str) -> Optional[str]:
    """typer's "<int range>", "<list[Path]>" -> "INTEGER", "PATH" (the range is shown beside it)."""
    name = typed.strip("<>").removeprefix("list[").removesuffix("]").removesuffix(" range")
    return _PLAIN_TYPES.get(name, name.upper())


def _reflowed(command) -> str:
    """The docstring as paragraphs, so that --help wraps to the terminal rather than where the source
    lines happen to break."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


app.command("prepare", cls=_Command, help=_reflowed(prepare.prepare), short_help="Stream a corpus (The Pile, the offline sample, files, URLs) into memory-mapped token files.")(prepare.prepare)
app.command("mods", cls=_Command, help=_reflowed(mods.mods), short_help="List the modifications: name, what each changes, what it cannot combine with.")(mods.mods)
app.command("train", cls=_Command, help=_reflowed(train.train), short_help="Train one model (baseline plus --mods) under a time/token/step budget; resumable.")(train.train)
app.command("ablate", cls=_Command, help=_reflowed(ablate.ablate), short_help="Run the grid (baseline, each modification alone, all together) over seeds with equal budgets.")(ablate.ablate)
app.command("report", cls=_Command, help=_reflowed(report.report), short_help="Loss tables (terminal, Markdown, CSV) and plots from run directories.")(report.report)
app.command("generate", cls=_Command, help=_reflowed(generate.generate), short_help="Sample text from a trained run, with a KV cache and optional speculative decoding.")(generate.generate)
app.command("export", cls=_Command, help=_reflowed(export.export), short_help="Export a trained run as a Hugging Face transformers checkpoint.")(export.export)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pileablate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """Which modern Transformer modifications actually help, on real data, under an equal budget?"""


def main(argv: Optional[list[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="pileablate", standalone_mode=False)
    except UserError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except OSError as err:  # a full disk, a quota, a read-only place: the write named the file (writes.py)
        from pileablate.writes import is_write_error, one_line

        if debug or not is_write_error(err):
            raise
        typer.echo(f"error: {one_line(err)}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except typer.TyperException as err:  # a usage error (an unknown option, a bad value): one line as well
        if type(err).__name__ == "NoArgsIsHelpError":  # `pileablate` alone: the help
            err.show()
            sys.exit(0)
        command = err.ctx.command_path if getattr(err, "ctx", None) is not None else "pileablate"
        typer.echo(f"error: {err.format_message()} (see '{command} --help')", err=True)
        sys.exit(getattr(err, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
