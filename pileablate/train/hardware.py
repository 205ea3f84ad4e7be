"""Device and precision choice: --device auto|cpu|cuda|mps, --precision auto|bf16|fp16|fp32."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from pileablate.errors import UserError
from pileablate.train.distributed import DistInfo

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(requested: str, info: DistInfo) -> torch.device:
    """auto: CUDA (this process's local GPU under torchrun), then MPS, then CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            requested = "mps"
        else:
            requested = "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested}: no CUDA GPU is visible to PyTorch; use --device cpu (or auto)")
        if requested == "cuda":
            index = info.local_rank if info.enabled else torch.cuda.current_device()
        else:
            index = int(requested.split(":")[1])
        if index >= torch.cuda.device_count():
            raise UserError(f"--device cuda:{index}: only {torch.cuda.device_count()} GPU(s) visible")
        torch.cuda.set_device(index)  # NCCL and the caching allocator work on the current device
        return torch.device("cuda", index)
    if requested == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UserError("--device mps: Apple MPS is not available here; use --device cpu (or auto)")
        if info.enabled:
            raise UserError("distributed runs need CUDA or CPU processes; MPS does not support DDP")
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bf16 in hardware: compute capability 8.0 and up (Ampere, Ada, Hopper,
    Blackwell). `torch.cuda.is_bf16_supported()` also says yes for older GPUs (V100, T4) where bf16 is
    emulated, several times slower than their fp16 tensor cores; the capability is what decides."""
    major, _minor = torch.cuda.get_device_capability(device)
    return major >= 8


def pick_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 on GPUs with native bf16 (compute capability >= 8.0), else fp16 with a gradient
    scaler (V100, T4, ...); fp32 on CPU and MPS. An explicit choice is taken as given (fp16 and bf16
    autocast also run on the CPU), unless this GPU cannot do bf16 at all."""
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("--precision bf16: this GPU has no bf16 support; use fp16 (or auto)")
        return requested
    if device.type == "cuda":
        return "bf16" if native_bf16(device) else "fp16"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def configure_backends(device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (Ampere+): ~fp32 accuracy for training, much faster."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
