"""The run directory: config.json, summary.json (atomic JSON writes: pileablate.jsonfile) and the resume check.

A run directory is identified by its name. Re-running with the same settings continues it; settings
that would change what the run *is* (model, data, optimiser, batch) must match, while the
evaluation/logging/checkpoint cadence, trackers and hardware may change between sessions (e.g. move it
to a GPU). The budget may change only when the learning rate does not depend on it (constant
schedule): extend a finished baseline with a larger --max-steps, and it says so.
"""

from __future__ import annotations

from pathlib import Path

from pileablate.errors import UserError
from pileablate.train.config import option_name

BUDGET_FIELDS = ("max_steps", "max_tokens", "time_limit_s")

# TrainConfig fields that may differ when a run is continued (a budget only under a constant schedule).
RESUMABLE_CHANGES = frozenset({
    "data_dir", "runs_dir", "name", "time_limit_s", "max_tokens", "max_steps", "eval_every", "log_every",
    "checkpoint_every", "device", "precision", "compile", "resume", "batch_size", "grad_accum", "trackers",
})


def check_same_run(run_dir: Path, old: dict, new: dict) -> list[str]:
    """Raise UserError unless `new` (a config.json dict about to be written) continues `old`.

    Returns notes to show the user (a budget that changed for a constant-schedule run); [] when none.
    """
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
    return _check_budget(name, old, new)


def _check_budget(name: str, old: dict, new: dict) -> list[str]:
    """A new budget extends (or shortens) a constant-rate run; under warmup or cosine it is refused.

    Warmup and cosine follow the fraction of the budget used, so with another budget the learning
    rate would jump mid-run (a finished cosine run given twice the budget goes back from its minimum
    rate to the middle of the curve): the result would be neither run.
    """
    changed = [f"{option_name(k)} {old['train'].get(k)} -> {new['train'].get(k)}"
               for k in BUDGET_FIELDS if old["train"].get(k) != new["train"].get(k)]
    if not changed:
        return []
    schedule = old.get("schedule", "constant")
    if schedule != "constant":
        raise UserError(
            f"run '{name}' has the {schedule} schedule, which follows the fraction of its budget used, so another "
            f"budget ({', '.join(changed)}) would change its learning rate mid-run; repeat its budget to continue "
            "it, or pass a new --name to train with this budget from the start"
        )
    return [f"run '{name}': budget changed ({', '.join(changed)}); its learning rate is constant, so the run "
            "continues from its checkpoint to the new budget"]
