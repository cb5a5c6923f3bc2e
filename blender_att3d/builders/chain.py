"""Prompt chains in the scene, driven by one number.

A chain is an empty (its *root*) and under it one object per piece (shape keys: one topology per
keyframe, see :class:`~blender_att3d.wire.types.SequencePiece`) or per step (a mesh sequence).
The root carries the float custom property ``att3d_chain_position`` (keyframe ``k`` at ``k``), keyed
at the prompt keyframes' frames: the chain's whole timing is that one F-curve, which the animator
eases, holds, reverses or loops like any other. Everything else follows it through drivers:

* each shape key's value: the tent weight of its state at the position;
* each piece's (or step's) ``hide_viewport`` / ``hide_render``: whether it is the one that shows;
* the colours: per piece a node group adds each state's colour change (a colour attribute) times
  that state's weight to the keyframe's colours, so colours mix exactly like positions.

Every driver is a *simple expression* of one variable (:mod:`blender_att3d.keyframes`), which
Blender evaluates without Python: a .blend plays its chains with auto-run scripts off and without
the add-on. Rebuilding a chain (:func:`build_chain`) replaces only its objects' mesh data, shape
keys, drivers and colour groups: transforms, parents, collections, modifiers, materials and the
position curve (the animator's timing) stay. Every object of a chain carries its chain's id
(:data:`.objects.PROP_CHAIN`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import bpy
import numpy as np

from ..colors import srgb_to_linear
from ..keyframes import hidden_expression, position_keys, warp_frame, weight_expression
from ..naming import MAX_NAME_BYTES, name_from_prompt
from ..wire.types import MeshData, SequenceData, SequencePiece
from .animation import fcurves_of
from .geometry import COLOR_ATTR, new_mesh
from .material import chain_colors_group, chain_material, vertex_color_material
from .objects import PROP_CHAIN, PROP_CHAIN_POSITION, link, set_provenance

STATE_KEY = "state_{:03d}"  # the shape key of state j of a piece
DELTA_ATTR = "att3d_delta_{:03d}"  # its colour minus the basis colour (linear), a colour attribute
POSITION = PROP_CHAIN_POSITION  # on the root: the chain's position, the one value its timing keys
POSITION_PATH = f'["{POSITION}"]'
PROP_BUILD = "att3d_build"  # on the root: JSON of what was built (prompts, resolution, mode …)
PROP_KEY_FRAMES = "att3d_key_frames"  # on the root: the prompt keyframes' frames the curve is keyed to
PROP_PIECE = "att3d_piece"  # on a child: its index among the chain's pieces (or steps)
PROP_STATE_TIMES = "att3d_state_times"  # on a piece: the chain position of each of its states
PROP_KEY_STATE = "att3d_key_state"  # on a piece: the state that is its keyframe's own mesh
PROP_COLOR_GROUP = "att3d_color_group"  # on a piece: the node group mixing its colours
PROP_AUTO_NAME = "att3d_auto_name"  # on a child: the name a build gave it (a rebuild renames it unless the user did)
#: The position curve's interpolation: one curve, so an ease eases a whole segment.
INTERPOLATION_TYPES = {"LINEAR": "LINEAR", "EASE": "BEZIER", "CONSTANT": "CONSTANT"}


def _short(name: str, limit: int = MAX_NAME_BYTES) -> str:
    while len(name.encode("utf-8")) > limit:
        name = name[:-1]
    return name


def chain_root(chain_id: str):
    """The root empty of the chain ``chain_id`` (in any scene), or None."""
    for o in bpy.data.objects:
        if o.get(PROP_CHAIN) == chain_id and (o.parent is None or o.parent.get(PROP_CHAIN) != chain_id):
            return o
    return None


def chain_children(root) -> list:
    """The chain's pieces (or steps), in chain order."""
    chain_id = root.get(PROP_CHAIN)
    kids = [o for o in root.children if o.get(PROP_CHAIN) == chain_id]
    return sorted(kids, key=lambda o: (int(o.get(PROP_PIECE, 0)), float(o.get(POSITION, 0.0))))


def build_record(root) -> dict[str, Any]:
    """What the chain under ``root`` was built from (prompts, resolution, model, mode, steps …)."""
    try:
        return dict(json.loads(root.get(PROP_BUILD, "{}")))
    except (TypeError, ValueError):
        return {}


def _remove_data(objs: Sequence[Any]) -> None:
    """Delete ``objs`` and the meshes, shape keys, materials, colour groups and actions only they used."""
    meshes, mats, groups, actions = set(), set(), set(), set()
    for o in objs:
        if o.animation_data and o.animation_data.action:
            actions.add(o.animation_data.action)
        if o.type == "MESH" and o.data is not None:
            meshes.add(o.data)
            mats.update(m for m in o.data.materials if m is not None)
        g = bpy.data.node_groups.get(str(o.get(PROP_COLOR_GROUP, "")))
        if g is not None:
            groups.add(g)
    for o in objs:
        bpy.data.objects.remove(o, do_unlink=True)
    for me in meshes:
        if me.users == 0:
            bpy.data.meshes.remove(me)
    for m in mats:
        if m.users == 0:
            bpy.data.materials.remove(m)
    for g in groups:
        if g.users == 0:
            bpy.data.node_groups.remove(g)
    for a in actions:
        if a.users == 0:
            bpy.data.actions.remove(a)


def remove_chain(chain_id: str) -> int:
    """Delete every object tagged with ``chain_id`` and the data only they used; returns the count."""
    objs = [o for o in bpy.data.objects if o.get(PROP_CHAIN) == chain_id]
    _remove_data(objs)
    return len(objs)


# -- drivers -------------------------------------------------------------------------------------------

def _drive(idblock, data_path: str, expression: str, root) -> None:
    """A driver on ``idblock.data_path``: ``expression`` of ``p``, the root's chain position."""
    idblock.driver_remove(data_path)
    drv = idblock.driver_add(data_path).driver
    drv.type = "SCRIPTED"
    var = drv.variables.new()
    var.name = "p"
    var.type = "SINGLE_PROP"
    var.targets[0].id_type = "OBJECT"
    var.targets[0].id = root
    var.targets[0].data_path = POSITION_PATH
    drv.expression = expression


def _drive_visibility(obj, starts: Sequence[float], j: int, root) -> None:
    """``obj`` hidden (viewport and render) while piece or step ``j`` is not the one that shows."""
    expr = hidden_expression(starts, j)
    for path in ("hide_viewport", "hide_render"):
        obj.driver_remove(path)
        if expr is not None:
            _drive(obj, path, expr, root)
    if expr is None:
        obj.hide_viewport = obj.hide_render = False


# -- the position curve ----------------------------------------------------------------------------------

def position_fcurve(root):
    """The F-curve keying the root's chain position, or None."""
    ad = root.animation_data
    if ad is None or ad.action is None:
        return None
    return fcurves_of(root).find(POSITION_PATH)


def key_position(root, key_frames: Sequence[float], interpolation: str = "LINEAR") -> None:
    """Key the chain position on the prompt keyframes' frames (keyframe k at position k), replacing
    the curve: LINEAR, EASE (Bezier, level handles: every segment eases out of one keyframe and into
    the next) or CONSTANT (each keyframe held until the next)."""
    if interpolation not in INTERPOLATION_TYPES:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    fcs = fcurves_of(root, f"{root.name} timing")
    old = fcs.find(POSITION_PATH)
    if old is not None:
        fcs.remove(old)
    fc = fcs.new(POSITION_PATH)
    keys = position_keys(key_frames)
    kps = fc.keyframe_points
    kps.add(len(keys))
    kps.foreach_set("co", np.asarray(keys, dtype=np.float32).ravel())
    for i, kp in enumerate(kps):
        kp.interpolation = INTERPOLATION_TYPES[interpolation]
        x, y = kp.co
        if interpolation == "EASE":
            left = (x - keys[i - 1][0]) / 3 if i > 0 else 1.0
            right = (keys[i + 1][0] - x) / 3 if i + 1 < len(keys) else 1.0
            kp.handle_left_type = kp.handle_right_type = "ALIGNED"
            kp.handle_left = (x - left, y)
            kp.handle_right = (x + right, y)
        else:
            kp.handle_left_type = kp.handle_right_type = "AUTO_CLAMPED"
    fc.update()
    root[PROP_KEY_FRAMES] = [float(f) for f in key_frames]
    root[POSITION] = 0.0


def retime(root, key_frames: Sequence[float]) -> bool:
    """Move the position curve's keys with the prompt keyframes (now on ``key_frames``): no backend,
    no rebuild. Keys between keyframes keep their share of the segment, handles move with their keys,
    the animator's edits (eases, holds, extra keys, modifiers) stay. False when the chain was built
    with another number of keyframes (it needs a rebuild)."""
    old = [float(f) for f in root.get(PROP_KEY_FRAMES, [])]
    new = [float(f) for f in key_frames]
    if len(old) != len(new) or any(b <= a for a, b in zip(new, new[1:])):
        return False
    if old == new:
        return True
    fc = position_fcurve(root)
    if fc is not None:
        for kp in fc.keyframe_points:
            for attr in ("co", "handle_left", "handle_right"):
                x, y = getattr(kp, attr)
                setattr(kp, attr, (warp_frame(x, old, new), y))
        fc.update()
    root[PROP_KEY_FRAMES] = new
    return True


def chain_frames(root) -> list[float]:
    """The frames a chain spans: its keyframes' and its position curve's keys'."""
    frames = [float(f) for f in root.get(PROP_KEY_FRAMES, [])]
    fc = position_fcurve(root)
    if fc is not None:
        frames += [float(kp.co[0]) for kp in fc.keyframe_points]
    return frames


# -- objects ---------------------------------------------------------------------------------------------

def _delta_attribute(me, name: str, delta_linear: np.ndarray) -> None:
    """A FLOAT_COLOR point attribute holding raw (possibly negative) linear colour differences."""
    attr = me.color_attributes.new(name=name, type="FLOAT_COLOR", domain="POINT")
    rgba = np.zeros((len(me.vertices), 4), dtype=np.float32)
    rgba[:, :3] = delta_linear
    attr.data.foreach_set("color", rgba.ravel())


def _piece_mesh(name: str, piece: SequencePiece):
    """A mesh of one topology: its keyframe state as the basis, a shape key (slider 0–1) and a colour
    change attribute per other state; returns it and the other states' indices."""
    me = new_mesh(name, MeshData(piece.positions[piece.key], piece.faces, piece.colors[piece.key]))
    base_lin = srgb_to_linear(piece.colors[piece.key])
    others = [j for j in range(len(piece)) if j != piece.key]
    for j in others:
        _delta_attribute(me, DELTA_ATTR.format(j), srgb_to_linear(piece.colors[j]) - base_lin)
    me.color_attributes.active_color = me.color_attributes[COLOR_ATTR]
    if others:  # shape keys live on the mesh: a temporary object adds them
        tmp = bpy.data.objects.new(f"{name} (building)", me)
        basis = tmp.shape_key_add(name=f"Basis ({STATE_KEY.format(piece.key)})", from_mix=False)
        for j in others:
            kb = tmp.shape_key_add(name=STATE_KEY.format(j), from_mix=False)
            pts = kb.points if hasattr(kb, "points") else kb.data  # ShapeKey.points (4.1+) is the fast path
            pts.foreach_set("co", np.asarray(piece.positions[j], dtype=np.float32).ravel())
            kb.slider_min, kb.slider_max = 0.0, 1.0
        me.shape_keys.use_relative = True
        bpy.data.objects.remove(tmp)
        del basis
    return me, others


def _copy_modifiers(src, dst) -> None:
    """``src``'s modifiers onto ``dst`` (a piece that a rebuild added: it gets its siblings' Subdivision…)."""
    for m in src.modifiers:
        n = dst.modifiers.new(m.name, m.type)
        for prop in m.bl_rna.properties:
            if prop.is_readonly or prop.identifier in ("name", "type"):
                continue
            try:
                setattr(n, prop.identifier, getattr(m, prop.identifier))
            except (AttributeError, TypeError, ValueError):
                pass


def _set_mesh(obj, me) -> None:
    """Give ``obj`` the mesh ``me`` with the old mesh's materials (the user's edits stay); the old mesh
    and its shape keys go when nothing else uses them."""
    old = obj.data
    if old is not None and old is not me:
        for m in old.materials:
            me.materials.append(m)
    obj.data = me
    if old is not None and old is not me and old.users == 0:
        bpy.data.meshes.remove(old)


def _tag(obj, chain_id: str, meta: dict, position: float, model: str, resolution: int, prompt: str) -> None:
    set_provenance(obj, meta, prompt=prompt, model=model, resolution=resolution, chain_position=position)
    obj[POSITION] = float(position)
    obj[PROP_CHAIN] = chain_id


def _children(root, count: int, names: list[str], collection) -> list:
    """``count`` children of ``root`` in chain order: the existing ones (kept: transform, modifiers,
    collections), new ones as needed (like the first existing one), extras removed."""
    old = chain_children(root)
    for o in old[count:]:
        _remove_data([o])
    kids = old[:count]
    template = kids[0] if kids else None
    for i in range(len(kids), count):
        obj = bpy.data.objects.new(names[i], bpy.data.meshes.new(names[i]))
        for coll in (template.users_collection if template is not None else [collection]):
            coll.objects.link(obj)
        obj.parent = root
        if template is not None:
            obj.matrix_parent_inverse = template.matrix_parent_inverse
            obj.matrix_basis = template.matrix_basis
            _copy_modifiers(template, obj)
        kids.append(obj)
    for i, obj in enumerate(kids):
        obj[PROP_PIECE] = i
        if obj.name != names[i] and obj.get(PROP_AUTO_NAME, obj.name) == obj.name:  # not renamed by the user
            obj.name = names[i]
        obj[PROP_AUTO_NAME] = obj.name
    return kids


def _build_pieces(root, collection, seq: SequenceData, name: str, chain_id: str, model: str, resolution: int):
    starts = [p.times[0] for p in seq.pieces]
    labels = [seq.prompts[int(np.argmin(np.abs(np.asarray(seq.steps) - p.times[p.key])))] for p in seq.pieces]
    names = [_short(f"{name} {i + 1}: {name_from_prompt(label)}") for i, label in enumerate(labels)]
    kids = _children(root, len(seq.pieces), names, collection)
    for i, (obj, piece) in enumerate(zip(kids, seq.pieces)):
        me, others = _piece_mesh(names[i], piece)
        fresh = not len(obj.data.materials)
        _set_mesh(obj, me)
        for j in others:
            _drive(me.shape_keys, f'key_blocks["{STATE_KEY.format(j)}"].value',
                   weight_expression(piece.times, j), root)
        group = chain_colors_group(bpy.data.node_groups.get(str(obj.get(PROP_COLOR_GROUP, ""))),
                                   f"{names[i]} colours", [DELTA_ATTR.format(j) for j in others],
                                   [weight_expression(piece.times, j) for j in others],
                                   lambda ng, path, expr: _drive(ng, path, expr, root))
        obj[PROP_COLOR_GROUP] = group.name
        if fresh:
            me.materials.append(chain_material(f"{names[i]}", group))
        _drive_visibility(obj, starts, i, root)
        _tag(obj, chain_id, seq.meta, piece.times[piece.key], model, resolution, labels[i])
        obj[PROP_STATE_TIMES] = [float(t) for t in piece.times]
        obj[PROP_KEY_STATE] = piece.key
        obj["att3d_states"] = len(piece)
    root["att3d_pieces"] = len(seq.pieces)


def _build_steps(root, collection, seq: SequenceData, name: str, chain_id: str, model: str, resolution: int):
    names = [f"{name} {i:03d}" for i in range(len(seq))]
    kids = _children(root, len(seq), names, collection)
    shared = next((m for o in kids if o.data is not None for m in o.data.materials if m is not None), None)
    mat = shared or vertex_color_material(f"{name} colours")
    for i, obj in enumerate(kids):
        data = seq.mesh(i)
        me = new_mesh(names[i], data)
        had = obj.data is not None and len(obj.data.materials)
        _set_mesh(obj, me)
        if not had:
            me.materials.append(mat)
        _drive_visibility(obj, seq.steps, i, root)
        _tag(obj, chain_id, data.meta, seq.steps[i], model, resolution, seq.prompts[i])
    root.pop("att3d_pieces", None)


def build_chain(collection, seq: SequenceData, key_frames: Sequence[float], name: str, chain_id: str,
                mode: str = "SHAPE_KEYS", interpolation: str = "LINEAR", location=(0.0, 0.0, 0.0),
                model: str = "", resolution: int = 0, record: dict[str, Any] | None = None):
    """Build the chain ``chain_id`` from ``seq`` (placed, :func:`.sizing.fit_sequence`), or rebuild it
    in place when it exists: see the module notes. ``key_frames``: the prompt keyframes' frames (the
    position curve is keyed on them with ``interpolation`` when the chain is new or its number of
    keyframes changed; otherwise the animator's curve stays). ``record``: what it was built from
    (:func:`build_record`). Returns the root."""
    if mode == "SHAPE_KEYS" and not seq.consistent:
        raise ValueError("shape keys need a consistent-topology chain (client.chain(consistent=True))")
    if mode not in ("SHAPE_KEYS", "SEQUENCE"):
        raise ValueError(f"unknown chain mode {mode!r}")
    root = chain_root(chain_id)
    if root is not None and build_record(root).get("mode", mode) != mode:
        for o in chain_children(root):  # pieces and steps are different objects: start them afresh
            _remove_data([o])
    if root is None:
        root = bpy.data.objects.new(name, None)
        root.empty_display_type = "PLAIN_AXES"
        root.location = location
        link(root, collection)
    prompts = list((record or {}).get("prompts") or
                   [p for p, t in zip(seq.prompts, seq.steps) if float(t).is_integer()])  # the keyframes' labels
    _tag(root, chain_id, seq.meta, 0.0, model, resolution, " -> ".join(dict.fromkeys(prompts)))
    root[PROP_BUILD] = json.dumps({**(record or {}), "prompts": prompts, "mode": mode, "resolution": int(resolution),
                                   "model": model})
    keep_curve = position_fcurve(root) is not None and len(root.get(PROP_KEY_FRAMES, [])) == len(key_frames)
    if keep_curve:
        retime(root, key_frames)
    else:
        key_position(root, key_frames, interpolation)
    root.id_properties_ui(POSITION).update(
        min=0.0, max=float(max(1, len(key_frames) - 1)), soft_min=0.0, soft_max=float(max(1, len(key_frames) - 1)),
        description="Where the chain is: keyframe k at k, in-betweens fractional (key it to time the chain)")
    move = seq.meta.get("max_move_voxels")  # the backend's largest vertex move between stored states
    if move is not None:
        root["att3d_max_move_voxels"] = float(move)
    else:
        root.pop("att3d_max_move_voxels", None)
    if mode == "SHAPE_KEYS":
        _build_pieces(root, collection, seq, name, chain_id, model, resolution)
    else:
        _build_steps(root, collection, seq, name, chain_id, model, resolution)
    return root
