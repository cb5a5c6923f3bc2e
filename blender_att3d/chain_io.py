"""A built chain to one GLB and back (bpy): the add-on's File → Export / Import, the chain panel's
Export button and the batch's ``--export-dir`` all use these.

The GLB (:func:`.wire.glb.sequence_glb`) holds the pieces with ``POSITION``/``NORMAL``/``COLOR_0``
morph targets and one animation timed to the scene: the position curve sampled once a frame, scene
frame ``f`` at glTF time ``(f − frame_start) / fps``. Its root node's extras (``att3d_chain``) keep
what :func:`import_chain` needs to rebuild a live chain: the prompts, the keyframes' frames, the
position curve's keys as the animator left them, each piece's state positions.

Blender's own glTF importer reads the same file as plain shape keys: it drops the colour morph
targets and puts glTF time 0 on frame 0 (a chain keyed from frame 1 lands a frame early), which is
why the add-on has its own import.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .builders.chain import (
    DELTA_ATTR,
    POSITION,
    PROP_KEY_FRAMES,
    PROP_KEY_STATE,
    PROP_STATE_TIMES,
    STATE_KEY,
    build_chain,
    build_record,
    chain_children,
    position_fcurve,
)
from .builders.geometry import COLOR_ATTR
from .builders.objects import PROP_CHAIN, PROP_MODEL, PROP_PROMPT, PROP_RESOLUTION
from .colors import linear_to_srgb
from .wire import glb
from .wire.fileio import atomic_write_bytes, writing
from .wire.types import MeshData, SequenceData, SequencePiece

FORMAT_VERSION = 1
_KEY_FIELDS = ("interpolation", "easing", "handle_left_type", "handle_right_type")


def _triangles(me) -> np.ndarray:
    me.calc_loop_triangles()
    tris = np.empty(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3).astype(np.uint32)


def _coords(block_data, n: int) -> np.ndarray:
    co = np.empty(n * 3, np.float32)
    block_data.foreach_get("co", co)
    return co.reshape(-1, 3)


def _linear_colors(me, name: str) -> np.ndarray:
    """A point colour attribute's stored (scene-linear) values: the exact numbers the build wrote."""
    out = np.empty(len(me.vertices) * 4, np.float32)
    me.color_attributes[name].data.foreach_get("color", out)
    return out.reshape(-1, 4)[:, :3]


def _piece_of(obj) -> SequencePiece:
    """A built piece (or a mesh sequence's step) read back from its object: every state's positions
    (its shape keys) and sRGB colours (the basis plus each state's colour change)."""
    me = obj.data
    n = len(me.vertices)
    faces = _triangles(me)
    base_lin = _linear_colors(me, COLOR_ATTR)
    base_c = linear_to_srgb(base_lin)
    if PROP_STATE_TIMES not in obj:  # a mesh sequence's step: one state
        return SequencePiece(faces, [float(obj[POSITION])], [_coords(me.vertices, n)], [base_c], 0)
    times, key = [float(t) for t in obj[PROP_STATE_TIMES]], int(obj[PROP_KEY_STATE])
    blocks = me.shape_keys.key_blocks if me.shape_keys else None
    positions, colors = [], []
    for j in range(len(times)):
        if j == key:
            positions.append(_coords(blocks[0].data if blocks else me.vertices, n))
            colors.append(base_c)
            continue
        positions.append(_coords(blocks[STATE_KEY.format(j)].data, n))
        colors.append(linear_to_srgb(base_lin + _linear_colors(me, DELTA_ATTR.format(j))))
    return SequencePiece(faces, times, positions, colors, key)


def _position_keys(root) -> list[dict[str, Any]]:
    fc = position_fcurve(root)
    if fc is None:
        return []
    return [{"co": list(kp.co), "handle_left": list(kp.handle_left), "handle_right": list(kp.handle_right),
             **{f: getattr(kp, f) for f in _KEY_FIELDS}} for kp in fc.keyframe_points]


def chain_glb_bytes(root, scene) -> bytes:
    """The chain under ``root`` as one GLB timed to ``scene`` (see the module notes)."""
    kids = chain_children(root)
    if not kids:
        raise ValueError(f"'{root.name}' has no chain objects to export: build the chain first")
    pieces = [_piece_of(o) for o in kids]
    fps = scene.render.fps / scene.render.fps_base
    frames = np.arange(scene.frame_start, max(scene.frame_end, scene.frame_start + 1) + 1, dtype=np.float64)
    fc = position_fcurve(root)
    positions = [fc.evaluate(float(f)) if fc is not None else float(root.get(POSITION, 0.0)) for f in frames]
    steps = sorted({t for p in pieces for t in p.times})
    labels = [""] * len(steps)
    record = build_record(root)
    info = {"version": FORMAT_VERSION, "name": root.name, "mode": record.get("mode", "SHAPE_KEYS"),
            "prompts": record.get("prompts", []), "key_frames": [float(f) for f in root.get(PROP_KEY_FRAMES, [])],
            "frame_start": int(scene.frame_start), "fps": fps, "position_keys": _position_keys(root),
            "model": str(root.get(PROP_MODEL, "")), "resolution": int(root.get(PROP_RESOLUTION, 0)),
            "build": record, "steps": steps, "labels": labels,
            "pieces": [{"times": p.times, "key": p.key, "prompt": str(o.get(PROP_PROMPT, ""))}
                       for p, o in zip(pieces, kids)]}
    seq = SequenceData(steps, labels, pieces=pieces)
    return glb.sequence_glb(seq, name=root.name, track=((frames - scene.frame_start) / fps, positions),
                            extras={glb.CHAIN_EXTRAS: info})


def export_chain_glb(root, scene, path: str | Path) -> Path:
    """:func:`chain_glb_bytes` written atomically to ``path``: a failed write (a full disk) leaves the
    old file and raises :class:`~.wire.fileio.WriteFailed` with one line saying why."""
    path = Path(path)
    data = chain_glb_bytes(root, scene)
    with writing(path):
        return atomic_write_bytes(path, data)


def _restore_position_keys(root, keys: list[dict[str, Any]]) -> None:
    fc = position_fcurve(root)
    if fc is None or not keys:
        return
    kps = fc.keyframe_points
    while len(kps):
        kps.remove(kps[0], fast=True)
    kps.add(len(keys))
    for kp, k in zip(kps, keys):
        kp.co = k["co"]
        for f in _KEY_FIELDS:
            if f in k:
                setattr(kp, f, k[f])
        kp.handle_left, kp.handle_right = k["handle_left"], k["handle_right"]
    fc.update()


def import_chain(path: str | Path, scene, collection, location=(0.0, 0.0, 0.0), chain_item=None):
    """A chain GLB written by :func:`chain_glb_bytes` as a live chain in ``scene``: pieces, shape keys,
    drivers, colours mixing, the position curve as exported. ``chain_item``: the panel's chain to tie it
    to (its keyframes are set from the file). Returns the root; ValueError for any other file."""
    seq, info = glb.chain_from_glb(Path(path).read_bytes())
    try:
        key_frames = [float(f) for f in info["key_frames"]]
        prompts = [str(p) for p in info["prompts"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError("the chain GLB lacks its keyframes' frames and prompts") from None
    if len(key_frames) < 2 or len(prompts) != len(key_frames):
        raise ValueError(f"the chain GLB has {len(prompts)} prompts for {len(key_frames)} keyframes")
    mode = info.get("mode", "SHAPE_KEYS")
    if mode == "SEQUENCE":
        meshes = [MeshData(p.positions[0], p.faces, p.colors[0]) for p in seq.pieces]
        seq = SequenceData([p.times[0] for p in seq.pieces], [str(x.get("prompt", "")) for x in info["pieces"]],
                           meshes=meshes)
    else:
        seq.prompts = [""] * len(seq.steps)
        for p, meta in zip(seq.pieces, info["pieces"]):
            seq.prompts[seq.steps.index(p.times[p.key])] = str(meta.get("prompt", ""))
    chain_id = chain_item.uid if chain_item is not None and chain_item.uid else uuid.uuid4().hex[:12]
    record = dict(info.get("build") or {})
    record.setdefault("prompts", prompts)
    root = build_chain(collection, seq, key_frames, str(info.get("name") or Path(path).stem), chain_id, mode,
                       "LINEAR", location=location, model=str(info.get("model", "")),
                       resolution=int(info.get("resolution", 0)), record=record)
    _restore_position_keys(root, list(info.get("position_keys") or []))
    root[PROP_CHAIN] = chain_id
    if chain_item is not None:
        chain_item.keyframes.clear()
        for f, p in zip(key_frames, prompts):
            k = chain_item.keyframes.add()
            k.prompt, k.frame = p, int(round(f))  # (its retime callback finds the curve already on these frames)
        chain_item.mode = mode
        chain_item.uid = chain_id
        for field in ("steps", "max_states"):
            if field in record:
                setattr(chain_item, field, int(record[field]))
    root["att3d_imported_from"] = json.dumps({"file": str(path), "fps": info.get("fps")})
    return root
