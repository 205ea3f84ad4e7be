"""`GenerateOptions`: what `pileablate generate` takes, one field per option (pileablate.options);
torch-free, so the command line builds its --help from them instantly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pileablate.options import option


@dataclass
class GenerateOptions:
    """Everything `pileablate generate` can be asked; each field is the option of its name."""

    run_dir: Path = option(help="Run folder to sample from (holds config.json and ckpt/latest.pt).")
    prompt: Optional[str] = option(None, "Text to continue. Default: stdin when it is not a terminal. '' starts a new document.",
                                   short="-p")
    max_new_tokens: int = option(200, "Tokens to generate at most (stops earlier at end-of-text). May exceed the model's "
                                      "context: when it is full the window jumps, keeping the latest seq_len/2 tokens.",
                                 short="-n")
    temperature: float = option(0.8, "Sampling temperature; 0 = greedy.")
    top_k: int = option(200, "Sample only among the k most likely tokens (0: no limit).")
    top_p: Optional[float] = option(None, "Nucleus sampling: smallest set of tokens with probability >= p.")
    seed: int = option(1337, "Random seed: the same seed gives the same text.")
    cache: bool = option(True, "Use the KV cache (--no-cache recomputes the whole context every token: the reference).")
    draft: Optional[Path] = option(None, "Run of a smaller draft model on the same tokenizer: speculative decoding.",
                                   metavar="RUN2")
    draft_tokens: int = option(4, "Speculative decoding: tokens the draft proposes per target forward pass.")
    compare: bool = option(True, "With --draft: also time plain decoding of as many tokens and print the speed-up.")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps (auto: cuda, then mps, then cpu).")
    echo: bool = option(False, "Print the prompt before the generated text.")
    mods_files: tuple[str, ...] = option((), "A file registering modifications the run used, when its recorded path has "
                                             "moved (repeatable).", flag="--mods-file", metavar="FILE")
