"""Export meshes with trimesh: GLB (vertex colours as COLOR_0, or a baked texture), OBJ, PLY.

The model's frame is Z-up (Blender's). glTF and OBJ are Y-up by convention, so they are written
rotated (x, y, z) → (x, z, −y); Blender's importers rotate back and the object stands upright.
PLY keeps Z-up (Blender's PLY importer assumes Z-up).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes
from .mesh_type import Mesh

FORMATS = (".glb", ".obj", ".ply")
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)


def to_trimesh(mesh: Mesh, y_up: bool = False):
    import trimesh

    verts = mesh.vertices @ Z_UP_TO_Y_UP.T if y_up else mesh.vertices
    if mesh.texture is not None and mesh.uvs is not None:
        from PIL import Image

        material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(mesh.texture),
                                                       metallicFactor=0.0, roughnessFactor=0.9)
        visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
        return trimesh.Trimesh(verts, mesh.faces, visual=visual, process=False)
    rgba = np.concatenate([mesh.colors.clip(0, 1), np.ones((len(mesh.colors), 1), np.float32)], 1)
    return trimesh.Trimesh(verts, mesh.faces, vertex_colors=(rgba * 255 + 0.5).astype(np.uint8), process=False)


def export_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path`` (format from the suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported output format {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}")
    tm = to_trimesh(mesh, y_up=suffix in (".glb", ".obj"))
    if suffix == ".obj":  # trimesh writes the .mtl and texture beside the .obj itself
        tm.export(str(path), include_normals=False)
        return path
    data = tm.export(file_type=suffix[1:])
    return atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


def export_sequence_glb(faces: np.ndarray, positions: list[np.ndarray], colors: list[np.ndarray],
                        path: str | os.PathLike, times: list[float] | None = None) -> Path:
    """A consistent-topology sequence as one GLB: step 0 is the base mesh (COLOR_0), every other
    step a morph target, and an animation whose weights walk through the steps (linear).

    ``times`` are the seconds at which each step is fully shown (default: one step per second).
    Per-step colours ride along as ``COLOR_0`` in each morph target (glTF 2.0 allows it; importers
    that ignore it keep the base colours).
    """
    import json
    import struct

    path = Path(path)
    n = len(positions)
    times = [float(i) for i in range(n)] if times is None else [float(t) for t in times]
    if len(times) != n:
        raise ValueError("one time per step")
    base = (positions[0] @ Z_UP_TO_Y_UP.T).astype(np.float32)
    blobs: list[bytes] = []
    views, accessors = [], []

    def add(array: np.ndarray, target: int | None, ctype: int, atype: str, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * ((-len(data)) % 4))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        acc = {"bufferView": len(views) - 1, "componentType": ctype, "count": int(len(array)), "type": atype}
        if minmax:
            acc["min"] = np.asarray(array).min(0).reshape(-1).tolist()
            acc["max"] = np.asarray(array).max(0).reshape(-1).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    FLOAT, UINT = 5126, 5125
    pos = add(base, 34962, FLOAT, "VEC3", minmax=True)
    col = add(np.asarray(colors[0], np.float32).clip(0, 1), 34962, FLOAT, "VEC3")
    idx = add(np.asarray(faces, np.uint32).reshape(-1), 34963, UINT, "SCALAR")
    targets = []
    for i in range(1, n):
        delta = (positions[i] @ Z_UP_TO_Y_UP.T).astype(np.float32) - base
        dcol = (np.asarray(colors[i], np.float32) - np.asarray(colors[0], np.float32)).clip(-1, 1)
        targets.append({"POSITION": add(delta, 34962, FLOAT, "VEC3", minmax=True),
                        "COLOR_0": add(dcol, 34962, FLOAT, "VEC3")})
    prim = {"attributes": {"POSITION": pos, "COLOR_0": col}, "indices": idx, "material": 0}
    gltf: dict = {
        "asset": {"version": "2.0", "generator": "att3d"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "att3d_chain"}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                                "roughnessFactor": 0.9}}],
        "meshes": [{"primitives": [prim], "weights": [0.0] * (n - 1), "name": "att3d_chain"}],
    }
    if targets:
        prim["targets"] = targets
        # weights at time i: step i fully on (the base is step 0: all zero)
        w = np.zeros((n, n - 1), np.float32)
        for i in range(1, n):
            w[i, i - 1] = 1.0
        t_acc = add(np.asarray(times, np.float32)[:, None], None, FLOAT, "SCALAR", minmax=True)
        w_acc = add(w.reshape(-1), None, FLOAT, "SCALAR")
        gltf["animations"] = [{"name": "chain", "samplers": [{"input": t_acc, "output": w_acc,
                                                             "interpolation": "LINEAR"}],
                               "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}]
    binary = b"".join(blobs)
    gltf["buffers"] = [{"byteLength": len(binary)}]
    gltf["bufferViews"] = views
    gltf["accessors"] = accessors
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    out = (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
           + struct.pack("<I4s", len(binary), b"BIN\0") + binary)
    return atomic_write_bytes(path, out)
