"""Export meshes with trimesh: GLB (vertex colours as COLOR_0, or a baked texture), OBJ, PLY.

The model's frame is Z-up (Blender's). glTF and OBJ are Y-up by convention, so they are written
rotated (x, y, z) → (x, z, −y); Blender's importers rotate back and the object stands upright.
PLY keeps Z-up (Blender's PLY importer assumes Z-up).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .mesh import Mesh

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
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
