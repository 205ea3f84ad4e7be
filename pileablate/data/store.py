"""The token store: one directory per prepared dataset, read through memory maps.

Layout::

    DIR/manifest.json              written last, atomically (see manifest.py)
    DIR/train/part-00000.arrow     Arrow IPC *file* format, uncompressed, so readers mmap it zero-copy
    DIR/val/part-00000.arrow

Each part holds one column `tokens` of type `list<uint16>` (or `list<uint32>` when the vocabulary
needs it): one row per document, every document already ending with end-of-text. The list values
buffer is the contiguous token stream; the list offsets are the document boundaries.

`TokenSplit` concatenates the parts of a split (in file-name order) into one logical token stream
and returns any window `[i, i+n)` without reading the rest of the split into memory.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

TOKENS_COLUMN = "tokens"
PART_GLOB = "part-*.arrow"


def arrow_token_type(dtype: str) -> pa.DataType:
    return pa.list_(pa.uint16() if dtype == "uint16" else pa.uint32())


def dtype_for_vocab(vocab_size: int) -> str:
    """uint16 when every token id fits, else uint32."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def write_part(path: Path, documents: Sequence[np.ndarray] | Iterable[Sequence[int]], dtype: str) -> tuple[int, int]:
    """Write one part file atomically (temporary name, then rename). Returns (rows, tokens)."""
    np_dtype = np.uint16 if dtype == "uint16" else np.uint32
    docs = [np.asarray(d, dtype=np_dtype) for d in documents]
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    offsets = np.zeros(len(docs) + 1, dtype=np.int32 if lengths.sum() < 2**31 else np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(docs) if docs else np.zeros(0, dtype=np_dtype)
    list_cls = pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray
    column = list_cls.from_arrays(pa.array(offsets), pa.array(values))
    table = pa.table({TOKENS_COLUMN: column})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    os.replace(tmp, path)
    return len(docs), int(lengths.sum())


@dataclass
class _Chunk:
    start: int  # global token index of this chunk's first token
    values: np.ndarray  # zero-copy view of the memory-mapped values buffer
    doc_offsets: np.ndarray  # document boundaries, relative to this chunk


class TokenSplit:
    """One split (train or val) of a token store, memory-mapped; never loaded whole."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.parts = sorted(self.directory.glob(PART_GLOB))
        self._chunks: list[_Chunk] = []
        self._starts: list[int] = []
        total = 0
        for part in self.parts:
            source = pa.memory_map(str(part), "r")
            reader = pa.ipc.open_file(source)
            for b in range(reader.num_record_batches):
                column = reader.get_batch(b).column(0)
                if len(column) == 0:
                    continue
                values = column.values.to_numpy(zero_copy_only=True)
                first = column.offsets[0].as_py()
                offsets = column.offsets.to_numpy(zero_copy_only=True) - first
                values = values[first : first + offsets[-1]]
                self._chunks.append(_Chunk(total, values, offsets))
                self._starts.append(total)
                total += len(values)
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

    def document(self, index: int) -> np.ndarray:
        """The tokens of document `index` (counting across parts), end-of-text included."""
        for chunk in self._chunks:
            n = len(chunk.doc_offsets) - 1
            if index < n:
                return np.array(chunk.values[chunk.doc_offsets[index] : chunk.doc_offsets[index + 1]])
            index -= n
        raise IndexError("document index out of range")
