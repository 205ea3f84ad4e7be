"""`--task K/N`: N processes prepare disjoint parts of the same sources into one store."""

from __future__ import annotations

import pytest
from conftest import jsonl, zstd_frames
from test_prepare import decoded_texts, make_texts, run_cli

from pileablate.data.config import share
from pileablate.data.manifest import fingerprint, read_manifest
from pileablate.data.store import TokenSplit
from pileablate.data.tokenizer import load_tokenizer


@pytest.mark.parametrize("layout", ["records of one file", "whole shards"])
def test_parts_are_disjoint_and_merge_into_one_store(tmp_path, capsys, layout):
    texts = make_texts(900, 31)
    src = tmp_path / "src"
    src.mkdir()
    if layout == "records of one file":
        (src / "all.jsonl.zst").write_bytes(zstd_frames(jsonl({"text": t} for t in texts)))
        n = 3
    else:  # four shards, two parts: each part reads two whole shards
        for i in range(4):
            (src / f"{i:02d}.jsonl").write_bytes(jsonl({"text": t} for t in texts[i * 225 : (i + 1) * 225]))
        n = 2
    single = tmp_path / "single"
    assert run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(single), "--val-rows", "all")[0] == 0

    out = tmp_path / "parts"
    for k in range(1, n + 1):
        code, stdout, stderr = run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out), "--val-rows", "all",
                                       "--task", f"{k}/{n}")
        assert code == 0, stderr
        if k < n:
            assert not (out / "manifest.json").exists() and "last part" in stdout
    m = read_manifest(out)
    assert m["complete"] and m["parts_of"] == n
    assert m["fingerprint"] == fingerprint(m["tokenizer"], m["splits"])
    tok = load_tokenizer("bytes")
    train, val = decoded_texts(out, "train", tok), decoded_texts(out, "val", tok)
    # Together the parts hold exactly the documents of a single-process run, each once, same splits.
    assert sorted(train) == sorted(decoded_texts(single, "train", tok))
    assert sorted(val) == sorted(decoded_texts(single, "val", tok))
    assert len(set(train)) == len(train) and not set(train) & set(val)
    names = [p["file"] for p in m["splits"]["train"]["parts"]]
    assert names == sorted(names) and all(f"of{n:03d}" in name for name in names)
    assert TokenSplit(out / "train").num_tokens == m["splits"]["train"]["tokens"]


def test_row_limits_are_shared_out_among_parts(tmp_path, capsys):
    assert [share(10, k, 3) for k in (1, 2, 3)] == [4, 3, 3] and share(None, 1, 3) is None
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl({"text": t} for t in make_texts(400, 4)))
    out = tmp_path / "data"
    for k in (1, 2, 3):
        assert run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out), "--rows", "100", "--val-rows", "10",
                       "--task", f"{k}/3")[0] == 0
    m = read_manifest(out)
    assert m["splits"]["train"]["rows"] == 100 and m["splits"]["val"]["rows"] == 10


def test_parts_of_a_different_split_count_are_refused(tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl({"text": t} for t in make_texts(50)))
    out = tmp_path / "data"
    assert run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out), "--task", "1/2")[0] == 0
    code, _, stderr = run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out), "--task", "1/3")
    assert code == 2 and "parts_of" in stderr and "--overwrite" in stderr


def test_with_limits_each_part_takes_its_share_from_its_own_documents(tmp_path, capsys):
    """What README and --help promise: part K of N takes the first share(limit, K, N) documents of its
    own records (record i goes to part i mod N), for each split; the totals are the limits."""
    from pileablate.data.records import held_out

    texts = make_texts(400, 4)
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl({"text": t} for t in texts))
    out, n, rows, val_rows = tmp_path / "data", 3, 100, 10
    for k in range(1, n + 1):
        assert run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out), "--rows", str(rows),
                       "--val-rows", str(val_rows), "--task", f"{k}/{n}")[0] == 0
    want = {"train": [], "val": []}
    for k in range(1, n + 1):
        own = [t for i, t in enumerate(texts) if i % n == k - 1]
        own_val = [t for t in own if held_out(t.encode("utf-8"))]
        own_train = [t for t in own if not held_out(t.encode("utf-8"))]
        want["train"] += own_train[: share(rows, k, n)]
        want["val"] += own_val[: share(val_rows, k, n)]
    tok = load_tokenizer("bytes")
    # Part files sort by part number, so the store lists part 1's documents, then part 2's, ...
    assert decoded_texts(out, "train", tok) == want["train"] and decoded_texts(out, "val", tok) == want["val"]
    assert (len(want["train"]), len(want["val"])) == (rows, val_rows)
    # A one-process run takes the first documents of the whole source instead: same totals, other documents.
    single = tmp_path / "single"
    assert run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(single), "--rows", str(rows),
                   "--val-rows", str(val_rows))[0] == 0
    assert len(decoded_texts(single, "train", tok)) == rows
    assert sorted(decoded_texts(single, "train", tok)) != sorted(want["train"])
    from pileablate.data.config import PrepareConfig
    from pileablate.options import help_of

    assert "its share of each limit" in help_of(PrepareConfig, "task") and "from its own documents" in help_of(PrepareConfig, "task")
