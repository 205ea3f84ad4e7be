"""The run folder: the one module that reads and writes a run's files, and the one "same run" rule.

    RUNS/<name>/config.json     what the run is (its plan: model, data, training settings, components) and
                                where it ran: `ConfigRecord`
    RUNS/<name>/summary.json    how it stands: running, stopped, finished or failed, and its losses: `SummaryRecord`
    RUNS/<name>/metrics.jsonl   one row per logged step (appended; a torn last line is tolerated)
    RUNS/<name>/ckpt/latest.pt  everything needed to continue exactly (torch.load(weights_only=True))
    RUNS/<name>/error.txt       the traceback of a run that crashed (its summary says "failed", "crashed")
    RUNS/<name>/.lock           held by the process training the run (pileablate.runlock)
    RUNS/<point>/point.json     a sweep point's values, beside the runs made at that point
    RUNS/study.json             the study's design (margin, sequential design), for the report

Every write is atomic (a temporary file renamed over the target), so a crash leaves the old file or
the new one. One error policy for reading: a file that is absent reads as None; a file that is there
but broken is a UserError that names it and says to delete or repair it. Nothing here imports torch
at module level: the report reads run folders on machines without it.

Re-running a run continues it only when it is the same run (`check_same_run`): the model, the data and
the training settings must match; the cadence of evaluation, logging and checkpoints, the trackers and
the hardware may change; the budget may change only under a constant learning rate (warmup and cosine
follow the fraction of the budget used).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from pileablate.atomic import replacing
from pileablate.errors import UserError
from pileablate.jsonfile import read_json, write_json_atomic, write_text_atomic
from pileablate.writes import writing

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
ERROR_FILE = "error.txt"       # the traceback of a run that crashed
CHECKPOINT_FILE = Path("ckpt") / "latest.pt"
POINT_FILE = "point.json"
STUDY_FILE = "study.json"  # a study's design, in its top runs folder

# The training settings that bound a run (the first reached ends it); each is the option of its name.
BUDGET_FIELDS = ("time_limit", "max_tokens", "max_steps")

# TrainConfig fields that may differ when a run is continued (a budget only under a constant schedule).
RESUMABLE_CHANGES = frozenset({
    "data", "runs_dir", "name", *BUDGET_FIELDS, "eval_every", "log_every",
    "checkpoint_every", "device", "precision", "compile", "resume", "batch_size", "grad_accum", "trackers",
})

_FIX = "delete or repair that run folder"

# Training settings that pileablate 2 stored under other names (they are named as their options now),
# so that the run folders it made still report and resume.
_VERSION_2_NAMES = {"data_dir": "data", "time_limit_s": "time_limit", "kv_heads": "n_kv_head", "experts": "n_experts",
                    "top_k": "experts_per_token"}


def _current_names(settings: Optional[dict]) -> Optional[dict]:
    if not isinstance(settings, dict):
        return settings
    return {_VERSION_2_NAMES.get(k, k): v for k, v in settings.items()}


def _current_model(model: Optional[dict]) -> Optional[dict]:
    """A model config as this version names it. pileablate 3 switched mixtures of experts and
    multi-token prediction with booleans and named grouped-query attention an attention of its own;
    they are the feedforward and objective components now, and gqa is mha with fewer key/value heads."""
    model = _current_names(model)
    if not isinstance(model, dict):
        return model
    if model.pop("moe", False):
        model["feedforward"] = "moe"
    if model.pop("mtp", False):
        model["objective"] = "mtp"
    if model.get("attention") == "gqa":
        from pileablate.model.config import default_kv_heads  # torch-free

        model["attention"] = "mha"
        if model.get("n_kv_head") is None:
            model["n_kv_head"] = default_kv_heads(int(model.get("n_head", 12)))
    return model


def is_run_dir(path: Path) -> bool:
    """A run folder holds config.json, or at least summary.json (a run that failed its guards)."""
    return (Path(path) / CONFIG_FILE).is_file() or (Path(path) / SUMMARY_FILE).is_file()


# -- JSON files ------------------------------------------------------------------------------------

def _read(path: Path) -> Optional[dict]:
    return read_json(path, fix=_FIX) if path.is_file() else None


def read_config(run_dir: Path) -> Optional[dict]:
    config = _read(Path(run_dir) / CONFIG_FILE)
    if config is not None and "train" in config:
        config["train"] = _current_names(config["train"])
    if config is not None and "model" in config:
        config["model"] = _current_model(config["model"])
    return config


def read_summary(run_dir: Path) -> Optional[dict]:
    summary = _read(Path(run_dir) / SUMMARY_FILE)
    if summary is not None and "budget" in summary:
        summary["budget"] = _current_names(summary["budget"])
    return summary


def read_point(folder: Path) -> Optional[dict]:
    """The point.json of a sweep point's folder (the parent of its runs), or None outside a sweep."""
    point = _read(Path(folder) / POINT_FILE)
    for key in ("values", "budget"):
        if point is not None and key in point:
            point[key] = _current_names(point[key])
    if point is not None and isinstance(point.get("axes"), list):
        point["axes"] = [_VERSION_2_NAMES.get(a, a) for a in point["axes"]]
    return point


def write_config(run_dir: Path, config: dict) -> None:
    write_json_atomic(Path(run_dir) / CONFIG_FILE, config)


def write_summary(run_dir: Path, summary: dict) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary)


def write_error(run_dir: Path, text: str) -> Path:
    """The traceback of a run that crashed, kept beside its summary; returns its path."""
    path = Path(run_dir) / ERROR_FILE
    write_text_atomic(path, text)
    return path


def write_point(folder: Path, point: dict) -> None:
    write_json_atomic(Path(folder) / POINT_FILE, point)


def read_study(folder: Path) -> Optional[dict]:
    """The study.json of a study's runs folder (its design: margin, seeds rule), or None."""
    return _read(Path(folder) / STUDY_FILE)


def write_study(folder: Path, design: dict) -> None:
    write_json_atomic(Path(folder) / STUDY_FILE, design)


# -- what config.json and summary.json hold ----------------------------------------------------------

@dataclass(frozen=True)
class RunIdentity:
    """What config.json, summary.json and the trackers all say the run is."""

    name: str
    mods: list
    seed: int
    preset: str
    role: str  # "tuning" (chooses a learning rate; never reported) or "report"


def _flat(record) -> dict:
    """A record as its file holds it: the identity's fields first, then the record's own."""
    return {**asdict(record.identity), **{f.name: getattr(record, f.name) for f in fields(record) if f.name != "identity"}}


@dataclass(frozen=True)
class ConfigRecord:
    """config.json: the run's plan written out (its model, its resolved training settings, the component
    in each slot, each optimizer's peak rate), the data it reads, and where it ran."""

    identity: RunIdentity
    model: dict
    train: dict
    data: dict                # dir, fingerprint, tokenizer, vocab_size, val_bytes_per_token
    schedule: str
    tokens_per_step: int
    world_size: int
    hardware: dict            # device, precision, torch, threads, device_name
    pileablate_version: str
    created: str
    learning_rates: dict      # optimizer name -> its peak rate at the run's lr
    components: dict          # slot -> the component filling it

    def to_json(self) -> dict:
        return _flat(self)


@dataclass(frozen=True)
class SummaryRecord:
    """summary.json: what the run is and how it stands (running, stopped, finished or failed)."""

    identity: RunIdentity
    lr: float
    params_total: int
    params_active: int
    budget: dict
    run_dir: str
    status: str
    stop_reason: Optional[str]
    steps: int
    tokens: int
    elapsed_s: float
    final_train_loss: Optional[float]
    final_val_loss: Optional[float]
    best_val_loss: Optional[float]
    val_bits_per_byte: Optional[float]
    epochs: float
    tokens_per_s: Optional[float]
    peak_mem_bytes: Optional[int]
    guards: dict
    flags: list

    def to_json(self) -> dict:
        return _flat(self)


def budget_of(settings) -> dict:
    """The budget fields of a run's settings, a config.json "train" dict or a TrainConfig; None where unset.
    The one reading of a budget: the trainer, the ablation and the report all ask here."""
    if isinstance(settings, Mapping):
        return {k: settings.get(k) for k in BUDGET_FIELDS}
    return {k: getattr(settings, k) for k in BUDGET_FIELDS}


def same_budget(a: dict, b: dict) -> bool:
    """Two budgets are the same when each limit is unset in both or equal (a float read back from JSON
    may differ in its last bits)."""
    for key in BUDGET_FIELDS:
        x, y = a.get(key), b.get(key)
        if (x is None) != (y is None):
            return False
        if x is not None and not math.isclose(float(x), float(y), rel_tol=1e-9):
            return False
    return True


# -- checkpoint --------------------------------------------------------------------------------------

def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write `state` (tensors and plain values) atomically (`atomic.replacing`)."""
    import torch

    # Through a Python file: a full disk is then an OSError (ENOSPC), where torch.save(path) says only
    # "unexpected pos".
    with replacing(checkpoint_path(run_dir), binary=True) as handle:
        torch.save(state, handle)


def load_checkpoint(run_dir: Path, map_location="cpu") -> dict:
    """The checkpoint's state, loaded safely (`weights_only=True`: a checkpoint cannot run code)."""
    import torch

    return torch.load(checkpoint_path(run_dir), map_location=map_location, weights_only=True)


# -- metrics.jsonl -----------------------------------------------------------------------------------

class MetricsLog:
    """The run's append-only metrics.jsonl (one JSON object per logged step), flushed per row."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._handle = None

    def start_over(self) -> None:
        """A run starting from step 0: rows of a session that died before its first checkpoint go."""
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def truncate_after(self, step: int) -> list[str]:
        """Drop rows after `step` (resuming from a checkpoint taken at `step`) and a torn last line.

        Returns notes for the user (what was dropped and why); empty when nothing was.
        """
        if not self.enabled or not self.path.exists():
            return []
        text = _read_text(self.path)
        rows, torn = _parse_rows(text, self.path)
        kept = [row for row in rows if row.get("step", 0) <= step]
        notes = []
        if torn:
            notes.append(f"{self.path.name}: dropped a torn last line (the previous session stopped while writing it)")
        if len(kept) < len(rows):
            notes.append(f"{self.path.name}: dropped {len(rows) - len(kept)} row(s) logged after the checkpoint "
                         f"at step {step} (those steps are trained again)")
        if notes or (text and not text.endswith("\n")):  # the next row must start on a line of its own
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        return notes

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with writing(self.path):  # a row torn by a full disk is a torn last line: dropped on resume
            if self._handle is None:
                self._handle = open(self.path, "a", encoding="utf-8")
            self._handle.write(json.dumps(row) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _parse_rows(text: str, path: Path) -> tuple[list[dict], bool]:
    """(rows, whether a torn last line was left out). A bad line before the last is a UserError."""
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    rows = []
    for i, (number, line) in enumerate(numbered):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif i == len(numbered) - 1:  # a process killed mid-write leaves at most its last line torn
            return rows, True
        else:
            raise UserError(f"{path}:{number} is not a metrics row (the file was altered); "
                            "delete that line or the run folder")
    return rows, False


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")  # a torn multi-byte character is just a torn line


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl, without a torn last line (a run killed mid-write still reads)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return _parse_rows(_read_text(path), path)[0]


# -- the same-run rule -------------------------------------------------------------------------------

def settings_differences(old_train: dict, new_train: dict) -> list[str]:
    """The training settings (config.json "train") that make `new_train` another run than `old_train`:
    "key old -> new" for each, leaving out those a continued run may change. A key the old file does not
    record (written by an older version) is not a difference."""
    return [f"{key} {old_train[key]} -> {value}" for key, value in new_train.items()
            if key not in RESUMABLE_CHANGES and key in old_train and old_train[key] != value]


def check_same_run(run_dir: Path, old: dict, new: dict) -> list[str]:
    """Raise UserError unless `new` (a config.json dict about to be written) continues `old`.

    Returns notes to show the user (a budget that changed for a constant-schedule run); [] when none.
    """
    name = Path(run_dir).name
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
    old_model, new_model = old["model"], json.loads(json.dumps(new["model"]))  # tuples as JSON lists
    # A model field the old file does not record (added since: the mods it was built with, the hooks)
    # is not a difference, as for the training settings.
    keys = sorted(k for k in set(old_model) | set(new_model) if k in old_model and old_model.get(k) != new_model.get(k))
    differences += [f"model {k} {old_model.get(k)} -> {new_model.get(k)}" for k in keys]
    differences += settings_differences(old["train"], new["train"])
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
    changed = [f"--{k.replace('_', '-')} {old['train'].get(k)} -> {new['train'].get(k)}"
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
