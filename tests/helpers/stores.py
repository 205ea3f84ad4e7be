"""A small real token store for tests and benchmarks, made by `prepare` itself."""

from __future__ import annotations

from pathlib import Path

from pileablate.data.config import PrepareConfig
from pileablate.data.prepare import prepare


def prepare_for_tests(out: Path, train_tokens: int, val_tokens: int) -> dict:
    """Python standard-library source, `bytes` tokenizer, hash hold-out for val; returns the manifest."""
    cfg = PrepareConfig(sources=["sample"], out=Path(out), tokenizer="bytes", tokens=train_tokens,
                        val_tokens=val_tokens, val_rows=None, workers=2)
    return prepare(cfg)
