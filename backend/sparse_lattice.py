"""Sparse mesh extraction: the density only where the surface can be, not on the whole lattice.

The lattice of :func:`backend.mesh.density_lattice` (``n`` nodes per axis over [-bound, bound]), padded
by nodes of density 0 as dense marching cubes pads it, is cut into blocks of ``s³`` cells. For every
block, :func:`block_bounds` computes an interval that holds the density at *every point* of the block
(not only at its nodes) from the model's weights alone. A block whose interval lies wholly above or
below the level holds no piece of the surface and is never evaluated; the others are evaluated node
by node (:func:`block_densities`) and marched (:func:`march_blocks`: scikit-image with a mask, the blocks
packed side by side), and vertices shared by neighbouring blocks are welded by the lattice edge they
lie on. Every cell whose corners straddle the level lies in an evaluated block, and marching cubes
reads nothing but a cell's eight corners, so the mesh is the dense path's mesh.

How the bound works (why no thin part can be missed): inside one cell of every grid level, each
hidden pre-activation ``h_j(x) = b_j + Σ_levels W_j · trilinear(grid)(x)`` is multilinear, so over a box
its extremes lie on the box's corners or on the grid planes that cross it. Per level and per axis,
the projected grid is interpolated at the block ends and the grid planes and reduced to each block's
minimum and maximum; interpolating those minima (maxima) along the next axis bounds the next
minimum from below (maximum from above), because interpolation weights are non-negative. That gives
every hidden unit an interval valid on the whole block, which then goes exactly through SiLU (its
minimum at x ≈ −1.278 included), the density row of the output layer (positive weights take the upper
end, negative the lower), the radial density bias (the norm ranges over the box) and softplus
(monotone). Hash levels, if any, add the range of their whole table. Nothing is sampled, so a ring
thinner than a block is found as surely as a sphere.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .device import chunk_points
from .mapping_network import Modulation
from .model import ATT3D
from .nerf_mlp import NeRFMLP
from .point_encoder import PointEncoder, sample_hash

# argmin and minimum of SiLU(x) = x·sigmoid(x); the minimum is rounded down, so bounds stay bounds
SILU_ARGMIN = -1.2784645427610738
SILU_MIN = -0.2784645427610738 - 1e-6

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)
Check = Callable[[float], None]  # a cancel point (fraction of the step done); raises CancelledError


def _no_check(fraction: float = 0.0) -> None:
    return None


def supports_sparse(model: ATT3D) -> bool:
    """The bound knows this architecture: dense (and hash) grid levels, then the one-hidden-layer NeRF MLP."""
    return type(getattr(model, "point_encoder", None)) is PointEncoder and type(getattr(model, "nerf", None)) is NeRFMLP


# below this lattice size the whole lattice costs less than the bound (demo model, 1 thread: 64³
# dense 0.035 s vs sparse 0.053 s; 96³ 0.099 vs 0.089; 128³ 0.21 vs 0.14)
SPARSE_FROM = 96


def default_block_size(n: int) -> int:
    """Cells per block edge. Smaller blocks evaluate fewer nodes but cost more bound arithmetic
    (demo model, 1 thread, s = 4 / 8 / 16: 128³ 0.195 / 0.143 s; 256³ 0.57 (s = 8) / 0.80 s (s = 16))."""
    return 8


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``s³`` cells over the padded lattice: padded node ``p`` ∈ [0, nb·s] is lattice node
    ``p − 1`` when 1 ≤ p ≤ n, else a padding node of density 0 (outside the box)."""

    n: int
    s: int
    bound: float

    @property
    def nb(self) -> int:
        return -(-(self.n + 1) // self.s)

    @property
    def step(self) -> float:
        return 2 * self.bound / (self.n - 1)

    def real_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last real padded node of each block along an axis (every block has one)."""
        start = np.arange(self.nb) * self.s
        return np.maximum(start, 1), np.minimum(start + self.s, self.n)

    def has_padding(self) -> np.ndarray:
        start = np.arange(self.nb) * self.s
        return (start == 0) | (start + self.s > self.n)

    def world(self, p: _Array) -> _Array:
        return (p - 1) * self.step - self.bound


# -- the bound ---------------------------------------------------------------------------------

def _windows(grid_units: tuple[np.ndarray, np.ndarray], r: int, device: torch.device):
    """For per-block intervals [u0, u1] in a level's grid units: the coordinates where a piecewise-
    linear function of the grid can take its extremes (block ends and grid planes) as a linear
    interpolation from the ``r`` grid nodes (lower node, upper weight), each block's first and last
    coordinate, and the widest window (``last − first``, known here on the host: reading it from the
    device would synchronise a GPU at every reduction)."""
    u0, u1 = grid_units
    coords = np.unique(np.concatenate([u0, u1, np.arange(r, dtype=np.float64)]))
    i0 = np.clip(np.floor(coords), 0, r - 2).astype(np.int64)
    first = np.searchsorted(coords, u0)
    last = np.searchsorted(coords, u1)
    tensors = tuple(torch.from_numpy(a).to(device) for a in (i0, (coords - i0).astype(np.float32), first, last))
    return (*tensors, int((last - first).max()))


@lru_cache(maxsize=32)
def _grid_tables(grid: BlockGrid, resolutions: tuple[int, ...], device: torch.device) -> tuple:
    """What the bound reads of the grid alone, on ``device``, uploaded once per (grid, dense level
    resolutions, device): every copy from the host synchronises a GPU (a copy from pageable memory waits
    for the stream), and there are 4 per level. → (per level :func:`_windows`, the blocks' first and last
    real node coordinates ``[nb]`` each, which blocks have padding nodes ``[nb]``)."""
    first_p, last_p = grid.real_nodes()
    x0, x1 = grid.world(first_p.astype(np.float64)), grid.world(last_p.astype(np.float64))
    f0, f1 = (x0 + grid.bound) / (2 * grid.bound), (x1 + grid.bound) / (2 * grid.bound)  # in [0, 1]
    windows = [_windows((f0 * (r - 1), f1 * (r - 1)), r, device) for r in resolutions]
    t0, t1 = torch.from_numpy(x0).float().to(device), torch.from_numpy(x1).float().to(device)
    return windows, t0, t1, torch.from_numpy(grid.has_padding()).to(device)


def _lerp_rows(t: torch.Tensor, i0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` interpolated: ``(1 − w)·t[i0] + w·t[i0 + 1]`` (w ≥ 0, so bounds stay bounds)."""
    w = w.view(-1, *([1] * (t.dim() - 1)))
    a = t.index_select(0, i0)
    # in place: torch.lerp with a broadcast weight is 3–5× slower here
    return a.add_(t.index_select(0, i0 + 1).sub_(a).mul_(w))


def _window_reduce(lo: torch.Tensor, hi: torch.Tensor, first: torch.Tensor, last: torch.Tensor,
                   widest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum of ``lo`` and maximum of ``hi`` over row windows [first, last] (rows are dim 0), the
    widest ``widest`` rows long."""
    out_lo = lo.index_select(0, first)
    out_hi = hi.index_select(0, first)
    for k in range(1, widest + 1):
        idx = torch.minimum(first + k, last)
        out_lo = torch.minimum(out_lo, lo.index_select(0, idx))
        out_hi = torch.maximum(out_hi, hi.index_select(0, idx))
    return out_lo, out_hi


def _next_axis(t: torch.Tensor) -> torch.Tensor:
    """``[a, b, c, d]`` → ``[d, a, b, c]`` as rows: the axis to reduce next leads."""
    return t.permute(3, 0, 1, 2).reshape(t.shape[3], -1)


def _silu_interval(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = F.silu(lo), F.silu(hi)
    low = torch.where((lo < SILU_ARGMIN) & (hi > SILU_ARGMIN), torch.full_like(a, SILU_MIN), torch.minimum(a, b))
    return low, torch.maximum(a, b)


@torch.no_grad()
def block_bounds(model: ATT3D, mod: Modulation, grid: BlockGrid,
                 check: Check = _no_check) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of the density over each block, ``[nb, nb, nb]`` indexed ``[x, y, z]``.

    Padding nodes are not included (their density is 0). A few hidden units at a time, so the
    stages' arrays stay in cache (the work is memory-bound: 2–3× faster than all units at once).
    """
    pe, nerf = model.point_encoder, model.nerf
    dev = mod.v.device
    one = mod.select([0])
    levels = pe.levels(one.params, 1)
    nb = grid.nb
    w1, b1 = nerf.hidden.weight.detach(), nerf.hidden.bias.detach()
    hidden = w1.shape[0]
    n_feat = pe.out_dim
    if model.config.mapping == "concat":  # v is the same at every point: part of the bias
        b1 = b1 + w1[:, n_feat:] @ one.v[0]
    windows, t0, t1, _ = _grid_tables(grid, tuple(pe.resolutions), dev)
    c = pe.features
    n_dense = len(pe.resolutions)
    base_lo, base_hi = b1.clone(), b1.clone()
    for k, table in enumerate(levels[n_dense:]):
        # trilinear weights are convex: a hash level's features lie in the hull of its table
        proj = w1[:, (n_dense + k) * c:(n_dense + k + 1) * c] @ table[0].T  # [H, T]
        base_lo += proj.amin(1)
        base_hi += proj.amax(1)
    dense = []
    for k, (g, r) in enumerate(zip(levels[:n_dense], pe.resolutions)):
        dense.append((g[0], w1[:, k * c:(k + 1) * c], r, windows[k]))
    w2, b2 = nerf.out.weight[0], nerf.out.bias[0]
    raw_lo = b2.detach().expand(nb, nb, nb).clone()  # [z, y, x] (not float(b2): a GPU sync)
    raw_hi = raw_lo.clone()
    widest = max(len(win[0]) for *_, win in dense) * nb * nb
    step = max(1, min(hidden, (1 << 18) // widest))
    for h0 in range(0, hidden, step):
        units = slice(h0, min(hidden, h0 + step))
        hc = units.stop - units.start
        h_lo = base_lo[units].expand(nb, nb, nb, hc).clone()
        h_hi = base_hi[units].expand(nb, nb, nb, hc).clone()
        for g, w, r, (i0, wt, first, last, widest) in dense:
            proj = torch.einsum("hc,czyx->hzyx", w[units], g)  # [hc, z, y, x]
            # x: exact extremes of the piecewise-linear rows over each block's x range
            a = _lerp_rows(_next_axis(proj), i0, wt)
            lo, hi = _window_reduce(a, a, first, last, widest)
            # y, then z: interpolated minima (maxima) bound the minimum from below (above)
            lo, hi = (_next_axis(t.view(nb, hc, r, r)) for t in (lo, hi))  # [y, bx·hc·z]
            lo, hi = _window_reduce(_lerp_rows(lo, i0, wt), _lerp_rows(hi, i0, wt), first, last, widest)
            lo, hi = (_next_axis(t.view(nb, nb, hc, r)) for t in (lo, hi))  # [z, by·bx·hc]
            lo, hi = _window_reduce(_lerp_rows(lo, i0, wt), _lerp_rows(hi, i0, wt), first, last, widest)
            h_lo += lo.view(nb, nb, nb, hc)
            h_hi += hi.view(nb, nb, nb, hc)
        s_lo, s_hi = _silu_interval(h_lo, h_hi)
        w_pos, w_neg = w2[units].clamp(min=0), w2[units].clamp(max=0)
        raw_lo += s_lo @ w_pos + s_hi @ w_neg
        raw_hi += s_hi @ w_pos + s_lo @ w_neg
        check(units.stop / hidden)
    # the radial density bias over a block: the norm ranges from the box's nearest point to its farthest corner
    near = torch.where((t0 <= 0) & (t1 >= 0), torch.zeros_like(t0), torch.minimum(t0.abs(), t1.abs())) ** 2
    far = torch.maximum(t0.abs(), t1.abs()) ** 2
    bias_a = nerf.radial_density_bias((near[:, None, None] + near[None, :, None] + near[None, None, :]).sqrt())
    bias_b = nerf.radial_density_bias((far[:, None, None] + far[None, :, None] + far[None, None, :]).sqrt())
    lo = F.softplus(raw_lo + torch.minimum(bias_a, bias_b))
    hi = F.softplus(raw_hi + torch.maximum(bias_a, bias_b))
    return lo.permute(2, 1, 0), hi.permute(2, 1, 0)


def surface_blocks(model: ATT3D, mod: Modulation, grid: BlockGrid, level: float,
                   check: Check = _no_check) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks whose nodes may straddle ``level``: a mask ``[nb, nb, nb]`` (x, y, z), and the blocks'
    lower density bounds (to tell wholly-inside blocks from wholly-outside ones)."""
    lo, hi = block_bounds(model, mod, grid, check)
    # a margin for float rounding between the bound's arithmetic and the nodes' own
    eps = 1e-4 * (1 + abs(level))
    pad = _grid_tables(grid, tuple(model.point_encoder.resolutions), lo.device)[3]
    with_pad = pad[:, None, None] | pad[None, :, None] | pad[None, None, :]
    # a block with padding nodes (density 0 < level) straddles as soon as it can reach the level
    return (hi >= level - eps) & ((lo <= level + eps) | with_pad), lo


# -- node densities of some blocks ---------------------------------------------------------------

class NodeField:
    """The density at padded lattice nodes, for sets of nodes that are a product of per-axis offsets
    within blocks (whole blocks, or their faces).

    Each dense level is interpolated along z at every lattice z once and stored as rows of ``s``
    consecutive z values (``[r·r·nb, s·C]``, small). A column of a block's nodes (one x, one y, its ``s``
    z values) is then the bilinear mix of four such rows per level: one ``embedding_bag`` over all
    levels (a fused gather and weighted sum) gives it, exactly the trilinear lookup, with one index
    per ``s`` nodes. Indices and weights come from per-axis tables, broadcast over the product.
    """

    def __init__(self, model: ATT3D, mod: Modulation, grid: BlockGrid) -> None:
        pe = model.point_encoder
        dev = mod.v.device
        one = mod.select([0])
        s, nb = grid.s, grid.nb
        self.model, self.grid, self.device = model, grid, dev
        self.levels = pe.levels(one.params, 1)
        self.v = one.v[0] if model.config.mapping == "concat" else None
        n_dense = len(pe.resolutions)
        rows, ax, ay, ws, corners = [], [], [], [], []
        start = 0
        p = torch.arange(nb * s + 1, device=dev)
        for g, r in zip(self.levels[:n_dense], pe.resolutions):
            i0, w = _lerp_table(grid, r, dev)
            gl = g[0].permute(1, 2, 3, 0)  # [z, y, x, C]
            wz = w[:nb * s, None, None, None]
            zt = gl[i0[:nb * s]] + (gl[i0[:nb * s] + 1] - gl[i0[:nb * s]]) * wz  # [nb·s, y, x, C]
            c = zt.shape[-1]
            rows.append(zt.view(nb, s, r, r, c).permute(2, 3, 0, 1, 4).reshape(r * r * nb, s * c))
            ax.append(start + i0 * nb)  # row = start + ((y·r + x)·nb + bz)
            ay.append(i0 * r * nb)
            ws.append(w)
            corners.append([0, nb, r * nb, r * nb + nb])
            start += rows[-1].shape[0]
        self.table = torch.cat(rows)
        self.features = c
        self.ax, self.ay = (torch.stack(t, 1).int() for t in (ax, ay))  # [P, L]
        self.w = torch.stack(ws, 1)
        self.corner = torch.tensor(corners, device=dev, dtype=torch.int32)  # [L, 4]
        self.coord = grid.world(p.float())
        self.r2 = self.coord ** 2
        self.real = ((p >= 1) & (p <= grid.n)).float()

    def product(self, blocks: torch.Tensor, ox: torch.Tensor, oy: torch.Tensor, oz: torch.Tensor,
                check: Check = _no_check, max_points: int | None = None) -> torch.Tensor:
        """Density at nodes ``block·s + (ox × oy × oz)`` of each block ``[K, 3]`` → ``[K, |ox|, |oy|, |oz|]``,
        ``max_points`` at a time (default: 2¹⁶ on a CPU, 2²¹ on a GPU). Padding nodes are not set to 0
        here (see :func:`block_densities`)."""
        pe, s = self.model.point_encoder, self.grid.s
        shape = (len(ox), len(oy), len(oz))
        n_lv = self.corner.shape[0]
        out = torch.empty(len(blocks), *shape, device=self.device)
        per_chunk = max(1, (max_points or chunk_points(self.device, 1 << 16)) // math.prod(shape))
        for k0 in range(0, len(blocks), per_chunk):
            b = blocks[k0:k0 + per_chunk]
            k = len(b)
            px, py, pz = b[:, 0:1] * s + ox, b[:, 1:2] * s + oy, b[:, 2:3] * s + oz  # [k, |o|]
            base = self.ax[px][:, :, None, :] + self.ay[py][:, None, :, :] + b[:, 2, None, None, None].int()
            wx, wy = self.w[px][:, :, None, :], self.w[py][:, None, :, :]  # [k, X, Y, L]
            bag_w = torch.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx], -1)
            cols = F.embedding_bag((base[..., None] + self.corner).view(-1, 4), self.table,
                                   per_sample_weights=bag_w.view(-1, 4), mode="sum")
            cols = cols.view(k, shape[0], shape[1], n_lv, s, self.features)
            if shape[2] != s:
                cols = cols.index_select(4, oz)
            feats = cols.permute(3, 5, 0, 1, 2, 4).reshape(n_lv * self.features, -1)  # [L·C, nodes]
            if pe.hash_resolutions:
                cx, cy, cz = self.coord[px], self.coord[py], self.coord[pz]
                pts = torch.stack(torch.broadcast_tensors(cx[:, :, None, None], cy[:, None, :, None],
                                                          cz[:, None, None, :]), -1).reshape(1, -1, 3)
                n_dense = len(pe.resolutions)
                feats = torch.cat([feats] + [sample_hash(t, pts / pe.bound, r)[0].T
                                             for t, r in zip(self.levels[n_dense:], pe.hash_resolutions)])
            r2 = self.r2[px][:, :, None, None] + self.r2[py][:, None, :, None] + self.r2[pz][:, None, None, :]
            mlp_density(self.model.nerf, feats, r2.sqrt_().view(-1), self.v, out[k0:k0 + k].view(-1))
            check((k0 + k) / len(blocks))
        return out


def mlp_density(nerf: NeRFMLP, feats: torch.Tensor, radius: torch.Tensor, v: torch.Tensor | None,
                out: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """:meth:`NeRFMLP.density_channels_first` into ``out``, ``chunk`` points at a time: on a CPU 2¹⁴, so
    the ``[hidden, chunk]`` activations stay in cache between the product, SiLU and the output row (2×
    faster than 2¹⁶ points at a time on the 2-core development CPU); on a GPU 2²¹."""
    chunk = chunk or chunk_points(feats.device, 1 << 14)
    for a in range(0, feats.shape[1], chunk):
        out[a:a + chunk] = nerf.density_channels_first(feats[:, a:a + chunk], radius[a:a + chunk], v)
    return out


def _lerp_table(grid: BlockGrid, r: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For every padded node along an axis: its lower grid node and the upper one's weight (exact
    trilinear at lattice nodes, as :func:`~backend.point_encoder.lerp_weights`; padding nodes clamp,
    their value is reset to 0)."""
    p = torch.arange(grid.nb * grid.s + 1, dtype=torch.float64, device=device)
    u = ((p - 1) * (r - 1) / (grid.n - 1)).clamp(0, r - 1)
    i0 = u.floor().clamp(0, r - 2)
    return i0.long(), (u - i0).float()


@torch.no_grad()
def block_densities(model: ATT3D, mod: Modulation, grid: BlockGrid, surface: torch.Tensor,
                    check: Check = _no_check) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(s + 1)³`` node densities of every block in the mask ``surface`` ``[nb, nb, nb]``:
    ``(blocks [K, 3], values [K, s + 1, s + 1, s + 1])``, both (x, y, z).

    Each node is evaluated once: a block owns its nodes [b·s, b·s + s) on each axis; a surface block
    reads its far faces from the neighbours that own them, of which only the near faces are evaluated
    when they are not surface blocks themselves."""
    dev = surface.device
    s, nb = grid.s, grid.nb
    field = NodeField(model, mod, grid)
    # blocks whose own nodes are needed: the surface blocks and their lower neighbours' upper sides
    padded = F.pad(surface, (1, 0, 1, 0, 1, 0))
    needed = torch.zeros_like(surface)
    for corner in range(8):
        ex, ey, ez = corner & 1, (corner >> 1) & 1, (corner >> 2) & 1
        needed |= padded[1 - ex:1 - ex + nb, 1 - ey:1 - ey + nb, 1 - ez:1 - ez + nb]
    slot = torch.full((nb + 1, nb + 1, nb + 1), -1, dtype=torch.long, device=dev)
    owners = needed.nonzero()
    n_own = len(owners)
    slot[owners[:, 0], owners[:, 1], owners[:, 2]] = torch.arange(n_own, device=dev)
    slot[slot < 0] = n_own  # beyond the last block: a slot of zeros (padding nodes)
    own = torch.zeros(n_own + 1, s, s, s, device=dev)
    full = surface[owners[:, 0], owners[:, 1], owners[:, 2]]
    b_full, b_face = owners[full], owners[~full]
    # progress by nodes: whole blocks, then the three near faces of the others
    work = np.array([len(b_full) * s ** 3] + [len(b_face) * s * s] * 3, np.float64)
    done = np.concatenate([[0.0], np.cumsum(work) / max(1.0, work.sum())])

    def part(i: int) -> Check:
        return lambda f: check(done[i] + (done[i + 1] - done[i]) * f)

    every = torch.arange(s, device=dev)
    own[slot[b_full[:, 0], b_full[:, 1], b_full[:, 2]]] = field.product(b_full, every, every, every, check=part(0))
    # a neighbour's near faces, as three products: x = 0; y = 0 (x > 0); z = 0 (x, y > 0)
    ids = slot[b_face[:, 0], b_face[:, 1], b_face[:, 2]]
    zero, rest = every[:1], every[1:]
    for i, (ox, oy, oz) in enumerate(((zero, every, every), (rest, zero, every), (rest, rest, zero))):
        if len(b_face) and len(ox) and len(oy):
            vals = field.product(b_face, ox, oy, oz, check=part(i + 1))
            own[ids[:, None, None, None], ox[:, None, None], oy[None, :, None], oz[None, None, :]] = vals
    blocks = surface.nonzero()
    q = torch.arange(s + 1, device=dev)
    l = torch.stack(torch.meshgrid(q, q, q, indexing="ij"), -1).reshape(-1, 3)  # [(s+1)³, 3]
    e = (l == s).long()
    owner = blocks[:, None, :] + e[None]  # the block that owns each node
    ids = slot[owner[..., 0], owner[..., 1], owner[..., 2]]
    loc = l - s * e
    values = own[ids, loc[None, :, 0], loc[None, :, 1], loc[None, :, 2]].view(len(blocks), s + 1, s + 1, s + 1)
    real = field.real[blocks[:, :, None] * s + q]  # [K, 3, s + 1]: padding nodes have density 0
    return blocks, values * real[:, 0, :, None, None] * real[:, 1, None, :, None] * real[:, 2, None, None, :]


# -- marching cubes on blocks --------------------------------------------------------------------

def _edge_keys(p: np.ndarray, size: int) -> np.ndarray:
    """A key per vertex at lattice coordinates ``p`` ``[V, 3]``: the lattice edge it lies on (equal for
    the copies of a vertex in neighbouring blocks or slabs), or its node; a vertex inside a cell
    (marching cubes' centre vertices of ambiguous cases) gets a key of its own."""
    near = np.rint(p)
    off = np.abs(p - near) > 1e-4
    n_off = off.sum(1)
    axis = np.where(n_off == 1, off.argmax(1), 3)
    base = np.where(off, np.floor(p), near).astype(np.int64)
    key = ((base[:, 0] * size + base[:, 1]) * size + base[:, 2]) * 4 + axis
    inner = n_off > 1
    key[inner] = -1 - np.nonzero(inner)[0]
    return key


def weld(points: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge the copies of vertices that pieces marched apart share (same lattice edge); drop faces
    that became degenerate. ``points`` in lattice units (< ``size`` per axis)."""
    _, first, inverse = np.unique(_edge_keys(points, size), return_index=True, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    return points[first], faces.astype(np.int64)


def march_blocks(values: np.ndarray, blocks: np.ndarray, grid: BlockGrid, level: float,
                 check: Check = _no_check, voxels_per_call: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes (scikit-image) on blocks ``values [K, s+1, s+1, s+1]`` at ``blocks [K, 3]``, welded
    into one mesh in world units, faces counter-clockwise seen from outside: the same vertices and
    faces as one call on the whole (padded) lattice. About ``voxels_per_call`` per call (a cancel point)."""
    from skimage.measure import marching_cubes as mc

    s, q = grid.s, grid.s + 1
    per_call = max(1, voxels_per_call // q ** 3)
    all_v, all_f, n_v = [], [], 0
    for k0 in range(0, len(blocks), per_call):
        vals, blk = values[k0:k0 + per_call], blocks[k0:k0 + per_call]
        if not (vals.max() > level and vals.min() < level):
            continue  # no cell of these blocks straddles the level
        # pack the blocks into a cube of slots; a mask drops the cells between neighbouring slots
        # (scikit-image's mask enables the cell whose upper corner it marks)
        a = math.ceil(len(blk) ** (1 / 3))
        c = -(-len(blk) // (a * a))
        slots = np.zeros((a * a * c, q, q, q), np.float32)
        slots[:len(blk)] = vals
        vol = slots.reshape(a, a, c, q, q, q).transpose(0, 3, 1, 4, 2, 5).reshape(a * q, a * q, c * q)
        keep = [np.arange(m * q) % q != 0 for m in (a, a, c)]
        mask = keep[0][:, None, None] & keep[1][None, :, None] & keep[2][None, None, :]
        try:
            v, f, _, _ = mc(vol, level=level, gradient_direction="descent", allow_degenerate=False, mask=mask)
        except RuntimeError:  # straddling values, but only across masked-out cells
            continue
        slot = np.floor((v + 0.5) / q).astype(np.int64)
        k = (slot[:, 0] * a + slot[:, 1]) * c + slot[:, 2]
        all_v.append(blk[k] * s + (v - slot * q))  # padded lattice coordinates
        all_f.append(f + n_v)
        n_v += len(v)
        check((k0 + len(blk)) / len(blocks))
    if not all_v:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    points, faces = weld(np.concatenate(all_v), np.concatenate(all_f), grid.nb * s + 1)
    # skimage orients faces for 'descent' inward-facing for a density (high inside): flip to outward.
    return grid.world(points).astype(np.float32), faces[:, ::-1].copy()


def march_blocks_torch(values: torch.Tensor, blocks: torch.Tensor, grid: BlockGrid, level: float,
                       check: Check = _no_check) -> tuple[np.ndarray, np.ndarray]:
    """:func:`march_blocks` with :mod:`backend.marching_cubes`, on the device of ``values``: the blocks'
    cells whose corners straddle the level, marched at once and welded by lattice edge there (no
    copy of the lattice to the host). The same mesh as scikit-image's where a cell is unambiguous. One
    call (0.3 s at 512³ on the 2-core CPU, milliseconds on a GPU), then ``check(1.0)``."""
    from .marching_cubes import corner_offsets, marching_cubes_cells

    s = grid.s
    if len(blocks) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    dev = values.device
    # corner c of cell (i, j, k) of a block is node (i, j, k) + offset(c) of its (s + 1)³ values
    q = torch.arange(s, device=dev)
    local = torch.stack(torch.meshgrid(q, q, q, indexing="ij"), -1).reshape(-1, 3)  # [s³, 3]
    node = local[:, None, :] + corner_offsets(dev)[None]  # [s³, 8, 3]
    corner = (node[..., 0] * (s + 1) + node[..., 1]) * (s + 1) + node[..., 2]  # (no upload of a stride: a sync)
    flat = values.reshape(len(blocks), -1)
    inside = (flat > level)[:, corner]  # [K, s³, 8], as bytes: the values of crossed cells only are read
    k, cell = (inside.any(-1) & ~inside.all(-1)).nonzero(as_tuple=True)
    origins = blocks[k] * s + local[cell]
    v, f = marching_cubes_cells(flat[k[:, None], corner[cell]], origins, level, grid.nb * s + 1)
    check(1.0)
    return grid.world(v.double().cpu().numpy()).astype(np.float32), f.cpu().numpy()


def march_filled(blocks: torch.Tensor, values: torch.Tensor, lower: torch.Tensor, grid: BlockGrid, level: float,
                 mcubes, check: Check = _no_check, layers: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """PyMCubes (no mask) on the padded lattice rebuilt from the evaluated blocks, x slabs of about
    ``layers`` cells at a time. Nodes outside them get a stand-in on their side of the level (0 below,
    ``2·level + 1`` above): marching cubes gives the same mesh as on the true lattice, since a vertex
    comes only from an edge that straddles the level, and both its ends are true values."""
    s, nb, q = grid.s, grid.nb, grid.s + 1
    size = nb * s + 1
    dev = values.device
    owner = torch.arange(size, device=dev).div(s, rounding_mode="floor").clamp(max=nb - 1)
    filler = (lower > level).float() * (2 * level + 1)  # [nb, nb, nb]
    per = max(1, layers // s)
    local = torch.arange(q, device=dev)
    pieces: list[np.ndarray] = []
    piece_faces: list[np.ndarray] = []
    n_v = 0
    for bx0 in range(0, nb, per):
        bx1 = min(nb, bx0 + per)
        x0, x1 = bx0 * s, bx1 * s  # nodes x0..x1 (inclusive)
        vol = filler[owner[x0:x1 + 1]][:, owner][:, :, owner].clone()
        inside = (blocks[:, 0] >= bx0) & (blocks[:, 0] < bx1)
        b = blocks[inside]
        ix = (b[:, 0:1] * s + local - x0)[:, :, None, None]
        iy = (b[:, 1:2] * s + local)[:, None, :, None]
        iz = (b[:, 2:3] * s + local)[:, None, None, :]
        vol[ix, iy, iz] = values[inside]
        lattice = vol.cpu().numpy().astype(np.float64)
        if lattice.max() > level and lattice.min() < level:
            v, f = mcubes.marching_cubes(lattice, float(level))
            pieces.append(v + [x0, 0, 0])
            piece_faces.append(f.astype(np.int64) + n_v)
            n_v += len(v)
        check(bx1 / nb)
    if not pieces:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    points, faces = weld(np.concatenate(pieces), np.concatenate(piece_faces), size)
    return grid.world(points).astype(np.float32), faces  # PyMCubes winds faces outward already
