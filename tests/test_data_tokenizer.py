"""Tokenizers: bytes, a .tiktoken ranks file of a BPE learned here, named encodings offline."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from pileablate.data.bpe import learn_bpe, write_tiktoken_file
from pileablate.data.tokenizer import load_tokenizer
from pileablate.errors import UserError

TEXTS = [
    "def foo(self):\n    return 'héllo wörld' <|endoftext|> 漢字 \U0001F600\n",
    "",
    "   \n\t leading and trailing whitespace   ",
    "<|endoftext|>",
]


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text(encoding="utf-8", errors="ignore") for p in sorted(stdlib.glob("*.py"))[:8]]
    return write_tiktoken_file(learn_bpe(texts, 320), tmp_path_factory.mktemp("bpe") / "small.tiktoken")


def test_bytes_tokenizer_maps_utf8_bytes_and_reserves_256_for_eot():
    tok = load_tokenizer("bytes")
    assert (tok.n_vocab, tok.eot_id, tok.spec) == (257, 256, "bytes")
    assert tok.encode("hé") == [104, 0xC3, 0xA9]
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(0 <= i < 256 for i in ids)
        assert tok.decode(ids + [tok.eot_id]) == text


def test_tiktoken_file_round_trips_text_and_places_eot_after_ranks(small_bpe):
    tok = load_tokenizer(str(small_bpe))
    assert tok.n_vocab == 321 and tok.eot_id == 320
    assert tok.name == "small" and Path(tok.spec) == small_bpe.resolve()
    for text in TEXTS:
        ids = tok.encode(text)
        assert tok.eot_id not in ids  # special-token text in a document is ordinary text
        assert tok.decode(ids) == text
    # The merges compress: fewer tokens than bytes on Python source.
    code = Path(sysconfig.get_paths()["stdlib"], "os.py").read_text()
    assert len(tok.encode(code)) < 0.8 * len(code.encode())
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]


def test_tokenizer_identity_is_the_ranks_not_the_path(small_bpe, tmp_path):
    copy = tmp_path / "renamed.tiktoken"
    copy.write_bytes(small_bpe.read_bytes())
    a, b = load_tokenizer(str(small_bpe)), load_tokenizer(str(copy))
    assert a.sha256 == b.sha256 and a.sha256 != load_tokenizer("bytes").sha256
    assert load_tokenizer(a.spec).identity() == a.identity()  # spec loads the same tokenizer again


def test_named_encoding_offline_names_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    import tiktoken.load

    def no_network(url):
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    with pytest.raises(UserError) as err:
        load_tokenizer("r50k_base")
    message = str(err.value)
    assert "\n" not in message
    assert ".tiktoken" in message and "TIKTOKEN_CACHE_DIR" in message and "bytes" in message


@pytest.mark.parametrize("spec", ["no-such-encoding", "missing/file.tiktoken"])
def test_unknown_tokenizer_is_a_user_error(spec):
    with pytest.raises(UserError):
        load_tokenizer(spec)


def test_malformed_ranks_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not base64!! zero\n")
    with pytest.raises(UserError, match="bad.tiktoken:1"):
        load_tokenizer(str(bad))
