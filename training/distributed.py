"""Distributed training helpers (torchrun, DistributedDataParallel): which process this is, joining
the process group, and the collectives the loop needs. Without a process group every helper is the
one-process identity, so the loop has no second code path."""
from __future__ import annotations

import os

import torch


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) of an initialised process group, else (0, 1, 0)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return 0, 1, 0


def init_distributed(device: str = "auto") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on CPU."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True


def wrap_ddp(module: torch.nn.Module, device: torch.device, find_unused_parameters: bool) -> torch.nn.Module:
    """``module`` under DistributedDataParallel (gradients averaged over the ranks at backward)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=find_unused_parameters)


def all_reduce(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place over all ranks (``sum``, ``min`` or ``max``); returns ``x``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return x


def gather_states(mine: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """Every rank's byte tensors (random-generator states) as ``{"rank{r}.{key}": tensor}``; a
    collective when ``world`` > 1, so every rank must call it."""
    if world <= 1:
        return {f"rank0.{k}": v for k, v in mine.items()}
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, {k: v.numpy().tobytes() for k, v in mine.items()})
    return {f"rank{r}.{k}": torch.frombuffer(bytearray(b), dtype=torch.uint8)
            for r, d in enumerate(gathered) for k, b in d.items()}
