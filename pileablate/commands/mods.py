"""`pileablate mods`: the modifications (built-in and loaded from --mods-file) as a table, or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def mods(
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON (for scripts) instead of a table."),
    mods_file: Optional[List[Path]] = typer.Option(
        None, "--mods-file", metavar="FILE", show_default=False,
        help="Also load and check a Python file that registers modifications (repeatable; see docs/modifications.md)."),
) -> None:
    """List the modifications: the slots each fills, its size knob, reference, what it cannot combine with."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pileablate.mods_files import load_mods_files
    from pileablate.registry import ALIASES, SEED_MODS, incompatible_with, modifications
    from pileablate.widths import FittedTable, name_dropped

    load_mods_files(mods_file or ())
    registry = modifications()
    if as_json:
        rows = [
            {
                "name": m.name, "target": m.target, "summary": m.summary, "fills": dict(m.fills),
                "sets": {k: (v if not callable(v) else "computed") for k, v in m.sets.items()},
                "options": {k: {"default": o.default, "help": o.help} for k, o in m.options.items()},
                "size_knob": m.size_knob, "incompatible": sorted(incompatible_with(m.name)), "reference": m.reference,
                "origin": m.origin, "seed": m.name in SEED_MODS,
            }
            for m in registry.values()
        ]
        typer.echo(json.dumps({"mods": rows, "aliases": {k: list(v) for k, v in ALIASES.items()}}, indent=2))
        return
    table = Table(title="modifications (combine with --mods a,b,...; 'all' = " + ",".join(SEED_MODS) + ")")
    for column in ("name", "slots", "what it changes", "size knob", "incompatible with", "reference", "from"):
        table.add_column(column, style="bold" if column == "name" else None)
    for m in registry.values():
        slots = ", ".join([f"{k}={v}" for k, v in m.fills.items()] + [f"sets {k}" for k in m.sets]
                          + [f"--mod-option {m.name}.{k}={o.default}" for k, o in m.options.items()])
        table.add_row(m.name, escape(slots), escape(m.summary), (m.size_knob or "none (unmatched)") if m.target == "model" else "-",
                      ", ".join(sorted(incompatible_with(m.name))) or "-", escape(m.reference), escape(m.origin))
    Console(soft_wrap=False).print(FittedTable(table, keep=("name", "what it changes", "reference"),
                                               below=name_dropped("a wider terminal shows them; --json has everything")))
