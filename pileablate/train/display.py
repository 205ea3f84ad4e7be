"""The live training display on stderr: a budget bar with step, losses, lr, tokens/s and time left."""

from __future__ import annotations

import math
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from pileablate.widths import fit_pieces


def _fmt_loss(value: Optional[float]) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LiveDisplay:
    """rich Progress over the budget fraction; `update` takes the latest figures. No-op when disabled."""

    def __init__(self, console: Console, enabled: bool = True):
        self.enabled = enabled
        self.console = console
        # At 80 columns: 'train' + a short bar + the percentage leave the figures about 60 characters.
        self._bar_width = 10 if console.width < 120 else 30
        self._progress = Progress(
            TextColumn("[bold]train[/bold]"),
            BarColumn(bar_width=self._bar_width),
            TaskProgressColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
            refresh_per_second=4,
        )
        self._task = None

    def __enter__(self) -> "LiveDisplay":
        if self.enabled:
            self._progress.start()
            self._task = self._progress.add_task("train", total=1.0, info="starting")
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._progress.stop()

    def update(self, *, progress: float, step: int, train_loss, val_loss, lr: float, tokens_per_s, elapsed_s: float, epoch: float) -> None:
        if not self.enabled or self._task is None:
            return
        left = elapsed_s * (1 - progress) / progress if progress > 0 else None
        # (priority, piece) in display order: step, loss and time left always, the rest as the width allows.
        pieces = [(0, f"step {step}"), (0, f"loss {_fmt_loss(train_loss)}"), (0, f"{_fmt_duration(left)} left"),
                  (1, f"val {_fmt_loss(val_loss)}"), (2, f"{_fmt_duration(elapsed_s)} elapsed"),
                  (3, f"{(tokens_per_s or 0):,.0f} tok/s"), (4, f"lr {lr:.2e}"), (5, f"epoch {epoch:.2f}")]
        self._progress.update(self._task, completed=progress, info=fit_pieces(pieces, self.info_width()))

    def info_width(self) -> int:
        """What the figures may take of the line: the width less 'train', the bar, '100%' and the gaps."""
        return self.console.width - len("train") - self._bar_width - len("100%") - 3
