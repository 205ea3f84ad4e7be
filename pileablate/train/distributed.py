"""Distributed data parallel set-up for `torchrun --nproc_per_node=N -m pileablate train ...`.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and the rendezvous address) in each worker's environment.
Without them the run is a single process and nothing here does anything. Backends: NCCL between GPUs,
gloo between CPU processes. Every rank computes the same data order and takes its own slice of each
step's windows (see data_loader.py); gradients are averaged by DDP; only rank 0 writes files.
Decisions that must agree across ranks (stop now? what time is it?) are reduced each step, so a rank
whose clock runs slightly ahead cannot leave the others waiting in a collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def init_distributed(info: DistInfo, device: torch.device) -> None:
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        dist.init_process_group(backend, device_id=device)
    else:
        dist.init_process_group(backend)


def shutdown_distributed(wait_for_peers: bool = True) -> None:
    """Tear the process group down; after a normal end, only once every rank has got there.

    Rank 0 finishes later than the others (it writes the summary and the last checkpoint). A rank that
    destroys its gloo group while a peer still holds the connection can die in gloo's C++ teardown
    ("terminate called without an active exception", SIGABRT), failing a run that trained fine. The
    barrier is skipped after an error, where a peer may never arrive.
    """
    if not dist.is_initialized():
        return
    if wait_for_peers:
        dist.barrier()
    dist.destroy_process_group()


def _all_reduce(values: list[float], op, info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


def reduce_max(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise maximum over ranks (identity in a single process)."""
    return _all_reduce(values, dist.ReduceOp.MAX, info, device)


def reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum over ranks (identity in a single process)."""
    return _all_reduce(values, dist.ReduceOp.SUM, info, device)


def share_from_main(value, info: DistInfo):
    """Rank 0's `value` (any picklable object) on every rank; `value` itself in a single process.

    For work that only rank 0 needs to do (the pre-training guards): the others wait here for its
    outcome instead of repeating the work, and every rank then acts on the same answer.
    """
    if not info.enabled:
        return value
    box = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
