"""`prepare --dry-run`: the tokens, disk and time a prepare will cost, from a measured sample; nothing written."""

from __future__ import annotations

from pathlib import Path

from conftest import jsonl
from test_prepare import make_texts, run_cli

from pileablate.data.config import PrepareConfig
from pileablate.data.estimate import estimate, measure
from pileablate.data.manifest import read_manifest
from pileablate.data.sources import resolve_sources
from pileablate.data.tokenizer import load_tokenizer


def test_a_source_read_whole_estimates_the_tokens_prepare_takes_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "corpus.jsonl"
    source.write_bytes(jsonl({"text": t} for t in make_texts(800)))
    out = tmp_path / "data"
    code, printed, _ = run_cli(capsys, "--source", str(source), "--tokenizer", "bytes", "--out", str(out),
                               "--dry-run", "--task", "1/4", "--workers", "2")
    assert code == 0 and not out.exists()
    assert "nothing is written" in printed and "with 4 task(s) × 2 worker(s)" in printed

    cfg = PrepareConfig(sources=[str(source)], tokenizer="bytes", out=out)
    tokenizer, sources = load_tokenizer("bytes"), resolve_sources([str(source)])
    sample = measure(sources[0], tokenizer)
    assert sample.input_bytes == source.stat().st_size  # smaller than the sample: read whole
    guess = estimate(cfg, sources, tokenizer, sample)
    assert run_cli(capsys, "--source", str(source), "--tokenizer", "bytes", "--out", str(out))[0] == 0
    splits = read_manifest(out)["splits"]
    assert round(guess.train_tokens + guess.val_tokens) == splits["train"]["tokens"] + splits["val"]["tokens"]
    assert round(guess.documents) == splits["train"]["rows"] + splits["val"]["rows"]
    assert guess.disk_bytes >= 2 * (splits["train"]["tokens"] + splits["val"]["tokens"])  # uint16 tokens at least


def test_limits_cut_the_estimate_and_what_is_read(tmp_path):
    source = tmp_path / "corpus.jsonl"
    source.write_bytes(jsonl({"text": t} for t in make_texts(800)))
    tokenizer, sources = load_tokenizer("bytes"), resolve_sources([str(source)])
    sample = measure(sources[0], tokenizer)
    whole = estimate(PrepareConfig(sources=[str(source)], tokenizer="bytes"), sources, tokenizer, sample)
    cut = estimate(PrepareConfig(sources=[str(source)], tokenizer="bytes", tokens=1000, rows=None),
                   sources, tokenizer, sample)
    assert cut.train_tokens == 1000 and cut.val_tokens == whole.val_tokens
    assert cut.read_bytes < whole.read_bytes == Path(source).stat().st_size
