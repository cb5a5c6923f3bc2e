"""Materials that show a result's colours: vertex colours, a baked texture, or a chain piece's
per-state colours mixed by drivers that follow the chain's position. Works on Blender 4.2 LTS and 5.x.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import bpy
import numpy as np

from .geometry import COLOR_ATTR, UV_NAME


def make_image(name: str, texture: np.ndarray) -> bpy.types.Image:
    """A packed Blender image from uint8 [H, W, 3] (row 0 at the top, as in image files)."""
    h, w = texture.shape[:2]
    img = bpy.data.images.new(name, width=w, height=h, alpha=False)
    px = np.ones((h, w, 4), dtype=np.float32)
    px[..., :3] = texture[::-1, :, :3].astype(np.float32) / 255.0  # Blender stores rows bottom-up
    img.pixels.foreach_set(px.ravel())
    img.pack()
    return img


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


def chain_colors_group(group, name: str, delta_attrs: Sequence[str], expressions: Sequence[str],
                       drive: Callable[[Any, str, str], None]):
    """A piece's colours as a shader node group with one output, ``Color``: the keyframe's colours
    (``att3d_color``) plus each state's colour change (``delta_attrs``, linear) times that state's
    weight, a driver with ``expressions[i]`` (``drive(group, data_path, expression)``). The weights
    sum to 1 with the basis, so colours mix exactly like positions. ``group``: an existing group to
    refill (a rebuild: the materials that use it stay as the user left them), or None."""
    if group is None:
        group = bpy.data.node_groups.new(name, "ShaderNodeTree")
        group.interface.new_socket("Color", in_out="OUTPUT", socket_type="NodeSocketColor")
    if group.animation_data is not None:
        for fc in list(group.animation_data.drivers):
            group.animation_data.drivers.remove(fc)
    group.nodes.clear()
    out = group.nodes.new("NodeGroupOutput")
    base = group.nodes.new("ShaderNodeVertexColor")
    base.layer_name = COLOR_ATTR
    base.name = base.label = "Basis"
    base.location = (-400, 300)
    prev = base.outputs["Color"]
    for i, (attr, expr) in enumerate(zip(delta_attrs, expressions)):
        col = group.nodes.new("ShaderNodeVertexColor")
        col.layer_name = attr
        col.name = col.label = f"Delta {i}"
        col.location = (-400 + 220 * i, -100 - 60 * i)
        mix = group.nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "ADD"
        mix.clamp_factor = True
        mix.clamp_result = False
        mix.name = mix.label = f"Mix {i}"
        mix.location = (-400 + 220 * i, 100)
        group.links.new(prev, _socket(mix.inputs, "A_Color"))
        group.links.new(col.outputs["Color"], _socket(mix.inputs, "B_Color"))
        fac_index = list(mix.inputs).index(_socket(mix.inputs, "Factor_Float"))
        drive(group, f'nodes["{mix.name}"].inputs[{fac_index}].default_value', expr)
        prev = _socket(mix.outputs, "Result_Color")
    out.location = (-400 + 220 * len(delta_attrs) + 200, 300)
    group.links.new(prev, out.inputs[0])
    return group


def chain_material(name: str, group):
    """A material showing a chain piece's colours: its colour group → Principled BSDF base colour."""
    mat, nt, bsdf = _new_material(name)
    node = nt.nodes.new("ShaderNodeGroup")
    node.node_tree = group
    node.name = node.label = "ATT3D colours"
    node.location = (-300, 300)
    nt.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def texture_node(mat):
    if mat is None or not mat.node_tree:
        return None
    return next((n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"), None)


def set_material(me, mat) -> None:
    old = me.materials[0] if len(me.materials) else None
    if len(me.materials):
        me.materials[0] = mat
    else:
        me.materials.append(mat)
    if old is not None and old.users == 0:
        node = texture_node(old)
        img = node.image if node is not None else None
        bpy.data.materials.remove(old)
        if img is not None and img.users == 0:
            bpy.data.images.remove(img)
