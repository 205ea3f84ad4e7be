"""`prepare`'s worker processes: results in input order, a bounded number of batches in flight,
a worker that dies is a one-line error, one worker per available core by default."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import jsonl
from helpers.dying import MARKER, DyingTokenizer
from test_prepare import make_texts

from pileablate.data import reading
from pileablate.data.pipeline import Pipeline
from pileablate.data.prepare import default_workers
from pileablate.data.sources import Source
from pileablate.data.tokenizer import BytesTokenizer
from pileablate.errors import UserError


def _source(tmp_path, texts) -> Source:
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl({"text": t} for t in texts))
    return Source(str(path), "train")


def test_in_flight_batches_stay_within_the_bound_however_slow_the_consumer(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "BATCH_LINES", 4)  # many small batches: the reader could run far ahead
    texts = make_texts(400, 3)
    tokenizer = BytesTokenizer()
    pipeline = Pipeline([_source(tmp_path, texts)], 0, 0, tokenizer, np.dtype(np.uint16), workers=2)
    got = []
    try:
        for result in pipeline:
            time.sleep(0.01)  # a slow writer: the workers are done long before it takes their results
            got += [tokenizer.decode(item.tokens[:-1].tolist()) for item in result.items]
    finally:
        pipeline.close()
    profile = pipeline.profile
    assert got == texts  # every document, in input order
    assert profile.batches == 100 and profile.batches > 3 * pipeline.bound
    assert pipeline.workers < profile.max_in_flight <= pipeline.bound
    assert profile.worker["tokenize"] > 0 and profile.main > 0


def test_a_worker_that_dies_is_a_one_line_error(tmp_path):
    texts = make_texts(300, 4)
    texts[150] += " " + MARKER
    pipeline = Pipeline([_source(tmp_path, texts)], 0, 0, DyingTokenizer(), np.dtype(np.uint16), workers=2)
    with pytest.raises(UserError, match="worker process died .* run the same command again"):
        try:
            for _ in pipeline:
                pass
        finally:
            pipeline.close()


def test_one_worker_per_core_this_process_may_use():
    assert default_workers() == len(os.sched_getaffinity(0))


def test_a_document_waiting_in_a_part_writer_does_not_keep_its_whole_batch_alive(tmp_path):
    import gc
    import weakref

    from pileablate.data.config import PrepareConfig
    from pileablate.data.pipeline import Document, EncodedBatch
    from pileablate.data.prepare import _new_state, _Run

    cfg = PrepareConfig(sources=["x"], out=tmp_path / "data", tokenizer="bytes", val_rows=None)
    source = Source(str(tmp_path / "a.jsonl"), "mixed")
    run = _Run(cfg, BytesTokenizer(), [source], 1, 1, _new_state({}, "uint16", 1, 1))
    batch = EncodedBatch(0, 0, np.arange(100_000, dtype=np.uint16), [(10, 9, True), (99_990, 99_989, False)], {})
    tokens = weakref.ref(batch.tokens)
    val_doc = batch.result().items[0]
    assert isinstance(val_doc, Document) and val_doc.tokens.base is batch.tokens
    run.route(source, val_doc)  # goes to val, whose writer flushes only after 1M tokens
    del batch, val_doc
    gc.collect()
    assert tokens() is None and run.writers["val"].rows == 1
    run.abort()


def test_the_profile_says_where_the_time_went(tmp_path):
    from pileablate.data.config import PrepareConfig
    from pileablate.data.pipeline import Profile
    from pileablate.data.prepare import prepare

    source = _source(tmp_path, make_texts(3000, 5))
    profile = Profile()
    prepare(PrepareConfig(sources=[source.location], out=tmp_path / "data", tokenizer="bytes", val_rows=None,
                          workers=1), profile=profile)
    assert profile.batches >= 2 and profile.max_in_flight >= 1
    assert all(profile.worker[step] > 0 for step in ("parse", "hash", "tokenize"))
    assert profile.read > 0 and profile.main > 0 and 0 < profile.commit <= profile.write
