"""Process-group setup for data parallelism: one process, or many under torchrun (gloo on CPU, nccl on GPU).

Everything here is a no-op with one process, so recipes call it unconditionally.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group torchrun describes in the environment, or stand alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        # Leave the group before the interpreter tears down: a gloo group still alive at exit can abort
        # the process ("terminate called without an active exception") after a run that went well.
        atexit.register(shutdown)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (returns it unchanged with one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every process if `flag` is true on any of them (e.g. a SIGTERM seen by one rank)."""
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def wrap_data_parallel(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    if d.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [d.local_rank] if d.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a collated batch to `device`; other values (counts, locations) pass through."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
