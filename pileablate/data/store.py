"""The token store: one directory per prepared dataset, read through memory maps.

Layout::

    DIR/manifest.json              written last, atomically (see manifest.py)
    DIR/train/part-00000.arrow     Arrow IPC *file* format, uncompressed, so readers mmap it zero-copy
    DIR/val/part-00000.arrow
    DIR/train/part-002of008-00000.arrow    (stores prepared with --task K/N: part K's chunks)

Each part holds one column `tokens` of type `list<uint16>` (or `list<uint32>` when the vocabulary
needs it): one row per document, every document already ending with end-of-text. The list values
buffer is the contiguous token stream; the list offsets are the document boundaries.

A part is written as several record batches (so writing it needs little memory), each batch's
values buffer being one stretch of the token stream.

`TokenSplit` concatenates the parts of a split (in file-name order; the manifest's list when there is
one) into one logical token stream and returns any window `[i, i+n)` without reading the rest of the
split into memory.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from pileablate.atomic import publish
from pileablate.errors import UserError
from pileablate.writes import writing

TOKENS_COLUMN = "tokens"
PART_GLOB = "part-*.arrow"
ARROW_MAGIC = b"ARROW1"


def arrow_token_type(dtype: str) -> pa.DataType:
    return pa.list_(pa.uint16() if dtype == "uint16" else pa.uint32())


def dtype_for_vocab(vocab_size: int) -> str:
    """uint16 when every token id fits, else uint32."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


class PartWriter:
    """Streams documents into one part file; `commit()` makes it appear atomically.

    Documents are buffered only up to `batch_tokens` and then written as one Arrow record batch to
    `<name>.tmp`, so a part of any size costs a bounded amount of memory. `commit()` closes the IPC
    file, fsyncs it and renames it into place: a reader (or a resumed `prepare`) sees either the
    whole part or nothing.
    """

    def __init__(self, path: Path, dtype: str, batch_tokens: int = 1 << 20):
        self.path = Path(path)
        self.dtype = dtype
        self.np_dtype = np.uint16 if dtype == "uint16" else np.uint32
        self.batch_tokens = batch_tokens
        self.rows = 0
        self.tokens = 0
        self._docs: list[np.ndarray] = []
        self._buffered = 0
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._sink = None
        self._writer = None

    def add(self, document: np.ndarray) -> None:
        """Append one document (its tokens, end-of-text included)."""
        doc = np.asarray(document, dtype=self.np_dtype)
        self._docs.append(doc)
        self._buffered += len(doc)
        self.rows += 1
        self.tokens += len(doc)
        if self._buffered >= self.batch_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._docs:
            return
        lengths = np.fromiter((len(d) for d in self._docs), dtype=np.int64, count=len(self._docs))
        offsets = np.zeros(len(self._docs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate(self._docs)
        # One batch stays far below 2**31 tokens (batch_tokens plus one document), so int32 offsets.
        if offsets[-1] >= 2**31:
            raise ValueError("a record batch of 2**31 tokens or more; lower batch_tokens")
        column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
        batch = pa.record_batch([column], names=[TOKENS_COLUMN])
        with writing(self.path):
            if self._writer is None:
                self._open()
            self._writer.write_batch(batch)
        self._docs = []
        self._buffered = 0

    def commit(self) -> dict:
        """Finish the file and move it into place. Returns {file, rows, tokens, sha256} (file = name)."""
        self._flush()
        with writing(self.path):
            if self._writer is None:  # no documents: still a valid (empty) part
                self._open()
            self._writer.close()
            self._sink.close()
        publish(self._tmp, self.path)  # Arrow wrote the temporary file; it is moved into place as every file is
        self._writer = self._sink = None
        return {"file": self.path.name, "rows": self.rows, "tokens": self.tokens, "sha256": _sha256_file(self.path)}

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = pa.ipc.new_file(self._sink, pa.schema([(TOKENS_COLUMN, arrow_token_type(self.dtype))]))

    def abort(self) -> None:
        """Drop what was written since the last commit (the temporary file)."""
        if self._writer is not None:
            try:
                self._writer.close()
                self._sink.close()
            except Exception:
                pass
        self._writer = self._sink = None
        self._docs = []
        self._tmp.unlink(missing_ok=True)


def write_part(path: Path, documents: Sequence[np.ndarray] | Iterable[Sequence[int]], dtype: str) -> tuple[int, int]:
    """Write one part file atomically (temporary name, then rename). Returns (rows, tokens)."""
    writer = PartWriter(Path(path), dtype)
    for doc in documents:
        writer.add(np.asarray(doc))
    info = writer.commit()
    return info["rows"], info["tokens"]


def _split_listing(directory: Path) -> tuple[list[tuple[Path, dict | None]], int | None]:
    """[(part file, its manifest entry or None)] in stream order, and the manifest's vocab_size (or None).

    The manifest's list when there is one, else by name: going by the manifest ignores stray files (a part
    left by a run that was later overwritten).
    """
    manifest = directory.parent / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            entry = data["splits"][directory.name]
            vocab = data.get("vocab_size")
            return [(directory.parent / p["file"], p) for p in entry["parts"]], vocab if isinstance(vocab, int) else None
        except (ValueError, KeyError, TypeError, OSError):
            pass
    return [(path, None) for path in sorted(directory.glob(PART_GLOB))], None


def repair_hint(store: Path) -> str:
    """What rebuilds a damaged store. (Not `--overwrite` alone: with the same settings, prepare keeps a
    complete store as it is.)"""
    return f"rebuild it: delete {store} and run the 'pileablate prepare' command that made it again"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def part_batches(path: Path) -> Iterable[pa.ListArray]:
    """The non-empty `tokens` columns of a part file, memory-mapped; a file that cannot be read as a token
    part (truncated, header overwritten, missing) is a UserError naming it, never a pyarrow traceback."""
    store = Path(path).parent.parent
    try:
        source = pa.memory_map(str(path), "r")
        if source.read_at(len(ARROW_MAGIC), 0) != ARROW_MAGIC:  # the reader only checks the footer's copy
            raise ValueError("its header is not an Arrow file's")
        reader = pa.ipc.open_file(source)
        if reader.schema.names != [TOKENS_COLUMN] or not pa.types.is_list(reader.schema.field(0).type):
            raise ValueError(f"not a token part (columns {reader.schema.names})")
        for b in range(reader.num_record_batches):
            column = reader.get_batch(b).column(0)
            column.validate()
            if len(column):
                yield column
    except FileNotFoundError:
        raise UserError(f"{path}: missing, though manifest.json lists it; {repair_hint(store)}") from None
    except (pa.ArrowException, OSError, ValueError) as err:
        raise UserError(f"{path}: damaged token part ({_first_line(err)}); {repair_hint(store)}") from None


@dataclass
class _Chunk:
    start: int  # global token index of this chunk's first token
    part: Path  # the file it comes from (named in errors)
    values: np.ndarray  # zero-copy view of the memory-mapped values buffer
    doc_offsets: np.ndarray  # document boundaries, relative to this chunk


class TokenSplit:
    """One split (train or val) of a token store, memory-mapped; never loaded whole."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        listing, self.vocab_size = _split_listing(self.directory)
        self.parts = [path for path, _ in listing]
        self._chunks: list[_Chunk] = []
        self._starts: list[int] = []
        total = 0
        for part, entry in listing:
            rows = tokens = 0
            for column in part_batches(part):
                values = column.values.to_numpy(zero_copy_only=True)
                first = column.offsets[0].as_py()
                offsets = column.offsets.to_numpy(zero_copy_only=True) - first
                values = values[first : first + offsets[-1]]
                self._chunks.append(_Chunk(total, part, values, offsets))
                self._starts.append(total)
                total += len(values)
                rows, tokens = rows + len(column), tokens + len(values)
            if entry is not None and "tokens" in entry and (entry.get("rows"), entry["tokens"]) != (rows, tokens):
                _disagrees(part, rows, tokens, entry)
        self.num_tokens = total

    @property
    def num_documents(self) -> int:
        return sum(len(c.doc_offsets) - 1 for c in self._chunks)

    @property
    def dtype(self) -> np.dtype:
        return self._chunks[0].values.dtype if self._chunks else np.dtype(np.uint16)

    def __len__(self) -> int:
        return self.num_tokens

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens `[start, start+length)` of the split's token stream (a copy of just those tokens)."""
        if start < 0 or length < 0 or start + length > self.num_tokens:
            raise IndexError(f"window [{start}, {start + length}) outside a split of {self.num_tokens} tokens")
        out = np.empty(length, dtype=self.dtype)
        filled = 0
        k = bisect.bisect_right(self._starts, start) - 1
        while filled < length:
            chunk = self._chunks[k]
            lo = start + filled - chunk.start
            take = min(length - filled, len(chunk.values) - lo)
            out[filled : filled + take] = chunk.values[lo : lo + take]
            filled += take
            k += 1
        return out

    def part_at(self, index: int) -> Path:
        """The part file holding token `index` of the stream."""
        return self._chunks[bisect.bisect_right(self._starts, index) - 1].part

    def document(self, index: int) -> np.ndarray:
        """The tokens of document `index` (counting across parts), end-of-text included."""
        for chunk in self._chunks:
            n = len(chunk.doc_offsets) - 1
            if index < n:
                return np.array(chunk.values[chunk.doc_offsets[index] : chunk.doc_offsets[index + 1]])
            index -= n
        raise IndexError("document index out of range")


def _disagrees(part: Path, rows: int, tokens: int, entry: dict) -> None:
    raise UserError(f"{part}: holds {rows:,} documents and {tokens:,} tokens, manifest.json says {entry.get('rows')} and "
                    f"{entry.get('tokens')}: the store's parts disagree with its manifest; {repair_hint(part.parent.parent)}")
