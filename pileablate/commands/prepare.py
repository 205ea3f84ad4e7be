"""`pileablate prepare`: stream a corpus into a memory-mapped token store (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pileablate.data.config import DEFAULT_CHUNK_TOKENS, DEFAULT_VAL_ROWS, field_help


def prepare(
    source: Optional[List[str]] = typer.Option(None, "--source", "-s", metavar="SOURCE", help=field_help("sources") + " [default: pile]"),
    rows: Optional[str] = typer.Option(None, "--rows", metavar="N", help=field_help("rows"), show_default=False),
    val_rows: str = typer.Option(str(DEFAULT_VAL_ROWS), "--val-rows", metavar="N", help=field_help("val_rows") + " 'all' for no cap."),
    tokens: Optional[str] = typer.Option(None, "--tokens", metavar="N", help=field_help("tokens"), show_default=False),
    val_tokens: Optional[str] = typer.Option(None, "--val-tokens", metavar="N", help=field_help("val_tokens"), show_default=False),
    tokenizer: str = typer.Option("gpt2", "--tokenizer", "-t", metavar="NAME|FILE|bytes", help=field_help("tokenizer")),
    out: Path = typer.Option(Path("data"), "--out", "-o", metavar="DIR", help=field_help("out")),
    part: Optional[str] = typer.Option(None, "--part", metavar="K/N", help=field_help("part"), show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help=field_help("overwrite")),
    chunk_tokens: str = typer.Option("64M", "--chunk-tokens", metavar="N", help=field_help("chunk_tokens")),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, metavar="N", help=field_help("workers"), show_default=False),
    verify: Optional[Path] = typer.Option(None, "--verify", metavar="DIR", help="Check the prepared store in DIR "
                                          "against its manifest (every part's sha256, structure and token ids), "
                                          "print one line per damaged part and exit 1 if any; prepares nothing.",
                                          show_default=False),
) -> None:
    """Stream a corpus (The Pile, the offline sample, files, URLs) into memory-mapped token files.

    Examples: 'pileablate prepare --rows 1M' (The Pile, GPT-2 tokens, into data/);
    'pileablate prepare --source sample --tokenizer bytes' (offline). Interrupted? Run the same
    command again: it continues from the last committed chunk.
    'pileablate prepare --verify data' checks a store for damage.
    """
    if verify is not None:
        from pileablate.data.verify import report_store

        raise typer.Exit(report_store(verify))
    from pileablate.console import stderr_console, stdout_console
    from pileablate.data.config import PrepareConfig, parse_count
    from pileablate.data.prepare import prepare as run_prepare

    chunk = parse_count(chunk_tokens, "--chunk-tokens")
    cfg = PrepareConfig(
        sources=list(source or ["pile"]),
        out=out,
        tokenizer=tokenizer,
        rows=parse_count(rows, "--rows"),
        val_rows=parse_count(val_rows, "--val-rows"),
        tokens=parse_count(tokens, "--tokens"),
        val_tokens=parse_count(val_tokens, "--val-tokens"),
        part=part,
        overwrite=overwrite,
        chunk_tokens=chunk if chunk is not None else DEFAULT_CHUNK_TOKENS,
        workers=workers,
    )
    run_prepare(cfg, console=stderr_console(), summary_console=stdout_console())
