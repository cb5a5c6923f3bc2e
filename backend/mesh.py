"""Mesh extraction: density → marching cubes → vertex colours from the colour field; optional
Taubin smoothing, simplification and UV-atlas texture bake (chains: backend/chain.py).

Two ways to the surface, the same mesh (``tests/backend/test_sparse_extraction.py``):

- ``sparse``: bound the density over blocks of the lattice, evaluate only the blocks the surface can
  cross, march those (:mod:`backend.sparse_lattice`, which says how the bound works);
- ``dense`` (the reference): the density at every node of the ``N³`` lattice, one marching cubes;
- ``auto`` (the default): sparse from 96³ on, dense below (cheaper there).

Marching cubes is scikit-image's (Lewiner; the fastest on a CPU), PyMCubes' (``mc="pymcubes"``) or our
PyTorch one (``mc="torch"``, :mod:`backend.marching_cubes`: on the model's device, a few ms on a GPU);
``mc="auto"`` (the default) takes PyTorch's on a GPU and scikit-image's elsewhere.
Meshes are the wire's :class:`~blender_att3d.wire.types.MeshData` (plain numpy), in the model's world frame
(Z up, front −Y): what the engine returns and the add-on builds, with no conversion on the way.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from blender_att3d.wire.options import DEFAULT_SMOOTH, EXTRACT_METHODS, MC_METHODS, check_extract, check_mc
from blender_att3d.wire.types import MeshData

from . import sparse_lattice
from .device import chunk_points
from .mapping_network import Modulation
from .model import ATT3D
from .progress import Checkpoint, ProgressFn
from .texture import bake_texture

__all__ = ["EXTRACT_METHODS", "MC_METHODS", "density_lattice", "extract_mesh",
           "extract_surface", "field_colors", "marching_cubes", "resolve_mc", "simplify", "check_smooth",
           "taubin_smooth", "lowpass_lattice", "lowpass_coarse", "lowpass_surface", "lattice_field",
           "upsample_lattice", "uses_lowpass", "MAX_SMOOTH", "DEFAULT_SMOOTH"]

Check = Callable[[float], None]


def _no_check(fraction: float = 0.0) -> None:
    return None


def resolve_mc(mc: str, device: torch.device | str) -> str:
    """``auto`` → ``torch`` on a GPU (no copy of the lattice to the host, a few ms) and ``skimage`` on a
    CPU (scikit-image's C code beats PyTorch's there); the others as they are."""
    mc = check_mc(mc)
    if mc == "auto":
        return "torch" if torch.device(device).type != "cpu" else "skimage"
    return mc


@torch.no_grad()
def density_lattice(model: ATT3D, mod: Modulation, resolution: int = 128,
                    max_points: int | None = None, check: Check = _no_check, tensor: bool = False) -> np.ndarray:
    """Density of one prompt on an ``N³`` lattice over [-bound, bound]³, indexed ``[x, y, z]``.

    The point encoder gives the features of a slab of z rows at a time, channel-first
    (:meth:`PointEncoder.lattice_slabs`: separable interpolation, exact at lattice points), and the
    NeRF MLP turns them into densities as matrix products (:meth:`NeRFMLP.density_channels_first`),
    2¹⁴ points at a time on a CPU so its activations stay in cache: the same density as
    ``model.density`` there, far cheaper. ``max_points`` per slab (default: 2¹⁶ on a CPU, 2²¹ on a
    GPU). ``check(fraction)`` is called after every slab (a cancel point). ``tensor``: return it as a
    tensor on the model's device (typed as an array for the callers that take numpy)
    """
    cfg = model.config
    n = int(resolution)  # (requests are checked by backend.engine)
    dev = mod.v.device
    max_points = max_points or chunk_points(dev, 1 << 16)
    one = mod.select([0])
    coords = torch.linspace(-cfg.bound, cfg.bound, n, device=dev)
    r2_xy = (coords[None, :] ** 2 + coords[:, None] ** 2).reshape(-1)  # [n*n] (y, x)
    v = one.v[0] if cfg.mapping == "concat" else None  # v is constant over the lattice
    out = torch.empty(n, n * n, device=dev)  # [z, y*x]
    for z0, z1, feats in model.point_encoder.lattice_slabs(one.params, n, max(1, max_points // (n * n))):
        radius = (r2_xy[None, :] + coords[z0:z1, None] ** 2).sqrt()
        sparse_lattice.mlp_density(model.nerf, feats, radius.reshape(-1), v, out[z0:z1].view(-1))
        check(z1 / n)
    vol = out.view(n, n, n).permute(2, 1, 0).contiguous()
    return vol if tensor else vol.cpu().numpy()  # type: ignore[return-value]


# a single marching-cubes call up to this many voxels (256³: about 0.3 s); larger volumes go in
# slabs, so a cancelled job stops between them
SLAB_VOXELS = 1 << 24


def marching_cubes(volume: np.ndarray | torch.Tensor, level: float, bound: float, method: str = "auto",
                   check: Check = _no_check, slab_voxels: int = SLAB_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """Isosurface of an ``[x, y, z]`` lattice spanning [-bound, bound]³; closed (the volume is padded),
    faces counter-clockwise seen from outside. ``method``: ``auto`` (by where the volume lies),
    ``skimage``, ``pymcubes`` or ``torch`` (on the volume's device)."""
    on = volume.device if isinstance(volume, torch.Tensor) else torch.device("cpu")
    method = resolve_mc(method, on)
    if method != "torch" and isinstance(volume, torch.Tensor):
        volume = volume.cpu().numpy()
    n = volume.shape[0]
    if not (volume.max() > level):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    if method == "torch":  # on the volume's device, in one call
        from .marching_cubes import marching_cubes_volume  # its table takes 26 ms to build: not at startup

        vol = torch.as_tensor(volume)
        v, f = marching_cubes_volume(F.pad(vol, (1,) * 6, value=min(0.0, float(vol.min()))), level)
        verts, faces = v.cpu().numpy(), f.cpu().numpy()
        check(1.0)
    else:
        padded = np.pad(volume, 1, mode="constant", constant_values=min(0.0, float(volume.min())))
        if padded.size <= slab_voxels:
            verts, faces = _march(padded, level, method)
            check(1.0)
        else:
            verts, faces = _march_slabs(padded, level, method, max(2, slab_voxels // padded[0].size), check)
    step = 2 * bound / (n - 1)
    return ((verts - 1) * step - bound).astype(np.float32), faces


def _march(volume: np.ndarray, level: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """One marching-cubes call: vertices in index units, faces outward (for high-inside values)."""
    if not (volume.max() > level and volume.min() < level):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    if method == "pymcubes":
        mcubes = import_pymcubes()
        verts, faces = mcubes.marching_cubes(np.ascontiguousarray(volume, np.float64), float(level))
        # PyMCubes already winds faces outward for high-inside values
        return verts.astype(np.float32), faces.astype(np.int64)
    from skimage.measure import marching_cubes as mc

    verts, faces, _, _ = mc(volume, level=level, gradient_direction="descent", allow_degenerate=False)
    # skimage orients faces for 'descent' inward-facing for a density (high inside): flip to outward.
    return verts, faces[:, ::-1].astype(np.int64).copy()


def import_pymcubes():
    try:
        import mcubes
    except ImportError:
        raise RuntimeError("--mc pymcubes needs the 'PyMCubes' package: pip install 'att3d[mesh]'") from None
    return mcubes


def _march_slabs(volume: np.ndarray, level: float, method: str, layers: int,
                 check: Check) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on x slabs sharing their boundary layer, welded by the lattice edge each
    vertex lies on: the same mesh as one call, with a cancel point between slabs."""
    size = max(volume.shape)
    pieces, faces, n_v = [], [], 0
    for x0 in range(0, volume.shape[0] - 1, layers):
        v, f = _march(volume[x0:x0 + layers + 1], level, method)
        if len(v):
            pieces.append(v.astype(np.float64) + [x0, 0, 0])
            faces.append(f + n_v)
            n_v += len(v)
        check(min(1.0, (x0 + layers) / volume.shape[0]))
    if not pieces:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    return sparse_lattice.weld(np.concatenate(pieces), np.concatenate(faces), size)


@torch.no_grad()
def field_colors(model: ATT3D, mod: Modulation, vertices: np.ndarray, chunk: int | None = None,
                 check: Check = _no_check) -> np.ndarray:
    """Albedo of the colour field at the given points (one prompt)."""
    if len(vertices) == 0:
        return np.zeros((0, 3), np.float32)
    dev = mod.v.device
    chunk = chunk or chunk_points(dev, 1 << 16)
    one = mod.select([0])
    out = []
    for s in range(0, len(vertices), chunk):
        pts = torch.from_numpy(np.ascontiguousarray(vertices[s:s + chunk])).to(dev)[None]
        out.append(model.field(one, pts)[1][0].cpu())
        check(min(1.0, (s + chunk) / len(vertices)))
    return torch.cat(out).numpy().astype(np.float32)


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (fast-simplification)."""
    if target_faces <= 0 or len(faces) <= target_faces:
        return vertices, faces
    try:
        import fast_simplification
    except ImportError:
        raise RuntimeError("simplification needs the 'fast-simplification' package: "
                           "pip install 'att3d[mesh]'") from None
    v, f = fast_simplification.simplify(vertices, faces.astype(np.int32),
                                        target_reduction=1 - target_faces / len(faces))
    return v.astype(np.float32), f.astype(np.int64)


#: the most Taubin iterations ``smooth`` may ask for (the CLI's ``--smooth``)
MAX_SMOOTH = 100

#: Taubin's λ/μ pair: a shrinking step then a slightly larger inflating one (pass band k < 1/λ + 1/μ
#: ≈ 0.05). Chosen on a noisy sphere and a tube two voxels thick at 64³: both keep their volume within
#: 0.6 % up to 100 iterations (0.5/−0.53 fattens the tube 17 % at 100, 0.5/−0.5 thins it 13 %)
TAUBIN_LAMBDA, TAUBIN_MU = 0.6, -0.62


def check_smooth(smooth: object) -> int:
    """A number of Taubin smoothing iterations: an integer in 0–:data:`MAX_SMOOTH` (0: off)."""
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or not 0 <= smooth <= MAX_SMOOTH:
        raise ValueError(f"smooth must be a whole number of iterations in 0–{MAX_SMOOTH} (0: off), got {smooth!r}")
    return int(smooth)


def taubin_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int,
                  lam: float = TAUBIN_LAMBDA, mu: float = TAUBIN_MU) -> np.ndarray:
    """Taubin λ/μ smoothing (Taubin 1995): per iteration, every vertex moves ``lam`` of the way to the
    mean of its one-ring neighbours, then ``mu`` (< 0) of the way, i.e. back out. A low-pass filter of
    the surface: it removes lattice-scale lumps while keeping the volume (plain Laplacian smoothing
    shrinks, most of all thin parts). The faces are unchanged; ``iterations`` 0 returns ``vertices``
    itself. Vertices without neighbours stay where they are."""
    iterations = check_smooth(iterations)
    if iterations == 0 or len(faces) == 0:
        return vertices
    import scipy.sparse as sp

    n = len(vertices)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1).astype(np.int64)
    # each undirected edge once, found by a 1-D key (np.unique(axis=0) took 12× longer: 0.12 s at 128³)
    key = np.unique(e[:, 0] * n + e[:, 1])
    a, b = key // n, key % n
    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    deg = np.asarray(adj.sum(axis=1)).ravel()
    mean = sp.diags(1.0 / np.maximum(deg, 1)) @ adj  # row-normalised: the neighbours' mean
    lonely = deg == 0
    v = vertices.astype(np.float64)
    for _ in range(iterations):
        for k in (lam, mu):
            step = mean @ v - v
            step[lonely] = 0.0
            v = v + k * step
    return v.astype(vertices.dtype, copy=False)


#: Smoothing low-passes the density before marching cubes (:func:`lowpass_lattice`): it is sampled on
#: a coarse lattice of this many nodes per unit of the box (48 across a unit-bound model), blurred by a
#: Gaussian of σ :data:`LOWPASS_SIGMA` (box units) and interpolated back onto the requested lattice.
#: The finest feature grid of a model (36³ for the demo) leaves lumps a few voxels wide in the
#: density's inner level sets, which Taubin's one-ring filter hardly reaches (demo v3, 16 unseen
#: prompts at 128³, calibrated level: normal error 22.8° → 18.7°, roughness 3.99° → 2.70°; Taubin 60
#: alone: 22.4°, 3.68°). 64 nodes with the same σ measure the same (18.7°, 2.73°) at 2.4× the cost.
LOWPASS_NODES_PER_UNIT = 24
LOWPASS_SIGMA = 0.032
#: above this lattice the low-passed lattice would be dense and large (256³ floats: 64 MB): smoothing
#: is Taubin's alone on the sparse path's mesh
LOWPASS_MAX_RESOLUTION = 256


def uses_lowpass(smooth: int, resolution: int) -> bool:
    """Whether smoothing at this lattice starts from :func:`lowpass_lattice` (the rest: Taubin's alone)."""
    return bool(smooth) and int(resolution) <= LOWPASS_MAX_RESOLUTION


def lowpass_coarse(model: ATT3D, mod: Modulation, check: Check = _no_check) -> torch.Tensor:
    """The low-passed density on its coarse lattice (:data:`LOWPASS_NODES_PER_UNIT`): the density there,
    blurred by a Gaussian of :data:`LOWPASS_SIGMA`. ``[m, m, m]`` float32 on the modulation's device."""
    from scipy.ndimage import gaussian_filter

    bound = model.config.bound
    m = max(16, int(round(LOWPASS_NODES_PER_UNIT * bound)) * 2)
    coarse = density_lattice(model, mod, m, check=check)
    sigma = LOWPASS_SIGMA / (2 * bound / (m - 1))  # in coarse steps
    return torch.from_numpy(gaussian_filter(coarse, sigma, truncate=3.0, mode="nearest")).to(mod.v.device)


def upsample_lattice(coarse: torch.Tensor, resolution: int) -> np.ndarray:
    """A lattice over the same box with ``resolution`` nodes per axis, trilinear between the coarse nodes."""
    n = int(resolution)
    if n == coarse.shape[0]:
        return coarse.cpu().numpy()
    return F.interpolate(coarse[None, None], size=(n, n, n), mode="trilinear", align_corners=True)[0, 0].cpu().numpy()


def lowpass_lattice(model: ATT3D, mod: Modulation, resolution: int = 128,
                    check: Check = _no_check) -> np.ndarray:
    """The density on an ``N³`` lattice over [-bound, bound]³ (like :func:`density_lattice`), low-passed:
    :func:`lowpass_coarse` interpolated trilinearly onto it — cheaper than the full-resolution lattice
    (demo, CPU: about 0.04 s at 128³ against 0.25 s dense and 0.1 s sparse), because a blurred field holds
    nothing finer to sample."""
    coarse = lowpass_coarse(model, mod, check=lambda f: check(0.9 * f))
    return upsample_lattice(coarse, resolution)


def lowpass_surface(model: ATT3D, mod: Modulation, resolution: int = 128, level: float | None = None,
                    mc: str = "auto", check: Check = _no_check,
                    coarse: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The isosurface of the low-passed density (``coarse``: its :func:`lowpass_coarse`, if known)."""
    cfg = model.config
    if coarse is None:
        coarse = lowpass_coarse(model, mod, check=lambda f: check(0.7 * f))
    level = cfg.iso_density if level is None else float(level)
    return marching_cubes(upsample_lattice(coarse, resolution), level, cfg.bound, resolve_mc(mc, mod.v.device),
                          check=lambda f: check(0.8 + 0.2 * f))


def lattice_field(lattice: torch.Tensor, bound: float) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Density ``[N]`` and its gradient ``[N, 3]`` at points ``[N, 3]`` by trilinear interpolation of an
    ``[x, y, z]`` lattice over [-bound, bound]³ (points outside read its faces): the low-passed field
    of :func:`lowpass_coarse` that chains settle their states on, at the cost of eight lookups a point."""
    n = lattice.shape[0]
    h = 2 * bound / (n - 1)
    flat = lattice.reshape(-1)
    # the eight corners' offsets from a cell's lower corner, (x, y, z) bits in that order
    corners = torch.tensor([(a * n + b) * n + d for a in (0, 1) for b in (0, 1) for d in (0, 1)],
                           device=lattice.device)

    def density_grad(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = ((p.to(lattice.dtype) + bound) / h).clamp(0, n - 1 - 1e-4)
        i = u.floor().long()
        fx, fy, fz = (u - i).unbind(-1)
        base = (i[:, 0] * n + i[:, 1]) * n + i[:, 2]
        # one lookup for all eight corners, a contiguous row each (a third faster than eight)
        c000, c001, c010, c011, c100, c101, c110, c111 = \
            flat.index_select(0, (corners[:, None] + base).view(-1)).view(8, -1).unbind(0)
        x00, x01 = c000 + fx * (c100 - c000), c001 + fx * (c101 - c001)  # along x, then y, then z
        x10, x11 = c010 + fx * (c110 - c010), c011 + fx * (c111 - c011)
        y0, y1 = x00 + fy * (x10 - x00), x01 + fy * (x11 - x01)
        d = y0 + fz * (y1 - y0)
        gz = y1 - y0
        gy = (x10 - x00) + fz * ((x11 - x01) - (x10 - x00))
        dx0 = (c100 - c000) + fy * ((c110 - c010) - (c100 - c000))
        dx1 = (c101 - c001) + fy * ((c111 - c011) - (c101 - c001))
        gx = dx0 + fz * (dx1 - dx0)
        return d, torch.stack([gx, gy, gz], -1) / h

    return density_grad


def extract_surface(model: ATT3D, mod: Modulation, resolution: int = 128, level: float | None = None,
                    extract: str = "auto", mc: str = "auto",
                    check: Check = _no_check) -> tuple[np.ndarray, np.ndarray]:
    """The isosurface of one prompt's density: ``(vertices [V, 3] float32, faces [F, 3] int64)``.

    ``extract="sparse"`` evaluates only the blocks of the lattice the surface can cross (the same mesh
    as ``"dense"``, which evaluates every node); ``"auto"`` is sparse from 96³ on and dense below, where
    the whole lattice costs less than the bound. Models the bound does not know, and levels ≤ 0 (no
    padding can close those surfaces), take the dense path. ``check(fraction)``: cancel points.
    """
    cfg = model.config
    n = int(resolution)
    extract, mc = check_extract(extract), resolve_mc(mc, mod.v.device)
    if extract == "auto":
        extract = "sparse" if n >= sparse_lattice.SPARSE_FROM else "dense"
    level = cfg.iso_density if level is None else float(level)
    if extract == "dense" or level <= 0 or not sparse_lattice.supports_sparse(model):
        # the lattice is most of the dense path's time (0.27 s of 0.31 s at 128³)
        vol = density_lattice(model, mod, n, check=lambda f: check(0.85 * f), tensor=mc == "torch")
        return marching_cubes(vol, level, cfg.bound, mc, check=lambda f: check(0.85 + 0.15 * f))
    grid = sparse_lattice.BlockGrid(n, sparse_lattice.default_block_size(n), cfg.bound)
    surface, lower = sparse_lattice.surface_blocks(model, mod, grid, level, check=lambda f: check(0.15 * f))
    blocks, values = sparse_lattice.block_densities(model, mod, grid, surface, check=lambda f: check(0.15 + 0.6 * f))
    if mc == "torch":
        return sparse_lattice.march_blocks_torch(values, blocks, grid, level, check=lambda f: check(0.75 + 0.25 * f))
    if mc == "pymcubes":
        return sparse_lattice.march_filled(blocks, values, lower, grid, level, import_pymcubes(),
                                           check=lambda f: check(0.75 + 0.25 * f))
    return sparse_lattice.march_blocks(values.cpu().numpy(), blocks.cpu().numpy(), grid, level,
                                       check=lambda f: check(0.75 + 0.25 * f))


def extract_mesh(model: ATT3D, mod: Modulation, resolution: int = 128, simplify_to: int | None = None,
                 texture_size: int | None = None, level: float | None = None, extract: str = "auto",
                 mc: str = "auto", progress: ProgressFn | None = None, unwrap: str = "box",
                 smooth: int = 0, lowpass: bool | None = None) -> MeshData:
    """The whole path: surface → (smoothing: ``smooth`` Taubin iterations, 0: off, after the low-passed
    density of :func:`lowpass_lattice` up to :data:`LOWPASS_MAX_RESOLUTION`; ``lowpass`` True/False
    decides that alone) → (simplify) → colours, sampled at the smoothed positions (→ texture,
    ``unwrap``: ``box`` or ``xatlas``).
    ``progress(fraction, message)`` is told how far it got, and may stop it (returning True raises
    :class:`CancelledError`)."""
    smooth = check_smooth(smooth)
    check = Checkpoint(progress, 0.0, 1.0, "extracting the mesh")
    share = (0.0, 0.8, 0.9) if texture_size else (0.0, 0.9, 1.0)
    if (uses_lowpass(smooth, resolution) if lowpass is None else lowpass):
        verts, faces = lowpass_surface(model, mod, resolution, level, mc, check=check.part(0, share[1]))
    else:
        verts, faces = extract_surface(model, mod, resolution, level, extract, mc, check=check.part(0, share[1]))
    if smooth:
        check(share[1], "smoothing", force=True)
        verts = taubin_smooth(verts, faces, smooth)
    if simplify_to:
        check(share[1], "simplifying", force=True)
        verts, faces = simplify(verts, faces, simplify_to)
    colours = check.part(share[1], share[2], "colouring")
    mesh = MeshData(verts, faces, field_colors(model, mod, verts, check=colours), meta={"resolution": resolution})
    if texture_size:
        bake = check.part(share[2], 1.0, "baking the texture")
        mesh = bake_texture(mesh, lambda p: field_colors(model, mod, p), texture_size, check=bake, unwrap=unwrap)
    check(1.0, force=True)
    return mesh
