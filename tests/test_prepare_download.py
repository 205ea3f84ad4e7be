"""Downloads that survive the network: resets, stalls, 503s and servers that ignore Range.

Each run against a misbehaving local server must give the store an uninterrupted run gives, token
for token, having continued each broken download from the byte it had reached.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import jsonl, zstd_frames
from test_prepare import error_line, make_texts, run_cli

from pileablate.data.download import HttpSettings, open_url
from pileablate.data.manifest import read_manifest
from pileablate.data.store import TokenSplit
from pileablate.errors import UserError

PATH = "/shards/corpus.jsonl.zst"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(compressed body, store of an uninterrupted run of it) — about 600 kB in 6 zstd frames."""
    body = zstd_frames(jsonl({"text": t} for t in make_texts(6000, 17)), frames=6)
    folder = tmp_path_factory.mktemp("clean")
    (folder / "corpus.jsonl.zst").write_bytes(body)
    from pileablate.data.config import PrepareConfig
    from pileablate.data.prepare import prepare

    prepare(PrepareConfig(sources=[str(folder / "corpus.jsonl.zst")], out=folder / "data", tokenizer="bytes",
                          chunk_tokens=100_000, workers=2))
    return body, folder / "data"


def prepare_url(capsys, url: str, out) -> tuple[int, str, str]:
    return run_cli(capsys, "-s", url, "-t", "bytes", "-o", str(out), "--chunk-tokens", "100k", "--workers", "2")


def assert_same_store(out, reference, same_parts: bool = True) -> None:
    """Token for token the reference store (and, unless a run stopped mid-way, part for part)."""
    got, want = read_manifest(out), read_manifest(reference)
    assert got["complete"] and (got["fingerprint"] == want["fingerprint"] or not same_parts)
    for split in ("train", "val"):
        assert (got["splits"][split]["rows"], got["splits"][split]["tokens"]) == (
            want["splits"][split]["rows"], want["splits"][split]["tokens"])
    for split in ("train", "val"):
        a, b = TokenSplit(out / split), TokenSplit(reference / split)
        np.testing.assert_array_equal(a.window(0, a.num_tokens), b.window(0, b.num_tokens))


def range_starts(server) -> list[int]:
    return [int(r.removeprefix("bytes=").rstrip("-")) for r in server.ranges if r]


def test_resets_mid_stream_continue_from_the_byte_reached(tmp_path, capsys, http_server, corpus):
    body, reference = corpus
    http_server.routes[PATH] = body
    size = len(body)
    # request 1 checks the URL; 2 streams and is reset; 3, 4 continue (Range) and are reset again
    http_server.faults[PATH] = [None, ("reset", size // 5), ("reset", size // 2), ("reset", size * 4 // 5)]
    code, _, stderr = prepare_url(capsys, http_server.url(PATH), tmp_path / "data")
    assert code == 0, stderr
    assert_same_store(tmp_path / "data", reference)
    starts = range_starts(http_server)
    assert len(http_server.requests) == 5 and len(starts) == 3  # never restarted from byte 0
    assert starts == sorted(starts) and 0 < starts[0] and starts[-1] <= size * 4 // 5
    assert stderr.count("retry") == 3 and "Traceback" not in stderr


def test_a_stall_past_the_timeout_reconnects(tmp_path, capsys, http_server, corpus, monkeypatch):
    monkeypatch.setenv("PILEABLATE_HTTP_TIMEOUT", "0.5")
    body, reference = corpus
    http_server.routes[PATH] = body
    http_server.faults[PATH] = [None, ("stall", len(body) // 3)]
    code, _, stderr = prepare_url(capsys, http_server.url(PATH), tmp_path / "data")
    assert code == 0, stderr
    assert_same_store(tmp_path / "data", reference)
    assert "timeout" in stderr and len(range_starts(http_server)) == 1


def test_503_answers_are_retried_before_and_during_the_download(tmp_path, capsys, http_server, corpus):
    body, reference = corpus
    http_server.routes[PATH] = body
    # check: 503, then fine; stream: 503, then reset at a third; the continuation: 503, then fine
    http_server.faults[PATH] = [("status", 503), None, ("status", 503), ("reset", len(body) // 3), ("status", 503)]
    code, _, stderr = prepare_url(capsys, http_server.url(PATH), tmp_path / "data")
    assert code == 0, stderr
    assert_same_store(tmp_path / "data", reference)
    assert stderr.count("HTTP 503") == 3


def test_a_server_that_ignores_range_is_read_again_and_the_bytes_already_read_are_skipped(
        tmp_path, capsys, http_server, corpus):
    body, reference = corpus
    http_server.routes[PATH] = body
    http_server.ignore_range.add(PATH)
    http_server.faults[PATH] = [None, ("reset", len(body) // 2)]
    code, _, stderr = prepare_url(capsys, http_server.url(PATH), tmp_path / "data")
    assert code == 0, stderr
    assert_same_store(tmp_path / "data", reference)
    assert "ignores Range" in stderr and "skipping" in stderr


def test_when_the_retries_are_spent_what_was_committed_stays_and_the_rerun_finishes(
        tmp_path, capsys, http_server, corpus):
    body, reference = corpus
    http_server.routes[PATH] = body
    http_server.faults[PATH] = [None, ("reset", len(body) * 2 // 3)] + [("status", 503)] * 10
    out = tmp_path / "data"
    code, _, stderr = prepare_url(capsys, http_server.url(PATH), out)
    line = error_line(stderr)
    assert code == 2 and PATH in line and "gave up after 3 retries" in line and "after record" in line
    m = read_manifest(out)
    assert m["complete"] is False and m["splits"]["train"]["rows"] > 0  # committed chunks are kept
    http_server.faults.clear()  # the server is back: the same command finishes the job
    code, _, stderr = prepare_url(capsys, http_server.url(PATH), out)
    assert code == 0, stderr
    # The stopped run committed what it had read, so the parts are cut elsewhere; the tokens are the same.
    assert_same_store(out, reference, same_parts=False)


def test_a_download_reads_the_exact_bytes_through_any_mix_of_faults(http_server):
    body = bytes(range(256)) * 4000  # 1 MB
    http_server.routes["/blob.zst"] = body
    http_server.faults["/blob.zst"] = [("reset", 100_000), ("status", 502), ("reset", 100_001), ("reset", 700_000)]
    said = []
    with open_url(http_server.url("/blob.zst"), HttpSettings(timeout_s=5, retries=3, backoff_s=0.01), said.append) as d:
        chunks = iter(lambda: d.read1(65536), b"")
        assert b"".join(chunks) == body
    assert d.reconnects == 3 and len(said) == 4


def test_a_file_that_changes_on_the_server_mid_download_is_an_error_not_a_splice(http_server):
    from pileablate.data.download import DownloadFailed

    http_server.routes["/blob.zst"] = b"a" * 500_000
    http_server.faults["/blob.zst"] = [("reset", 200_000)]
    with open_url(http_server.url("/blob.zst"), HttpSettings(retries=2, backoff_s=0.01), lambda m: None) as d:
        d.read1(1000)
        http_server.routes["/blob.zst"] = b"b" * 500_000  # another ETag
        with pytest.raises(DownloadFailed, match="changed on the server"):
            while d.read1(65536):
                pass


@pytest.mark.parametrize("name, value", [("PILEABLATE_HTTP_RETRIES", "many"), ("PILEABLATE_HTTP_TIMEOUT", "0"),
                                         ("PILEABLATE_HTTP_BACKOFF", "-1"), ("PILEABLATE_HTTP_TIMEOUT", "nan")])
def test_bad_download_settings_are_one_line_errors(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=name):
        HttpSettings.from_env()
