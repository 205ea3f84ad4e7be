"""`pileablate generate`: sample text from a trained run (KV cache, speculative decoding)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pileablate.errors import UserError
from pileablate.inference.options import GenerateOptions, option_help as h

_D = GenerateOptions(run_dir=Path("."))  # the defaults, stated once in GenerateOptions


def generate(
    run_dir: Path = typer.Argument(..., metavar="RUN", help=h("run_dir"), show_default=False),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help=h("prompt"), show_default=False),
    max_new_tokens: int = typer.Option(_D.max_new_tokens, "--max-new-tokens", "-n", help=h("max_new_tokens")),
    temperature: float = typer.Option(_D.temperature, "--temperature", help=h("temperature")),
    top_k: int = typer.Option(_D.top_k, "--top-k", help=h("top_k")),
    top_p: Optional[float] = typer.Option(_D.top_p, "--top-p", help=h("top_p"), show_default=False),
    seed: int = typer.Option(_D.seed, "--seed", help=h("seed")),
    use_cache: bool = typer.Option(_D.use_cache, "--cache/--no-cache", help=h("use_cache")),
    draft_dir: Optional[Path] = typer.Option(None, "--draft", metavar="RUN2", help=h("draft_dir"), show_default=False),
    draft_tokens: int = typer.Option(_D.draft_tokens, "--draft-tokens", help=h("draft_tokens")),
    compare: bool = typer.Option(_D.compare, "--compare/--no-compare", help=h("compare")),
    device: str = typer.Option(_D.device, "--device", help=h("device")),
    echo: bool = typer.Option(_D.echo, "--echo", help=h("echo")),
    mods_file: Optional[List[Path]] = typer.Option(None, "--mods-file", metavar="FILE", show_default=False,
                                                   help="A file registering modifications the run used, when its recorded path has moved (repeatable)."),
) -> None:
    """Sample text from a trained run, streaming it to stdout.

    Decoding uses a KV cache (for gqa it holds only the kv-heads, for mla only the latent). With
    --draft, a smaller model on the same tokenizer proposes --draft-tokens tokens that the run verifies
    in one forward pass (speculative decoding: the same output distribution in fewer target passes).
    Speed (tokens/s), KV-cache size and the draft's acceptance rate go to stderr. Past the model's
    context (seq_len) the window jumps: the most recent seq_len/2 tokens are kept.
    """
    from pileablate.inference.generate import generate as run_generate
    from pileablate.mods_files import load_mods_files

    load_mods_files(mods_file or ())
    if prompt is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("no prompt: pass --prompt TEXT or pipe text on stdin (--prompt '' starts a new document)")
        prompt = sys.stdin.read()
    run_generate(
        GenerateOptions(
            run_dir=run_dir, prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature,
            top_k=top_k, top_p=top_p, seed=seed, use_cache=use_cache, draft_dir=draft_dir,
            draft_tokens=draft_tokens, compare=compare, device=device, echo=echo,
        )
    )
