"""What a run's files say it is, in the layouts `runfolder` owns: config.json (`run_config`: the plan
written out, and where it ran) and summary.json (`run_summary`: how it stands); the trackers show
`run_identity` beside the curves."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

from pileablate import __version__, runfolder
from pileablate.runfolder import ConfigRecord, RunIdentity, SummaryRecord
from pileablate.train.config import TrainConfig
from pileablate.train.distributed import DistInfo
from pileablate.train.metrics import bits_per_byte
from pileablate.train.plan import ParamCounts, RunPlan
from pileablate.train.run_data import RunData
from pileablate.train.state import Progress


def role_of(cfg: TrainConfig) -> str:
    """"tuning": a run that chooses a learning rate (scored on the tuning windows, never reported);
    "report": a run whose loss on the validation windows is what reports compare."""
    return "tuning" if cfg.tuning else "report"


def run_identity(cfg: TrainConfig) -> RunIdentity:
    return RunIdentity(name=cfg.name, mods=list(cfg.mods), seed=cfg.seed, preset=cfg.preset, role=role_of(cfg))


def run_summary(cfg: TrainConfig, counts: ParamCounts, run_dir: Path, data: RunData, p: Progress, guards: dict,
                status: str, stop_reason: Optional[str], peak_mem: Optional[int] = None) -> dict:
    """summary.json (`runfolder.SummaryRecord`): what the run is and how it stands, whatever became of it."""
    finite_val = p.last_val_loss is not None and math.isfinite(p.last_val_loss)
    return SummaryRecord(
        identity=run_identity(cfg), lr=cfg.lr, params_total=counts.total, params_active=counts.active,
        budget=runfolder.budget_of(cfg), run_dir=str(run_dir),
        status=status, stop_reason=stop_reason, steps=p.step, tokens=p.tokens, elapsed_s=p.elapsed_s,
        final_train_loss=p.last_train_loss, final_val_loss=p.last_val_loss, best_val_loss=p.best_val_loss,
        val_bits_per_byte=bits_per_byte(p.last_val_loss, data.val_bytes_per_token) if finite_val else None,
        epochs=data.windows.epochs(p.tokens), tokens_per_s=p.tokens / p.elapsed_s if p.elapsed_s > 0 else None,
        peak_mem_bytes=peak_mem, guards=guards, flags=sorted(set(p.flags)),
    ).to_json()


def run_config(plan: RunPlan, data: RunData, schedule_kind: str, precision: str, info: DistInfo, device: torch.device,
               learning_rates: dict) -> dict:
    """config.json (`runfolder.ConfigRecord`): the plan written out, and where the run ran."""
    cfg, model_cfg = plan.settings, plan.model
    return ConfigRecord(
        identity=run_identity(cfg), model=dataclasses.asdict(model_cfg), train=cfg.to_json(),
        data={"dir": str(cfg.data), "fingerprint": data.fingerprint, "tokenizer": data.tokenizer,
              "vocab_size": model_cfg.vocab_size, "val_bytes_per_token": data.val_bytes_per_token},
        schedule=schedule_kind, tokens_per_step=data.tokens_per_step, world_size=info.world_size,
        hardware={"device": str(device), "precision": precision, "torch": torch.__version__,
                  "threads": torch.get_num_threads(),  # CPU threads change a loss's last digits
                  "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type},
        pileablate_version=__version__, created=datetime.now(timezone.utc).isoformat(),
        learning_rates=learning_rates, components=dict(plan.components),
    ).to_json()
