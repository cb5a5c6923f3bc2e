"""numpy -> Blender data: meshes, colour attributes, materials, shape keys, mesh sequences.

The only place that turns client results (:mod:`.wire.types`) into Blender data; the UI operators
and the headless batch both call it. Works on Blender 4.2 LTS and 5.x (layered actions).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bpy
import numpy as np

from . import logic
from .wire.types import MeshData, SequenceData

COLOR_ATTR = "att3d_color"
STEP_ATTR = "att3d_step_{:03d}"
UV_NAME = "att3d_uv"
PROP_PROMPT = "att3d_prompt"
PROP_MODEL = "att3d_model"
PROP_RESOLUTION = "att3d_resolution"
PROP_CHAIN_POSITION = "att3d_chain_position"
PROP_COLOR_MODE = "att3d_color_mode"  # VERTEX | TEXTURE: what the material shows
PROP_CHAIN = "att3d_chain"  # chain id on every object a chain build made
PROP_BLEND = "att3d_blend_preview"


# -- meshes ------------------------------------------------------------------------------------------
def fill_mesh(me: bpy.types.Mesh, data: MeshData, color_attr: str = COLOR_ATTR) -> bpy.types.Mesh:
    """Replace ``me``'s geometry with ``data`` (positions, triangles, colours, optional UVs).

    Uses ``vertices/loops/polygons.add`` + ``foreach_set``, the fastest route in the Python API.
    """
    pos = data.positions
    faces = data.faces
    me.clear_geometry()
    nv, nf = len(pos), len(faces)
    me.vertices.add(nv)
    # The generic attribute API is ~50x faster than MeshVertex/MeshLoop.foreach_set (4.0+).
    position = me.attributes.get("position")
    if position is not None:
        position.data.foreach_set("vector", pos.ravel())
    else:  # pragma: no cover - Blender < 3.5
        me.vertices.foreach_set("co", pos.ravel())
    if nf:
        me.loops.add(nf * 3)
        me.polygons.add(nf)
        corner_vert = me.attributes.get(".corner_vert")
        if corner_vert is not None:
            corner_vert.data.foreach_set("value", faces.astype(np.int32).ravel())
        else:  # pragma: no cover - Blender < 4.0
            me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
        me.polygons.foreach_set("loop_start", np.arange(0, nf * 3, 3, dtype=np.int32))
    me.update(calc_edges=True)
    if nf:
        _smooth(me)
    set_color_attribute(me, color_attr, data.colors)
    if data.uvs is not None and nf:
        uv = me.uv_layers.new(name=UV_NAME) if UV_NAME not in me.uv_layers else me.uv_layers[UV_NAME]
        uv.data.foreach_set("uv", data.uvs[faces.ravel()].ravel())
    return me


def _smooth(me) -> None:
    if hasattr(me, "shade_smooth"):  # 4.1+
        me.shade_smooth()
    else:  # pragma: no cover - older Blender
        me.polygons.foreach_set("use_smooth", np.ones(len(me.polygons), dtype=bool))


def set_color_attribute(me, name: str, colors_srgb: np.ndarray, make_active: bool = True):
    """A per-vertex FLOAT_COLOR attribute from sRGB display colours (stored scene-linear)."""
    attr = me.color_attributes.get(name)
    if attr is not None and (attr.domain != "POINT" or attr.data_type != "FLOAT_COLOR"):
        me.color_attributes.remove(attr)
        attr = None
    if attr is None:
        attr = me.color_attributes.new(name=name, type="FLOAT_COLOR", domain="POINT")
    n = len(me.vertices)
    rgba = np.ones((n, 4), dtype=np.float32)
    if n:
        rgba[:, :3] = logic.srgb_to_linear(colors_srgb)
        attr.data.foreach_set("color", rgba.ravel())
    if make_active:
        me.color_attributes.active_color = attr
        try:
            me.color_attributes.render_color_index = me.color_attributes.find(name)
        except (AttributeError, TypeError):  # pragma: no cover
            pass
    return attr


def read_color_attribute(me, name: str = COLOR_ATTR) -> np.ndarray:
    """sRGB colours [V, 3] of a point colour attribute (for tests and checks)."""
    attr = me.color_attributes[name]
    out = np.empty(len(attr.data) * 4, dtype=np.float32)
    attr.data.foreach_get("color_srgb", out)
    return out.reshape(-1, 4)[:, :3]


def new_mesh(name: str, data: MeshData) -> bpy.types.Mesh:
    return fill_mesh(bpy.data.meshes.new(name), data)


def make_image(name: str, texture: np.ndarray) -> bpy.types.Image:
    """A packed Blender image from uint8 [H, W, 3] (row 0 at the top, as in image files)."""
    h, w = texture.shape[:2]
    img = bpy.data.images.new(name, width=w, height=h, alpha=False)
    px = np.ones((h, w, 4), dtype=np.float32)
    px[..., :3] = texture[::-1, :, :3].astype(np.float32) / 255.0  # Blender stores rows bottom-up
    img.pixels.foreach_set(px.ravel())
    img.pack()
    return img


# -- materials -------------------------------------------------------------------------------------
def _new_material(name: str):
    mat = bpy.data.materials.new(name)
    if not mat.node_tree:  # 4.x needs use_nodes; 5.0 makes the tree itself
        mat.use_nodes = True
    nt = mat.node_tree
    bsdf = next((n for n in nt.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"), None)
    out = next((n for n in nt.nodes if n.bl_idname == "ShaderNodeOutputMaterial"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
    if out is None:
        out = nt.nodes.new("ShaderNodeOutputMaterial")
        nt.links.new(bsdf.outputs[0], out.inputs[0])
    bsdf.inputs["Roughness"].default_value = 0.8
    bsdf.location = (0, 300)
    out.location = (300, 300)
    return mat, nt, bsdf


def _socket(sockets, identifier):
    for s in sockets:
        if s.identifier == identifier:
            return s
    raise KeyError(identifier)


def vertex_color_material(name: str, attr_name: str = COLOR_ATTR):
    """Color Attribute node -> Principled BSDF base colour."""
    mat, nt, bsdf = _new_material(name)
    node = nt.nodes.new("ShaderNodeVertexColor")
    node.layer_name = attr_name
    node.location = (-300, 300)
    nt.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def texture_material(name: str, image):
    """Image Texture node (UV map ``att3d_uv``) -> Principled BSDF base colour."""
    mat, nt, bsdf = _new_material(name)
    uv = nt.nodes.new("ShaderNodeUVMap")
    uv.uv_map = UV_NAME
    uv.location = (-600, 300)
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.location = (-300, 300)
    nt.links.new(uv.outputs["UV"], tex.inputs["Vector"])
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def step_colors_material(name: str, key, step_names: Sequence[str], attr_names: Sequence[str]):
    """Per-step colour attributes mixed by a chain of Mix nodes, each driven by the shape keys.

    Mix node i (i >= 1) blends the running colour towards step i's colour with factor
    ``sum(value of keys i..N-1)`` (a SUM driver, no Python needed), which gives exactly the
    weighted colour of the shape-key mix (see :func:`logic.mix_factor_of_step`).
    """
    mat, nt, bsdf = _new_material(name)
    prev = None
    for i, attr in enumerate(attr_names):
        col = nt.nodes.new("ShaderNodeVertexColor")
        col.layer_name = attr
        col.name = col.label = f"Step {i}"
        col.location = (-400 + 220 * i, -100 - 60 * i)
        if prev is None:
            prev = col.outputs["Color"]
            continue
        mix = nt.nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "MIX"
        mix.clamp_factor = True
        mix.name = mix.label = f"Mix {i}"
        mix.location = (-400 + 220 * i, 100)
        nt.links.new(prev, _socket(mix.inputs, "A_Color"))
        nt.links.new(col.outputs["Color"], _socket(mix.inputs, "B_Color"))
        fac = _socket(mix.inputs, "Factor_Float")
        fac_index = list(mix.inputs).index(fac)
        fcu = nt.driver_add(f'nodes["{mix.name}"].inputs[{fac_index}].default_value')
        drv = fcu.driver
        drv.type = "SUM"
        for j in range(i, len(attr_names)):
            var = drv.variables.new()
            var.name = f"k{j}"
            var.type = "SINGLE_PROP"
            var.targets[0].id_type = "KEY"
            var.targets[0].id = key
            var.targets[0].data_path = f'key_blocks["{step_names[j]}"].value'
        prev = _socket(mix.outputs, "Result_Color")
    nt.links.new(prev, bsdf.inputs["Base Color"])
    bsdf.location = (-400 + 220 * len(attr_names) + 200, 300)
    return mat


# -- animation (4.2 legacy actions and 4.4+/5.x layered actions) ---------------------------------------
def fcurves_of(idblock, action_name: str | None = None):
    """The F-curve collection animating ``idblock``, creating action/slot/channelbag as needed.

    Blender 4.4+ (and 5.x, where ``Action.fcurves`` is gone): the channelbag of the ID's slot.
    Blender 4.2/4.3: the legacy ``Action.fcurves``.
    """
    from bpy_extras import anim_utils

    ad = idblock.animation_data or idblock.animation_data_create()
    action = ad.action
    if action is None:
        action = bpy.data.actions.new(action_name or f"{idblock.name}Action")
        ad.action = action
    if hasattr(anim_utils, "action_ensure_channelbag_for_slot"):
        slot = ad.action_slot
        if slot is None:
            slot = action.slots.new(id_type=idblock.id_type, name=idblock.name)
            ad.action_slot = slot
        return anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves
    return action.fcurves  # pragma: no cover - Blender < 4.4


def set_keys(fcurves, data_path: str, keys: Sequence[tuple[float, float]], interpolation: str,
             index: int = 0):
    """An F-curve with exactly ``keys`` (frame, value) and the given interpolation."""
    fc = fcurves.find(data_path, index=index)
    if fc is not None:
        fcurves.remove(fc)
    fc = fcurves.new(data_path, index=index)
    kps = fc.keyframe_points
    kps.add(len(keys))
    kps.foreach_set("co", np.asarray(keys, dtype=np.float32).ravel())
    for kp in kps:
        kp.interpolation = interpolation
        kp.handle_left_type = kp.handle_right_type = "VECTOR"
    fc.update()
    return fc


# -- objects ---------------------------------------------------------------------------------------
def set_provenance(obj, meta: dict[str, Any], prompt: str = "", model: str = "", resolution: int = 0,
                   chain_position: float = -1.0) -> None:
    """Custom properties that let an object be regenerated (chain position -1: not in a chain)."""
    obj[PROP_PROMPT] = str(meta.get("prompt") or prompt)
    obj[PROP_MODEL] = str(meta.get("model") or model)
    obj[PROP_RESOLUTION] = int(meta.get("resolution") or resolution)
    cp = meta.get("chain_position", chain_position)
    obj[PROP_CHAIN_POSITION] = float(-1.0 if cp is None else cp)


def is_single_result(obj) -> bool:
    """A generated object that Regenerate can redo from its prompt (not a chain part or the blend preview)."""
    return PROP_PROMPT in obj and PROP_CHAIN not in obj and PROP_BLEND not in obj


def _link(obj, collection) -> None:
    collection.objects.link(obj)


def select_only(view_layer, obj) -> None:
    for o in list(view_layer.objects.selected):
        if o is not None:  # stale entries right after objects were removed
            o.select_set(False, view_layer=view_layer)
    try:
        obj.select_set(True, view_layer=view_layer)
    except RuntimeError:  # not in this view layer (excluded collection)
        return
    view_layer.objects.active = obj


def create_object(collection, data: MeshData, name: str, location=(0.0, 0.0, 0.0),
                  color_mode: str = "VERTEX", **provenance) -> bpy.types.Object:
    """A new object with ``data`` (vertex colours, or the baked texture when present and asked for)."""
    me = new_mesh(name, data)
    obj = bpy.data.objects.new(name, me)
    obj.location = location
    textured = color_mode == "TEXTURE" and data.texture is not None and data.uvs is not None
    if textured:
        mat = texture_material(name, make_image(name, data.texture))
    else:
        mat = vertex_color_material(name)
    me.materials.append(mat)
    set_provenance(obj, data.meta, **provenance)
    obj[PROP_COLOR_MODE] = "TEXTURE" if textured else "VERTEX"
    _link(obj, collection)
    return obj


def replace_geometry(obj, data: MeshData) -> None:
    """Swap ``obj``'s mesh geometry in place (same mesh datablock, material kept)."""
    fill_mesh(obj.data, data)


def _texture_node(mat):
    if mat is None or not mat.node_tree:
        return None
    return next((n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"), None)


def update_object(obj, data: MeshData, color_mode: str = "VERTEX") -> None:
    """Regenerate ``obj`` in place: new geometry and colours, same object and mesh datablock.

    TEXTURE with a baked texture in ``data``: the material's image is replaced by the new one.
    Otherwise the object shows vertex colours (a texture material left from before is swapped for a
    vertex-colour one, since the new geometry has no UVs for it).
    """
    fill_mesh(obj.data, data)
    me = obj.data
    mat = me.materials[0] if len(me.materials) else None
    node = _texture_node(mat)
    textured = color_mode == "TEXTURE" and data.texture is not None and data.uvs is not None
    if textured and node is not None:
        old = node.image
        node.image = make_image(obj.name, data.texture)
        if old is not None and old.users == 0:
            bpy.data.images.remove(old)
    elif textured:
        _set_material(me, texture_material(obj.name, make_image(obj.name, data.texture)))
    elif mat is None or node is not None:
        _set_material(me, vertex_color_material(obj.name))
    obj[PROP_COLOR_MODE] = "TEXTURE" if textured else "VERTEX"


def _set_material(me, mat) -> None:
    old = me.materials[0] if len(me.materials) else None
    if len(me.materials):
        me.materials[0] = mat
    else:
        me.materials.append(mat)
    if old is not None and old.users == 0:
        node = _texture_node(old)
        img = node.image if node is not None else None
        bpy.data.materials.remove(old)
        if img is not None and img.users == 0:
            bpy.data.images.remove(img)


# -- chains ----------------------------------------------------------------------------------------
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
    _link(root, collection)
    mat = vertex_color_material(f"{name} colours")
    vis = logic.sequence_visibility_keys(frames)
    for i in range(len(seq)):
        data = seq.mesh(i)
        me = new_mesh(f"{name} {i:03d}", data)
        me.materials.append(mat)
        obj = bpy.data.objects.new(f"{name} {i:03d}", me)
        obj.parent = root
        _tag(obj, chain_id, data.meta, seq.steps[i], model, resolution, seq.prompts[i])
        _link(obj, collection)
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
    _link(obj, collection)
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
    for i, keys in enumerate(logic.shape_key_weight_keys(frames, interpolation), start=1):
        set_keys(fcs, f'key_blocks["{step_names[i]}"].value', keys, interpolation)
    # Mix-node chain for steps 1..N-1 (the basis is step 0 and has no key value).
    mat = step_colors_material(f"{name} colours", key, step_names, attr_names)
    me.materials.append(mat)
    obj["att3d_steps"] = n
    obj["att3d_step_frames"] = [float(f) for f in frames]
    obj["att3d_interpolation"] = interpolation
    return obj


def set_frame_range(scene, frames: Sequence[float]) -> None:
    scene.frame_start = int(np.floor(min(frames)))
    scene.frame_end = max(int(np.ceil(max(frames))), scene.frame_start + 1)
