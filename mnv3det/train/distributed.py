"""DDP helpers for runs started by `torchrun` (PyTorch's own process groups; nothing home-made).

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them the run is a single process. The
backend is NCCL when every process has a GPU, else gloo (so two CPU processes work on one machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from mnv3det.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and saves."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_env() -> DistInfo:
    """Read torchrun's environment (single process when absent)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def init_distributed(device: torch.device, timeout_min: float = 30.0) -> DistInfo:
    """Join the process group when launched by torchrun; returns the DistInfo (no-op for one process)."""
    info = dist_env()
    if not info.enabled or dist.is_initialized():
        return info
    if device.type == "cuda":
        if torch.cuda.device_count() <= info.local_rank:
            raise UserError(
                f"torchrun started {info.world_size} processes but only {torch.cuda.device_count()} GPU(s) are "
                "visible; use --nproc_per_node <= the number of GPUs, or --device cpu"
            )
        torch.cuda.set_device(info.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_min))
    return info


def ddp_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each DDP process uses its own GPU (cuda:LOCAL_RANK); CPU stays CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device(f"cuda:{info.local_rank}")
    return device


def world_size() -> int:
    """Number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def cleanup() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_true(flag: bool, device: torch.device) -> bool:
    """True when `flag` is True on every process (one tiny all-reduce; plain value for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's value of `flag` on every process (e.g. an early-stop decision)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over processes (a copy; `t` itself for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / dist.get_world_size()
