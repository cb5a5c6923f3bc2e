"""Blender objects from results: create one, update it in place (Regenerate, the live blend),
the custom properties that record its provenance, and selection.
"""
from __future__ import annotations

from typing import Any

import bpy

from ..wire.types import MeshData
from .geometry import fill_mesh, new_mesh
from .material import make_image, set_material, texture_material, texture_node, vertex_color_material

PROP_PROMPT = "att3d_prompt"
PROP_MODEL = "att3d_model"
PROP_RESOLUTION = "att3d_resolution"
PROP_CHAIN_POSITION = "att3d_chain_position"
PROP_COLOR_MODE = "att3d_color_mode"  # VERTEX | TEXTURE: what the material shows
PROP_CHAIN = "att3d_chain"  # chain id on every object a chain build made
PROP_BLEND = "att3d_blend_preview"
PROP_ORIGIN = "att3d_origin"  # BASE | CENTER: where the origin sits (blender_att3d.sizing)
PROP_TARGET_HEIGHT = "att3d_target_height"  # the height asked for (0: as generated)
PROP_SCALE = "att3d_scale"  # the scale that gave it


def set_provenance(obj, meta: dict[str, Any], prompt: str = "", model: str = "", resolution: int = 0,
                   chain_position: float = -1.0) -> None:
    """Custom properties that let an object be regenerated (chain position -1: not in a chain)."""
    obj[PROP_PROMPT] = str(meta.get("prompt") or prompt)
    obj[PROP_MODEL] = str(meta.get("model") or model)
    obj[PROP_RESOLUTION] = int(meta.get("resolution") or resolution)
    cp = meta.get("chain_position", chain_position)
    obj[PROP_CHAIN_POSITION] = float(-1.0 if cp is None else cp)
    if "origin" in meta:
        obj[PROP_ORIGIN] = str(meta["origin"])
        obj[PROP_TARGET_HEIGHT] = float(meta.get("target_height", 0.0))
        obj[PROP_SCALE] = float(meta.get("scale", 1.0))


def is_single_result(obj) -> bool:
    """A generated object that Regenerate can redo from its prompt (not a chain part or the blend preview)."""
    return PROP_PROMPT in obj and PROP_CHAIN not in obj and PROP_BLEND not in obj


def link(obj, collection) -> None:
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
    link(obj, collection)
    return obj


def update_object(obj, data: MeshData, color_mode: str = "VERTEX") -> None:
    """Regenerate ``obj`` in place: new geometry and colours, same object and mesh datablock.

    TEXTURE with a baked texture in ``data``: the material's image is replaced by the new one.
    Otherwise the object shows vertex colours (a texture material left from before is swapped for a
    vertex-colour one, since the new geometry has no UVs for it).
    """
    fill_mesh(obj.data, data)
    me = obj.data
    mat = me.materials[0] if len(me.materials) else None
    node = texture_node(mat)
    textured = color_mode == "TEXTURE" and data.texture is not None and data.uvs is not None
    if textured and node is not None:
        old = node.image
        node.image = make_image(obj.name, data.texture)
        if old is not None and old.users == 0:
            bpy.data.images.remove(old)
    elif textured:
        set_material(me, texture_material(obj.name, make_image(obj.name, data.texture)))
    elif mat is None or node is not None:
        set_material(me, vertex_color_material(obj.name))
    obj[PROP_COLOR_MODE] = "TEXTURE" if textured else "VERTEX"
