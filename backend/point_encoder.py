"""The point encoder ``γ_w`` (App. B.1.2): multi-resolution dense voxel grids, optionally hash levels.

Each prompt in a batch has its own set of grids (the mapping network outputs them as one flat
parameter vector per prompt), so grids of different prompts never mix. Features of all levels are
trilinearly interpolated and concatenated: 5 dense levels × 4 features = 20 by default.
The grid spans the box [-bound, bound]^3; outside it features are zero.

Hash levels follow tiny-cuda-nn's ``HashGrid`` exactly (its table size per level, ``min(R³ rounded up to
8, 2^log2)``, dense indexing when the level fits, its spatial hash otherwise, features innermost), so
that the same parameters run through tiny-cuda-nn (``backend = "tcnn"``, point_encoder_tcnn.py) or
through PyTorch here, and a model trained with one loads in the other.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Large primes of Instant-NGP's spatial hash.
_PRIMES = (1, 2654435761, 805459861)


class PointEncoder(nn.Module):
    def __init__(self, resolutions: Sequence[int] = (9, 14, 22, 36, 58), features: int = 4,
                 bound: float = 1.0, hash_resolutions: Sequence[int] = (), hash_table_log2: int = 14,
                 shared: bool = False, init_scale: float = 1e-4, backend: str = "auto") -> None:
        super().__init__()
        self.resolutions = [int(r) for r in resolutions]
        self.hash_resolutions = [int(r) for r in hash_resolutions]
        self.features = int(features)
        self.bound = float(bound)
        self.hash_table_log2 = int(hash_table_log2)
        self.hash_table = 2 ** self.hash_table_log2
        self.hash_sizes = [hash_level_size(r, self.hash_table) for r in self.hash_resolutions]
        sizes = [self.features * r ** 3 for r in self.resolutions]
        sizes += [n * self.features for n in self.hash_sizes]
        self.sizes = sizes
        self.n_params = sum(sizes)
        self.out_dim = self.features * (len(self.resolutions) + len(self.hash_resolutions))
        # The concatenation variant has one grid for all prompts, learnt directly.
        self.shared = nn.Parameter(torch.empty(1, self.n_params).uniform_(-init_scale, init_scale)) if shared else None
        from .point_encoder_tcnn import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(f"unknown point-encoder backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.backend = backend
        self._tcnn: Any = None  # TcnnHashLevels, made on first use on a device where tiny-cuda-nn runs

    # -- parameters ----------------------------------------------------------------------------
    def levels(self, params: torch.Tensor | None, batch: int) -> list[torch.Tensor]:
        """Split flat per-prompt parameters into dense grids ``[B, C, R, R, R]`` and hash tables ``[B, T, C]``."""
        if params is None:
            if self.shared is None:
                raise ValueError("no grid parameters given, and this point encoder has no shared grid")
            params = self.shared.expand(batch, -1)
        chunks = torch.split(params, self.sizes, dim=1)
        out = []
        for r, chunk in zip(self.resolutions, chunks):
            out.append(chunk.reshape(-1, self.features, r, r, r))
        for chunk, n in zip(chunks[len(self.resolutions):], self.hash_sizes):
            out.append(chunk.reshape(-1, n, self.features))
        return out

    # -- point queries -------------------------------------------------------------------------
    def forward(self, params: torch.Tensor | None, points: torch.Tensor) -> torch.Tensor:
        """``points`` ``[B, N, 3]`` in world units → features ``[B, N, out_dim]``."""
        b = points.shape[0]
        levels = self.levels(params, b)
        u = points / self.bound  # [-1, 1] inside the box
        feats = [sample_dense(g, u) for g in levels[: len(self.resolutions)]]
        tables = levels[len(self.resolutions):]
        tcnn = self.tcnn_levels(u.device) if tables else None
        if tcnn is not None:
            feats += tcnn(tables, u)
        else:
            feats += [sample_hash(table, u, res) for table, res in zip(tables, self.hash_resolutions)]
        return torch.cat(feats, dim=-1)

    def tcnn_levels(self, device: torch.device):
        """The tiny-cuda-nn hash levels when ``backend`` picks them on ``device`` (else None)."""
        from .point_encoder_tcnn import TcnnHashLevels, use_tcnn

        if not use_tcnn(self.backend, device):
            return None
        if self._tcnn is None or self._tcnn.device != device:
            self._tcnn = TcnnHashLevels(self.hash_resolutions, self.hash_table_log2, self.features, device)
        return self._tcnn

    # -- lattice queries (mesh extraction) -----------------------------------------------------
    def lattice_slabs(self, params: torch.Tensor | None, n: int,
                      rows: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Features of one prompt at the points of an ``n³`` lattice over the box, ``rows`` z rows at
        a time: ``(z0, z1, features [out_dim, (z1 − z0)·n·n])``, channel-first, points in (z, y, x)
        order. ``params``: ``[1, n_params]`` (None for the shared grid).

        Dense levels are interpolated separably (bilinear in x, y once, then z a slab at a time), which
        is exactly the trilinear lookup at lattice points and far cheaper than per-point sampling;
        hash levels are looked up per point. Memory stays bounded by the slab, for large lattices.
        """
        levels = self.levels(params, 1)
        dense, tables = levels[: len(self.resolutions)], levels[len(self.resolutions):]
        device = levels[0].device
        gxy = [lattice_xy(g[0], n) for g in dense]
        weights = [lerp_weights(n, r, device) for r in self.resolutions]
        coords = torch.linspace(-self.bound, self.bound, n, device=device)
        for z0 in range(0, n, rows):
            z1 = min(n, z0 + rows)
            feats = [lattice_z(g, (i0[z0:z1], i1[z0:z1], t[z0:z1])).reshape(self.features, -1)
                     for g, (i0, i1, t) in zip(gxy, weights)]
            if tables:
                zz, yy, xx = torch.meshgrid(coords[z0:z1], coords, coords, indexing="ij")
                u = torch.stack([xx, yy, zz], dim=-1).reshape(1, -1, 3) / self.bound
                feats += [sample_hash(t, u, r)[0].T for t, r in zip(tables, self.hash_resolutions)]
            yield z0, z1, torch.cat(feats, dim=0)


def _split_factor(batch: int, n: int, device: torch.device) -> int:
    # grid_sample on the CPU parallelises over the batch only (forward and backward): spread
    # points over more batch entries so every core works (≈2.5× faster with 2 cores, measured on the
    # 2-core CPU of the development machine).
    if device.type != "cpu":
        return 1
    threads = torch.get_num_threads()
    k = max(1, math.ceil(threads / batch))
    return k if n >= 1024 * k else 1


_TWICE: contextvars.ContextVar[bool] = contextvars.ContextVar("att3d_twice_differentiable", default=False)


@contextlib.contextmanager
def twice_differentiable(on: bool = True) -> Iterator[None]:
    """Within: dense grid lookups that every device can differentiate twice (see :func:`sample_dense`)."""
    token = _TWICE.set(on)
    try:
        yield
    finally:
        _TWICE.reset(token)


def sample_dense(grid: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup: grid ``[B, C, R, R, R]`` (z, y, x), ``u`` ``[B, N, 3]`` (x, y, z) in [-1, 1].

    ``grid_sample``, except inside :func:`twice_differentiable` (autograd normals of lit training
    renders, whose loss differentiates the normals again): a gather-based lookup there, as CUDA has no
    second derivative of ``grid_sampler_3d`` ("derivative for aten::grid_sampler_3d_backward is not
    implemented", measured on an H200 with torch 2.11). Only there: it is ≈ 2× slower than
    ``grid_sample`` in a first-order gradient (a 16-step chain's projections: 20 s vs 9 s on the CPU)."""
    if _TWICE.get():
        return sample_dense_twice_differentiable(grid, u)
    b, n, _ = u.shape
    k = _split_factor(b, n, u.device)
    if k > 1:
        pad = (-n) % k
        if pad:
            u = torch.cat([u, u[:, :pad]], dim=1)
        uu = u.reshape(b * k, -1, 3)
        gg = grid.repeat_interleave(k, dim=0)
        out = F.grid_sample(gg, uu[:, :, None, None, :], mode="bilinear", padding_mode="zeros", align_corners=True)
        out = out.reshape(b, k, grid.shape[1], -1).permute(0, 1, 3, 2).reshape(b, -1, grid.shape[1])
        return out[:, :n]
    out = F.grid_sample(grid, u[:, :, None, None, :], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[:, :, :, 0, 0].transpose(1, 2)


def corner_weight(frac: torch.Tensor, corner: int) -> torch.Tensor:
    """Trilinear weight of cell corner ``corner`` (bit i: the upper node on axis i) at fractions ``frac``
    ``[..., 3]``: three factors multiplied out, not ``prod(-1)``, whose backward runs cumulative-product
    scans over the axis of 3 that CUDA does slowly (1.7 s of a 1.8 s lit training step on an H200)."""
    w = [frac[..., i] if (corner >> i) & 1 else 1 - frac[..., i] for i in range(3)]
    return w[0] * w[1] * w[2]


def sample_dense_twice_differentiable(grid: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`sample_dense`'s values (``grid_sample``, ``align_corners=True``, zero padding) from gathers and
    products only, so that every derivative of every order exists on every device."""
    b, c, r = grid.shape[0], grid.shape[1], grid.shape[-1]
    n = u.shape[1]
    x = (u + 1) * 0.5 * (r - 1)  # node units, (x, y, z)
    x0 = x.detach().floor()
    frac = x - x0
    x0 = x0.long()
    flat = grid.reshape(b, c, r ** 3)
    out = None
    for corner in range(8):
        off = torch.tensor([(corner >> i) & 1 for i in range(3)], device=u.device)
        idx = x0 + off
        w = corner_weight(frac, corner)  # [B, N]
        w = w * ((idx >= 0) & (idx < r)).all(-1)  # corners outside the grid read zeros
        idx = idx.clamp(0, r - 1)
        lin = idx[..., 0] + r * (idx[..., 1] + r * idx[..., 2])  # the grid is (z, y, x)
        term = flat.gather(2, lin[:, None, :].expand(b, c, n)) * w[:, None, :]
        out = term if out is None else out + term
    assert out is not None
    return out.transpose(1, 2)


def hash_level_size(resolution: int, table: int) -> int:
    """Entries of a hash level (tiny-cuda-nn's ``params_in_level``): the dense grid ``R³`` rounded up to a
    multiple of 8 when it fits in the table, else the table."""
    return min(-(-resolution ** 3 // 8) * 8, table)


def sample_hash(table: torch.Tensor, u: torch.Tensor, resolution: int) -> torch.Tensor:
    """Instant-NGP hash level in plain PyTorch, as tiny-cuda-nn's ``HashGrid`` computes it: table
    ``[B, T, C]`` (T from :func:`hash_level_size`), ``u`` ``[B, N, 3]`` (x, y, z) in [-1, 1], the
    ``R`` grid nodes spanning it. A level whose ``R³`` nodes fit in the table is indexed densely
    (``x + y·R + z·R²``), a larger one by the spatial hash (XOR of coordinate × prime, in uint32)."""
    b, n, _ = u.shape
    t, c = table.shape[1], table.shape[2]
    inside = (u.abs() <= 1).all(dim=-1, keepdim=True)
    x = (u.clamp(-1, 1) + 1) * 0.5 * (resolution - 1)
    x0 = x.floor().long()
    frac = x - x0
    dense = resolution ** 3 <= t
    out = torch.zeros(b, n, c, dtype=table.dtype, device=table.device)
    for corner in range(8):
        offs = torch.tensor([(corner >> i) & 1 for i in range(3)], device=u.device)
        idx = x0 + offs
        if dense:
            h = idx[..., 0] + idx[..., 1] * resolution + idx[..., 2] * resolution ** 2
        else:  # (int64 products: their low 32 bits, all that `% t` reads for a power-of-two t, are uint32's)
            h = (idx[..., 0] * _PRIMES[0]) ^ (idx[..., 1] * _PRIMES[1]) ^ (idx[..., 2] * _PRIMES[2])
        h = h % t
        w = corner_weight(frac, corner)[..., None]
        out = out + w * torch.gather(table, 1, h[..., None].expand(-1, -1, c))
    return out * inside


def lerp_weights(n: int, r: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``n`` lattice nodes spanning the same [-1, 1] as ``r`` grid nodes (align_corners=True):
    the lower node, the upper node and the weight of the upper one (exact trilinear at the lattice)."""
    pos = torch.linspace(0, r - 1, n, dtype=torch.float64, device=device)
    i0 = pos.floor().long().clamp(0, r - 1)
    i1 = (i0 + 1).clamp(max=r - 1)
    return i0, i1, (pos - i0).float()


def lattice_xy(grid: torch.Tensor, n: int) -> torch.Tensor:
    """One dense level ``[C, R, R, R]`` (z, y, x) interpolated along x and y: ``[C, R, n, n]``."""
    c, r = grid.shape[:2]
    out = F.interpolate(grid.reshape(1, c * r, r, r), size=(n, n), mode="bilinear", align_corners=True)
    return out.reshape(c, r, n, n)


def lattice_z(gxy: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Finish the separable lookup for some lattice z rows (from :func:`lerp_weights`): ``[C, nz, n, n]``.

    Done a slab of rows at a time, so memory stays bounded for large lattices.
    """
    i0, i1, w = rows
    w = w.view(1, -1, 1, 1)
    return gxy.index_select(1, i0) * (1 - w) + gxy.index_select(1, i1) * w
