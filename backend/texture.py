"""UV-atlas texture baking: xatlas unwraps the (simplified) mesh, every texel inside a chart gets
the colour field at its 3D point, and the charts are dilated so seams don't bleed background."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .mesh_type import Mesh


def _rasterize(uvs: np.ndarray, faces: np.ndarray,
               size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Texels covered by each UV triangle: (texel y, texel x, face index, barycentrics [K, 3])."""
    # UVs have their origin at the bottom-left (OpenGL, Blender, trimesh); image rows go down.
    img_uv = np.stack([uvs[:, 0], 1 - uvs[:, 1]], 1)
    tri = img_uv[faces] * size - 0.5  # texel-centre coordinates [F, 3, 2]
    lo = np.floor(tri.min(1)).astype(np.int64).clip(0, size - 1)
    hi = np.ceil(tri.max(1)).astype(np.int64).clip(0, size - 1)
    w = hi[:, 0] - lo[:, 0] + 1
    h = hi[:, 1] - lo[:, 1] + 1
    counts = w * h
    fid = np.repeat(np.arange(len(faces)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[fid, 0] + offs % w[fid]
    py = lo[fid, 1] + offs // w[fid]
    a, b, c = tri[fid, 0], tri[fid, 1], tri[fid, 2]
    p = np.stack([px, py], 1).astype(np.float64)
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    bary = np.stack([1 - l1 - l2, l1, l2], 1)
    inside = (bary >= -1e-4).all(1)
    return py[inside], px[inside], fid[inside], bary[inside]


def _dilate(img: np.ndarray, filled: np.ndarray, passes: int = 4) -> np.ndarray:
    for _ in range(passes):
        acc = np.zeros_like(img)
        cnt = np.zeros(filled.shape, np.float32)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            acc += np.roll(img * filled[..., None], (dy, dx), (0, 1))
            cnt += np.roll(filled.astype(np.float32), (dy, dx), (0, 1))
        grow = (~filled) & (cnt > 0)
        img[grow] = acc[grow] / cnt[grow][:, None]
        filled = filled | grow
    return img


def bake_texture(mesh: Mesh, color_fn: Callable[[np.ndarray], np.ndarray], size: int = 1024) -> Mesh:
    """Unwrap with xatlas and bake ``color_fn(points) → rgb`` into a ``size``² texture."""
    try:
        import xatlas
    except ImportError:
        raise RuntimeError("texture baking needs the 'xatlas' package: pip install 'att3d[mesh]'") from None
    if len(mesh.faces) == 0:
        raise ValueError("cannot bake a texture for an empty mesh")
    vmap, faces, uvs = xatlas.parametrize(mesh.vertices, mesh.faces.astype(np.uint32))
    verts = mesh.vertices[vmap]
    ty, tx, fid, bary = _rasterize(uvs, faces.astype(np.int64), size)
    pts = (verts[faces[fid]] * bary[..., None]).sum(1).astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    filled = np.zeros((size, size), bool)
    img[ty, tx] = color_fn(pts)
    filled[ty, tx] = True
    img = _dilate(img, filled)
    tex = (img.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    return Mesh(verts.astype(np.float32), faces.astype(np.int64), mesh.colors[vmap], uvs.astype(np.float32), tex,
                dict(mesh.meta, texture_size=size))
