"""Reading sources: lines and zstd frames survive any block boundaries; a cut-short stream is an error."""

from __future__ import annotations

import json
import random

import pytest
from conftest import zstd_frames

from pileablate.data import reading, records
from pileablate.data.sources import Source


def _lines_from_blocks(monkeypatch, blocks, location="x.jsonl"):
    monkeypatch.setattr(reading, "_raw_blocks", lambda source, on_bytes: iter(blocks))
    return list(reading.iter_lines(Source(location, "train"), lambda n: None))


def _random_cuts(rng, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12)))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def test_lines_are_the_same_whatever_the_block_boundaries(monkeypatch):
    for trial in range(300):
        rng = random.Random(trial)
        lines = [bytes(rng.choice(b'ab{}"\r') for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(1, 20))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        want = data.split(b"\n")
        if want[-1] == b"":
            want.pop()
        assert _lines_from_blocks(monkeypatch, _random_cuts(rng, data)) == want


def test_multi_frame_zstd_decodes_across_any_block_boundaries(monkeypatch):
    data = b"".join(json.dumps({"text": f"document {i} " * (i % 7)}).encode() + b"\n" for i in range(400))
    compressed = zstd_frames(data, frames=5)
    for trial in range(50):
        blocks = _random_cuts(random.Random(trial), compressed)
        assert b"\n".join(_lines_from_blocks(monkeypatch, blocks, "x.jsonl.zst")) + b"\n" == data


def test_zstd_cut_anywhere_inside_a_frame_is_an_error(monkeypatch):
    frames = [zstd_frames(b"".join(b'{"text": "%d %d"}\n' % (f, i) for i in range(500)), frames=1) for f in range(3)]
    compressed = b"".join(frames)
    boundaries = {sum(len(x) for x in frames[: i + 1]) for i in range(3)}  # a cut there is a clean end
    rng = random.Random(0)
    for cut in rng.sample([c for c in range(1, len(compressed)) if c not in boundaries], 40):
        with pytest.raises(ValueError, match="ends inside a frame"):
            _lines_from_blocks(monkeypatch, [compressed[:cut]], "x.jsonl.zst")


def test_stream_errors_become_source_errors_with_the_records_read(monkeypatch, tmp_path):
    compressed = zstd_frames(b"".join(b'{"text": "line %d"}\n' % i for i in range(5000)), frames=4)
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(compressed[: len(compressed) * 3 // 4])
    source = Source(str(path), "train")
    seen = 0
    with pytest.raises(reading.SourceError) as err:
        for batch in reading.iter_batches(source, 0, 0, lambda n: None):
            seen += len(batch.lines)
    assert err.value.lines == seen and 0 < seen < 5000 and "ends inside a frame" in err.value.detail


def test_resume_skips_exactly_the_committed_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"".join(b'{"text": "%d"}\n' % i for i in range(3000)))
    source = Source(str(path), "train")
    batches = list(reading.iter_batches(source, 0, 1234, lambda n: None))
    lines = [line for b in batches for line in b.lines]
    assert batches[0].first_line == 1234 and json.loads(lines[0]) == {"text": "1234"} and len(lines) == 3000 - 1234


@pytest.mark.parametrize(
    "line,reason",
    [
        (b"{oops", records.INVALID_JSON),
        (b"[1, 2]", records.NO_TEXT),
        (b'{"text": null}', records.NO_TEXT),
        (b'{"text": "  "}', records.EMPTY_TEXT),
        (b'{"text": "\xff"}', records.INVALID_UTF8),
        (b'{"text": "\\udc80"}', records.INVALID_UTF8),
    ],
)
def test_unusable_records_give_their_reason(line, reason):
    assert records.parse_record(line) == reason


def test_hold_out_depends_only_on_the_text_and_takes_about_five_percent():
    texts = [f"document number {i}".encode() for i in range(20_000)]
    picked = [records.held_out(t) for t in texts]
    assert picked == [records.held_out(t) for t in texts]
    assert 0.04 < sum(picked) / len(picked) < 0.06
