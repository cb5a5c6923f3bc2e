"""GLB files (binary glTF 2.0) of meshes and prompt chains: numpy and the standard library only, so
the CLI, the service (``?format=glb``) and the add-on's batch write the same files.

What a viewer sees (checked by the Khronos glTF validator in the tests):

* **Frame**: glTF is Y-up, metres; positions are written rotated ``(x, y, z) → (x, z, −y)`` from
  Blender's Z-up frame (Blender's importer rotates them back, so objects stand upright).
* **Colour**: ``COLOR_0`` is the colour to show, in linear RGB as glTF defines it (converted from
  the sRGB display values of :mod:`.types`), multiplied by a white, non-metallic material. A mesh
  with a baked texture has the texture (``baseColorTexture``, sRGB PNG, ``TEXCOORD_0``) instead of
  ``COLOR_0``. ``NORMAL`` holds smooth vertex normals (without them viewers shade facets).
* **Chains** (:func:`sequence_glb`): one node per piece (one topology per keyframe, see
  :class:`.types.SequencePiece`) under a root node. A piece's mesh is its keyframe's state; every
  other state is a morph target with ``POSITION``, ``NORMAL`` and ``COLOR_0`` deltas (colour morph
  targets are glTF 2.0: three.js and Babylon.js play them; viewers that ignore them keep the
  keyframe's colours). One animation: per piece, the target weights (LINEAR, state ``j`` fully on
  at its time) and the node's scale (STEP, 1 while the piece shows, 0 otherwise: glTF's portable
  visibility). Pieces that do not show at the start have scale 0 in the static scene too.
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .types import MeshData, SequenceData

FLOAT, UINT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


def srgb_to_linear(c: NDArray[Any]) -> NDArray[Any]:
    """sRGB display values → linear RGB (the same curve as ``blender_att3d.colors``)."""
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def to_y_up(positions: NDArray[Any]) -> NDArray[Any]:
    p = np.asarray(positions, np.float32).reshape(-1, 3)
    return np.ascontiguousarray(np.stack([p[:, 0], p[:, 2], -p[:, 1]], 1), dtype=np.float32)


def vertex_normals(positions: NDArray[Any], faces: NDArray[Any]) -> NDArray[Any]:
    """Area-weighted unit vertex normals (+Z where a vertex has no area around it)."""
    p = np.asarray(positions, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    n = np.zeros_like(p)
    if len(f):
        fn = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
        # each face's normal to its three corners: bincount sums per vertex (np.add.at: 6× slower)
        corners = f.reshape(-1)
        for k in range(3):
            n[:, k] = np.bincount(corners, weights=np.repeat(fn[:, k], 3), minlength=len(p))
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return out.astype(np.float32)


def png_bytes(rgb: NDArray[Any]) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` uint8 [H, W, 3] (row 0 at the top)."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)[..., :3]
    h, w = img.shape[:2]

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + img[r].tobytes() for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


class _Builder:
    """Accessors, buffer views and one binary buffer, then the GLB container."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.size = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target:
            view["target"] = target
        pad = (-len(data)) % 4
        self.blobs.append(data + b"\0" * pad)
        self.size += len(data) + pad
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: NDArray[Any], kind: str, target: int | None = None, minmax: bool = False) -> int:
        ctype = UINT if array.dtype == np.uint32 else FLOAT
        a = np.ascontiguousarray(array, dtype=np.uint32 if ctype == UINT else np.float32)
        width = {"SCALAR": 1, "VEC3": 3}[kind]
        rows = a.reshape(-1, width)
        acc: dict[str, Any] = {"bufferView": self.view(a.tobytes(), target), "componentType": ctype,
                               "count": len(rows), "type": kind}
        if minmax and len(rows):
            acc["min"] = [float(x) for x in rows.min(0)]
            acc["max"] = [float(x) for x in rows.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def glb(self, gltf: dict[str, Any]) -> bytes:
        binary = b"".join(self.blobs)
        gltf = {"asset": {"version": "2.0", "generator": "att3d"}, **gltf,
                "buffers": [{"byteLength": len(binary)}], "bufferViews": self.views, "accessors": self.accessors}
        js = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode()
        js += b" " * ((-len(js)) % 4)
        total = 12 + 8 + len(js) + 8 + len(binary)
        return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
                + struct.pack("<I4s", len(binary), b"BIN\0") + binary)


def _material(textured: bool, texture_index: int = 0) -> dict[str, Any]:
    pbr: dict[str, Any] = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8}
    if textured:
        pbr["baseColorTexture"] = {"index": texture_index}
    return {"name": "att3d", "pbrMetallicRoughness": pbr}


def mesh_glb(mesh: MeshData, name: str = "att3d") -> bytes:
    """One mesh as a GLB: vertex colours as ``COLOR_0``, or its baked texture when it has one."""
    b = _Builder()
    pos = to_y_up(mesh.positions)
    textured = mesh.texture is not None and mesh.uvs is not None
    attrs = {"POSITION": b.accessor(pos, "VEC3", ARRAY_BUFFER, minmax=True),
             "NORMAL": b.accessor(to_y_up(vertex_normals(mesh.positions, mesh.faces)), "VEC3", ARRAY_BUFFER)}
    gltf: dict[str, Any] = {}
    if textured:
        assert mesh.uvs is not None and mesh.texture is not None
        uv = np.asarray(mesh.uvs, np.float32).reshape(-1, 2).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # glTF's texture origin is the top-left corner, Blender's the bottom-left
        b.accessors.append({"bufferView": b.view(np.ascontiguousarray(uv).tobytes(), ARRAY_BUFFER),
                            "componentType": FLOAT, "count": len(uv), "type": "VEC2"})
        attrs["TEXCOORD_0"] = len(b.accessors) - 1
        gltf["images"] = [{"bufferView": b.view(png_bytes(mesh.texture)), "mimeType": "image/png"}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
    else:
        attrs["COLOR_0"] = b.accessor(srgb_to_linear(mesh.colors), "VEC3", ARRAY_BUFFER)
    prim: dict[str, Any] = {"attributes": attrs, "material": 0}
    if len(mesh.faces):
        prim["indices"] = b.accessor(np.asarray(mesh.faces, np.uint32).reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER,
                                     minmax=True)
    gltf.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0, "name": name}],
                meshes=[{"name": name, "primitives": [prim]}], materials=[_material(textured)])
    return b.glb(gltf)


def sequence_glb(seq: SequenceData, seconds: Sequence[float] | None = None, name: str = "att3d_chain") -> bytes:
    """A consistent chain (its pieces) as one animated GLB (see the module notes).

    ``seconds[i]`` is the time of step ``i`` (``seq.steps[i]``), default one step per second; the
    states of the pieces between steps (a segment's middle) are placed linearly between them.
    """
    if not seq.consistent:
        raise ValueError("a GLB chain needs consistent topology (pieces); export a mesh sequence step by step")
    steps = np.asarray(seq.steps, np.float64)
    secs = np.arange(len(steps), dtype=np.float64) if seconds is None else np.asarray(seconds, np.float64)
    if secs.shape != steps.shape or np.any(np.diff(secs) <= 0):
        raise ValueError("one increasing time per step")

    def at(t: float) -> float:
        return float(np.interp(t, steps, secs)) if len(steps) > 1 else float(secs[0])

    b = _Builder()
    nodes: list[dict[str, Any]] = [{"name": name, "children": []}]
    meshes: list[dict[str, Any]] = []
    samplers: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []
    starts = [at(p.times[0]) for p in seq.pieces]
    multi = len(seq.pieces) > 1
    for j, piece in enumerate(seq.pieces):
        k = piece.key
        base = to_y_up(piece.positions[k])
        base_n = to_y_up(vertex_normals(piece.positions[k], piece.faces))
        base_c = srgb_to_linear(piece.colors[k])
        prim: dict[str, Any] = {"attributes": {"POSITION": b.accessor(base, "VEC3", ARRAY_BUFFER, minmax=True),
                                               "NORMAL": b.accessor(base_n, "VEC3", ARRAY_BUFFER),
                                               "COLOR_0": b.accessor(base_c, "VEC3", ARRAY_BUFFER)},
                                "material": 0}
        if len(piece.faces):
            prim["indices"] = b.accessor(piece.faces.reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER, minmax=True)
        others = [s for s in range(len(piece)) if s != k]
        targets, names = [], []
        for s in others:
            targets.append({
                "POSITION": b.accessor(to_y_up(piece.positions[s]) - base, "VEC3", ARRAY_BUFFER, minmax=True),
                "NORMAL": b.accessor(to_y_up(vertex_normals(piece.positions[s], piece.faces)) - base_n, "VEC3",
                                     ARRAY_BUFFER),
                "COLOR_0": b.accessor(srgb_to_linear(piece.colors[s]) - base_c, "VEC3", ARRAY_BUFFER)})
            names.append(f"state_{s:03d}")
        mesh: dict[str, Any] = {"name": f"{name}_{j}", "primitives": [prim]}
        if targets:
            prim["targets"] = targets
            mesh["weights"] = [0.0] * len(targets)
            mesh["extras"] = {"targetNames": names}
            times = np.asarray([at(t) for t in piece.times], np.float32)
            w = np.zeros((len(piece), len(targets)), np.float32)
            for col, s in enumerate(others):
                w[s, col] = 1.0
            samplers.append({"input": b.accessor(times, "SCALAR", minmax=True),
                             "output": b.accessor(w.reshape(-1), "SCALAR"), "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": len(nodes), "path": "weights"}})
        node: dict[str, Any] = {"name": f"{name}_{j}", "mesh": len(meshes)}
        if multi:
            keys = [(starts[0], 1.0 if j == 0 else 0.0)]
            if j > 0:
                keys.append((starts[j], 1.0))
            if j + 1 < len(starts):
                keys.append((starts[j + 1], 0.0))
            if j > 0:
                node["scale"] = [0.0, 0.0, 0.0]
            t = np.asarray([k_[0] for k_ in keys], np.float32)
            sc = np.repeat(np.asarray([k_[1] for k_ in keys], np.float32)[:, None], 3, axis=1)
            samplers.append({"input": b.accessor(t, "SCALAR", minmax=True), "output": b.accessor(sc, "VEC3"),
                             "interpolation": "STEP"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": len(nodes), "path": "scale"}})
        nodes[0]["children"].append(len(nodes))
        nodes.append(node)
        meshes.append(mesh)
    gltf: dict[str, Any] = {"scene": 0, "scenes": [{"nodes": [0]}], "nodes": nodes, "meshes": meshes,
                            "materials": [_material(False)]}
    if channels:
        gltf["animations"] = [{"name": "chain", "samplers": samplers, "channels": channels}]
    return b.glb(gltf)
