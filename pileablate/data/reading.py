"""Read a `Source` as a stream of lines: open (file or HTTP), decompress zstd, split, batch.

Nothing here holds more than one read block plus one batch of lines, whatever the size of the
source. zstd is decompressed frame by frame with `ZstdDecompressor().decompressobj()`: unlike
`stream_reader`, which returns a clean end of stream when a file is cut short, it tells us whether
the last frame was complete, so a truncated download is an error instead of silently lost data.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from pileablate.data.download import DownloadFailed, open_url
from pileablate.data.sources import Source, sample_files
from pileablate.errors import UserError

READ_BLOCK = 1 << 20  # compressed bytes per read
BATCH_BYTES = 256 << 10  # text bytes per batch handed to a tokenizer worker (bounds memory in flight)
BATCH_LINES = 2048


class SourceError(Exception):
    """A source broke mid-stream (truncated, corrupt, connection lost). `lines` = records read before."""

    def __init__(self, source: Source, lines: int, detail: str):
        super().__init__(detail)
        self.source = source
        self.lines = lines
        self.detail = detail


@dataclass
class LineBatch:
    source_index: int
    first_line: int  # index within the source of the first line in `lines`
    lines: list  # list[bytes | None]: None = a line that belongs to another --task
    text_bytes: int


class _Counter:
    """Counts raw (compressed) bytes as they are read, for the MB-read display."""

    def __init__(self, raw, on_bytes: Callable[[int], None]):
        self.raw = raw
        self.on_bytes = on_bytes

    def read(self, n: int) -> bytes:
        # read1: whatever has arrived, up to n bytes, so a slow download is decompressed and
        # tokenized as it streams instead of waiting for whole blocks.
        data = self.raw.read1(n)
        self.on_bytes(len(data))
        return data


def _raw_blocks(source: Source, on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    if source.is_url:
        # Resets, stalls and 5xx are retried inside, continuing with a Range request: the blocks
        # come out unbroken, and a body that ends short of its length is an error, not an end.
        stream = open_url(source.location)
    else:
        try:
            stream = open(source.location, "rb")
        except OSError as err:
            raise UserError(f"cannot read {source.location}: {err.strerror or err}") from None
    counter = _Counter(stream, on_bytes)
    with stream:
        while True:
            block = counter.read(READ_BLOCK)
            if not block:
                break
            yield block


def _zstd_blocks(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress a (possibly multi-frame) zstd stream; ValueError when the last frame is cut short."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    in_frame = False
    for block in blocks:
        data = block
        while data:
            out = frame.decompress(data)
            in_frame = True
            if out:
                yield out
            if frame.eof:  # frame finished: the rest of the block starts the next frame
                data = frame.unused_data
                frame = decompressor.decompressobj()
                in_frame = False
            else:
                data = b""
    if in_frame:
        raise ValueError("the zstd stream ends inside a frame (truncated file or download)")


def _sample_lines() -> Iterator[tuple[bytes, int]]:
    """The standard library's .py files as Pile records (one JSON line per file), with the file's size."""
    from pileablate.data.sources import stdlib_dir

    root = stdlib_dir()
    for path in sample_files(root):
        raw = path.read_bytes()
        # surrogateescape keeps undecodable bytes visible, so they are skipped (and counted) as invalid UTF-8.
        text = raw.decode("utf-8", errors="surrogateescape")
        record = {"text": text, "meta": {"pile_set_name": "Github", "path": path.relative_to(root).as_posix()}}
        yield json.dumps(record).encode("utf-8"), len(raw)


def iter_lines(source: Source, on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    """Every line of a source (without the newline), streamed."""
    if source.is_sample:
        for line, size in _sample_lines():
            on_bytes(size)  # file bytes, which is what the progress total counts
            yield line
        return
    blocks = _raw_blocks(source, on_bytes)
    if source.zstd:
        blocks = _zstd_blocks(blocks)
    pending: list[bytes] = []  # the start of a line that continues in later blocks (joined once: no quadratic copying)
    for block in blocks:
        if b"\n" not in block:
            pending.append(block)
            continue
        pieces = block.split(b"\n")
        if pending:
            pieces[0] = b"".join(pending) + pieces[0]
            pending = []
        last = pieces.pop()
        yield from pieces
        if last:
            pending.append(last)
    if pending:
        yield b"".join(pending)


def _is_stream_error(err: Exception) -> bool:
    if isinstance(err, UserError):
        return False
    return isinstance(err, (ValueError, OSError, http.client.HTTPException)) or type(err).__name__ == "ZstdError"


def iter_batches(
    source: Source,
    source_index: int,
    start_line: int,
    on_bytes: Callable[[int], None],
    keep: Optional[Callable[[int], bool]] = None,
) -> Iterator[LineBatch]:
    """Batches of lines from `start_line` on. Lines not `keep(line_index)` are passed as None.

    Lines before `start_line` (already committed by an earlier run) are read and dropped unparsed.
    Stream failures become `SourceError` carrying the number of lines read.
    """
    index = 0
    lines: list = []
    first = start_line
    size = 0
    try:
        for line in iter_lines(source, on_bytes):
            if index < start_line:
                index += 1
                continue
            if keep is None or keep(index):
                lines.append(line)
                size += len(line)
            else:
                lines.append(None)
            index += 1
            if size >= BATCH_BYTES or len(lines) >= BATCH_LINES:
                yield LineBatch(source_index, first, lines, size)
                first, lines, size = index, [], 0
    except Exception as err:
        if not _is_stream_error(err):
            raise
        if lines:
            yield LineBatch(source_index, first, lines, size)
        kind = type(err).__name__
        if kind == "ZstdError":
            detail = f"corrupt zstd data ({err})"
        elif isinstance(err, (ValueError, DownloadFailed)):
            detail = str(err)
        else:
            detail = f"read failed ({kind}: {err})"
        raise SourceError(source, index, detail) from None
    if lines:
        yield LineBatch(source_index, first, lines, size)
