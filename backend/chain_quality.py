"""How faithful a chain is to its prompts: the measures ``att3d bench`` prints and the tests check.

* at every keyframe, the symmetric Chamfer distance between the chain's mesh and the directly
  generated mesh, in % of that mesh's bounding-box diagonal, and both meshes' inward-facing faces;
* at every state, the share of vertices on that state's isosurface;
* the largest vertex move between consecutive states of one topology, and at a swap between two
  topologies the surface gap (symmetric Hausdorff), both in voxels of the extraction lattice.

An inward-facing face has its normal against the field's outward direction (−∇σ) at its centroid.
A vertex is on the surface when its first-order distance to the isosurface, ``|σ − ℓ| / |∇σ|``,
is at most a quarter voxel.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .mapping_network import Modulation
from .model import ATT3D

ON_SURFACE_VOXELS = 0.25


def field_gradient(model: ATT3D, mod: Modulation, points: np.ndarray, chunk: int = 1 << 17,
                   resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Density ``[N]`` and its gradient ``[N, 3]`` at ``points`` (one prompt): of the model's own
    density, or with ``resolution`` of the field a chain at that lattice lies on
    (:func:`backend.chain.state_field`)."""
    from .chain import model_field, state_field

    field = model_field(model, mod) if resolution is None else state_field(model, mod, resolution)
    dens, grads = [], []
    for s in range(0, len(points), chunk):
        x = torch.from_numpy(np.ascontiguousarray(points[s:s + chunk], np.float32)).to(mod.v.device)
        d, g = field(x)
        dens.append(d.detach().cpu().numpy())
        grads.append(g.detach().cpu().numpy())
    if not dens:
        return np.zeros(0, np.float32), np.zeros((0, 3), np.float32)
    return np.concatenate(dens), np.concatenate(grads)


def surface_distance(model: ATT3D, mod: Modulation, points: np.ndarray, level: float | None = None,
                     resolution: int | None = None) -> np.ndarray:
    """First-order distance of each point to the isosurface: ``|σ − ℓ| / |∇σ|`` (``resolution``: of
    the field a chain at that lattice lies on, as :func:`field_gradient`)."""
    level = model.config.iso_density if level is None else level
    d, g = field_gradient(model, mod, points, resolution=resolution)
    return np.abs(d - level) / np.maximum(np.linalg.norm(g, axis=1), 1e-8)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = vertices[faces.astype(np.int64)]
    return np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])


def inward_face_fraction(model: ATT3D, mod: Modulation, vertices: np.ndarray, faces: np.ndarray,
                         resolution: int | None = None) -> float:
    """Share of (non-degenerate) faces whose normal points into the object (``resolution``: as
    :func:`field_gradient`)."""
    if len(faces) == 0:
        return 0.0
    n = face_normals(vertices, faces)
    area2 = np.linalg.norm(n, axis=1)
    keep = area2 > 1e-12
    if not keep.any():
        return 0.0
    centroids = vertices[faces[keep].astype(np.int64)].mean(1)
    _, g = field_gradient(model, mod, centroids, resolution=resolution)
    return float(((n[keep] * -g).sum(1) < 0).mean())


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points spread uniformly by area over the mesh surface."""
    if len(faces) == 0:
        return vertices[:0]
    rng = np.random.default_rng(seed)
    v = vertices[faces.astype(np.int64)].astype(np.float64)
    area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    idx = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random((2, n, 1))
    s = np.sqrt(r1)
    tri = v[idx]
    return (tri[:, 0] * (1 - s) + tri[:, 1] * s * (1 - r2) + tri[:, 2] * s * r2).astype(np.float32)


def closest_points_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The point of triangle ``(a, b, c)`` closest to ``p``, row by row (Ericson, *Real-Time
    Collision Detection* 5.1.5, vectorised): the regions of the vertices, edges and face in turn."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v, w = vb / denom, vc / denom
    out = a + ab * v[..., None] + ac * w[..., None]  # inside the face
    eps = 1e-30

    def put(mask, value):
        np.copyto(out, value, where=mask[..., None])

    # later assignments win: from the lowest priority region to the highest, as Ericson tests them
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
        b + (c - b) * ((d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), eps))[..., None])
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * (d2 / np.maximum(d2 - d6, eps))[..., None])
    put((d6 >= 0) & (d5 <= d6), c)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * (d1 / np.maximum(d1 - d3, eps))[..., None])
    put((d3 >= 0) & (d4 <= d3), b)
    put((d1 <= 0) & (d2 <= 0), a)
    return out


def point_mesh_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 8) -> np.ndarray:
    """Distance from each point to the surface of a mesh (exact for the faces around its ``k``
    nearest vertices, which hold the closest face on any reasonably even mesh)."""
    from scipy.spatial import cKDTree

    faces = faces.astype(np.int64)
    k = min(k, len(vertices))
    _, near = cKDTree(vertices).query(points, k=k)
    near = near.reshape(len(points), k)
    # faces around each vertex (CSR)
    order = np.argsort(faces.ravel(), kind="stable")
    owner = order // 3
    start = np.searchsorted(faces.ravel()[order], np.arange(len(vertices) + 1))
    best = np.full(len(points), np.inf)
    pts = points.astype(np.float64)
    verts = vertices.astype(np.float64)
    for j in range(k):
        vid = near[:, j]
        lo, hi = start[vid], start[vid + 1]
        deg = hi - lo
        for r in range(int(deg.max()) if len(deg) else 0):
            has = deg > r
            f = faces[owner[lo[has] + r]]
            q = closest_points_on_triangles(pts[has], verts[f[:, 0]], verts[f[:, 1]], verts[f[:, 2]])
            best[has] = np.minimum(best[has], np.linalg.norm(pts[has] - q, axis=1))
    return best


def surface_distances(va: np.ndarray, fa: np.ndarray, vb: np.ndarray, fb: np.ndarray,
                      samples: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Distances from ``samples`` points spread on surface A to surface B, and from B to A."""
    a, b = sample_surface(va, fa, samples, 1), sample_surface(vb, fb, samples, 2)
    if len(a) == 0 or len(b) == 0:
        inf = np.full(1, 0.0 if len(a) == len(b) else np.inf)
        return inf, inf
    return point_mesh_distance(a, vb, fb), point_mesh_distance(b, va, fa)


def chamfer(va: np.ndarray, fa: np.ndarray, vb: np.ndarray, fb: np.ndarray, samples: int = 20000,
            quantile: float = 1.0) -> tuple[float, float]:
    """Symmetric Chamfer distance (mean of both directions' mean point-to-surface distance) and
    the symmetric Hausdorff distance (or the given quantile of the distances instead of their
    maximum) between two surfaces, from ``samples`` points on each."""
    da, db = surface_distances(va, fa, vb, fb, samples)
    return float((da.mean() + db.mean()) / 2), float(max(np.quantile(da, quantile), np.quantile(db, quantile)))


def bbox_diagonal(vertices: np.ndarray) -> float:
    return float(np.linalg.norm(vertices.max(0) - vertices.min(0))) if len(vertices) else 0.0


def chain_quality(pipe: Any, chain: Any, prompts: list[str], positions: list[float] | None = None,
                  resolution: int = 128, key_frames: list[float] | None = None) -> dict[str, Any]:
    """The measures above for a chain of pieces (a :class:`~blender_att3d.wire.types.SequenceData`) made by ``pipe``
    (:class:`backend.inference.Pipeline`) from ``prompts`` at ``positions``.

    ``min_on_surface_steps_pct``: over the chain's steps (``..._half_voxel_pct``: within half a voxel,
    marching cubes' own precision); ``min_on_surface_pct`` and ``max_inward_pct``: over every state
    shown, the middles between steps (where two pieces meet) included; ``held_states``: middles
    where a piece holds its last good state (:func:`backend.chain.plan_pieces`).

    ``swap_gap_voxels``: at each swap, the larger of the two pieces' distances to the directly
    extracted mesh of that state (both lie on it: the swap does not move the surface), as the
    99.9th percentile of the sampled distances in both directions; ``swap_gap_max_voxels`` the
    maximum (the Hausdorff distance), where a bubble of a few faces that only one of the two
    topologies has shows up. ``surface_motion_voxels``: the largest such 99.9 % distance between
    directly extracted meshes of consecutive states, about the least the surface moves there;
    ``max_jump_voxels`` (every vertex) is to be read against it. With ``key_frames`` (the frame of
    each keyframe) ``max_jump_per_frame_voxels`` is the largest move between consecutive frames.
    """
    from .chain import segment_alpha
    from .mesh import uses_lowpass

    model = pipe.model
    cfg = model.config
    voxel = 2 * cfg.bound / (resolution - 1)
    positions = list(range(len(prompts))) if positions is None else list(positions)
    emb = pipe.embed(prompts)
    keyframes, states = [], []
    gaps: dict[float, float] = {}
    gaps_max: dict[float, float] = {}
    max_jump = motion = per_frame = 0.0
    steps = np.asarray(chain.steps)
    for n, piece in enumerate(chain.pieces):
        mods = [pipe.chain_modulation(emb, *segment_alpha(t, positions)) for t in piece.times]
        direct = [pipe.mesh(m, resolution, lowpass=uses_lowpass(1, resolution)) for m in mods]
        f = piece.faces
        t_key = piece.times[piece.key]
        for k in np.flatnonzero(np.isclose(positions, t_key)):  # the keyframe this piece was extracted at
            d, v = direct[piece.key], piece.positions[piece.key]
            ch, _ = chamfer(v, f, d.positions, d.faces)
            keyframes.append({
                "prompt": prompts[k], "position": positions[k],
                "chamfer_pct_diag": round(100 * ch / max(bbox_diagonal(d.positions), 1e-9), 4),
                "inward_pct": round(100 * inward_face_fraction(model, mods[piece.key], v, f, resolution), 3),
                "inward_direct_pct": round(100 * inward_face_fraction(model, mods[piece.key], d.positions, d.faces,
                                                                      resolution), 3)})
        for j, (t, verts) in enumerate(zip(piece.times, piece.positions)):
            dist = surface_distance(model, mods[j], verts, resolution=resolution)
            states.append({"piece": n, "position": round(t, 4), "step": bool(np.isclose(steps, t).any()),
                           "held": bool(piece.held[j]) if piece.held else False,
                           "on_surface_pct": round(100 * float((dist <= ON_SURFACE_VOXELS * voxel).mean()), 3),
                           "on_surface_half_voxel_pct": round(100 * float((dist <= 0.5 * voxel).mean()), 3),
                           "inward_pct": round(100 * inward_face_fraction(model, mods[j], verts, f, resolution), 3)})
            if j:
                jump = float(np.linalg.norm(verts - piece.positions[j - 1], axis=1).max()) / voxel
                max_jump = max(max_jump, jump)
                if key_frames is not None:
                    frames = np.interp([piece.times[j - 1], t], positions, key_frames)
                    per_frame = max(per_frame, jump / max(float(frames[1] - frames[0]), 1.0))
                motion = max(motion, chamfer(direct[j].positions, direct[j].faces, direct[j - 1].positions,
                                             direct[j - 1].faces, quantile=0.999)[1] / voxel)
        for j in (0, len(piece.times) - 1):
            if j != piece.key:  # an end that meets the next or previous piece
                da, db = surface_distances(piece.positions[j], f, direct[j].positions, direct[j].faces)
                for q, store in ((0.999, gaps), (1.0, gaps_max)):
                    gap = max(np.quantile(da, q), np.quantile(db, q)) / voxel
                    store[piece.times[j]] = max(store.get(piece.times[j], 0.0), float(gap))
    keyframes.sort(key=lambda kf: kf["position"])
    return {"resolution": resolution, "pieces": len(chain.pieces), "keyframes": keyframes, "states": states,
            "min_on_surface_pct": min(s["on_surface_pct"] for s in states if not s["held"]),
            "min_on_surface_steps_pct": min(s["on_surface_pct"] for s in states if s["step"]),
            "min_on_surface_steps_half_voxel_pct": min(s["on_surface_half_voxel_pct"] for s in states if s["step"]),
            "max_inward_pct": max(s["inward_pct"] for s in states if not s["held"]),
            "held_states": sum(s["held"] for s in states),
            "max_inward_excess_pct": max(kf["inward_pct"] - kf["inward_direct_pct"] for kf in keyframes),
            "max_chamfer_pct_diag": max(kf["chamfer_pct_diag"] for kf in keyframes),
            "max_jump_voxels": round(max_jump, 3), "surface_motion_voxels": round(motion, 3),
            **({"max_jump_per_frame_voxels": round(per_frame, 3)} if key_frames is not None else {}),
            "swap_gap_voxels": [round(gaps[t], 3) for t in sorted(gaps)],
            "swap_gap_max_voxels": [round(gaps_max[t], 3) for t in sorted(gaps_max)]}
