"""Metrics: the metrics.jsonl log, honest-loss checks, and the FLOPs/MFU estimate.

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

import json
import math
from pathlib import Path
from typing import Optional

from pileablate.errors import UserError

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


class MetricsLog:
    """Append-only metrics.jsonl (one JSON object per logged step), flushed per row."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._handle = None

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
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
            tmp.replace(self.path)
        return notes

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
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
                            "delete that line or the run directory")
    return rows, False


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")  # a torn multi-byte character is just a torn line


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl, without a torn last line (a run killed mid-write still reads)."""
    path = Path(path)
    if not path.is_file():
        return []
    return _parse_rows(_read_text(path), path)[0]
