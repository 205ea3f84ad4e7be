"""`pileablate mods`: the modification registry as a table (or JSON for scripts)."""

from __future__ import annotations

import typer


def mods(
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON (for scripts) instead of a table."),
) -> None:
    """List the modifications: name, what each changes, what it cannot combine with."""
    import json

    from rich.console import Console
    from rich.table import Table

    from pileablate.model.registry import ALIASES, REGISTRY, SEED_MODS

    if as_json:
        rows = [
            {
                "name": m.name,
                "target": m.target,
                "summary": m.summary,
                "changes": m.changes,
                "incompatible": sorted(m.incompatible),
                "reference": m.reference,
                "seed": m.name in SEED_MODS,
            }
            for m in REGISTRY.values()
        ]
        typer.echo(json.dumps({"mods": rows, "aliases": {k: list(v) for k, v in ALIASES.items()}}, indent=2))
        return
    table = Table(title="modifications (combine with --mods a,b,...; 'all' = " + ",".join(SEED_MODS) + ")")
    table.add_column("name", style="bold")
    table.add_column("target")
    table.add_column("what it changes")
    table.add_column("incompatible with")
    for m in REGISTRY.values():
        changes = ", ".join(f"{k}={v}" for k, v in m.changes.items())
        table.add_row(m.name, m.target, f"{m.summary} [dim]({changes})[/dim]", ", ".join(sorted(m.incompatible)) or "-")
    Console(soft_wrap=False).print(table)
