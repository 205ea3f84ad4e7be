"""`pileablate prepare` end to end from the CLI: sources, splits, tokens, manifest, bad input."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import jsonl, zstd_frames
from helpers.bpe import learn_bpe, write_tiktoken_file

from pileablate.cli import main
from pileablate.data.manifest import fingerprint, read_manifest
from pileablate.data.store import TokenSplit
from pileablate.data.tokenizer import load_tokenizer
from pileablate.errors import UserError

WORDS = "the of and pile token ablation λόγος données 漢字 def return 42 \U0001F600 <|endoftext|>".split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"doc {seed}-{i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) for i in range(n)]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["prepare", *args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(stderr: str) -> str:
    """The error: one line, last on stderr (after any progress display), no traceback."""
    assert "Traceback" not in stderr
    last = stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("error: "), stderr
    return last


def documents(out: Path, split: str) -> list[np.ndarray]:
    s = TokenSplit(out / split)
    return [s.document(i) for i in range(s.num_documents)]


def decoded_texts(out: Path, split: str, tokenizer) -> list[str]:
    texts = []
    for doc in documents(out, split):
        assert doc[-1] == tokenizer.eot_id and tokenizer.eot_id not in doc[:-1].tolist()
        texts.append(tokenizer.decode(doc[:-1].tolist()))
    return texts


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text(encoding="utf-8", errors="ignore") for p in sorted(stdlib.glob("*.py"))[:6]] + make_texts(200)
    return write_tiktoken_file(learn_bpe(texts, 300), tmp_path_factory.mktemp("bpe") / "small.tiktoken")


def test_sample_source_offline_writes_a_store_the_reader_maps(tmp_path, capsys):
    out = tmp_path / "data"
    code, stdout, stderr = run_cli(capsys, "--source", "sample", "--tokenizer", "bytes", "--rows", "40",
                                   "--val-rows", "5", "--out", str(out))
    assert code == 0, stderr
    m = read_manifest(out)
    assert m["format_version"] == 1 and m["complete"] is True
    assert m["tokenizer"]["spec"] == "bytes" and m["dtype"] == "uint16" and m["vocab_size"] == 257 and m["eot_id"] == 256
    assert m["splits"]["train"]["rows"] == 40 and m["splits"]["val"]["rows"] == 5
    assert m["fingerprint"] == fingerprint(m["tokenizer"], m["splits"])
    assert "hash hold-out" in m["val_policy"]
    tok = load_tokenizer("bytes")
    for split in ("train", "val"):
        texts = decoded_texts(out, split, tok)
        assert len(texts) == m["splits"][split]["rows"]
        assert sum(len(t.encode()) for t in texts) == m["splits"][split]["bytes"]
        assert TokenSplit(out / split).num_tokens == m["splits"][split]["tokens"]
    everything = decoded_texts(out, "train", tok) + decoded_texts(out, "val", tok)
    first = Path(sysconfig.get_paths()["stdlib"], "__future__.py").read_text()
    assert first in everything  # real standard-library source, verbatim
    assert "train" in stdout and "documents" in stdout  # the summary table, on stdout
    assert "docs" in stderr and "tok" in stderr and "MB read" in stderr  # the progress display, on stderr


def test_local_files_every_format_tokens_match_and_bad_records_are_counted(tmp_path, capsys, small_bpe):
    texts = make_texts(300)
    good = [{"text": t, "meta": {"pile_set_name": "Pile-CC"}} for t in texts]
    bad = [
        b"{not json", {"meta": {}}, {"text": 17}, ["a list"], {"text": ""}, {"text": "  \n "},
        b'{"text": "caf\xe9"}', b'{"text": "lone \\ud800 surrogate"}',
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(jsonl(good[:100] + bad[:4]))
    (tmp_path / "in" / "b.jsonl.zst").write_bytes(zstd_frames(jsonl(good[100:200] + bad[4:]), frames=4))
    (tmp_path / "in" / "c.json.zst").write_bytes(zstd_frames(jsonl(good[200:]), frames=1))
    (tmp_path / "in" / "notes.txt").write_text("ignored: not a supported suffix")
    out = tmp_path / "data"
    code, stdout, stderr = run_cli(capsys, "--source", str(tmp_path / "in"), "--tokenizer", str(small_bpe),
                                   "--out", str(out), "--val-rows", "all", "--workers", "3")
    assert code == 0, stderr
    m = read_manifest(out)
    assert m["skipped"] == {"invalid_json": 1, "no_text": 3, "empty_text": 2, "invalid_utf8": 2}
    summary = " ".join(stdout.split())  # the table may wrap anywhere on a narrow terminal
    assert "invalid_json 1" in summary and "invalid_utf8 2" in summary  # shown in the summary too
    tok = load_tokenizer(str(small_bpe))
    assert m["tokenizer"]["sha256"] == tok.sha256 and m["vocab_size"] == tok.n_vocab == 301
    train, val = decoded_texts(out, "train", tok), decoded_texts(out, "val", tok)
    assert sorted(train + val) == sorted(texts)  # every good document once, in one split only
    assert 0 < len(val) < 0.2 * len(texts)
    # Token ids are exactly the tokenizer's, document by document, in input order.
    expected = [tok.encode(t) + [tok.eot_id] for t in texts if t in set(train)]
    assert [d.tolist() for d in documents(out, "train")] == expected


def test_val_comes_from_the_sources_own_val_shard_and_test_is_never_read(tmp_path, capsys):
    root = tmp_path / "pile"
    (root / "train").mkdir(parents=True)
    train_texts, val_texts, test_texts = make_texts(60, 1), make_texts(30, 2), make_texts(10, 3)
    (root / "train" / "00.jsonl.zst").write_bytes(zstd_frames(jsonl({"text": t} for t in train_texts[:30])))
    (root / "train" / "01.jsonl.zst").write_bytes(zstd_frames(jsonl({"text": t} for t in train_texts[30:])))
    (root / "val.jsonl.zst").write_bytes(zstd_frames(jsonl({"text": t} for t in val_texts)))
    (root / "test.jsonl.zst").write_bytes(zstd_frames(jsonl({"text": t} for t in test_texts)))
    out = tmp_path / "data"
    code, _, stderr = run_cli(capsys, "-s", str(root), "-t", "bytes", "-o", str(out), "--rows", "45", "--val-rows", "12")
    assert code == 0, stderr
    tok = load_tokenizer("bytes")
    assert decoded_texts(out, "train", tok) == train_texts[:45]
    assert decoded_texts(out, "val", tok) == val_texts[:12]
    assert "val.jsonl.zst" in read_manifest(out)["val_policy"]


def _serve_pile(server, n_train_shards=3, per_shard=20):
    texts = {}
    for i in range(n_train_shards):
        texts[f"train/{i:02d}"] = make_texts(per_shard, 10 + i)
        server.routes[f"/mirror/train/{i:02d}.jsonl.zst"] = zstd_frames(jsonl({"text": t} for t in texts[f"train/{i:02d}"]))
    texts["val"] = make_texts(per_shard, 99)
    server.routes["/mirror/val.jsonl.zst"] = zstd_frames(jsonl({"text": t} for t in texts["val"]))
    return texts


def test_pile_source_streams_shards_over_http(tmp_path, capsys, http_server, monkeypatch):
    texts = _serve_pile(http_server)
    for i in range(3, 30):  # the mirror layout has 30 train shards; these are empty
        http_server.routes[f"/mirror/train/{i:02d}.jsonl.zst"] = b""
    monkeypatch.setenv("PILEABLATE_PILE_URL", http_server.url("/mirror"))
    out = tmp_path / "data"
    code, _, stderr = run_cli(capsys, "--tokenizer", "bytes", "--rows", "30", "--val-rows", "7", "--out", str(out))
    assert code == 0, stderr
    tok = load_tokenizer("bytes")
    assert decoded_texts(out, "train", tok) == (texts["train/00"] + texts["train/01"])[:30]
    assert decoded_texts(out, "val", tok) == texts["val"][:7]
    m = read_manifest(out)
    assert m["sources"][0].endswith("/mirror/val.jsonl.zst") and len(m["sources"]) == 31


@pytest.mark.parametrize("case", ["missing", "bad_suffix", "empty_dir", "http_404", "closed_port", "tokenizer"])
def test_bad_input_is_one_line_before_any_output(tmp_path, capsys, http_server, closed_port_url, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "doc.csv").write_text("a,b\n")
    source = {
        "missing": str(tmp_path / "nope.jsonl.zst"),
        "bad_suffix": str(tmp_path / "doc.csv"),
        "empty_dir": str(tmp_path / "empty"),
        "http_404": http_server.url("/missing/val.jsonl.zst"),
        "closed_port": closed_port_url,
        "tokenizer": "sample",
    }[case]
    tokenizer = "no-such-encoding" if case == "tokenizer" else "bytes"
    out = tmp_path / "data"
    code, stdout, stderr = run_cli(capsys, "--source", source, "--tokenizer", tokenizer, "--out", str(out))
    assert code == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr  # before progress
    assert not out.exists()
    if case == "http_404":
        assert "404" in stderr


def test_truncated_zstd_names_file_and_record_and_keeps_what_was_committed(tmp_path, capsys):
    texts = make_texts(5000, 5)
    whole = zstd_frames(jsonl({"text": t} for t in texts), frames=8)
    broken = tmp_path / "cut.jsonl.zst"
    broken.write_bytes(whole[: int(len(whole) * 0.7)])
    out = tmp_path / "data"
    code, _, stderr = run_cli(capsys, "-s", str(broken), "-t", "bytes", "-o", str(out), "--chunk-tokens", "20k")
    line = error_line(stderr)
    assert code == 2 and "cut.jsonl.zst" in line and "after record" in line
    reached = int(line.split("after record ")[1].split(";")[0].replace(",", ""))
    assert 0 < reached < len(texts)
    m = read_manifest(out)
    assert m["complete"] is False and "cut.jsonl.zst" in m["error"]
    tok = load_tokenizer("bytes")
    got = decoded_texts(out, "train", tok) + decoded_texts(out, "val", tok)
    assert 0 < len(got) <= reached and set(got) <= set(texts[:reached])


def test_connection_lost_mid_download_names_the_url_and_resumes(tmp_path, capsys, http_server):
    texts = make_texts(3000, 8)
    body = jsonl({"text": t} for t in texts)
    http_server.routes["/c/corpus.jsonl"] = body
    http_server.cut["/c/corpus.jsonl"] = len(body) // 2
    url, out = http_server.url("/c/corpus.jsonl"), tmp_path / "data"
    args = ("-s", url, "-t", "bytes", "-o", str(out), "--chunk-tokens", "10k")
    code, _, stderr = run_cli(capsys, *args)
    assert code == 2 and "/c/corpus.jsonl" in error_line(stderr) and "after record" in error_line(stderr)
    assert read_manifest(out)["complete"] is False
    http_server.cut.clear()  # the network is back: the same command finishes the job
    code, _, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    m = read_manifest(out)
    assert m["complete"] and "error" not in m
    tok = load_tokenizer("bytes")
    assert sorted(decoded_texts(out, "train", tok) + decoded_texts(out, "val", tok)) == sorted(texts)


def test_corrupt_zstd_is_a_one_line_error(tmp_path, capsys):
    data = bytearray(zstd_frames(jsonl({"text": t} for t in make_texts(200)), frames=2))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(bytes(data))
    code, _, stderr = run_cli(capsys, "-s", str(bad), "-t", "bytes", "-o", str(tmp_path / "data"))
    assert code == 2 and "bad.jsonl.zst" in error_line(stderr) and "corrupt" in error_line(stderr)


def test_store_of_another_tokenizer_is_refused_unless_overwrite(tmp_path, capsys, small_bpe):
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl({"text": t} for t in make_texts(50)))
    out = tmp_path / "data"
    assert run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out))[0] == 0
    before = read_manifest(out)
    code, _, stderr = run_cli(capsys, "-s", str(src), "-t", str(small_bpe), "-o", str(out))
    assert code == 2 and "another tokenizer" in error_line(stderr) and "--overwrite" in stderr
    assert read_manifest(out) == before  # nothing lost
    # Temporaries an interrupted run leaves (a part being written, a manifest being replaced) go with --overwrite.
    leftovers = [out / "train" / "part-00007.arrow.tmp", out / ".manifest.json.999999-abcd1234.tmp"]
    for path in leftovers:
        path.write_bytes(b"torn")
    # The same command again is a no-op that reports the store.
    code, stdout, _ = run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out))
    assert code == 0 and "already prepared" in stdout and read_manifest(out) == before
    code, _, stderr = run_cli(capsys, "-s", str(src), "-t", str(small_bpe), "-o", str(out), "--overwrite")
    assert code == 0, stderr
    after = read_manifest(out)
    assert after["tokenizer"]["name"] == "small" and after["fingerprint"] != before["fingerprint"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["part-00000.arrow"]
    assert not any(path.exists() for path in leftovers)


def test_same_store_whatever_the_number_of_worker_processes(tmp_path, capsys, small_bpe):
    src = tmp_path / "a.jsonl.zst"
    src.write_bytes(zstd_frames(jsonl({"text": t} for t in make_texts(3000, 7)), frames=5))
    prints = []
    for workers in ("1", "2", "3"):
        out = tmp_path / f"w{workers}"
        code, _, stderr = run_cli(capsys, "-s", str(src), "-t", str(small_bpe), "-o", str(out), "--workers", workers,
                                  "--chunk-tokens", "30k")
        assert code == 0, stderr
        prints.append(read_manifest(out)["fingerprint"])
        assert len(read_manifest(out)["splits"]["train"]["parts"]) > 1
    assert prints[0] == prints[1] == prints[2]


def test_token_limits_stop_each_split(tmp_path, capsys):
    out = tmp_path / "data"
    code, _, stderr = run_cli(capsys, "-s", "sample", "-t", "bytes", "-o", str(out), "--tokens", "100k",
                              "--val-tokens", "20k", "--val-rows", "all")
    assert code == 0, stderr
    m = read_manifest(out)
    train, val = m["splits"]["train"], m["splits"]["val"]
    assert train["tokens"] >= 100_000 and train["tokens"] - max(len(d) for d in documents(out, "train")) < 100_000
    assert val["tokens"] >= 20_000 and val["tokens"] - max(len(d) for d in documents(out, "val")) < 20_000


def test_prepare_for_tests_is_a_small_real_store(tmp_path):
    from helpers.stores import prepare_for_tests

    m = prepare_for_tests(tmp_path, train_tokens=50_000, val_tokens=5_000)
    assert m == read_manifest(tmp_path) and m["tokenizer"]["spec"] == "bytes"
    assert 50_000 <= m["splits"]["train"]["tokens"] and 5_000 <= m["splits"]["val"]["tokens"]


def test_counts_parse_suffixes_and_reject_nonsense():
    from pileablate.data.config import parse_count, parse_task

    assert parse_count("1.5M", "--rows") == 1_500_000 and parse_count("250k", "--rows") == 250_000
    assert parse_count("all", "--val-rows") is None and parse_count("12", "--rows") == 12
    for bad in ("ten", "-3", "0.5"):
        with pytest.raises(UserError):
            parse_count(bad, "--rows")
    assert parse_task("2/8") == (2, 8)
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(UserError):
            parse_task(bad)


def test_a_store_with_nothing_to_train_on_is_refused_and_leaves_nothing_behind(tmp_path, capsys):
    """Plain text in a .jsonl (every record invalid JSON) and --rows 0 are one-line errors (exit 2); the
    corrected command then runs without --overwrite."""
    src = tmp_path / "plain.jsonl"
    src.write_text("".join(f"just a line of text {i}\n" for i in range(40)))
    out = tmp_path / "data"
    code, _, stderr = run_cli(capsys, "-s", str(src), "-t", "bytes", "-o", str(out))
    assert code == 2
    line = error_line(stderr)
    assert "no train documents" in line and "invalid_json 40" in line
    assert not out.exists()

    code, _, stderr = run_cli(capsys, "-s", "sample", "-t", "bytes", "-o", str(out), "--rows", "0")
    assert code == 2 and "--rows 0 leaves nothing to train on" in error_line(stderr)
    assert not out.exists()

    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl([{"text": t} for t in make_texts(60)]))
    code, _, stderr = run_cli(capsys, "-s", str(good), "-t", "bytes", "-o", str(out), "--val-rows", "5")
    assert code == 0, stderr
    assert read_manifest(out)["splits"]["train"]["rows"] > 0
