"""`PrepareConfig`: every option of `pileablate prepare`, typed; each field is the option of its name.

Kept free of heavy imports so `pileablate --help` stays instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pileablate import units
from pileablate.options import option
from pileablate.slurm_options import SLURM

DEFAULT_VAL_ROWS = 5000
DEFAULT_CHUNK_TOKENS = 64_000_000


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def parse_count(text: Optional[str], flag: str) -> Optional[int]:
    """A count option of prepare: 0 or more, or '' / 'all' / 'none' for no limit (grammar: pileablate.units)."""
    return units.parse_count(text, flag, minimum=0, allow_all=True)


@dataclass
class PrepareConfig:
    """Everything `pileablate prepare` takes; each field is the option of its name, its help the --help."""

    sources: list[str] = option(
        None,
        "What to read: 'pile' (The Pile, uncopyrighted mirror, streamed over HTTPS), 'sample' (the Python "
        "standard library's source as Pile records; offline), or local files, directories, globs and "
        "http(s) URLs of .jsonl / .jsonl.zst / .json.zst. Repeatable. Default: pile.",
        flag="--source", short="-s", metavar="SOURCE",
    )
    out: Path = option(Path("data"), "Output directory of the token store.", short="-o", metavar="DIR")
    tokenizer: str = option(
        "gpt2", "A tiktoken encoding name (gpt2, cl100k_base, ...), a path to a .tiktoken ranks file, or 'bytes'.",
        short="-t", metavar="NAME|FILE|bytes",
    )
    rows: Optional[int] = option(None, "Train documents to take (all when omitted). Suffixes k, M, G/B, T.",
                                 metavar="N", parse=parse_count)
    val_rows: Optional[int] = option(
        DEFAULT_VAL_ROWS,
        "Validation documents: from the source's own validation shard when it has one (the Pile's "
        "val.jsonl.zst), else held out by a hash of the text (5% of documents, capped at this number; 'all' for "
        "no cap).", metavar="N", parse=parse_count,
    )
    tokens: Optional[int] = option(None, "Stop taking train documents once this many tokens are taken. Suffixes k, M, G/B, T.",
                                   metavar="N", parse=parse_count)
    val_tokens: Optional[int] = option(None, "Stop taking validation documents once this many tokens are taken.",
                                       metavar="N", parse=parse_count)
    task: Optional[str] = option(
        None,
        "K/N: prepare task K's share of N into the same --out (one process or machine per task; disjoint documents, "
        "written as part files of their own). Without limits the N tasks hold exactly a one-process run's documents. "
        "With --rows, --tokens, --val-rows or --val-tokens, each task takes its share of each limit (limit // N, +1 "
        "for the first limit % N tasks) from its own documents, in order: the totals are the limits, but not the "
        "documents a one-process run would take.", metavar="K/N",
    )
    overwrite: bool = option(False, "Replace a store in --out made with another tokenizer, sources or limits.")
    chunk_tokens: int = option(DEFAULT_CHUNK_TOKENS, "Tokens per committed chunk (one part file per split): the unit of resume.",
                               metavar="N", parse=parse_count)
    workers: Optional[int] = option(
        None, "Tokenizer processes (default: one per available core). The store is the same whatever the number.",
        metavar="N", min=1,
    )
    emit: Optional[str] = option(None, "Write a SLURM job array of --task K/N prepares into --out, a verification job "
                                       "after it and the submit.sh that submits both, into OUT/slurm/, and stop (nothing "
                                       "is prepared here).", group=SLURM, metavar="slurm")
    array_tasks: Optional[int] = option(None, "With --emit slurm: the array's tasks, N of --task K/N (default: one per "
                                              "train source, 30 for the Pile).", group=SLURM, min=1)
    dry_run: bool = option(False, "Estimate what this prepare costs and stop, writing nothing: the tokens, the disk and "
                                  "the time at --task's N tasks and --workers, from the first 8 MB of the first source, "
                                  "read and tokenized as prepare would.")

    def __post_init__(self) -> None:
        self.sources = list(self.sources or ["pile"])
        self.out = Path(self.out)
        if self.chunk_tokens is None:
            self.chunk_tokens = DEFAULT_CHUNK_TOKENS


def parse_task(text: Optional[str]) -> tuple[int, int]:
    return units.parse_share(text, "--task") if text else (1, 1)


def share(total: Optional[int], k: int, n: int) -> Optional[int]:
    """Part k's share of a total shared out among n parts (sums back to the total)."""
    if total is None:
        return None
    return total // n + (1 if k - 1 < total % n else 0)


