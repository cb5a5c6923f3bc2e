"""Export meshes: GLB (:mod:`blender_att3d.wire.glb`: vertex colours as linear ``COLOR_0``, or a
baked texture; chains as animated pieces), OBJ and PLY (trimesh).

The model's frame is Z-up (Blender's). glTF and OBJ are Y-up by convention, so they are written
rotated (x, y, z) → (x, z, −y); Blender's importers rotate back and the object stands upright.
PLY keeps Z-up (Blender's PLY importer assumes Z-up). OBJ and PLY vertex colours are the sRGB
display values (as those formats' readers expect); glTF's ``COLOR_0`` is linear by definition.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blender_att3d.wire import glb
from blender_att3d.wire.types import MeshData, SequenceData

from .fileio import atomic_write_bytes

FORMATS = (".glb", ".obj", ".ply")
FILE_MODE = 0o644  # files to share (atomic writes start from a private temporary file)
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)


def to_trimesh(mesh: MeshData, y_up: bool = False):
    import trimesh

    verts = mesh.positions @ Z_UP_TO_Y_UP.T if y_up else mesh.positions
    if mesh.texture is not None and mesh.uvs is not None:
        from PIL import Image

        material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(mesh.texture),
                                                       metallicFactor=0.0, roughnessFactor=0.9)
        visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
        return trimesh.Trimesh(verts, mesh.faces, visual=visual, process=False)
    rgba = np.concatenate([mesh.colors.clip(0, 1), np.ones((len(mesh.colors), 1), np.float32)], 1)
    return trimesh.Trimesh(verts, mesh.faces, vertex_colors=(rgba * 255 + 0.5).astype(np.uint8), process=False)


def export_mesh(mesh: MeshData, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path`` (format from the suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported output format {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}")
    if suffix == ".glb":
        name = str(mesh.meta.get("prompt") or path.stem)
        return atomic_write_bytes(path, glb.mesh_glb(mesh, name=name), FILE_MODE)
    tm = to_trimesh(mesh, y_up=suffix == ".obj")
    if suffix == ".obj":  # trimesh writes the .mtl and texture beside the .obj itself
        tm.export(str(path), include_normals=False)
        return path
    data = tm.export(file_type=suffix[1:])
    return atomic_write_bytes(path, data.encode() if isinstance(data, str) else data, FILE_MODE)


def export_sequence_glb(seq: SequenceData, path: str | os.PathLike, seconds: Sequence[float] | None = None,
                        name: str = "att3d_chain") -> Path:
    """A consistent chain (keyframe pieces) as one animated GLB (:func:`blender_att3d.wire.glb.sequence_glb`).

    ``seconds[i]``: when step ``i`` is fully shown (default one step per second).
    """
    return atomic_write_bytes(Path(path), glb.sequence_glb(seq, seconds, name), FILE_MODE)
