"""Choosing the torch device: one rule for inference, the service and training."""
from __future__ import annotations

import torch

#: points per chunk of the extraction's loops on a GPU: each chunk costs a few kernel launches from
#: Python, so chunks sized for a CPU's cache (2¹⁴–2¹⁶ points) keep a GPU waiting on the launches (the
#: dense 128³ lattice took 50 ms on an H200 in 2¹⁶-point slabs of 2¹⁴-point MLP chunks)
GPU_CHUNK_POINTS = 1 << 21


def chunk_points(device: torch.device | str, cpu: int) -> int:
    """Points per chunk: ``cpu`` (sized for its cache) on a CPU, at least :data:`GPU_CHUNK_POINTS` on
    other devices."""
    return cpu if torch.device(device).type == "cpu" else max(cpu, GPU_CHUNK_POINTS)


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → the GPU of this process (``cuda:local_rank``) when CUDA is there, else the CPU;
    ``cuda`` → ``cuda:local_rank``; anything else as torch spells it (``cpu``, ``cuda:1``, ``mps``)."""
    if not isinstance(device, str) or not device.strip():
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    device = device.strip()
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch has no CUDA here (install a CUDA build of torch)")
    if device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
