"""Options of `pileablate generate`, torch-free so the CLI can build its --help from them instantly."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class GenerateOptions:
    """Everything `pileablate generate` can be asked; field help doubles as the CLI's --help."""

    run_dir: Path = field(metadata=_help("Run folder to sample from (holds config.json and ckpt/latest.pt)."))
    prompt: str = field(default="", metadata=_help("Text to continue. Default: stdin when it is not a terminal. '' starts a new document."))
    max_new_tokens: int = field(default=200, metadata=_help("Tokens to generate at most (stops earlier at end-of-text). May exceed the model's context: when it is full the window jumps, keeping the latest seq_len/2 tokens."))
    temperature: float = field(default=0.8, metadata=_help("Sampling temperature; 0 = greedy."))
    top_k: Optional[int] = field(default=200, metadata=_help("Sample only among the k most likely tokens (0: no limit)."))
    top_p: Optional[float] = field(default=None, metadata=_help("Nucleus sampling: smallest set of tokens with probability >= p."))
    seed: int = field(default=1337, metadata=_help("Random seed: the same seed gives the same text."))
    use_cache: bool = field(default=True, metadata=_help("Use the KV cache (--no-cache recomputes the whole context every token: the reference)."))
    draft_dir: Optional[Path] = field(default=None, metadata=_help("Run of a smaller draft model on the same tokenizer: speculative decoding."))
    draft_tokens: int = field(default=4, metadata=_help("Speculative decoding: tokens the draft proposes per target forward pass."))
    compare: bool = field(default=True, metadata=_help("With --draft: also time plain decoding of as many tokens and print the speed-up."))
    device: str = field(default="auto", metadata=_help("'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N', 'mps'."))
    echo: bool = field(default=False, metadata=_help("Print the prompt before the generated text."))



def option_help(name: str) -> str:
    """The documentation of GenerateOptions field `name` (used as the CLI's --help text)."""
    for f in fields(GenerateOptions):
        if f.name == name:
            return f.metadata["help"]
    raise KeyError(name)
