"""Options declared once: the fields of a config dataclass are its command's options.

A field declared with `option(default, help, ...)` carries its help text and how a person types it;
the option's name is the field's (`n_layer` -> `--n-layer`), so there is no table between command-line
names and config names. `parameters(cls)` turns the fields into the parameters of a typer command,
`from_command_line(cls, values)` turns what the command received back into field values (parsing
`30m` or `1.5M` where the field says how), and `as_args(params, ctx)` writes what a person gave back out
as arguments (the job-array scripts repeat a command line that way).

Torch-free, so `pileablate --help` stays instant, and typer-free until a command builds its parameters,
so the config dataclasses (the model's among them) declare options without loading a CLI library.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Optional


@dataclass(frozen=True)
class Cli:
    """How one field is given on the command line."""

    group: Optional[str] = None         # its --help panel ("Model", "Budget ...")
    flag: Optional[str] = None          # only where the option is the singular of a repeatable field
    short: Optional[str] = None         # "-o": only for a name that means one thing in every command
    metavar: Optional[str] = None
    parse: Optional[Callable[[str, str], Any]] = None  # (text, flag) -> value, for "30m", "1.5M", "K/N"
    negatable: Optional[bool] = None    # a bool as --x/--no-x (default: when it defaults to True)
    comma_list: bool = False            # a tuple field given once, as "a,b,c" (the dataclass splits it)
    hidden: bool = False                # set by the program, not a person
    exposed: bool = True                # False: a field no command line sets
    min: Optional[int] = None


def option(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A dataclass field with its help (the command's --help) and how the command line gives it."""
    return field(default=default, metadata={"help": help, "cli": Cli(**cli)})


def internal(default: Any = None) -> Any:
    """A field the program fills in (never on a command line, never part of the stored config)."""
    return field(default=default, compare=False, metadata={"help": "", "cli": Cli(exposed=False), "internal": True})


def _spec(f: dataclasses.Field) -> Cli:
    return f.metadata.get("cli", Cli())


def flag_of(cls: type, name: str) -> str:
    """The option that sets field `name`: time_limit -> --time-limit (or the field's own flag)."""
    spec = _spec(_field(cls, name))
    return spec.flag or "--" + name.replace("_", "-")


def help_of(cls: type, name: str) -> str:
    return _field(cls, name).metadata["help"]


def default_of(cls: type, name: str) -> Any:
    f = _field(cls, name)
    return f.default if f.default is not MISSING else None


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def exposed_fields(cls: type, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    skip = set(exclude)
    return [f for f in fields(cls) if _spec(f).exposed and f.name not in skip]


# -- fields -> typer parameters ----------------------------------------------------------------------

def _plain_type(annotation: Any) -> tuple[Any, bool]:
    """(the type a value is typed as, whether the option repeats): Optional[int] -> (int, False),
    tuple[str, ...] -> (str, True)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        return _plain_type(args[0])
    if origin in (tuple, list):
        return (args[0] if args else str), True
    return annotation, False


def parameters(cls: type, *, exclude: Iterable[str] = (), hidden: Iterable[str] = (),
               argument: Optional[str] = None, argument_metavar: Optional[str] = None) -> list[inspect.Parameter]:
    """The typer parameters of `cls`'s exposed fields (field order; `hidden` ones left out of --help;
    `argument`: the field taken as the command's positional argument)."""
    import typer

    hints = typing.get_type_hints(cls)
    hide = set(hidden)
    out = []
    for f in exposed_fields(cls, exclude):
        spec = _spec(f)
        kind, repeats = _plain_type(hints[f.name])
        if spec.parse is not None or spec.comma_list:
            kind, repeats = str, repeats and not spec.comma_list
        default = default_of(cls, f.name)
        if f.name == argument:
            info = typer.Argument(default if default is not None else ..., metavar=argument_metavar,
                                  help=help_of(cls, f.name), show_default=False)
        else:
            info = _option_info(cls, f, kind, default, spec, hidden=spec.hidden or f.name in hide)
        annotation = list[kind] if repeats else (Optional[kind] if default is None else kind)
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation))
    return out


def _option_info(cls: type, f: dataclasses.Field, kind: Any, default: Any, spec: Cli, hidden: bool):
    import typer

    flag = flag_of(cls, f.name)
    if kind is bool:
        negatable = spec.negatable if spec.negatable is not None else bool(default)
        declarations = [f"{flag}/--no-{flag[2:]}" if negatable else flag]
    else:
        declarations = [flag]
    if spec.short:
        declarations.append(spec.short)
    if isinstance(default, tuple):
        default = (",".join(default) or None) if spec.comma_list else (list(default) or None)
    shown = default is not None and kind is not bool or (kind is bool and spec.negatable)
    return typer.Option(default, *declarations, help=help_of(cls, f.name), metavar=spec.metavar,
                        rich_help_panel=spec.group, hidden=hidden, show_default=bool(shown), min=spec.min)


def with_parameters(*groups: list[inspect.Parameter], context: bool = False) -> Callable[[Callable], Callable]:
    """Give `func(**values)` the signature typer reads its options from (`context`: and `ctx`, typer's
    Context, first)."""
    import typer

    params = [p for group in groups for p in group]
    if context:
        params.insert(0, inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def decorate(func: Callable) -> Callable:
        func.__signature__ = inspect.Signature(params)
        func.__annotations__ = {p.name: p.annotation for p in params}
        return func

    return decorate


# -- what the command received -> field values ----------------------------------------------------

def from_command_line(cls: type, values: dict) -> dict:
    """The fields of `cls` among `values` (as typer passed them), each parsed as its field says:
    counts and durations from text, repeated options as tuples."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in exposed_fields(cls):
        if f.name not in values:
            continue
        value, spec = values[f.name], _spec(f)
        if spec.parse is not None and value is not None:
            value = tuple(spec.parse(v, flag_of(cls, f.name)) for v in value) if isinstance(value, list) \
                else spec.parse(value, flag_of(cls, f.name))
        elif value is None and _plain_type(hints[f.name])[1] and not spec.comma_list:
            value = ()
        if isinstance(value, list):
            value = tuple(value)
        out[f.name] = value
    return out


def as_args(command, ctx, keep: Callable[[str], bool] = lambda name: True) -> list[str]:
    """The options a person gave on `ctx`'s command line (not the defaults), written back out as
    arguments in the command's own form: --x V (once per value of a repeated one), --flag/--no-flag,
    paths absolute."""
    args: list[str] = []
    for param in command.params:
        if not param.opts or not param.opts[0].startswith("--") or not keep(param.name):
            continue
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):  # typer's own click or click's
            continue
        value = ctx.params.get(param.name)
        if getattr(param, "is_flag", False):
            if value or param.secondary_opts:
                args.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if item is not None:  # a path made absolute: a job may start in another folder
                args += [param.opts[0], str(item.resolve()) if isinstance(item, Path) else str(item)]
    return args
