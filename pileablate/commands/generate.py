"""`pileablate generate`: sample text from a trained run (KV cache, speculative decoding).

The options are `GenerateOptions`' fields (pileablate.options); the run folder is the argument.
"""

from __future__ import annotations

import dataclasses
import sys

from pileablate.errors import UserError
from pileablate.inference.options import GenerateOptions
from pileablate.options import from_command_line, parameters, with_parameters


@with_parameters(parameters(GenerateOptions, argument="run_dir", argument_metavar="RUN"))
def generate(**options) -> None:
    """Sample text from a trained run, streaming it to stdout.

    Decoding uses a KV cache (for gqa it holds only the kv-heads, for mla only the latent). With
    --draft, a smaller model on the same tokenizer proposes --draft-tokens tokens that the run verifies
    in one forward pass (speculative decoding: the same output distribution in fewer target passes).
    Speed (tokens/s), KV-cache size and the draft's acceptance rate go to stderr. Past the model's
    context (seq_len) the window jumps: the most recent seq_len/2 tokens are kept.
    """
    from pileablate.inference.generate import generate as run_generate
    from pileablate.mods_files import load_mods_files

    opts = GenerateOptions(**from_command_line(GenerateOptions, options))
    load_mods_files(opts.mods_files)
    if opts.prompt is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("no prompt: pass --prompt TEXT or pipe text on stdin (--prompt '' starts a new document)")
        opts = dataclasses.replace(opts, prompt=sys.stdin.read())
    run_generate(opts)
