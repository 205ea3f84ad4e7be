"""What a checkpoint holds: everything needed to continue a run exactly.

The model, optimizer and loss-scaler states, the progress counters (step, tokens, training time, best
validation loss) and the random-number generator states. Everything is a tensor or a plain Python
value, so it loads with `torch.load(weights_only=True)`: a checkpoint cannot run code. Where it lives
and how it is written (atomically) is the run folder's business: `pileablate.runfolder`.
"""

from __future__ import annotations

import torch


def checkpoint_state(model, optimizer, scaler, precision: str, progress: dict) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if precision == "fp16" else {}, "progress": progress, "rng": rng_state()}


# Parameter paths pileablate 3 wrote under other names (multi-token heads are the objective component now).
_VERSION_3_PATHS = {"mtp_heads.": "objective."}


def model_weights(state: dict) -> dict:
    """A checkpoint's model weights under this version's parameter names."""
    weights = {}
    for name, tensor in state["model"].items():
        for old, new in _VERSION_3_PATHS.items():
            if name.startswith(old):
                name = new + name[len(old):]
        weights[name] = tensor
    return weights


def restore_checkpoint(state: dict, model, optimizer, scaler, precision: str) -> dict:
    """Load `state` into the model, optimizer, loss scaler and random-number generators; returns the
    progress counters it was taken at."""
    model.load_state_dict(model_weights(state))
    optimizer.load_state_dict(state["optimizer"])
    if precision == "fp16" and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return state["progress"]


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
