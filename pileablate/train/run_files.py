"""The run directory: config.json, summary.json (atomic JSON writes: pileablate.jsonfile) and the resume check.

A run directory is identified by its name. Re-running with the same settings continues it; settings
that would change what the run *is* (model, data, optimiser, batch) must match, while the budget,
evaluation/logging/checkpoint cadence and hardware may change between sessions (e.g. extend a finished
run with a larger --max-steps, or move it to a GPU).
"""

from __future__ import annotations

from pathlib import Path

from pileablate.errors import UserError
from pileablate.jsonfile import read_json, write_json_atomic  # noqa: F401 (importable from here too)

# TrainConfig fields that may differ when a run is continued.
RESUMABLE_CHANGES = frozenset({
    "data_dir", "runs_dir", "name", "time_limit_s", "max_tokens", "max_steps", "eval_every", "log_every",
    "checkpoint_every", "device", "precision", "compile", "resume", "batch_size", "grad_accum",
})


def check_same_run(run_dir: Path, old: dict, new: dict) -> None:
    """Raise UserError unless `new` (a config.json dict about to be written) continues `old`."""
    name = run_dir.name
    old_tok, new_tok = old["data"]["tokenizer"], new["data"]["tokenizer"]
    if old_tok.get("sha256") != new_tok.get("sha256"):
        raise UserError(
            f"run '{name}' was trained on data tokenized with '{old_tok.get('name')}', but {new['data']['dir']} "
            f"uses '{new_tok.get('name')}'; pass the --data it was trained on ({old['data']['dir']}) or a new --name"
        )
    if old["data"]["fingerprint"] != new["data"]["fingerprint"]:
        raise UserError(
            f"run '{name}' was trained on other data than {new['data']['dir']} (data fingerprint differs); "
            f"pass the --data it was trained on ({old['data']['dir']}) or a new --name"
        )
    differences = []
    if old["model"] != new["model"]:
        keys = sorted(k for k in set(old["model"]) | set(new["model"]) if old["model"].get(k) != new["model"].get(k))
        differences += [f"model {k} {old['model'].get(k)} -> {new['model'].get(k)}" for k in keys]
    for key, value in new["train"].items():
        if key not in RESUMABLE_CHANGES and old["train"].get(key) != value:
            differences.append(f"{key} {old['train'].get(key)} -> {value}")
    if old.get("tokens_per_step") != new.get("tokens_per_step"):
        differences.append(f"tokens per step {old.get('tokens_per_step')} -> {new.get('tokens_per_step')}")
    if differences:
        raise UserError(
            f"run '{name}' exists with other settings ({'; '.join(differences[:4])}); "
            "repeat its settings to continue it, or pass a new --name"
        )
