"""Prompt chains in the scene: a mesh sequence (one object per step, visibility keyed) or one
object with shape keys (weights keyed, colours mixed by drivers); removing a previous chain.
"""
from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np

from ..keyframes import sequence_visibility_keys, shape_key_weight_keys
from ..wire.types import MeshData, SequenceData
from .animation import fcurves_of, set_keys
from .geometry import COLOR_ATTR, new_mesh, set_color_attribute
from .material import step_colors_material, vertex_color_material
from .objects import PROP_CHAIN, PROP_CHAIN_POSITION, link, set_provenance

STEP_ATTR = "att3d_step_{:03d}"  # one colour attribute per step of a shape-key chain


def _tag(obj, chain_id: str, meta: dict, position: float, model: str, resolution: int, prompt: str) -> None:
    set_provenance(obj, meta, prompt=prompt, model=model, resolution=resolution, chain_position=position)
    obj[PROP_CHAIN_POSITION] = float(position)
    obj[PROP_CHAIN] = chain_id


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


def build_sequence(collection, seq: SequenceData, frames: Sequence[float], name: str, chain_id: str,
                   location=(0.0, 0.0, 0.0), model: str = "", resolution: int = 0):
    """One object per step under an empty; ``hide_viewport``/``hide_render`` keyed (CONSTANT)."""
    if len(frames) != len(seq):
        raise ValueError("one frame per chain step")
    root = bpy.data.objects.new(name, None)
    root.empty_display_type = "PLAIN_AXES"
    root.location = location
    _tag(root, chain_id, seq.meta, -1.0, model, resolution, " -> ".join(dict.fromkeys(seq.prompts)))
    link(root, collection)
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


def build_shape_keys(collection, seq: SequenceData, frames: Sequence[float], name: str, chain_id: str,
                     interpolation: str = "LINEAR", location=(0.0, 0.0, 0.0), model: str = "",
                     resolution: int = 0):
    """One object whose shape keys morph through the steps; colours follow through the material."""
    if not seq.consistent:
        raise ValueError("shape keys need a consistent-topology chain (client.chain(consistent=True))")
    if len(frames) != len(seq):
        raise ValueError("one frame per chain step")
    n = len(seq)
    first = MeshData(seq.positions[0], seq.faces, seq.colors[0], meta=dict(seq.meta))
    me = new_mesh(name, first)
    attr_names = [STEP_ATTR.format(i) for i in range(n)]
    for i in range(n):
        set_color_attribute(me, attr_names[i], seq.colors[i], make_active=False)
    me.color_attributes.remove(me.color_attributes[COLOR_ATTR])
    me.color_attributes.active_color = me.color_attributes[attr_names[0]]
    obj = bpy.data.objects.new(name, me)
    obj.location = location
    _tag(obj, chain_id, seq.meta, seq.steps[0], model, resolution, " -> ".join(dict.fromkeys(seq.prompts)))
    link(obj, collection)
    basis = obj.shape_key_add(name="Basis", from_mix=False)
    step_names = [f"step_{i:03d}" for i in range(n)]
    key = me.shape_keys
    key.use_relative = True
    for i in range(1, n):
        kb = obj.shape_key_add(name=step_names[i], from_mix=False)
        pts = kb.points if hasattr(kb, "points") else kb.data  # ShapeKey.points (4.1+) is the fast path
        pts.foreach_set("co", np.asarray(seq.positions[i], dtype=np.float32).ravel())
        kb.slider_min, kb.slider_max = 0.0, 1.0
    step_names[0] = basis.name
    fcs = fcurves_of(key, f"{name} morph")
    for i, keys in enumerate(shape_key_weight_keys(frames, interpolation), start=1):
        set_keys(fcs, f'key_blocks["{step_names[i]}"].value', keys, interpolation)
    # Mix-node chain for steps 1..N-1 (the basis is step 0 and has no key value).
    mat = step_colors_material(f"{name} colours", key, step_names, attr_names)
    me.materials.append(mat)
    obj["att3d_steps"] = n
    obj["att3d_step_frames"] = [float(f) for f in frames]
    obj["att3d_interpolation"] = interpolation
    return obj
