"""The token store: what is written is what any window reads back, across parts and record batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pileablate.data.store import PartWriter, TokenSplit, write_part


def _random_documents(rng, count, vocab, max_len=300):
    return [np.append(rng.integers(0, vocab - 1, rng.integers(0, max_len)), vocab - 1) for _ in range(count)]


@pytest.mark.parametrize("dtype,vocab", [("uint16", 50257), ("uint32", 100_000)])
def test_window_equals_concatenated_tokens_written(tmp_path, dtype, vocab):
    rng = np.random.default_rng(0)
    docs = _random_documents(rng, 120, vocab)
    # Three parts; the middle one written in many small record batches.
    write_part(tmp_path / "train" / "part-00000.arrow", docs[:40], dtype)
    writer = PartWriter(tmp_path / "train" / "part-00001.arrow", dtype, batch_tokens=97)
    for d in docs[40:90]:
        writer.add(d)
    info = writer.commit()
    assert (info["rows"], info["tokens"]) == (50, sum(len(d) for d in docs[40:90]))
    write_part(tmp_path / "train" / "part-00002.arrow", docs[90:], dtype)

    split = TokenSplit(tmp_path / "train")
    stream = np.concatenate(docs)
    assert split.num_tokens == len(stream) and split.num_documents == len(docs)
    assert split.dtype == np.dtype(dtype)
    for _ in range(300):
        start = int(rng.integers(0, len(stream)))
        length = int(rng.integers(0, min(2000, len(stream) - start) + 1))
        np.testing.assert_array_equal(split.window(start, length), stream[start : start + length])
    for i in (0, 39, 40, 89, 90, 119):
        np.testing.assert_array_equal(split.document(i), docs[i])
    with pytest.raises(IndexError):
        split.window(len(stream) - 1, 2)


def test_part_file_appears_only_on_commit(tmp_path):
    path = tmp_path / "val" / "part-00000.arrow"
    writer = PartWriter(path, "uint16", batch_tokens=4)
    for _ in range(10):
        writer.add(np.arange(5))
    assert not path.exists()  # batches went to the temporary file only
    writer.abort()
    assert not path.exists() and not list(tmp_path.rglob("*.tmp"))
    assert TokenSplit(tmp_path / "val").num_tokens == 0


def test_split_follows_the_manifest_and_ignores_stray_parts(tmp_path):
    write_part(tmp_path / "train" / "part-00000.arrow", [[1, 2, 3]], "uint16")
    write_part(tmp_path / "train" / "part-00001.arrow", [[9, 9]], "uint16")  # left over, not in the manifest
    manifest = {"splits": {"train": {"parts": [{"file": "train/part-00000.arrow"}]}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    split = TokenSplit(tmp_path / "train")
    assert split.num_tokens == 3 and split.window(0, 3).tolist() == [1, 2, 3]


def test_split_knows_each_token_s_part_and_the_manifest_s_vocabulary(tmp_path):
    write_part(tmp_path / "train" / "part-00000.arrow", [[1, 2, 3]], "uint16")
    write_part(tmp_path / "train" / "part-00001.arrow", [[4, 5]], "uint16")
    assert TokenSplit(tmp_path / "train").vocab_size is None  # no manifest: nothing to check ids against
    parts = [{"file": f"train/part-0000{i}.arrow"} for i in (0, 1)]
    (tmp_path / "manifest.json").write_text(json.dumps({"vocab_size": 6, "splits": {"train": {"parts": parts}}}))
    split = TokenSplit(tmp_path / "train")
    assert split.vocab_size == 6
    assert [split.part_at(i).name for i in range(5)] == ["part-00000.arrow"] * 3 + ["part-00001.arrow"] * 2
