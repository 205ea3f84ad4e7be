"""Shared fixtures. `bytes_store` is a small real token store (stdlib source, bytes tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bytes_store(tmp_path_factory) -> Path:
    """A prepared store of Python standard-library source, `bytes` tokenizer (vocab 257, EOT 256).

    About 400k train tokens and 40k val tokens: enough for nano models to learn visibly in seconds.
    """
    from pileablate.data.prepare import prepare_for_tests

    out = tmp_path_factory.mktemp("bytes_store")
    prepare_for_tests(out, train_tokens=400_000, val_tokens=40_000)
    return out
