"""The consoles every command writes through: live output and messages on stderr, results on stdout.

On a terminal rich wraps to its width. Into a file or a pipe, rich would wrap at 80 columns and cut
log lines in the middle; there each message stays one line (soft wrap), which is what `grep` and a
log reader want.
"""

from __future__ import annotations


def stderr_console():
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, soft_wrap=True)


def stdout_console():
    """Results (tables) on stdout: rich's width on a terminal; piped into a file, the COLUMNS the
    environment sets (tables fit it, pileablate.widths), else wide enough for a 16-column table, with
    messages unwrapped."""
    from rich.console import Console

    from pileablate.widths import columns_from_env

    console = Console()
    return console if console.is_terminal else Console(width=columns_from_env(220), soft_wrap=True)
