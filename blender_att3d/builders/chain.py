"""Prompt chains in the scene: a mesh sequence (one object per step, visibility keyed) or shape
keys (one object per keyframe piece, weights and visibility keyed, colours mixed by drivers);
removing a chain. Every object of a chain carries its chain's id (:data:`.objects.PROP_CHAIN`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import bpy
import numpy as np

from ..colors import srgb_to_linear
from ..keyframes import sequence_visibility_keys, shape_key_weight_keys
from ..naming import MAX_NAME_BYTES, name_from_prompt
from ..wire.types import MeshData, SequenceData, SequencePiece
from .animation import fcurves_of, set_keys
from .geometry import COLOR_ATTR, new_mesh
from .material import state_colors_material, vertex_color_material
from .objects import PROP_CHAIN, PROP_CHAIN_POSITION, link, set_provenance

STATE_KEY = "state_{:03d}"  # the shape key of state j of a piece
DELTA_ATTR = "att3d_delta_{:03d}"  # its colour minus the basis colour (linear), a colour attribute


def _tag(obj, chain_id: str, meta: dict, position: float, model: str, resolution: int, prompt: str) -> None:
    set_provenance(obj, meta, prompt=prompt, model=model, resolution=resolution, chain_position=position)
    obj[PROP_CHAIN_POSITION] = float(position)
    obj[PROP_CHAIN] = chain_id


def _short(name: str, limit: int = MAX_NAME_BYTES) -> str:
    while len(name.encode("utf-8")) > limit:
        name = name[:-1]
    return name


def remove_chain(chain_id: str) -> int:
    """Delete every object tagged with ``chain_id`` and the data only they used; returns the count."""
    objs = [o for o in bpy.data.objects if o.get(PROP_CHAIN) == chain_id]
    meshes, mats, keys, actions, images = set(), set(), set(), set(), set()
    for o in objs:
        if o.animation_data and o.animation_data.action:
            actions.add(o.animation_data.action)
        if o.type == "MESH" and o.data is not None:
            me = o.data
            meshes.add(me)
            if me.shape_keys is not None:
                keys.add(me.shape_keys)
                if me.shape_keys.animation_data and me.shape_keys.animation_data.action:
                    actions.add(me.shape_keys.animation_data.action)
            for m in me.materials:
                if m is not None:
                    mats.add(m)
    n = len(objs)
    for o in objs:
        bpy.data.objects.remove(o, do_unlink=True)
    for me in meshes:
        if me.users == 0:
            bpy.data.meshes.remove(me)
    for m in mats:
        if m.users == 0:
            if m.node_tree:
                for node in m.node_tree.nodes:
                    if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
                        images.add(node.image)
            bpy.data.materials.remove(m)
    for a in actions:
        if a.users == 0:
            bpy.data.actions.remove(a)
    for img in images:
        if img.users == 0:
            bpy.data.images.remove(img)
    return n


def _chain_root(collection, seq: SequenceData, name: str, chain_id: str, location, model: str, resolution: int):
    """The empty a chain's objects hang under, tagged with the chain's provenance."""
    root = bpy.data.objects.new(name, None)
    root.empty_display_type = "PLAIN_AXES"
    root.location = location
    _tag(root, chain_id, seq.meta, -1.0, model, resolution, " -> ".join(dict.fromkeys(seq.prompts)))
    link(root, collection)
    return root


def build_sequence(collection, seq: SequenceData, frames: Sequence[float], name: str, chain_id: str,
                   location=(0.0, 0.0, 0.0), model: str = "", resolution: int = 0):
    """One object per step under an empty; ``hide_viewport``/``hide_render`` keyed (CONSTANT)."""
    if len(frames) != len(seq):
        raise ValueError("one frame per chain step")
    root = _chain_root(collection, seq, name, chain_id, location, model, resolution)
    mat = vertex_color_material(f"{name} colours")
    vis = sequence_visibility_keys(frames)
    for i in range(len(seq)):
        data = seq.mesh(i)
        me = new_mesh(f"{name} {i:03d}", data)
        me.materials.append(mat)
        obj = bpy.data.objects.new(f"{name} {i:03d}", me)
        obj.parent = root
        _tag(obj, chain_id, data.meta, seq.steps[i], model, resolution, seq.prompts[i])
        link(obj, collection)
        keys = [(f, float(h)) for f, h in vis[i]]
        fcs = fcurves_of(obj, f"{obj.name} visibility")
        set_keys(fcs, "hide_viewport", keys, "CONSTANT")
        set_keys(fcs, "hide_render", keys, "CONSTANT")
        hidden = bool(i != 0)
        obj.hide_viewport = obj.hide_render = hidden
    return root


def _delta_attribute(me, name: str, delta_linear: np.ndarray) -> None:
    """A FLOAT_COLOR point attribute holding raw (possibly negative) linear colour differences."""
    attr = me.color_attributes.new(name=name, type="FLOAT_COLOR", domain="POINT")
    rgba = np.zeros((len(me.vertices), 4), dtype=np.float32)
    rgba[:, :3] = delta_linear
    attr.data.foreach_set("color", rgba.ravel())


def build_piece(collection, piece: SequencePiece, frames: Sequence[float], name: str, interpolation: str):
    """One topology of a chain: its keyframe mesh as the basis, each other state a shape key whose
    value is keyed at the state's frame, and its colours (basis + weighted deltas, see
    :func:`.material.state_colors_material`)."""
    first = MeshData(piece.positions[piece.key], piece.faces, piece.colors[piece.key])
    me = new_mesh(name, first)
    base_lin = srgb_to_linear(piece.colors[piece.key])
    others = [j for j in range(len(piece)) if j != piece.key]
    delta_attrs = [DELTA_ATTR.format(j) for j in others]
    for j, attr in zip(others, delta_attrs):
        _delta_attribute(me, attr, srgb_to_linear(piece.colors[j]) - base_lin)
    me.color_attributes.active_color = me.color_attributes[COLOR_ATTR]
    obj = bpy.data.objects.new(name, me)
    link(obj, collection)
    basis = obj.shape_key_add(name="Basis", from_mix=False)
    key_names = []
    for j in others:
        kb = obj.shape_key_add(name=STATE_KEY.format(j), from_mix=False)
        pts = kb.points if hasattr(kb, "points") else kb.data  # ShapeKey.points (4.1+) is the fast path
        pts.foreach_set("co", np.asarray(piece.positions[j], dtype=np.float32).ravel())
        kb.slider_min, kb.slider_max = 0.0, 1.0
        key_names.append(kb.name)
    basis.name = f"Basis ({STATE_KEY.format(piece.key)})"
    key = me.shape_keys
    key.use_relative = True
    if others:
        fcs = fcurves_of(key, f"{name} morph")
        for key_name, keys in zip(key_names, shape_key_weight_keys(frames, interpolation, piece.key)):
            set_keys(fcs, f'key_blocks["{key_name}"].value', keys, interpolation)
    me.materials.append(state_colors_material(f"{name} colours", key, key_names, delta_attrs))
    obj["att3d_states"] = len(piece)
    obj["att3d_state_frames"] = [float(f) for f in frames]
    obj["att3d_key_state"] = piece.key
    obj["att3d_interpolation"] = interpolation
    return obj


def build_shape_keys(collection, seq: SequenceData, frame_of: Callable[[float], float], name: str, chain_id: str,
                     interpolation: str = "LINEAR", location=(0.0, 0.0, 0.0), model: str = "",
                     resolution: int = 0):
    """A chain as shape keys: an empty named after the chain, and under it one object per piece
    (one topology per keyframe, :func:`build_piece`), each visible (viewport and render, keyed
    CONSTANT) from the frame where it takes over to the frame where the next one does.

    ``frame_of(position)`` maps chain positions (pieces' state times) to scene frames.
    """
    if not seq.consistent:
        raise ValueError("shape keys need a consistent-topology chain (client.chain(consistent=True))")
    root = _chain_root(collection, seq, name, chain_id, location, model, resolution)
    starts = [frame_of(p.times[0]) for p in seq.pieces]
    vis = sequence_visibility_keys(starts)
    for i, piece in enumerate(seq.pieces):
        frames = [frame_of(t) for t in piece.times]
        label = seq.prompts[int(np.argmin(np.abs(np.asarray(seq.steps) - piece.times[piece.key])))]
        obj = build_piece(collection, piece, frames, _short(f"{name} {i + 1}: {name_from_prompt(label)}"),
                          interpolation)
        obj.parent = root
        _tag(obj, chain_id, seq.meta, piece.times[piece.key], model, resolution, label)
        if len(seq.pieces) > 1:
            keys = [(f, float(h)) for f, h in vis[i]]
            fcs = fcurves_of(obj, f"{obj.name} visibility")
            set_keys(fcs, "hide_viewport", keys, "CONSTANT")
            set_keys(fcs, "hide_render", keys, "CONSTANT")
            obj.hide_viewport = obj.hide_render = i != 0
    root["att3d_pieces"] = len(seq.pieces)
    root["att3d_step_frames"] = [frame_of(t) for t in seq.steps]
    root["att3d_interpolation"] = interpolation
    return root
