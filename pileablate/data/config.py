"""`PrepareConfig`: every option of `pileablate prepare`, typed; field help is the CLI help.

Kept free of heavy imports so `pileablate --help` stays instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pileablate import units

DEFAULT_VAL_ROWS = 5000
DEFAULT_CHUNK_TOKENS = 64_000_000


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def parse_count(text: Optional[str], option: str) -> Optional[int]:
    """A count option of prepare: 0 or more, or '' / 'all' / 'none' for no limit (grammar: pileablate.units)."""
    return units.parse_count(text, option, minimum=0, allow_all=True)


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class PrepareConfig:
    """Everything `pileablate prepare` takes; each field's help is the CLI's help."""

    sources: list = _opt(
        None,
        "What to read: 'pile' (The Pile, uncopyrighted mirror, streamed over HTTPS), 'sample' (the Python "
        "standard library's source as Pile records; offline), or local files, directories, globs and "
        "http(s) URLs of .jsonl / .jsonl.zst / .json.zst. Repeatable.",
    )
    out: Path = _opt(Path("data"), "Output directory of the token store.")
    tokenizer: str = _opt(
        "gpt2", "A tiktoken encoding name (gpt2, cl100k_base, ...), a path to a .tiktoken ranks file, or 'bytes'."
    )
    rows: Optional[int] = _opt(None, "Train documents to take (all when omitted). Suffixes k, M, G/B, T.")
    val_rows: Optional[int] = _opt(
        DEFAULT_VAL_ROWS,
        "Validation documents: from the source's own validation shard when it has one (the Pile's "
        "val.jsonl.zst), else held out by a hash of the text (5% of documents, capped at this number).",
    )
    tokens: Optional[int] = _opt(None, "Stop taking train documents once this many tokens are taken. Suffixes k, M, G/B, T.")
    val_tokens: Optional[int] = _opt(None, "Stop taking validation documents once this many tokens are taken.")
    part: Optional[str] = _opt(
        None,
        "K/N: prepare part K of N into the same --out (one process or machine per part; disjoint documents). "
        "Without limits the parts hold exactly a one-process run's documents. With --rows, --tokens, --val-rows or "
        "--val-tokens, each part takes its share of each limit (limit // N, +1 for the first limit % N parts) "
        "from its own documents, in order: the totals are the limits, but not the documents a one-process "
        "run would take.",
    )
    overwrite: bool = _opt(False, "Replace a store in --out made with another tokenizer, sources or limits.")
    chunk_tokens: int = _opt(
        DEFAULT_CHUNK_TOKENS, "Tokens per committed chunk (one part file per split): the unit of resume."
    )
    workers: Optional[int] = _opt(
        None, "Tokenizer processes (default: one per available core). The store is the same whatever the number."
    )

    def __post_init__(self) -> None:
        self.sources = list(self.sources or ["pile"])
        self.out = Path(self.out)


def field_help(name: str) -> str:
    return PrepareConfig.__dataclass_fields__[name].metadata["help"]


def parse_part(text: Optional[str]) -> tuple[int, int]:
    return units.parse_share(text, "--part") if text else (1, 1)


def share(total: Optional[int], k: int, n: int) -> Optional[int]:
    """Part k's share of a total shared out among n parts (sums back to the total)."""
    if total is None:
        return None
    return total // n + (1 if k - 1 < total % n else 0)


