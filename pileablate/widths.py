"""Terminal output that degrades by priority: at any width the most important columns (or pieces of a
status line) stay whole, and the lesser ones are dropped, or listed below a table, first.

rich on its own squeezes every column of a table that is too wide, so at 80 columns it cuts numbers
(`± 0.03…`) and folds names (`configur`/`ation`). Here a table keeps its `keep` columns and drops the
others, lowest priority first, until the rest fits; text columns that may wrap count at most
`WRAP_AT` characters (they wrap inside their cell), numbers never. Used by `report`, `mods` and the
live line of `train`.
"""

from __future__ import annotations

import copy
import io
import os
from typing import Callable, Optional, Sequence

# A column that may wrap (overflow "fold" or "ellipsis" without no_wrap) needs no more than this to be
# readable: it wraps over lines inside its cell.
WRAP_AT = 24


def columns_from_env(default: int) -> int:
    """COLUMNS when the environment sets it (a pipe has no width of its own), else `default`."""
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def _needed_width(table, wrap_at: int) -> int:
    """The width `table` needs with every wrappable column held to `wrap_at` characters."""
    from rich.console import Console

    probe = copy.copy(table)
    probe.columns = [copy.copy(c) for c in table.columns]
    for column in probe.columns:
        if not column.no_wrap:
            column.max_width = min(column.max_width or wrap_at, wrap_at)
    console = Console(width=100_000, file=io.StringIO())
    return console.measure(probe).maximum


def fit_table(table, width: int, keep: Sequence[str], drop_first: Sequence[str] = (), wrap_at: int = WRAP_AT):
    """(the table with the columns that fit `width`, the headers dropped). Columns named in `keep` are
    never dropped; the others go in the order of `drop_first`, then from the right."""
    shown = copy.copy(table)
    shown.columns = [copy.copy(c) for c in table.columns]  # renumbered below: the caller's table stays as it is
    headers = [str(c.header) for c in table.columns]
    order = [h for h in drop_first if h in headers] + [h for h in reversed(headers) if h not in drop_first]
    order = [h for h in order if h not in keep]
    dropped: list[str] = []
    while _needed_width(shown, wrap_at) > width and order:
        header = order.pop(0)
        shown.columns = [c for c in shown.columns if str(c.header) != header]
        dropped.append(header)
    for index, column in enumerate(shown.columns):
        column._index = index  # rich reads a column's padding by its position
    return shown, dropped


class FittedTable:
    """A rich renderable: `table` fitted to the width it is printed at (fit_table), then `below(dropped)`
    (renderables that carry what the dropped columns said, or nothing)."""

    def __init__(self, table, keep: Sequence[str], drop_first: Sequence[str] = (),
                 below: Optional[Callable[[list[str]], list]] = None):
        self.table, self.keep, self.drop_first, self.below = table, keep, drop_first, below

    def __rich_console__(self, console, options):
        table, dropped = fit_table(self.table, options.max_width, self.keep, self.drop_first)
        yield table
        if dropped and self.below is not None:
            yield from self.below(dropped)


def name_dropped(hint: str) -> Callable[[list[str]], list]:
    """A `below` for FittedTable that names the dropped columns and where to see them (`hint`)."""
    def below(dropped: list[str]) -> list:
        from rich.text import Text

        return [Text(f"not shown at this width: {', '.join(dropped)} ({hint})", style="dim")]

    return below


def fit_pieces(pieces: Sequence[tuple[int, str]], width: int, sep: str = " · ") -> str:
    """Pieces of a status line, (priority, text) in display order (0 first kept): the most important
    that fit `width`, in their order."""
    kept = sorted(range(len(pieces)), key=lambda i: (pieces[i][0], i))
    while kept and len(sep.join(pieces[i][1] for i in sorted(kept))) > width:
        kept.pop()
    return sep.join(pieces[i][1] for i in sorted(kept))
