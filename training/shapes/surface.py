"""Surface and colour quality against the Shapes world's analytic SDF.

Every measure takes a mesh (vertices, faces, vertex colours) and the prompt's :class:`Scene`:

* ``normal_error_deg``: area-weighted mean angle between each face's normal and the true surface
  normal (the SDF's gradient) at the face's centroid. A face pointing inward counts as ~180°.
* ``roughness_deg``: mean dihedral angle between adjacent faces (0° for a plane; curvature and
  lumps raise it).
* ``surface_distance``: mean |SDF| at the vertices, in voxels of the extraction lattice.
* ``volume_ratio``: the mesh's volume over the true one (marching cubes on the SDF, same lattice).
* ``body_color_std``: how much the body's colour varies where it should be one colour: the
  area-weighted standard deviation (sRGB, mean over channels) over the vertices that belong to the
  main part and lie away from every accessory.
* ``accessory_leak``: the fraction of those body vertices whose colour is nearer the accessory's
  colour than the body's (0 when there is no accessory or both share a colour).
* ``color_variation``: mean colour difference across mesh edges (sRGB, mean over channels): how
  mottled the surface is, without needing to know which part is which (the interpolation metrics
  use it, where a midpoint has no true answer).

The floor of every measure is the same measure on marching cubes of the true SDF at the same
resolution (:func:`floor_mesh`): what a perfect model would score through the same extraction.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .world import Scene, part_sdf

SURFACE_RESOLUTION = 128
#: body vertices closer than this to an accessory's surface are left out of the body's colour
#: measures (the boundary between two colours is not mottling)
BODY_MARGIN = 0.06
MEASURES = ("normal_error_deg", "roughness_deg", "surface_distance", "volume_ratio", "body_color_std",
            "accessory_leak", "color_variation")


def _lattice(resolution: int, bound: float = 1.0) -> torch.Tensor:
    x = torch.linspace(-bound, bound, resolution)
    return torch.stack(torch.meshgrid(x, x, x, indexing="ij"), -1).reshape(-1, 3)


def floor_mesh(scene: Scene, resolution: int = SURFACE_RESOLUTION, bound: float = 1.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marching cubes of the true SDF (zero level) on the extraction lattice, with the true colours."""
    from backend.mesh import marching_cubes

    pts = _lattice(resolution, bound)
    sdf = torch.cat([scene.sdf(c) for c in pts.split(1 << 18)])
    # marching_cubes expects a density (high inside): −SDF, surface at 0
    verts, faces = marching_cubes((-sdf).reshape(resolution, resolution, resolution).numpy(), 0.0, bound)
    colors = scene.sdf_and_color(torch.from_numpy(verts))[1].numpy() if len(verts) else np.zeros((0, 3), np.float32)
    return verts, faces, colors.astype(np.float32)


def sdf_gradient(scene: Scene, points: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Unit outward normals of the true surface at ``points`` (central differences of the SDF)."""
    p = torch.from_numpy(np.ascontiguousarray(points, np.float32))
    g = torch.zeros_like(p)
    for k in range(3):
        e = torch.zeros(3)
        e[k] = h
        g[:, k] = (scene.sdf(p + e) - scene.sdf(p - e)) / (2 * h)
    return torch.nn.functional.normalize(g, dim=-1).numpy()


def _face_geometry(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tri = verts[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(area2, 1e-20)[:, None]
    return tri.mean(1), normals, area2 / 2


def _vertex_areas(verts: np.ndarray, faces: np.ndarray, face_area: np.ndarray) -> np.ndarray:
    out = np.zeros(len(verts))
    for k in range(3):
        np.add.at(out, faces[:, k], face_area / 3)
    return out


def _unique_edges(faces: np.ndarray) -> np.ndarray:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0)


def dihedral_angles_deg(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The angle between the normals of every pair of faces that share an edge."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    return np.degrees(mesh.face_adjacency_angles)


def mesh_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (divergence theorem): positive for a closed mesh with outward faces."""
    tri = verts[faces].astype(np.float64)
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def body_colour_measures(verts: np.ndarray, colors: np.ndarray, vertex_area: np.ndarray, scene: Scene,
                         margin: float = BODY_MARGIN) -> tuple[float, float]:
    """(``body_color_std``, ``accessory_leak``) of a mesh against the scene's parts (see the module)."""
    if len(verts) == 0:
        return float("nan"), float("nan")
    q = torch.from_numpy(np.ascontiguousarray(verts, np.float32)) / scene.scale
    d = torch.stack([part_sdf(p, q) for p in scene.parts], -1).numpy() * scene.scale  # [V, parts]
    body = d.argmin(1) == 0
    if len(scene.parts) > 1:
        body &= d[:, 1:].min(1) > margin
    if body.sum() < 3:
        return float("nan"), float("nan")
    w = vertex_area[body] / max(vertex_area[body].sum(), 1e-20)
    c = colors[body].astype(np.float64)
    mean = (w[:, None] * c).sum(0)
    std = float(np.sqrt((w[:, None] * (c - mean) ** 2).sum(0)).mean())
    leak = 0.0
    body_rgb = np.asarray(scene.parts[0].color)
    for part in scene.parts[1:]:
        acc_rgb = np.asarray(part.color)
        if np.abs(acc_rgb - body_rgb).max() < 1e-6:
            continue
        nearer = np.linalg.norm(c - acc_rgb, axis=1) < np.linalg.norm(c - body_rgb, axis=1)
        leak = max(leak, float((w * nearer).sum()))
    return std, leak


def color_variation(faces: np.ndarray, colors: np.ndarray) -> float:
    """Mean absolute colour difference across mesh edges (mean over channels)."""
    if len(faces) == 0:
        return float("nan")
    e = _unique_edges(faces)
    return float(np.abs(colors[e[:, 0]] - colors[e[:, 1]]).mean())


def mesh_metrics(verts: np.ndarray, faces: np.ndarray, colors: np.ndarray, scene: Scene,
                 resolution: int = SURFACE_RESOLUTION, bound: float = 1.0,
                 true_volume: float | None = None) -> dict[str, float]:
    """Every measure of the module docstring for one mesh (NaN for an empty mesh)."""
    if len(faces) == 0:
        return {k: float("nan") for k in MEASURES}
    voxel = 2 * bound / (resolution - 1)
    centroids, normals, area = _face_geometry(verts, faces)
    true_n = sdf_gradient(scene, centroids)
    cos = np.clip((normals * true_n).sum(1), -1.0, 1.0)
    normal_err = float(np.degrees((np.arccos(cos) * area).sum() / max(area.sum(), 1e-20)))
    sdf_v = scene.sdf(torch.from_numpy(np.ascontiguousarray(verts, np.float32))).numpy()
    if true_volume is None:
        fv, ff, _ = floor_mesh(scene, resolution, bound)
        true_volume = mesh_volume(fv, ff)
    std, leak = body_colour_measures(verts, colors, _vertex_areas(verts, faces, area), scene)
    dihedral = dihedral_angles_deg(verts, faces)
    return {"normal_error_deg": normal_err,
            "roughness_deg": float(dihedral.mean()) if len(dihedral) else float("nan"),
            "surface_distance": float(np.abs(sdf_v).mean() / voxel),
            "volume_ratio": mesh_volume(verts, faces) / true_volume if true_volume > 0 else float("nan"),
            "body_color_std": std, "accessory_leak": leak, "color_variation": color_variation(faces, colors)}


def summarize(rows: list[dict[str, Any]], keys: tuple[str, ...] = MEASURES) -> dict[str, float]:
    """Means over prompts, NaNs left out."""
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if k in r and r[k] is not None and not math.isnan(float(r[k]))]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out
