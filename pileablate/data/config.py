"""`PrepareConfig`: every option of `pileablate prepare`, typed; field help is the CLI help.

Kept free of heavy imports so `pileablate --help` stays instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pileablate.errors import UserError

DEFAULT_VAL_ROWS = 5000
DEFAULT_CHUNK_TOKENS = 64_000_000


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def parse_count(text: Optional[str], option: str) -> Optional[int]:
    """'1000', '250k', '1.5M', '2B' -> int; '' / 'all' -> None (no limit)."""
    if text is None or str(text).strip().lower() in ("", "all", "none"):
        return None
    raw = str(text).strip().replace("_", "").replace(",", "")
    scale = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}.get(raw[-1].lower(), 1)
    number = raw[:-1] if scale != 1 else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise UserError(f"{option} {text}: expected a count like 1000, 250k, 1.5M or 2B (or 'all')") from None
    if value < 0 or value != int(value):
        raise UserError(f"{option} {text}: expected a whole count of 0 or more")
    return int(value)


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
    rows: Optional[int] = _opt(None, "Train documents to take (all when omitted). Suffixes k, M, B.")
    val_rows: Optional[int] = _opt(
        DEFAULT_VAL_ROWS,
        "Validation documents: from the source's own validation shard when it has one (the Pile's "
        "val.jsonl.zst), else held out by a hash of the text (5% of documents, capped at this number).",
    )
    tokens: Optional[int] = _opt(None, "Stop taking train documents once this many tokens are taken. Suffixes k, M, B.")
    val_tokens: Optional[int] = _opt(None, "Stop taking validation documents once this many tokens are taken.")
    part: Optional[str] = _opt(
        None, "K/N: prepare part K of N into the same --out (one process or machine per part; disjoint documents)."
    )
    overwrite: bool = _opt(False, "Replace a store in --out made with another tokenizer, sources or limits.")
    chunk_tokens: int = _opt(
        DEFAULT_CHUNK_TOKENS, "Tokens per committed chunk (one part file per split): the unit of resume."
    )
    workers: Optional[int] = _opt(None, "Tokenizer threads (default: one more than the available cores, so GIL waits never leave a core idle).")

    def __post_init__(self) -> None:
        self.sources = list(self.sources or ["pile"])
        self.out = Path(self.out)


def field_help(name: str) -> str:
    return PrepareConfig.__dataclass_fields__[name].metadata["help"]


def parse_part(text: Optional[str]) -> tuple[int, int]:
    if not text:
        return 1, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--part {text}: expected K/N with 1 <= K <= N, e.g. --part 2/8") from None
    if not 1 <= k <= n:
        raise UserError(f"--part {text}: expected K/N with 1 <= K <= N, e.g. --part 2/8")
    return k, n


def share(total: Optional[int], k: int, n: int) -> Optional[int]:
    """Part k's share of a total shared out among n parts (sums back to the total)."""
    if total is None:
        return None
    return total // n + (1 if k - 1 < total % n else 0)


