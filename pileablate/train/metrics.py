"""Metrics: honest-loss checks and the FLOPs/MFU estimate (the metrics.jsonl file: pileablate.runfolder).

Bits per byte. The validation loss is in nats per token; tokenizers differ in bytes per token, so
runs on different tokenizers compare by bits per byte:
    bpb = loss_nats_per_token * (val_tokens / val_bytes) / ln 2
with tokens and UTF-8 bytes of the validation split from the manifest.

Plausibility floor (MIN_PLAUSIBLE_BITS_PER_BYTE = 0.3). The best published language models reach about
0.6-0.7 bits per byte on The Pile's test set (the Pile paper reports GPT-3 davinci at 0.72; large
modern models are around 0.5-0.6), and the best text compressors ~0.9 on enwik9. A model trained by
this tool on a single machine, measured on held-out documents, cannot come near 0.3; below it the model
must be seeing the tokens it predicts (a causality leak, or validation data in training). Such a run is
stopped and marked failed instead of being reported.

MFU (model FLOPs utilisation, PaLM appendix B): achieved model FLOPs / peak FLOPs of the device, with
FLOPs per token = 6 * N (forward + backward over active parameters) + 12 * n_layer * d_model * seq_len
(attention scores and weighted sum), as `GPT.flops_per_token()` computes it. Peaks are dense bf16/fp16 tensor-core figures from the vendors'
data sheets; fp32 runs (TF32 on) use half. Unknown devices report no MFU.
"""

from __future__ import annotations

import math
from typing import Optional

MIN_PLAUSIBLE_BITS_PER_BYTE = 0.3

# Dense bf16 peak FLOP/s (no sparsity), matched as a substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100", 989e12),  # SXM; PCIe is 756e12 (matched below first)
    ("A100", 312e12),
    ("A10G", 70e12),  # before "A10": the AWS part
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16
    ("T4", 65e12),  # fp16
)


def peak_flops(device_name: str, precision: str) -> Optional[float]:
    """Peak FLOP/s of a CUDA device for this precision, or None when the device is not in the table."""
    name = device_name.upper()
    if "H100" in name and "PCIE" in name:
        peak = 756e12
    else:
        peak = next((value for key, value in PEAK_BF16_FLOPS if key.upper() in name), None)
    if peak is None:
        return None
    return peak if precision in ("bf16", "fp16") else peak / 2


def bits_per_byte(loss_nats: float, val_bytes_per_token: float) -> float:
    return loss_nats / val_bytes_per_token / math.log(2)
