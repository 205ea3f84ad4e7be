"""What a tracker shows of a metrics row: which numbers, under which names (the bottom of the trackers
package: the backends and the interface both use it, neither is imported by it).

A row's key `k` is shown as `<section>/<k>` (`loss/train_loss`, `optim/lr`, ...), so related curves
share a panel and the name is still the metrics.jsonl key.
"""

from __future__ import annotations

import math

# Where each metrics.jsonl key is shown (anything else goes under "other/").
SECTIONS = {
    "train_loss": "loss", "val_loss": "loss", "val_bits_per_byte": "loss",
    "lr": "optim", "grad_norm": "optim",
    "tokens_per_s": "perf", "mfu": "perf", "peak_mem_bytes": "perf",
    "tokens": "progress", "elapsed_s": "progress", "epoch": "progress",
}


def metric_tag(key: str) -> str:
    return f"{SECTIONS.get(key, 'other')}/{key}"


def row_metrics(row: dict) -> dict[str, float]:
    """The plottable values of a metrics row, by tag: finite numbers, `step` excluded (it is the x-axis)."""
    out = {}
    for key, value in row.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[metric_tag(key)] = value
    return out


def flat(data: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become comma-joined strings (a hyperparameter is a scalar)."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out
