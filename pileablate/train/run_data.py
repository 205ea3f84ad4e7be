"""The prepared data one run reads, opened once (`RunData.open`)."""

from __future__ import annotations

from dataclasses import dataclass

from pileablate.train.config import TrainConfig
from pileablate.train.data_loader import BatchLayout, TrainWindows, ValWindows
from pileablate.train.distributed import DistInfo


@dataclass(frozen=True)
class RunData:
    """The prepared data a run reads: its training windows (the same for every modification of a seed),
    the fixed validation (or tuning) windows, and what converts nats/token to bits/byte."""

    windows: TrainWindows
    val: ValWindows
    val_bytes_per_token: float
    fingerprint: str  # the manifest's: the data's identity
    tokenizer: dict

    @classmethod
    def open(cls, cfg: TrainConfig, seq_len: int, manifest: dict, info: DistInfo) -> "RunData":
        from pileablate.data.store import TokenSplit

        layout = BatchLayout(cfg.batch_size, cfg.grad_accum, info.world_size, info.rank)
        val_stats = manifest["splits"]["val"]
        return cls(windows=TrainWindows(TokenSplit(cfg.data / "train"), seq_len, layout, cfg.seed),
                   val=ValWindows(TokenSplit(cfg.data / "val"), seq_len, cfg.eval_tokens, tuning=cfg.tuning),
                   val_bytes_per_token=val_stats["bytes"] / max(1, val_stats["tokens"]),
                   fingerprint=manifest["fingerprint"], tokenizer=manifest["tokenizer"])

    @property
    def tokens_per_step(self) -> int:
        return self.windows.layout.global_windows * self.windows.seq_len
