"""torchrun / DistributedDataParallel setup: one process per device, NCCL on CUDA, gloo on CPU.

A plain ``python`` run is world size 1 and touches none of torch.distributed. Under ``torchrun``
(RANK, WORLD_SIZE, LOCAL_RANK set in the environment) the process group is created here, each
rank takes ``cuda:LOCAL_RANK`` when on CUDA, and only rank 0 logs and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..errors import InputError
from ..models import select_device


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> DistInfo:
    """Read torchrun's environment, pick this rank's device and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = select_device(None if device in (None, "", "auto") else device)
    if world <= 1:
        return DistInfo(0, 1, 0, dev)
    if dev.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise InputError(f"rank {rank} wants cuda:{local_rank} but only {torch.cuda.device_count()} GPU(s) exist")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, dev)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(info: DistInfo, value: bool) -> bool:
    """Rank 0's boolean, on every rank (e.g. 'stop: an error happened on rank 0')."""
    if not info.enabled:
        return value
    t = torch.tensor([1 if value else 0], device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
