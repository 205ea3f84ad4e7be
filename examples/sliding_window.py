"""window: sliding-window attention, each query sees the last window.size tokens (itself included).

    pileablate mods --mods-file examples/sliding_window.py
    pileablate train --mods-file examples/sliding_window.py --mods window --mod-option window.size=256

A mask hook: True where a query may attend; causality is always added, so a mask can only take away.
On GPUs FlexAttention skips the masked blocks.
"""

from pileablate.mods import Modification, Option, options_of, register, register_component


def _window(config):
    size = options_of(config, "window").size
    return lambda b, h, q_idx, kv_idx: q_idx - kv_idx < size


register_component("mask", "window", _window, "q - kv < window.size")
register(Modification(
    "window", "sliding-window attention over the last window.size tokens", fills={"mask": "window"},
    options={"size": Option(256, "tokens each query attends to, itself included")},
    reference="Beltagy et al. 2020 (Longformer); Jiang et al. 2023 (Mistral 7B)",
))
