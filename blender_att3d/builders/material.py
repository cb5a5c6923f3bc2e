"""Materials that show a result's colours: vertex colours, a baked texture, or per-state colours
mixed by drivers that follow a shape-key chain piece. Works on Blender 4.2 LTS and 5.x.
"""
from __future__ import annotations

from collections.abc import Sequence

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


def state_colors_material(name: str, key, key_names: Sequence[str], delta_attrs: Sequence[str]):
    """The basis colours plus each shape key's colour change, weighted by that key's value.

    ``Color Attribute (att3d_color) → Mix (Add) → … → Base Color``: Mix node i adds its delta
    attribute (state colour − basis colour, linear) times a driver that reads shape key i's value
    (a SUM driver, no Python needed). Since the keys' values and the basis weight sum to 1, the
    colour is exactly the weighted mix of the states' colours, like the positions.
    """
    mat, nt, bsdf = _new_material(name)
    base = nt.nodes.new("ShaderNodeVertexColor")
    base.layer_name = COLOR_ATTR
    base.name = base.label = "Basis"
    base.location = (-400, 300)
    prev = base.outputs["Color"]
    for i, (key_name, attr) in enumerate(zip(key_names, delta_attrs)):
        col = nt.nodes.new("ShaderNodeVertexColor")
        col.layer_name = attr
        col.name = col.label = f"Delta {i}"
        col.location = (-400 + 220 * i, -100 - 60 * i)
        mix = nt.nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "ADD"
        mix.clamp_factor = True
        mix.clamp_result = False
        mix.name = mix.label = f"Mix {i}"
        mix.location = (-400 + 220 * i, 100)
        nt.links.new(prev, _socket(mix.inputs, "A_Color"))
        nt.links.new(col.outputs["Color"], _socket(mix.inputs, "B_Color"))
        fac = _socket(mix.inputs, "Factor_Float")
        fac_index = list(mix.inputs).index(fac)
        drv = nt.driver_add(f'nodes["{mix.name}"].inputs[{fac_index}].default_value').driver
        drv.type = "SUM"
        var = drv.variables.new()
        var.name = "weight"
        var.type = "SINGLE_PROP"
        var.targets[0].id_type = "KEY"
        var.targets[0].id = key
        var.targets[0].data_path = f'key_blocks["{key_name}"].value'
        prev = _socket(mix.outputs, "Result_Color")
    nt.links.new(prev, bsdf.inputs["Base Color"])
    bsdf.location = (-400 + 220 * len(delta_attrs) + 200, 300)
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
