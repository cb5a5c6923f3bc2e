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

from .chain_position import check_track, piece_showing, tent_weights, track_samples
from .types import MeshData, SequenceData, SequencePiece

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


def _pieces(seq: SequenceData) -> list[SequencePiece]:
    """A chain's pieces; a mesh sequence's steps as pieces of one state each."""
    if seq.pieces:
        return seq.pieces
    return [SequencePiece(m.faces, [t], [m.positions], [m.colors]) for t, m in zip(seq.steps, seq.meshes)]


def sequence_glb(seq: SequenceData, seconds: Sequence[float] | None = None, name: str = "att3d_chain",
                 track: tuple[Sequence[float], Sequence[float]] | None = None,
                 extras: dict[str, Any] | None = None) -> bytes:
    """A chain (its pieces, or a mesh sequence's steps) as one animated GLB (see the module notes).

    Its timing is a position track, ``(seconds, chain positions)`` linear between samples (the add-on
    samples its position curve once a frame: ``(frame − frame_start) / fps``). Without one, step ``i``
    (``seq.steps[i]``) is fully shown at ``seconds[i]`` (default: one step per second). ``extras``
    go to the root node (the add-on stores what its import needs to rebuild a live chain there).
    """
    pieces = _pieces(seq)
    if not pieces:
        raise ValueError("a GLB chain needs at least one piece or step")
    if track is None:
        steps = [float(t) for t in seq.steps]
        secs = list(range(len(steps))) if seconds is None else [float(x) for x in seconds]
        if len(secs) != len(steps):
            raise ValueError("one time per step")
        track = (secs, steps)
    secs_in, pos_in = check_track(track)
    starts = [p.times[0] for p in pieces]
    times, positions = track_samples(secs_in, pos_in, sorted({t for p in pieces for t in p.times}))
    showing = np.asarray([piece_showing(starts, float(p)) for p in positions])

    b = _Builder()
    root: dict[str, Any] = {"name": name, "children": []}
    if extras:
        root["extras"] = extras
    nodes: list[dict[str, Any]] = [root]
    meshes: list[dict[str, Any]] = []
    samplers: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []
    time_acc: int | None = None  # every channel samples at ``times`` (one accessor) but the scale's

    def sample_times() -> int:
        nonlocal time_acc
        if time_acc is None:
            time_acc = b.accessor(times.astype(np.float32), "SCALAR", minmax=True)
        return time_acc

    for j, piece in enumerate(pieces):
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
        mesh: dict[str, Any] = {"name": f"{name}_{j}", "primitives": [prim]}
        node: dict[str, Any] = {"name": f"{name}_{j}", "mesh": len(meshes)}
        if others:
            prim["targets"] = [{
                "POSITION": b.accessor(to_y_up(piece.positions[s]) - base, "VEC3", ARRAY_BUFFER, minmax=True),
                "NORMAL": b.accessor(to_y_up(vertex_normals(piece.positions[s], piece.faces)) - base_n, "VEC3",
                                     ARRAY_BUFFER),
                "COLOR_0": b.accessor(srgb_to_linear(piece.colors[s]) - base_c, "VEC3", ARRAY_BUFFER)}
                for s in others]
            w = np.stack([tent_weights(piece.times, float(p))[others] for p in positions]).astype(np.float32)
            mesh["weights"] = [float(x) for x in w[0]]
            mesh["extras"] = {"targetNames": [f"state_{s:03d}" for s in others]}
            samplers.append({"input": sample_times(), "output": b.accessor(w.reshape(-1), "SCALAR"),
                             "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": len(nodes), "path": "weights"}})
        if len(pieces) > 1:  # visibility: scale 1 while the piece shows, 0 otherwise (STEP)
            shown = (showing == j).astype(np.float32)
            change = np.flatnonzero(np.diff(shown, prepend=-1.0) != 0)
            if shown[0] == 0:
                node["scale"] = [0.0, 0.0, 0.0]
            sc = np.repeat(shown[change][:, None], 3, axis=1)
            samplers.append({"input": b.accessor(times[change].astype(np.float32), "SCALAR", minmax=True),
                             "output": b.accessor(sc, "VEC3"), "interpolation": "STEP"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": len(nodes), "path": "scale"}})
        root["children"].append(len(nodes))
        nodes.append(node)
        meshes.append(mesh)
    gltf: dict[str, Any] = {"scene": 0, "scenes": [{"nodes": [0]}], "nodes": nodes, "meshes": meshes,
                            "materials": [_material(False)]}
    if channels:
        gltf["animations"] = [{"name": "chain", "samplers": samplers, "channels": channels}]
    return b.glb(gltf)


# -- reading -------------------------------------------------------------------------------------------

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb(data: bytes) -> tuple[dict[str, Any], Any]:
    """A GLB's JSON and a function reading accessor ``i`` as a numpy array; ValueError (saying what is
    wrong) for anything that is not a well-formed GLB."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValueError("not a GLB file (binary glTF starts with 'glTF')")
    _, version, total = struct.unpack_from("<4sII", data, 0)
    if version != 2 or total > len(data):
        raise ValueError(f"not a complete glTF 2.0 binary (version {version}, {total} of {len(data)} bytes)")
    js_len, js_type = struct.unpack_from("<I4s", data, 12)
    if js_type != b"JSON" or 20 + js_len > total:
        raise ValueError("a GLB's first chunk must be its JSON")
    try:
        gltf = json.loads(data[20:20 + js_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the GLB's JSON is broken: {e}") from None
    binary = b""
    at = 20 + js_len
    if at + 8 <= total:
        bin_len, bin_type = struct.unpack_from("<I4s", data, at)
        if bin_type == b"BIN\0":
            binary = data[at + 8:at + 8 + bin_len]

    def accessor(i: int) -> NDArray[Any]:
        try:
            acc = gltf["accessors"][i]
            view = gltf["bufferViews"][acc["bufferView"]]
            dtype = np.dtype(_COMPONENTS[acc["componentType"]])
            width = _WIDTH[acc["type"]]
            start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
            n = int(acc["count"]) * width
            if view.get("byteStride", dtype.itemsize * width) != dtype.itemsize * width:
                raise ValueError("interleaved buffer views are not supported")
            if start + n * dtype.itemsize > len(binary):
                raise ValueError("it points past the end of the binary chunk")
            arr = np.frombuffer(binary, dtype, count=n, offset=start)
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"accessor {i} is broken ({e!r})") from None
        except ValueError as e:
            raise ValueError(f"accessor {i}: {e}") from None
        return arr.reshape(-1, width) if width > 1 else arr

    return gltf, accessor


def from_y_up(positions: NDArray[Any]) -> NDArray[Any]:
    """glTF's Y-up back to Blender's Z-up (the inverse of :func:`to_y_up`)."""
    p = np.asarray(positions, np.float32).reshape(-1, 3)
    return np.ascontiguousarray(np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1), dtype=np.float32)


def linear_to_srgb(c: NDArray[Any]) -> NDArray[Any]:
    """Linear RGB → sRGB display values (the inverse of :func:`srgb_to_linear`)."""
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055).astype(np.float32)


CHAIN_EXTRAS = "att3d_chain"


def chain_from_glb(data: bytes) -> tuple[SequenceData, dict[str, Any]]:
    """A chain written by :func:`sequence_glb` with the add-on's extras, read back: its pieces (every
    state's positions and sRGB colours) and the extras (prompts, keyframe frames, position keys …).
    ValueError for a GLB that is not such a chain."""
    gltf, accessor = read_glb(data)
    try:
        root = gltf["nodes"][gltf["scenes"][gltf.get("scene", 0)]["nodes"][0]]
    except (KeyError, IndexError, TypeError):
        raise ValueError("the GLB has no scene with a root node") from None
    info = (root.get("extras") or {}).get(CHAIN_EXTRAS)
    if not isinstance(info, dict) or not isinstance(info.get("pieces"), list):
        raise ValueError("this GLB is not an ATT3D prompt chain (its root node has no 'att3d_chain' extras); "
                         "import it with File > Import > glTF 2.0")
    children = root.get("children") or []
    if len(children) != len(info["pieces"]):
        raise ValueError(f"the chain lists {len(info['pieces'])} pieces but its root has {len(children)} children")
    pieces = []
    for j, (child, meta) in enumerate(zip(children, info["pieces"])):
        try:
            prim = gltf["meshes"][gltf["nodes"][child]["mesh"]]["primitives"][0]
            attrs = prim["attributes"]
            base = accessor(attrs["POSITION"]).astype(np.float32)
            base_c = accessor(attrs["COLOR_0"]).astype(np.float32)[:, :3]
            faces = accessor(prim["indices"]).reshape(-1, 3) if "indices" in prim else np.zeros((0, 3), np.uint32)
            targets = prim.get("targets") or []
            times, key = [float(t) for t in meta["times"]], int(meta["key"])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ValueError(f"piece {j} of the chain is broken: {e}") from None
        if len(targets) != len(times) - 1 or not 0 <= key < len(times):
            raise ValueError(f"piece {j}: {len(targets)} morph targets for {len(times)} states")
        positions, colors = [], []
        it = iter(targets)
        for s in range(len(times)):
            if s == key:
                p, c = base, base_c
            else:
                t = next(it)
                p, c = base + accessor(t["POSITION"]), base_c + accessor(t["COLOR_0"])[:, :3]
            positions.append(from_y_up(p))
            colors.append(linear_to_srgb(c))
        pieces.append(SequencePiece(faces, times, positions, colors, key))
    steps = [float(t) for t in info.get("steps") or sorted({t for p in pieces for t in p.times})]
    labels = [str(x) for x in info.get("labels") or []]
    if len(labels) != len(steps):
        labels = [""] * len(steps)
    seq = SequenceData(steps, labels, meta=dict(info.get("meta") or {}), pieces=pieces)
    return seq, info
