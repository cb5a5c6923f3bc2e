"""A stand-in for ``tinycudann`` on the CPU: the part of its Python API the point encoder uses
(``Encoding(n_input_dims, encoding_config, seed=, dtype=)`` with a ``params`` parameter,
``n_output_dims``, ``forward(x)``), its ``HashGrid`` written in PyTorch from tiny-cuda-nn's
``include/tiny-cuda-nn/encodings/grid.h`` — independently of ``backend.point_encoder`` — so that the
tests compare two implementations, not one with itself. It records the configs it is given.
"""
from __future__ import annotations

import math
import types

import torch
from torch import nn

PRIMES = (1, 2654435761, 805459861)
SUPPORTED = {"otype", "n_levels", "n_features_per_level", "log2_hashmap_size", "base_resolution", "per_level_scale",
             "interpolation"}


class Encoding(nn.Module):
    configs: list[dict] = []  # every config given, for the tests to check

    def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
        super().__init__()
        cfg = dict(encoding_config)
        Encoding.configs.append(cfg)
        unknown = set(cfg) - SUPPORTED
        if n_input_dims != 3 or cfg.get("otype") != "HashGrid" or unknown:
            raise ValueError(f"stand-in: unsupported encoding {cfg} for {n_input_dims} dims")
        if cfg.get("interpolation", "Linear") != "Linear":
            raise ValueError("stand-in: only linear interpolation")
        if dtype not in (torch.float32, torch.float16, None):
            raise ValueError(f"Encoding only supports fp32 or fp16 precision, but got {dtype}")
        self.dtype = dtype or torch.float16
        self.n_levels = int(cfg.get("n_levels", 16))
        self.n_features_per_level = int(cfg.get("n_features_per_level", 2))
        if self.n_features_per_level not in (1, 2, 4, 8):
            raise ValueError("GridEncoding: n_features_per_level must be 1, 2, 4, or 8.")
        self.log2_hashmap_size = int(cfg.get("log2_hashmap_size", 19))
        self.base_resolution = int(cfg.get("base_resolution", 16))
        self.per_level_scale = float(cfg.get("per_level_scale", 2.0))
        self.offsets = [0]
        for level in range(self.n_levels):
            scale = 2 ** (level * math.log2(self.per_level_scale)) * self.base_resolution - 1.0
            resolution = math.ceil(scale) + 1
            params_in_level = -(-resolution ** 3 // 8) * 8  # next_multiple(resolution³, 8)
            params_in_level = min(params_in_level, 1 << self.log2_hashmap_size)
            self.offsets.append(self.offsets[-1] + params_in_level)
        self.n_output_dims = self.n_levels * self.n_features_per_level
        gen = torch.Generator().manual_seed(seed)
        init = (torch.rand(self.offsets[-1] * self.n_features_per_level, generator=gen) * 2 - 1) * 1e-4
        self.params = nn.Parameter(init.to(self.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, 3]`` → ``[N, n_levels · n_features_per_level]``, differentiable in ``params``."""
        c = self.n_features_per_level
        grid = self.params.to(self.dtype).float()
        out = []
        for level in range(self.n_levels):
            scale = 2 ** (level * math.log2(self.per_level_scale)) * self.base_resolution - 1.0
            resolution = math.ceil(scale) + 1
            size = self.offsets[level + 1] - self.offsets[level]
            table = grid[self.offsets[level] * c: self.offsets[level + 1] * c].view(size, c)
            pos = x.float() * scale + 0.5  # pos_fract: fmaf(scale, input, 0.5f)
            pos_grid = pos.floor()
            frac = pos - pos_grid
            pos_grid = pos_grid.long()
            result = torch.zeros(len(x), c)
            for corner in range(8):
                weight = torch.ones(len(x))
                local = []
                for dim in range(3):
                    bit = (corner >> dim) & 1
                    weight = weight * (frac[:, dim] if bit else 1 - frac[:, dim])
                    local.append(pos_grid[:, dim] + bit)
                result = result + weight[:, None] * table[self._index(local, size, resolution)]
            out.append(result)
        return torch.cat(out, dim=1).to(self.dtype)

    @staticmethod
    def _index(local: list[torch.Tensor], hashmap_size: int, resolution: int) -> torch.Tensor:
        """grid_index: dense while the strides fit the table, else the uint32 XOR hash; then modulo."""
        stride, index = 1, torch.zeros_like(local[0])
        for dim in range(3):
            if stride > hashmap_size:
                break
            index = index + local[dim] * stride
            stride *= resolution
        if hashmap_size < stride:
            index = torch.zeros_like(local[0])
            for dim in range(3):
                index = index ^ ((local[dim] * PRIMES[dim]) & 0xFFFFFFFF)
        return index % hashmap_size


def module() -> types.ModuleType:
    """A fresh ``tinycudann`` stand-in module (its config record emptied)."""
    Encoding.configs = []
    mod = types.ModuleType("tinycudann")
    mod.Encoding = Encoding
    return mod
