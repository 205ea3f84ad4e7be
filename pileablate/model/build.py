"""Presets and `build_model_config`: a preset plus modifications plus overrides -> one ModelConfig.

Above config.py, pileablate/registry.py and matching.py, so none of them imports this module.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Sequence, Union

from pileablate.errors import UserError
from pileablate.model.config import VOCAB_MULTIPLE, ModelConfig
from pileablate.model.matching import match_to_baseline
from pileablate.registry import model_changes, modification, parse_mod_options, resolve_mods, size_knobs

# name -> (n_layer, n_head, d_model, seq_len)
PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(n_layer=2, n_head=2, d_model=64, seq_len=64),  # tests: trains on a CPU in seconds
    "micro": dict(n_layer=4, n_head=4, d_model=128, seq_len=128),  # CPU demos
    "mini": dict(n_layer=6, n_head=6, d_model=192, seq_len=256),  # minGPT's gpt-mini
    "small": dict(n_layer=12, n_head=12, d_model=768, seq_len=1024),  # GPT-2 124M
    "medium": dict(n_layer=24, n_head=16, d_model=1024, seq_len=1024),  # GPT-2 350M
}

def pad_vocab(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return int(math.ceil(vocab_size / multiple) * multiple)


def build_model_config(preset: str, mods: Union[str, Sequence[str]], vocab_size: int, *,
                       match_params: bool = False, mod_options: Sequence[str] = (), **overrides: Any) -> ModelConfig:
    """The config for `preset` + `mods` on data whose tokenizer has `vocab_size` ids.

    Overrides are ModelConfig fields (n_kv_head=2, kernel="math", dropout=0.1: the train options of the
    same names among them); those that are None are ignored.

    `match_params`: give the model the parameter count of the baseline (same preset and overrides, no
    model modification) through its MLP width, the rule of pileablate/model/matching.py, when every
    model modification declares that size knob. An explicit `mlp_hidden` override is the caller's choice
    and is kept as given. `mod_options`: "NAME.KEY=VALUE" (--mod-option); the model records those of its
    modifications.
    """
    config = _build(preset, mods, vocab_size, overrides, mod_options)
    if match_params and overrides.get("mlp_hidden") is None:
        baseline = _build(preset, (), vocab_size, overrides, ())
        # Trainer-only modifications leave the model as it is; a modification that declares no size
        # knob is trained at its own size (the report flags a difference over 1%).
        if config != baseline and None not in size_knobs(mods):
            config = match_to_baseline(config, baseline)
    return config


def _build(preset: str, mods: Union[str, Sequence[str]], vocab_size: int, overrides: dict,
           mod_options: Sequence[str]) -> ModelConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if int(vocab_size) < 1:
        raise UserError(f"vocab size must be at least 1 (got {vocab_size})")
    chosen = resolve_mods(mods)
    values: dict[str, Any] = dict(PRESETS[preset])
    field_names = {f.name for f in fields(ModelConfig)}
    reserved = {"vocab_size", "data_vocab_size", "mods", "mod_options"}
    given = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in field_names or key in reserved:
            raise UserError(f"unknown model option {key!r}; valid: {', '.join(sorted(field_names - reserved))}")
        given[key] = value
    model_mods = tuple(m for m in chosen if modification(m).target == "model")
    values["mods"] = model_mods
    values["mod_options"] = parse_mod_options(mod_options, model_mods)
    values.update(given)  # the sizes (and options) a modification's settings may be computed from
    values.update(model_changes(chosen, values))
    values.update(given)  # an explicit field wins over a modification's setting
    values["vocab_size"] = pad_vocab(int(vocab_size))
    values["data_vocab_size"] = int(vocab_size)
    return ModelConfig(**values)
