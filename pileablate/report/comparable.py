"""Which runs may be compared: a configuration differs from the baseline only by its modifications, its
learning rate and its seed. Every other setting config.json records (batch, context length, preset and
sizes, data, tokenizer, precision, budget, ...) must be the baseline's, or Δ measures that setting too.

`settings(run)` is what a run's configuration is made of besides its modifications; the report groups
runs by it (with the name) and compares a configuration with the baseline only where `differences` is
empty. Runs that one `ablate` made share every such setting by construction.
"""

from __future__ import annotations

import json
import math
from typing import Optional

from pileablate.report.runs import Run

# Training settings that do not change what a run learns or how it is scored: where it is written and
# read from (the data is compared by fingerprint), how often it is looked at and saved, where it runs.
_NOT_SETTINGS = frozenset({
    "name", "runs_dir", "data", "resume", "eval_every", "log_every", "checkpoint_every", "trackers", "device",
    "compile", "precision",  # "auto" as asked: the precision it ran at is compared below
    "tuning",                # the role: tuning runs are kept apart anyway
})
# What makes a configuration what it is, or is chosen per configuration.
_OWN = frozenset({
    "mods", "mods_files", "seed", "lr",
    "mod_options",  # a modification's own options (a run records only those of its modifications)
    "min_lr",  # lr/10 by default: compared as its ratio to lr below
    # Options that act only with their modification on (mla, moe, mtp; gqa's n_kv_head in version 3): part of it.
    "n_kv_head", "kv_latent_dim", "n_experts", "experts_per_token", "mtp_depth",
})
# The model's size, as resolved (the preset's or the options'); the other model fields follow the mods.
_SIZES = ("n_layer", "n_head", "d_model", "seq_len", "vocab_size")


def settings(run: Run) -> dict[str, object]:
    """Every recorded setting of the run other than its modifications, learning rate and seed; {} for a
    run without config.json (one that failed before training: it counts nowhere anyway)."""
    config = run.config
    if not config:
        return {}
    train = config.get("train") or {}
    model = config.get("model") or {}
    out: dict[str, object] = {k: v for k, v in sorted(train.items()) if k not in _NOT_SETTINGS | _OWN}
    out["preset"] = config.get("preset")
    out.update({k: model.get(k) for k in _SIZES})
    lr, min_lr = train.get("lr"), train.get("min_lr")
    if lr and min_lr is not None:
        out["min_lr/lr"] = round(float(min_lr) / float(lr), 9)
    out["data"] = (run.fingerprint or "")[:12] or None
    out["tokenizer"] = run.tokenizer_name if run.tokenizer_id else None
    out["precision"] = (config.get("hardware") or {}).get("precision")
    out["world_size"] = config.get("world_size")
    return out


def settings_key(run: Run) -> str:
    """The settings as one hashable value (runs with equal keys may be seeds of one configuration)."""
    return json.dumps(settings(run), sort_keys=True, default=str)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _show(value) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def differences(mine: dict, baseline: dict) -> list[str]:
    """'batch_size 1 vs 8' for every setting in which `mine` differs from the baseline's."""
    if not mine or not baseline:
        return []
    return [f"{k} {_show(mine.get(k))} vs {_show(baseline.get(k))}"
            for k in sorted(set(mine) | set(baseline)) if not _same(mine.get(k), baseline.get(k))]


def distinguishing(mine: dict, others: list[dict]) -> str:
    """The settings that tell this group of runs from others of the same name: 'batch_size 1'."""
    keys = sorted({k for other in others for k in set(mine) | set(other) if not _same(mine.get(k), other.get(k))})
    return ", ".join(f"{k} {_show(mine.get(k))}" for k in keys)


def not_comparable_flag(diffs: list[str]) -> Optional[str]:
    return ("not comparable: " + "; ".join(diffs) + " (no Δ, no verdict)") if diffs else None
