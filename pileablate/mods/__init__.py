"""The one public module modifications register through: the built-ins in this folder (one module
each; the listing is the list) and a user's `--mods-file` alike.

    from pileablate.mods import Modification, register, register_component

    register_component("block", "parallel", ParallelBlock)          # slot, component name, build
    register(Modification("parallel", "attention and MLP side by side", fills={"block": "parallel"},
                          reference="Wang & Komatsuzaki 2021 (GPT-J)"))

Slots, hooks and what each component's `build` is called with: SLOTS and HOOKS. The model's parts a
component may build on (attention, MLP, norm, the forward context) and the optimizer helpers are
exported here too, so a file imports nothing else of pileablate. docs/modifications.md shows every
extension point with its smallest example; `baseline.py` holds the baseline's own components.
"""

import importlib
import pkgutil

from pileablate.model.attention import CausalSelfAttention, attend, make_attention
from pileablate.model.context import Context
from pileablate.model.gpt import Block, make_feedforward
from pileablate.model.mlp import make_mlp
from pileablate.model.norms import make_norm
from pileablate.mods._kit import WARMUP_MAX_FRACTION, Chained, decay_groups, fused, hidden_matrices, warmup_factor
from pileablate.registry import HOOKS, SLOTS, Modification, Option, options_of, register, register_component

__all__ = [
    "SLOTS", "HOOKS", "Modification", "Option", "register", "register_component", "options_of",
    "CausalSelfAttention", "attend", "make_attention", "Block", "make_feedforward", "make_mlp", "make_norm",
    "Context", "Chained", "decay_groups", "hidden_matrices", "fused", "warmup_factor", "WARMUP_MAX_FRACTION",
]


def load_builtins() -> None:
    """Import every module of this folder (the registry calls this once, on its first look-up)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
