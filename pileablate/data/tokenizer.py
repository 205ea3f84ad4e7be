"""Tokenizers: a tiktoken encoding by name, a local `.tiktoken` ranks file, or raw bytes.

Every tokenizer has an identity (`name`, `sha256` of its ranks) that is written into the manifest,
so that a store, and every run trained on it, says exactly which vocabulary its token ids belong to.
The sha256 is taken over the ranks in the `.tiktoken` file format (one `base64(token) rank` line per
token, in rank order), so a named encoding and the same ranks loaded from a file agree.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from pileablate.errors import UserError

ENDOFTEXT = "<|endoftext|>"

# GPT-2's pre-tokenisation regex (as shipped by tiktoken for gpt2/r50k_base), used for `.tiktoken`
# files, which carry only ranks: text is split into words/numbers/punctuation/space runs, then BPE'd.
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

BYTES_SPEC = "bytes"


def ranks_sha256(token_bytes_in_rank_order: Sequence[tuple[int, bytes]]) -> str:
    """sha256 of ranks serialised as a `.tiktoken` file (the identity of a BPE vocabulary)."""
    h = hashlib.sha256()
    for rank, token in token_bytes_in_rank_order:
        h.update(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return h.hexdigest()


def parse_tiktoken_file(path: Path) -> dict[bytes, int]:
    """Read a `.tiktoken` ranks file (`base64(token) rank` per line)."""
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
    return ranks


class Tokenizer:
    """Text <-> token ids. `encode` never produces special tokens: `<|endoftext|>` in a document is text."""

    spec: str
    name: str
    sha256: str
    n_vocab: int
    eot_id: int

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
                "n_vocab": self.n_vocab, "eot_id": self.eot_id}

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

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint32)

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


class TiktokenTokenizer(Tokenizer):
    """A `tiktoken.Encoding`; its Rust core releases the GIL, so threads encode in parallel."""

    def __init__(self, encoding, spec: str, name: str, sha256: str) -> None:
        self.encoding = encoding
        self.spec = spec
        self.name = name
        self.sha256 = sha256
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
    return TiktokenTokenizer(encoding, spec=name, name=name, sha256=ranks_sha256(ranked))


def _from_file(path: Path) -> TiktokenTokenizer:
    import tiktoken

    ranks = parse_tiktoken_file(path)
    eot = max(ranks.values()) + 1  # end-of-text goes right after the ranks
    name = path.name[: -len(".tiktoken")] if path.name.endswith(".tiktoken") else path.stem
    try:
        encoding = tiktoken.Encoding(
            name=f"pileablate-{name}", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks, special_tokens={ENDOFTEXT: eot}
        )
    except Exception as err:
        raise UserError(f"{path} is not a usable BPE ranks file ({err}); pass a tiktoken ranks file or 'bytes'") from None
    ranked = sorted(((r, t) for t, r in ranks.items()))
    return TiktokenTokenizer(encoding, spec=str(path.resolve()), name=name, sha256=ranks_sha256(ranked))


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
