"""Checkpoints: everything needed to continue a run exactly, written atomically.

`ckpt/latest.pt` holds the model, optimizer and loss-scaler states, the progress counters (step,
tokens, training time, best validation loss) and the random-number generator states. Everything is a
tensor or a plain Python value, so it loads with `torch.load(weights_only=True)`: a checkpoint cannot
run code. The file is written to a temporary name and renamed over the old one (`os.replace` is
atomic on POSIX and Windows), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_NAME = "latest.pt"


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / "ckpt" / CHECKPOINT_NAME


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint safely (`weights_only=True`: tensors and plain values only)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)
