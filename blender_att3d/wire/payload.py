"""The ATT3D mesh payload: a compact binary container for a mesh or a prompt-chain sequence.

Used by the service (``att3d serve``) to send results and by the HTTP client to read them; numpy
and the standard library only.

Layout (version 1), all integers little-endian::

    offset  size  field
    0       4     magic  b"A3DM"
    4       2     version (uint16) = 1
    6       2     flags (uint16) = 0, reserved
    8       4     header length H in bytes (uint32)
    12      H     header: UTF-8 JSON object, padded with spaces so that 12 + H is a multiple of 8
    12 + H  ...   data section: the arrays, each starting at an 8-byte aligned offset

The header::

    {"format": "att3d-payload", "version": 1,
     "kind": "mesh" | "sequence",
     "meta": {...},                      # provenance: prompt, model, resolution ... (JSON)
     "arrays": {NAME: {"dtype": "<f4" | "<u4" | "|u1", "shape": [...],
                       "offset": BYTES_FROM_DATA_START, "nbytes": N}, ...},
     # sequences only:
     "steps": [float...], "prompts": [str...], "consistent": bool, "meshes": [meta...],
     "pieces": [{"times": [float...], "key": int}...]}

Arrays are C-ordered and little-endian, whatever the machine. Names and meaning:

* a mesh: ``positions`` float32 [V, 3] (Blender frame: Z up, front -Y), ``faces`` uint32 [F, 3]
  (counter-clockwise seen from outside), ``colors`` per vertex, sRGB display values, either float32
  [V, 3] in [0, 1] (exact; the default) or uint8 [V, 3] (``round(c * 255)``; a quarter the size;
  readers divide by 255), optional ``uvs`` float32 [V, 2] and ``texture`` uint8 [H, W, 3] (row 0 is
  the top of the image; uv (0, 0) is its bottom-left corner, as in Blender).
* a consistent-topology sequence: its pieces (one topology each, see
  :class:`~blender_att3d.wire.types.SequencePiece`), ``"pieces": [{"times": [...], "key": k}...]`` in
  the header and per piece ``j`` the arrays ``"p{j}/faces"`` uint32 [F, 3], ``"p{j}/positions"``
  float32 [S, V, 3] and ``"p{j}/colors"`` [S, V, 3] (float32 or uint8 as above), S = len(times).
  (API 1 servers sent one topology as ``faces``, ``positions`` and ``colors``: a reader refuses it.)
* any other sequence: per step ``i`` the mesh arrays prefixed ``"{i}/"`` (``"0/positions"``,
  ``"0/faces"``, ``"0/colors"``, optional ``"0/uvs"``, ``"0/texture"``) and ``meshes[i]`` its meta.

Readers must reject an unknown magic or a newer version, and check that every array lies inside
the data section; unknown header keys are ignored (room for additions within version 1).
"""
from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .types import MeshData, SequenceData, SequencePiece

MAGIC = b"A3DM"
VERSION = 1
CONTENT_TYPE = "application/vnd.att3d.mesh"
_PREFIX = struct.Struct("<4sHHI")
_DTYPES: dict[str, np.dtype[Any]] = {"<f4": np.dtype("<f4"), "<u4": np.dtype("<u4"), "|u1": np.dtype("u1")}
MAX_HEADER_BYTES = 64 << 20


class PayloadError(ValueError):
    """The bytes are not a valid ATT3D payload."""


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, dict[str, Any]] = {}
        self.chunks: list[bytes | memoryview] = []
        self.size = 0

    def add(self, name: str, array: NDArray[Any], dtype: str) -> None:
        a = np.ascontiguousarray(array, dtype=_DTYPES[dtype])
        n = a.nbytes
        self.arrays[name] = {"dtype": dtype, "shape": list(a.shape), "offset": self.size, "nbytes": n}
        if n:
            # the array's own memory: finish() copies each byte once (tobytes + padding + join copied it
            # three times: 100 ms → 30 ms for a 200k-vertex mesh)
            self.chunks.append(a.data.cast("B"))
        pad = (-n) % 8
        if pad:
            self.chunks.append(b"\0" * pad)
        self.size += n + pad

    def finish(self, header: dict[str, Any]) -> bytes:
        header = {"format": "att3d-payload", "version": VERSION, **header, "arrays": self.arrays}
        js = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        js += b" " * ((-(_PREFIX.size + len(js))) % 8)
        return b"".join([_PREFIX.pack(MAGIC, VERSION, 0, len(js)), js, *self.chunks])


def _colors(c: NDArray[Any], colors: str) -> tuple[NDArray[Any], str]:
    if colors == "f32":
        return np.asarray(c, np.float32), "<f4"
    if colors == "u8":
        return (np.clip(np.asarray(c, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8), "|u1"
    raise ValueError(f"colors must be 'f32' or 'u8', got {colors!r}")


def _add_mesh(w: _Writer, m: MeshData, colors: str, prefix: str = "") -> None:
    w.add(prefix + "positions", m.positions, "<f4")
    w.add(prefix + "faces", m.faces, "<u4")
    c, dt = _colors(m.colors, colors)
    w.add(prefix + "colors", c, dt)
    if m.uvs is not None:
        w.add(prefix + "uvs", m.uvs, "<f4")
    if m.texture is not None:
        w.add(prefix + "texture", np.asarray(m.texture, np.uint8), "|u1")


def encode_mesh(mesh: MeshData, colors: str = "f32") -> bytes:
    """``mesh`` → payload bytes. ``colors``: "f32" (exact) or "u8" (compact)."""
    w = _Writer()
    _add_mesh(w, mesh, colors)
    return w.finish({"kind": "mesh", "meta": mesh.meta or {}})


def encode_sequence(seq: SequenceData, colors: str = "f32") -> bytes:
    w = _Writer()
    header: dict[str, Any] = {"kind": "sequence", "meta": seq.meta or {}, "steps": [float(s) for s in seq.steps],
                              "prompts": list(seq.prompts), "consistent": seq.consistent}
    if seq.consistent:
        header["pieces"] = []
        for j, piece in enumerate(seq.pieces):
            w.add(f"p{j}/faces", piece.faces, "<u4")
            w.add(f"p{j}/positions", np.stack(piece.positions), "<f4")
            c, dt = _colors(np.stack(piece.colors), colors)
            w.add(f"p{j}/colors", c, dt)
            header["pieces"].append({"times": piece.times, "key": piece.key})
        header["meshes"] = []
    else:
        if len(seq.meshes) != len(seq.steps):
            raise ValueError("an inconsistent sequence needs one mesh per step")
        for i, m in enumerate(seq.meshes):
            _add_mesh(w, m, colors, f"{i}/")
        header["meshes"] = [m.meta or {} for m in seq.meshes]
    return w.finish(header)


def encode(obj: MeshData | SequenceData, colors: str = "f32") -> bytes:
    return encode_sequence(obj, colors) if isinstance(obj, SequenceData) else encode_mesh(obj, colors)


# -- decoding --------------------------------------------------------------------------------------

def read_header(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """The header dict and the data section of a payload (validated)."""
    buf = memoryview(data)
    if len(buf) < _PREFIX.size:
        raise PayloadError("not an ATT3D payload: too short")
    magic, version, _flags, hlen = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise PayloadError(f"not an ATT3D payload (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version > VERSION or version < 1:
        raise PayloadError(f"ATT3D payload version {version} is not supported (this reader knows 1–{VERSION}); "
                           "update the add-on")
    if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen > len(buf):
        raise PayloadError("truncated ATT3D payload (header)")
    try:
        header = json.loads(bytes(buf[_PREFIX.size:_PREFIX.size + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadError(f"corrupt ATT3D payload header: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), dict):
        raise PayloadError("corrupt ATT3D payload header: no array table")
    return header, buf[_PREFIX.size + hlen:]


def _optional_array(header: dict[str, Any], body: memoryview, name: str) -> NDArray[Any] | None:
    return None if header["arrays"].get(name) is None else _array(header, body, name)


def _array(header: dict[str, Any], body: memoryview, name: str) -> NDArray[Any]:
    spec = header["arrays"].get(name)
    if spec is None:
        raise PayloadError(f"ATT3D payload has no {name!r} array")
    try:
        dtype = _DTYPES[spec["dtype"]]
        shape = tuple(int(s) for s in spec["shape"])
        offset, nbytes = int(spec["offset"]), int(spec["nbytes"])
    except (KeyError, TypeError, ValueError):
        raise PayloadError(f"ATT3D payload: bad description of array {name!r}") from None
    if any(s < 0 for s in shape) or offset < 0 or nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise PayloadError(f"ATT3D payload: inconsistent array {name!r}")
    if offset + nbytes > len(body):
        raise PayloadError(f"truncated ATT3D payload (array {name!r})")
    # copy: the result owns writable, native-endian memory
    a: NDArray[Any] = np.frombuffer(body[offset:offset + nbytes], dtype=dtype)
    return a.reshape(shape).astype(dtype.newbyteorder("="))


def _colors_back(c: NDArray[Any]) -> NDArray[Any]:
    return c.astype(np.float32) / 255.0 if c.dtype == np.uint8 else c.astype(np.float32, copy=False)


def _mesh(header: dict[str, Any], body: memoryview, prefix: str, meta: dict[str, Any]) -> MeshData:
    try:
        return MeshData(_array(header, body, prefix + "positions"), _array(header, body, prefix + "faces"),
                        _colors_back(_array(header, body, prefix + "colors")),
                        _optional_array(header, body, prefix + "uvs"),
                        _optional_array(header, body, prefix + "texture"), meta=dict(meta or {}))
    except ValueError as e:
        if isinstance(e, PayloadError):
            raise
        raise PayloadError(f"ATT3D payload: invalid mesh: {e}") from None


def _piece(header: dict[str, Any], body: memoryview, j: int, spec: Any) -> SequencePiece:
    if not isinstance(spec, dict) or not isinstance(spec.get("times"), list):
        raise PayloadError(f"ATT3D payload: bad description of chain piece {j}")
    pos = _array(header, body, f"p{j}/positions")
    col = _colors_back(_array(header, body, f"p{j}/colors"))
    if pos.ndim != 3 or pos.shape != col.shape:
        raise PayloadError(f"ATT3D payload: chain piece {j}'s arrays do not match")
    try:
        return SequencePiece(_array(header, body, f"p{j}/faces"), [float(t) for t in spec["times"]], list(pos),
                             list(col), int(spec.get("key", 0)))
    except (TypeError, ValueError) as e:
        if isinstance(e, PayloadError):
            raise
        raise PayloadError(f"ATT3D payload: invalid chain piece {j}: {e}") from None


def decode(data: bytes) -> MeshData | SequenceData:
    """Payload bytes → :class:`MeshData` or :class:`SequenceData` (raises :class:`PayloadError`)."""
    header, body = read_header(data)
    kind = header.get("kind")
    meta: dict[str, Any] = header["meta"] if isinstance(header.get("meta"), dict) else {}
    if kind == "mesh":
        return _mesh(header, body, "", meta)
    if kind != "sequence":
        raise PayloadError(f"ATT3D payload of unknown kind {kind!r}")
    steps = [float(s) for s in header.get("steps", [])]
    prompts = [str(p) for p in header.get("prompts", [])]
    if header.get("consistent"):
        if not isinstance(header.get("pieces"), list):
            raise PayloadError("ATT3D payload: a consistent sequence without its pieces (a server older than API 2?)")
        return SequenceData(steps, prompts, meta=meta,
                            pieces=[_piece(header, body, j, spec) for j, spec in enumerate(header["pieces"])])
    metas = header.get("meshes") or []
    meshes = [_mesh(header, body, f"{i}/", metas[i] if i < len(metas) and isinstance(metas[i], dict) else {})
              for i in range(len(steps))]
    return SequenceData(steps, prompts, None, meshes=meshes, meta=meta)
