"""What `prepare` shows: a live progress bar on stderr, and a summary table at the end (stdout)."""

from __future__ import annotations

import time
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from pileablate.data.tokenizer import UNKNOWN_FILE_PATTERN


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


class _Rates(ProgressColumn):
    """docs/s, tokens/s and MB read, from the task's fields."""

    def render(self, task: Task) -> Text:
        elapsed = max(task.elapsed or 0.0, 1e-9)
        docs, tokens, read = task.fields.get("docs", 0), task.fields.get("tokens", 0), task.fields.get("read", 0)
        return Text(
            f"{_si(docs)} docs {_si(docs / elapsed)}/s · {_si(tokens)} tok {_si(tokens / elapsed)}/s · "
            f"{read / 1e6:,.1f} MB read",
            style="progress.data.speed",
        )


class PrepareDisplay:
    """Progress toward the known total (documents, tokens or input bytes); no ETA when none is known."""

    def __init__(self, console: Optional[Console], unit: str, total: Optional[float], description: str):
        self.unit = unit  # "docs" | "tokens" | "bytes" | "none"
        self.console = console
        self.start = time.monotonic()
        self._progress = None
        if console is not None:
            columns = [TextColumn("[bold]{task.description}"), BarColumn(), _Rates()]
            if total:
                columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=console, transient=False, refresh_per_second=4)
            self._task = self._progress.add_task(description, total=total or None, docs=0, tokens=0, read=0)

    def __enter__(self) -> "PrepareDisplay":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, docs: int, tokens: int, read: int) -> None:
        if self._progress is None:
            return
        completed = {"docs": docs, "tokens": tokens, "bytes": read}.get(self.unit, 0)
        self._progress.update(self._task, completed=completed, docs=docs, tokens=tokens, read=read)


def summary_table(manifest: dict, elapsed_s: Optional[float], out: str, note: str = "") -> Table:
    tok = manifest["tokenizer"]
    title = f"prepared {out} · tokenizer {tok['name']} (vocab {tok['n_vocab']}, {manifest['dtype']})"
    if tok.get("pattern") == UNKNOWN_FILE_PATTERN:
        title += (" · the ranks file is not a known tiktoken encoding: GPT-2 split pattern, "
                  f"end-of-text {tok['eot_id']} after the last rank")
    table = Table(title=title, title_justify="left")
    for column in ("split", "documents", "tokens", "text MB", "bytes/token", "parts"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for name in ("train", "val"):
        s = manifest["splits"][name]
        per = f"{s['bytes'] / s['tokens']:.2f}" if s["tokens"] else "-"
        table.add_row(name, f"{s['rows']:,}", f"{s['tokens']:,}", f"{s['bytes'] / 1e6:,.1f}", per, str(len(s["parts"])))
    skipped = manifest.get("skipped") or {}
    caption = ["skipped: " + (", ".join(f"{k} {v:,}" for k, v in skipped.items()) if skipped else "none")]
    caption.append(f"val: {manifest.get('val_policy', '').split(':')[0].split(';')[0]}")
    if elapsed_s:
        caption.append(f"{elapsed_s:.1f} s this run")
    caption.append(f"fingerprint {manifest['fingerprint'][:16]}")
    if note:
        caption.append(note)
    table.caption = " · ".join(caption)
    table.caption_justify = "left"
    return table
