"""Mesh extraction: density on an N³ lattice → marching cubes → vertex colours from the colour
field; optional simplification and UV-atlas texture bake; consistent-topology sequences.

Meshes are plain numpy (:class:`Mesh`, in ``mesh_type``), in the model's world frame (Z up, front −Y).
"""
from __future__ import annotations

import numpy as np
import torch

# the one resolution check is the protocol's; the CLI, inference and the service import it from here
from blender_att3d.wire import check_resolution

from .mapping_network import Modulation
from .mesh_type import Mesh
from .model import ATT3D
from .texture import bake_texture


@torch.no_grad()
def density_lattice(model: ATT3D, mod: Modulation, resolution: int = 128,
                    max_points: int = 1 << 16) -> np.ndarray:
    """Density of one prompt on an ``N³`` lattice over [-bound, bound]³, indexed ``[x, y, z]``.

    The point encoder gives the features of a slab of z rows at a time, channel-first
    (:meth:`PointEncoder.lattice_slabs`: separable interpolation, exact at lattice points), and the
    NeRF MLP turns them into densities as matrix products (:meth:`NeRFMLP.density_channels_first`),
    at most ``max_points`` points at a time: the same density as ``model.density`` there, far cheaper.
    """
    cfg = model.config
    n = check_resolution(resolution)
    dev = mod.v.device
    one = mod.select([0])
    coords = torch.linspace(-cfg.bound, cfg.bound, n, device=dev)
    r2_xy = (coords[None, :] ** 2 + coords[:, None] ** 2).reshape(-1)  # [n*n] (y, x)
    v = one.v[0] if cfg.mapping == "concat" else None  # v is constant over the lattice
    out = torch.empty(n, n * n, device=dev)  # [z, y*x]
    for z0, z1, feats in model.point_encoder.lattice_slabs(one.params, n, max(1, max_points // (n * n))):
        radius = (r2_xy[None, :] + coords[z0:z1, None] ** 2).sqrt()
        out[z0:z1] = model.nerf.density_channels_first(feats, radius.reshape(-1), v).view(z1 - z0, -1)
    return out.view(n, n, n).permute(2, 1, 0).contiguous().cpu().numpy()


def marching_cubes(volume: np.ndarray, level: float, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Isosurface of an ``[x, y, z]`` lattice spanning [-bound, bound]³; closed (the volume is padded)."""
    from skimage.measure import marching_cubes as mc

    n = volume.shape[0]
    if not (volume.max() > level):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    padded = np.pad(volume, 1, mode="constant", constant_values=min(0.0, float(volume.min())))
    verts, faces, _, _ = mc(padded, level=level, gradient_direction="descent", allow_degenerate=False)
    step = 2 * bound / (n - 1)
    verts = (verts - 1) * step - bound
    # skimage orients faces for 'descent' inward-facing for a density (high inside): flip to outward.
    return verts.astype(np.float32), faces[:, ::-1].astype(np.int64).copy()


@torch.no_grad()
def field_colors(model: ATT3D, mod: Modulation, vertices: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Albedo of the colour field at the given points (one prompt)."""
    if len(vertices) == 0:
        return np.zeros((0, 3), np.float32)
    dev = mod.v.device
    one = mod.select([0])
    out = []
    for s in range(0, len(vertices), chunk):
        pts = torch.from_numpy(np.ascontiguousarray(vertices[s:s + chunk])).to(dev)[None]
        out.append(model.field(one, pts)[1][0].cpu())
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


def extract_mesh(model: ATT3D, mod: Modulation, resolution: int = 128, simplify_to: int | None = None,
                 texture_size: int | None = None, level: float | None = None) -> Mesh:
    """The whole path: lattice → marching cubes → (simplify) → colours (→ texture)."""
    cfg = model.config
    vol = density_lattice(model, mod, resolution)
    verts, faces = marching_cubes(vol, cfg.iso_density if level is None else level, cfg.bound)
    if simplify_to:
        verts, faces = simplify(verts, faces, simplify_to)
    mesh = Mesh(verts, faces, field_colors(model, mod, verts), meta={"resolution": resolution})
    if texture_size:
        mesh = bake_texture(mesh, lambda p: field_colors(model, mod, p), texture_size)
    return mesh


# -- consistent topology ------------------------------------------------------------------------

def vertex_neighbors_mean(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mean of each vertex's one-ring neighbours (for the fallback smoothing)."""
    v = torch.from_numpy(vertices)
    f = torch.from_numpy(faces)
    src = torch.cat([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    dst = torch.cat([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    acc = torch.zeros_like(v).index_add_(0, src, v[dst])
    cnt = torch.zeros(len(v)).index_add_(0, src, torch.ones(len(src))).clamp_min(1)
    return (acc / cnt[:, None]).numpy()


def project_to_isosurface(model: ATT3D, mod: Modulation, vertices: np.ndarray, faces: np.ndarray,
                          level: float | None = None, iterations: int = 6, max_step: float | None = None,
                          tol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move vertices onto this prompt's isosurface with damped Newton steps along the density gradient.

    Vertices whose density stays far from the level (no surface nearby, vanishing gradient) fall
    back to the average of their neighbours, so the mesh stays valid (finite, same faces).
    Returns the new vertices and the boolean mask of converged vertices.
    """
    cfg = model.config
    level = cfg.iso_density if level is None else level
    max_step = max_step if max_step is not None else 2 * cfg.bound / 64
    tol = tol if tol is not None else 0.05 * level
    one = mod.select([0]).detach()
    x = torch.from_numpy(vertices.copy()).to(mod.v.device)[None]
    for _ in range(iterations):
        with torch.enable_grad():
            x.requires_grad_(True)
            d = model.density(one, x)
            (g,) = torch.autograd.grad(d.sum(), x)
        x = x.detach()
        r = (d.detach() - level)[..., None]
        step = -r * g / (g.pow(2).sum(-1, keepdim=True) + 1e-8)
        norm = step.norm(dim=-1, keepdim=True)
        step = step * (max_step / norm.clamp_min(max_step))  # clamp the step length
        x = x + step
        x = x.clamp(-cfg.bound, cfg.bound)
    with torch.no_grad():
        resid = (model.density(one, x) - level).abs()[0]
    out = x[0].cpu().numpy()
    ok = (resid < tol).cpu().numpy() & np.isfinite(out).all(axis=1)
    if not ok.all():
        out = np.where(np.isfinite(out), out, vertices)
        for _ in range(3):
            out = np.where(ok[:, None], out, vertex_neighbors_mean(out, faces))
    return out.astype(np.float32), ok
