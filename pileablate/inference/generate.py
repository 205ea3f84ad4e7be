"""`pileablate generate` behind the command line: load run(s), decode, stream text, report speed.

Text goes to stdout as it is produced; the speed and acceptance summary goes to stderr, so
`pileablate generate RUN --prompt ... > out.txt` keeps just the text.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

import torch

from pileablate.errors import UserError
from pileablate.inference.decode import DecodeStats, TextStream, decode
from pileablate.inference.options import GenerateOptions
from pileablate.inference.sampling import SamplingConfig


@dataclass
class GenerateResult:
    text: str
    tokens: list[int]
    stats: DecodeStats
    plain_stats: Optional[DecodeStats] = None
    plain_tokens: Optional[list[int]] = None


def _device(name: str) -> torch.device:
    """The device as train picks it (auto: CUDA, then MPS, then the CPU)."""
    from pileablate.train.config import check_device
    from pileablate.train.distributed import DistInfo
    from pileablate.train.hardware import pick_device

    check_device(name)
    return pick_device(name, DistInfo())


def load_model_for_inference(run_dir: Path, device: torch.device):
    """(model in eval mode on `device`, run config, tokenizer), the tokenizer checked against the run's."""
    from pileablate.inference.trained import load_trained_run

    run_dir = Path(run_dir)
    model, config, tokenizer = load_trained_run(run_dir, device=str(device))
    expected = config.get("data", {}).get("tokenizer", {})
    if expected.get("sha256") and tokenizer.sha256 != expected["sha256"]:
        raise UserError(
            f"the tokenizer {expected.get('spec')!r} found now differs from the one run {run_dir} was trained with "
            f"(sha256 {tokenizer.sha256[:12]} vs {expected['sha256'][:12]}); restore the original tokenizer file"
        )
    return model.to(device).eval(), config, tokenizer


def check_same_tokenizer(target_config: dict, draft_config: dict, target_dir: Path, draft_dir: Path) -> None:
    t = target_config.get("data", {}).get("tokenizer", {})
    d = draft_config.get("data", {}).get("tokenizer", {})
    if t.get("sha256") != d.get("sha256") or t.get("n_vocab") != d.get("n_vocab"):
        raise UserError(
            f"draft run {draft_dir} uses tokenizer {d.get('name')!r} but target run {target_dir} uses "
            f"{t.get('name')!r}; speculative decoding needs both models on the same tokenizer "
            "(train the draft on the same prepared data)"
        )


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids after an end-of-text token.

    Training documents are separated by end-of-text, so that token is what precedes the start of any
    document: prepending it makes the prompt read as a document start, and an empty prompt means
    "begin a new document".
    """
    return [tokenizer.eot_id] + tokenizer.encode(prompt)


def generate(opts: GenerateOptions, out: Optional[TextIO] = None, console=None) -> GenerateResult:
    """Decode with the run in `opts`, streaming text to `out`; the summary goes to `console` (stderr)."""
    from rich.console import Console

    console = console if console is not None else Console(stderr=True, soft_wrap=True, highlight=False)
    out = out if out is not None else sys.stdout
    sampling = SamplingConfig(temperature=opts.temperature, top_k=opts.top_k or None, top_p=opts.top_p)
    if opts.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {opts.max_new_tokens}")
    device = _device(opts.device)
    model, config, tokenizer = load_model_for_inference(opts.run_dir, device)
    draft = None
    if opts.draft is not None:
        draft, draft_config, _ = load_model_for_inference(opts.draft, device)
        check_same_tokenizer(config, draft_config, opts.run_dir, opts.draft)
        if draft.config.vocab_size != model.config.vocab_size:
            raise UserError(
                f"draft run {opts.draft} has {draft.config.vocab_size} embedding rows but the target has "
                f"{model.config.vocab_size}; train the draft on the same prepared data"
            )
    prompt_ids = encode_prompt(tokenizer, opts.prompt)
    seq_len = int(model.config.seq_len)
    if len(prompt_ids) > seq_len:
        console.print(
            f"[yellow]note:[/] the prompt has {len(prompt_ids)} tokens but the model's context is {seq_len}; "
            f"only the last {seq_len} are seen"
        )

    def run(with_draft: bool, limit: int, stop: bool, stream: bool) -> tuple[list[int], DecodeStats]:
        stats = DecodeStats()
        generator = torch.Generator(device=device).manual_seed(opts.seed)
        text = TextStream(tokenizer)
        tokens = []
        steps = decode(
            model, prompt_ids, limit, sampling, vocab_size=tokenizer.n_vocab,
            stop_ids=[tokenizer.eot_id] if stop else [], use_cache=opts.cache,
            draft=draft if with_draft else None, draft_tokens=opts.draft_tokens,
            generator=generator, stats=stats,
        )
        for token in steps:
            tokens.append(token)
            if stream:
                piece = text.push(token)
                if piece and not write(out, piece):
                    break  # the reader went away (e.g. `| head`): stop decoding, quietly
        if stream:
            write(out, text.flush() + "\n")
        return tokens, stats

    if opts.echo:
        out.write(opts.prompt)
        out.flush()
    tokens, stats = run(draft is not None, opts.max_new_tokens, stop=True, stream=True)
    result = GenerateResult(text=tokenizer.decode(tokens), tokens=tokens, stats=stats)
    label = "speculative" if draft is not None else ("cached" if opts.cache else "uncached")
    console.print(summary_line(label, stats, model, seq_len))
    if draft is not None:
        console.print(
            f"  draft {opts.draft}: {opts.draft_tokens} tokens per round, acceptance rate "
            f"{100 * (stats.acceptance_rate or 0):.1f}% ({stats.accepted}/{stats.drafted}), "
            f"{stats.new_tokens / max(1, stats.target_forward_passes):.2f} tokens per target forward pass"
        )
        if opts.compare and stats.new_tokens:
            plain_tokens, plain = run(False, stats.new_tokens, stop=False, stream=False)
            result.plain_stats, result.plain_tokens = plain, plain_tokens
            console.print(summary_line("plain", plain, model, seq_len))
            speedup = stats.tokens_per_s / plain.tokens_per_s if plain.tokens_per_s else float("nan")
            same = ""
            if sampling.greedy:
                same = f"; identical tokens: {'yes' if plain_tokens == tokens else 'NO'}"
            console.print(f"  speed-up with the draft: {speedup:.2f}x{same}")
    return result


def write(out: TextIO, text: str) -> bool:
    """Write and flush; False once the reader has closed the pipe."""
    try:
        out.write(text)
        out.flush()
        return True
    except BrokenPipeError:
        # Point the descriptor at /dev/null so Python's final flush at exit does not raise again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return False


def summary_line(label: str, stats: DecodeStats, model, seq_len: int) -> str:
    line = (
        f"{label}: {stats.new_tokens} tokens in {stats.elapsed_s:.2f} s ({stats.tokens_per_s:.1f} tokens/s)"
        f"{', stopped at end-of-text' if stats.stopped_at_eot else ''}"
    )
    if stats.cache_bytes:
        line += f", KV cache {stats.cache_bytes / 1024:.1f} KiB ({stats.cache_bytes_per_token:.0f} B/token)"
    if stats.window_shifts:
        line += f", context window (seq_len {seq_len}) jumped {stats.window_shifts}x"
    return line
