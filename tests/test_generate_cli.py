"""`pileablate generate` end to end: tiny runs trained for a few steps on the bytes store."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch

from pileablate.cli import main
from pileablate.errors import UserError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_run(tmp_path_factory, store: Path, name: str, *args: str) -> Path:
    """A nano run trained for a few steps (once per test session; shared by the generate/export tests)."""
    from rich.console import Console

    from pileablate.commands.train import train_config_from_args
    from pileablate.train.trainer import train

    runs = tmp_path_factory.getbasetemp() / "generate_runs"
    run_dir = runs / name
    if not (run_dir / "ckpt" / "latest.pt").is_file():
        cfg = train_config_from_args([
            "--data", str(store), "--runs-dir", str(runs), "--name", name, "--preset", "nano",
            "--max-steps", "3", "--batch-size", "4", "--eval-tokens", "2048", "--device", "cpu", *args,
        ])
        train(cfg, console=Console(file=io.StringIO()))
    return run_dir


@pytest.fixture
def base_run(tmp_path_factory, bytes_store) -> Path:
    return trained_run(tmp_path_factory, bytes_store, "base")


@pytest.fixture
def draft_run(tmp_path_factory, bytes_store) -> Path:
    return trained_run(tmp_path_factory, bytes_store, "draft", "--n-layer", "1", "--d-model", "32")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_streams_text_to_stdout_and_speed_to_stderr(capsys, base_run):
    code, out, err = cli(capsys, "generate", str(base_run), "--prompt", "import os\n", "-n", "30", "--seed", "3")
    assert code == 0, err
    assert out.endswith("\n") and len(out) > 5 and "tokens/s" not in out
    assert "tokens/s" in err and "KV cache" in err


def test_generate_is_reproducible_and_the_cache_changes_nothing(capsys, base_run):
    args = ["generate", str(base_run), "--prompt", "def f(x):", "-n", "80", "--seed", "5", "--top-p", "0.9"]
    _, cached, _ = cli(capsys, *args)
    _, again, _ = cli(capsys, *args)
    _, uncached, err = cli(capsys, *args, "--no-cache")
    assert cached == again == uncached
    assert "uncached" in err and "KV cache" not in err
    _, other_seed, _ = cli(capsys, *args[:-4], "--seed", "6", "--top-p", "0.9")
    assert other_seed != cached


def test_generate_reads_the_prompt_from_stdin(capsys, monkeypatch, base_run):
    _, expected, _ = cli(capsys, "generate", str(base_run), "--prompt", "class A:", "-n", "20", "--temperature", "0")
    monkeypatch.setattr(sys, "stdin", io.StringIO("class A:"))
    code, out, err = cli(capsys, "generate", str(base_run), "-n", "20", "--temperature", "0")
    assert code == 0, err
    assert out == expected


def test_speculative_generate_matches_plain_greedy_and_reports_acceptance(capsys, base_run, draft_run):
    plain_args = ["generate", str(base_run), "--prompt", "for i in", "-n", "100", "--temperature", "0"]
    _, plain, _ = cli(capsys, *plain_args)
    code, spec, err = cli(capsys, *plain_args, "--draft", str(draft_run), "--draft-tokens", "3")
    assert code == 0, err
    assert spec == plain
    assert "acceptance rate" in err and "speed-up" in err and "identical tokens: yes" in err
    assert "plain:" in err and "speculative:" in err


def test_draft_on_another_tokenizer_is_refused():
    from pileablate.inference.generate import check_same_tokenizer

    ours = {"data": {"tokenizer": {"name": "bytes", "sha256": "a" * 64, "n_vocab": 257}}}
    theirs = {"data": {"tokenizer": {"name": "gpt2", "sha256": "b" * 64, "n_vocab": 50257}}}
    check_same_tokenizer(ours, json.loads(json.dumps(ours)), Path("t"), Path("d"))
    with pytest.raises(UserError, match="same tokenizer"):
        check_same_tokenizer(ours, theirs, Path("t"), Path("d"))


def test_a_changed_tokenizer_is_refused(capsys, tmp_path, base_run):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(base_run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["data"]["tokenizer"]["sha256"] = "0" * 64
    (copy / "config.json").write_text(json.dumps(config))
    code, out, err = cli(capsys, "generate", str(copy), "--prompt", "x", "-n", "5")
    assert code == 2 and err.startswith("error: ") and "tokenizer" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "1.5"], "top-p"),
        (["-n", "0"], "max-new-tokens"),
        (["--draft-tokens", "40", "--draft", "{run}"], "draft-tokens"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "device"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, base_run, args, message):
    args = [a.replace("{run}", str(base_run)) for a in args]
    code, out, err = cli(capsys, "generate", str(base_run), "--prompt", "x", *args)
    assert code == 2 and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_generate_on_a_folder_that_is_not_a_run_says_so(capsys, tmp_path):
    code, _, err = cli(capsys, "generate", str(tmp_path), "--prompt", "x")
    assert code == 2 and "not a run" in err


def test_streamed_text_equals_the_decode_of_all_generated_tokens(base_run):
    # A barely trained byte-level model emits many partial and invalid UTF-8 sequences: the stream,
    # cut at every token, must still add up to exactly the decode of the whole output.
    from rich.console import Console

    from pileablate.inference.generate import generate
    from pileablate.inference.options import GenerateOptions

    out = io.StringIO()
    result = generate(
        GenerateOptions(run_dir=base_run, prompt="é東", max_new_tokens=150, temperature=1.5, top_k=0, seed=11),
        out=out, console=Console(file=io.StringIO()),
    )
    assert len(result.tokens) > 20
    assert out.getvalue() == result.text + "\n"
