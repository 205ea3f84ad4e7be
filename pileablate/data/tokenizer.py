"""Tokenizers: a tiktoken encoding by name, a local `.tiktoken` ranks file, or raw bytes.

Every tokenizer has an identity (`name`, `sha256` of its ranks, `pattern`) that is written into the
manifest, so that a store, and every run trained on it, says exactly which vocabulary its token ids
belong to. The sha256 is taken over the ranks in the `.tiktoken` file format (one `base64(token) rank`
line per token, in rank order), so a named encoding and the same ranks loaded from a file agree. A
ranks file of one of tiktoken's encodings is that encoding exactly (split pattern and special-token
ids); any other ranks file gets GPT-2's pattern, and its identity says so (`pattern`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pileablate.errors import UserError

ENDOFTEXT = "<|endoftext|>"

# A `.tiktoken` file carries only ranks; the pre-tokenisation pattern (how text is split into
# words/numbers/punctuation/space runs before BPE) and the special tokens belong to the encoding.
# Ranks files of tiktoken's own encodings are recognised by their sha256 and get exactly that
# encoding's pattern and special-token ids. The hashes are the `expected_hash` that tiktoken's registry
# (tiktoken_ext/openai_public.py) pins for each file; patterns, special tokens and explicit_n_vocab are
# copied from the same constructors (tests/test_data_tokenizer.py checks all of it against the
# installed tiktoken). gpt2's ranks are r50k_base's, so that file stands for both. The files are written
# in rank order, one `base64 rank` line each, so their sha256 is also `ranks_sha256` of their ranks
# (checked on the real cl100k_base.tiktoken).
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT_STR = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
O200K_PAT_STR = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


@dataclass(frozen=True)
class KnownEncoding:
    name: str
    pat_str: str
    special_tokens: dict
    explicit_n_vocab: Optional[int] = None


KNOWN_RANKS_FILES: dict[str, KnownEncoding] = {
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930": KnownEncoding(
        "r50k_base", GPT2_PAT_STR, {ENDOFTEXT: 50256}, 50257),
    "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069": KnownEncoding(
        "p50k_base", GPT2_PAT_STR, {ENDOFTEXT: 50256}, 50281),
    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7": KnownEncoding(
        "cl100k_base", CL100K_PAT_STR, {ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                                        "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}),
    "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d": KnownEncoding(
        "o200k_base", O200K_PAT_STR, {ENDOFTEXT: 199999, "<|endofprompt|>": 200018}),
}
# What an unknown ranks file gets: GPT-2's pattern, end-of-text right after the last rank.
UNKNOWN_FILE_PATTERN = "gpt2 (unknown ranks file)"

BYTES_SPEC = "bytes"


def ranks_sha256(token_bytes_in_rank_order: Sequence[tuple[int, bytes]]) -> str:
    """sha256 of ranks serialised as a `.tiktoken` file (the identity of a BPE vocabulary)."""
    h = hashlib.sha256()
    for rank, token in token_bytes_in_rank_order:
        h.update(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return h.hexdigest()


def _read_ranks_file(path: Path) -> tuple[dict[bytes, int], str]:
    """(ranks, sha256 of the file's bytes)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read tokenizer file {path}: {err.strerror or err}") from None
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except Exception:
            raise UserError(
                f"{path}:{number}: not a .tiktoken ranks line (expected 'base64-token rank'); "
                "pass a tiktoken ranks file, a tiktoken encoding name, or 'bytes'"
            ) from None
    if not ranks:
        raise UserError(f"{path} holds no ranks; pass a tiktoken ranks file, a tiktoken encoding name, or 'bytes'")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise UserError(
            f"{path} lacks single-byte tokens (e.g. byte {missing[0]}), so some text could not be encoded; "
            "a byte-level BPE ranks file must contain all 256 bytes"
        )
    if len(set(ranks.values())) != len(ranks):
        raise UserError(f"{path} gives the same rank to two tokens; it is not a valid ranks file")
    return ranks, hashlib.sha256(data).hexdigest()


class Tokenizer:
    """Text <-> token ids. `encode` never produces special tokens: `<|endoftext|>` in a document is text."""

    spec: str
    name: str
    sha256: str
    n_vocab: int
    eot_id: int
    pattern: str  # whose pre-tokenisation split and special tokens: an encoding name, or UNKNOWN_FILE_PATTERN

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        return [a.tolist() for a in self.encode_arrays(texts, num_threads)]

    def encode_array(self, text: str) -> np.ndarray:
        """`encode` as a uint32 array (no Python list in between: the fast path for `prepare`)."""
        raise NotImplementedError

    def encode_arrays(self, texts: Sequence[str], num_threads: int | None = None) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def identity(self) -> dict:
        """The manifest's `tokenizer` entry."""
        return {"spec": self.spec, "name": self.name, "sha256": self.sha256,
                "n_vocab": self.n_vocab, "eot_id": self.eot_id, "pattern": self.pattern}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n_vocab={self.n_vocab}, eot_id={self.eot_id})"


class BytesTokenizer(Tokenizer):
    """Token id = UTF-8 byte value (0..255); 256 is end-of-text. Needs nothing from the network."""

    def __init__(self) -> None:
        self.spec = BYTES_SPEC
        self.name = BYTES_SPEC
        self.sha256 = ranks_sha256([(b, bytes([b])) for b in range(256)])
        self.n_vocab = 257
        self.eot_id = 256
        self.pattern = "none"  # no split: every byte is a token

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint32)

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


class TiktokenTokenizer(Tokenizer):
    """A `tiktoken.Encoding`; its Rust core releases the GIL, so threads encode in parallel."""

    def __init__(self, encoding, spec: str, name: str, sha256: str, pattern: str) -> None:
        self.encoding = encoding
        self.spec = spec
        self.name = name
        self.sha256 = sha256
        self.pattern = pattern
        self.n_vocab = encoding.n_vocab
        self.eot_id = encoding.eot_token

    def encode_array(self, text: str) -> np.ndarray:
        # disallowed_special=() makes special-token text ordinary text, like encode_ordinary.
        return self.encoding.encode_to_numpy(text, disallowed_special=())

    def encode_arrays(self, texts: Sequence[str], num_threads: int | None = None) -> list[np.ndarray]:
        threads = num_threads or os.cpu_count() or 1
        if threads <= 1 or len(texts) < 2:
            return [self.encode_array(t) for t in texts]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.encode_array, texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def __reduce__(self):
        # Sent to `prepare`'s worker processes with its ranks, not by name: tiktoken pickles an encoding
        # it has registered (gpt2, cl100k_base, ...) as its name, and the worker would then load it from
        # tiktoken's cache again, which may be elsewhere (or gone) in that process's environment.
        e = self.encoding
        encoding = {"name": e.name, "pat_str": e._pat_str, "mergeable_ranks": e._mergeable_ranks,
                    "special_tokens": e._special_tokens}
        return _rebuild_tiktoken, (encoding, self.spec, self.name, self.sha256, self.pattern)


def _rebuild_tiktoken(encoding: dict, spec: str, name: str, sha256: str, pattern: str) -> TiktokenTokenizer:
    import tiktoken

    return TiktokenTokenizer(tiktoken.Encoding(**encoding), spec=spec, name=name, sha256=sha256, pattern=pattern)


def _offline_error(name: str, err: BaseException) -> UserError:
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache"
    )
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return UserError(
        f"cannot load tiktoken encoding '{name}' (its BPE files must be downloaded: {reason[:120]}); "
        f"ways out: pass a local ranks file (--tokenizer path/to/{name}.tiktoken), put tiktoken's cached files "
        f"in {cache} (set TIKTOKEN_CACHE_DIR to choose the directory), or use --tokenizer bytes"
    )


def _from_named(name: str) -> TiktokenTokenizer:
    import tiktoken

    if name not in tiktoken.list_encoding_names():
        raise UserError(
            f"unknown tokenizer '{name}': pass a tiktoken encoding name "
            f"({', '.join(sorted(tiktoken.list_encoding_names()))}), a path to a .tiktoken ranks file, or 'bytes'"
        )
    try:
        encoding = tiktoken.get_encoding(name)
    except Exception as err:  # network, hash mismatch, unwritable cache: all leave the same ways out
        raise _offline_error(name, err) from None
    special_ids = {encoding.encode_single_token(token) for token in encoding.special_tokens_set}
    ranked = []
    for rank in range(encoding.n_vocab):
        if rank in special_ids:
            continue
        try:
            ranked.append((rank, encoding.decode_single_token_bytes(rank)))
        except KeyError:  # some encodings leave holes in their rank range
            continue
    if ENDOFTEXT not in encoding.special_tokens_set:
        raise UserError(f"tiktoken encoding '{name}' has no {ENDOFTEXT} token; choose another tokenizer")
    return TiktokenTokenizer(encoding, spec=name, name=name, sha256=ranks_sha256(ranked), pattern=name)


def known_encoding(file_sha256: str, ranks_sha: str) -> Optional[KnownEncoding]:
    """tiktoken's encoding for these ranks, recognised by the file's sha256 (or its ranks')."""
    return KNOWN_RANKS_FILES.get(file_sha256) or KNOWN_RANKS_FILES.get(ranks_sha)


def _from_file(path: Path) -> TiktokenTokenizer:
    import tiktoken

    ranks, file_sha = _read_ranks_file(path)
    ranked = sorted(((r, t) for t, r in ranks.items()))
    ranks_sha = ranks_sha256(ranked)
    known = known_encoding(file_sha, ranks_sha)
    stem = path.name[: -len(".tiktoken")] if path.name.endswith(".tiktoken") else path.stem
    if known is not None:
        name, pattern, specials, n_vocab = known.name, known.name, dict(known.special_tokens), known.explicit_n_vocab
        pat_str = known.pat_str
    else:
        # Never let another file pass under the name of a real encoding.
        name = f"{stem}-custom" if stem in tiktoken.list_encoding_names() else stem
        pattern, specials, n_vocab, pat_str = UNKNOWN_FILE_PATTERN, {ENDOFTEXT: max(ranks.values()) + 1}, None, GPT2_PAT_STR
    try:
        encoding = tiktoken.Encoding(name=f"pileablate-{name}", pat_str=pat_str, mergeable_ranks=ranks,
                                     special_tokens=specials, explicit_n_vocab=n_vocab)
    except Exception as err:  # tiktoken asserts or raises on ranks that clash with the special tokens
        raise UserError(f"{path} is not a usable BPE ranks file ({err or type(err).__name__}); "
                        "pass a tiktoken ranks file or 'bytes'") from None
    return TiktokenTokenizer(encoding, spec=str(path.resolve()), name=name, sha256=ranks_sha, pattern=pattern)


def load_tokenizer(spec: str) -> Tokenizer:
    """`bytes`, a tiktoken encoding name (e.g. `gpt2`), or a path to a `.tiktoken` ranks file."""
    spec = str(spec)
    if spec == BYTES_SPEC:
        return BytesTokenizer()
    path = Path(spec).expanduser()
    looks_like_path = spec.endswith(".tiktoken") or os.sep in spec or (os.altsep and os.altsep in spec)
    if path.is_file():
        return _from_file(path)
    if looks_like_path:
        raise UserError(f"tokenizer file {spec} does not exist; pass a .tiktoken ranks file, a tiktoken encoding name, or 'bytes'")
    return _from_named(spec)
