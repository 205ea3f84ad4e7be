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
    """Results (tables) on stdout: rich's width on a terminal; wide enough for a 16-column table, with
    messages unwrapped, when piped into a file."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=220, soft_wrap=True)
