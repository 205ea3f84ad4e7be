"""Parameter matching: a modified model gets the baseline's parameter count through its MLP width.

A modification that adds or removes parameters (mtp adds whole blocks, gqa and mla shrink the
key/value projections, rope drops the learned positions) would otherwise compare a bigger or a
smaller model with the baseline, and the difference in loss would be partly a difference in size.

The rule, the one the README states:
- The matched quantity is the parameters one token uses (`num_params()["active"]`). It is the total
  for every modification but `moe`, whose experts exist to add parameters a token does not use; a
  mixture of experts is compared at equal compute per token, the usual comparison (Fedus et al. 2021).
- When the modified model is within 1% of the baseline (same preset, same overrides, no model
  modification), nothing changes. Otherwise every MLP's hidden width (each expert's, for `moe`; the
  MTP heads' blocks too) is set to the width whose parameter count is nearest the baseline's, among
  multiples of 64, else 32, 16, ... 1: the first multiple that lands within 1% (hardware-friendly
  widths where the model is large enough to afford them, exact ones where it is not).
- When no width reaches 1% (the modification's own parameters outweigh every MLP, e.g. many MTP
  heads on a tiny model), it is a user error that says so: train it with --no-match-params, at its
  own size, and the report shows (and flags) the difference.
"""

from __future__ import annotations

from dataclasses import replace

from pileablate.errors import UserError
from pileablate.model.config import ModelConfig

MATCH_TOLERANCE = 0.01
WIDTH_MULTIPLES = (64, 32, 16, 8, 4, 2, 1)


def count_params(cfg: ModelConfig) -> dict[str, int]:
    """`GPT(cfg).num_params()` of a model built on the meta device: no memory, no initialisation."""
    import torch

    from pileablate.model.gpt import GPT

    with torch.device("meta"):
        return GPT(cfg).num_params()


def _width_unit(cfg: ModelConfig) -> int:
    # moe experts are ffn_hidden // experts_per_token wide: hidden widths in steps of experts_per_token move every expert by one.
    from pileablate.registry import component

    unit = component("feedforward", cfg.feedforward).width_unit
    return unit(cfg) if unit is not None else 1


def match_to_baseline(cfg: ModelConfig, baseline: ModelConfig) -> ModelConfig:
    """`cfg` with the MLP hidden width that brings its active parameters within 1% of `baseline`'s
    (unchanged when already within 1%; the nearest width when none is)."""
    target = count_params(baseline)["active"]
    now = count_params(cfg)["active"]
    tolerance = MATCH_TOLERANCE * target
    if abs(now - target) <= tolerance:
        return cfg
    unit = _width_unit(cfg)
    width = max(1, cfg.ffn_hidden // unit)  # in units: the expert width for moe
    # Parameters are affine in the width (every MLP's matrices and biases grow with it), so one more
    # count gives the exact slope and the exact count of any other width.
    slope = count_params(replace(cfg, mlp_hidden=(width + 1) * unit))["active"] - now
    if slope <= 0:  # a user's MLP that ignores its width: the knob it declared cannot match it
        raise UserError(f"{','.join(cfg.mods)}: the MLP width does not change the parameter count, so "
                        "parameter matching cannot use it; declare size_knob=None or pass --no-match-params")
    ideal = width + (target - now) / slope
    for multiple in WIDTH_MULTIPLES:
        chosen = max(multiple, multiple * round(ideal / multiple))
        if abs(now + slope * (chosen - width) - target) <= tolerance:
            return replace(cfg, mlp_hidden=chosen * unit)
    nearest = (now + slope * (chosen - width)) / target - 1
    raise UserError(
        f"{','.join(cfg.mods)} cannot be given the baseline's parameter count by the MLP width "
        f"(nearest {nearest:+.1%} at width {chosen * unit}); pass --no-match-params to train it at its own size"
    )
