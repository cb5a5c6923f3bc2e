"""Scene-level settings (``scene.att3d``): prompt, chain keyframes, live-blend controls."""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

from . import live
from .choices import CHAIN_MODES, COLOR_MODES, INTERPOLATIONS, MC_METHODS


def _prompt_changed(self, context):
    live.schedule_prompt_check(self.prompt)


def _blend_changed(self, context):
    if self.blend_live:
        live.schedule_blend_preview(context.scene)


class ATT3D_PG_keyframe(PropertyGroup):
    frame: IntProperty(name="Frame", description="Frame where the chain reaches this prompt", default=1)
    prompt: StringProperty(name="Prompt", description="What the object looks like at this frame")


class ATT3D_PG_settings(PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to make, e.g. 'a red cube wearing a blue party hat'",
                           update=_prompt_changed)
    resolution: IntProperty(name="Resolution", description="Marching-cubes grid size (detail vs time)",
                            default=128, min=16, max=512, soft_max=256)
    color_mode: EnumProperty(name="Colour", items=COLOR_MODES, default="VERTEX")
    mc: EnumProperty(name="Marching Cubes", description="Which marching cubes turns the density into a mesh",
                     items=MC_METHODS, default="skimage")

    keyframes: CollectionProperty(type=ATT3D_PG_keyframe)
    keyframe_index: IntProperty(name="Active Keyframe", default=0)
    chain_steps: IntProperty(name="Steps", description="Meshes per segment between consecutive keyframes",
                             default=4, min=1, max=64)
    chain_mode: EnumProperty(name="Build As", items=CHAIN_MODES, default="SHAPE_KEYS")
    chain_interpolation: EnumProperty(name="Interpolation", items=INTERPOLATIONS, default="LINEAR")
    chain_resolution: IntProperty(name="Resolution", default=96, min=16, max=512, soft_max=256)
    chain_id: StringProperty(name="Chain ID", description="Objects of the last built chain carry this tag",
                             default="chain")

    blend_a: StringProperty(name="Prompt A", update=_blend_changed)
    blend_b: StringProperty(name="Prompt B", update=_blend_changed)
    blend_factor: FloatProperty(name="Blend", description="0 = prompt A, 1 = prompt B", default=0.5,
                                min=0.0, max=1.0, subtype="FACTOR", update=_blend_changed)
    blend_resolution: IntProperty(name="Resolution", default=64, min=16, max=256)
    blend_live: BoolProperty(name="Live", description="Regenerate the preview while the slider moves",
                             default=True)
    blend_object: PointerProperty(name="Preview Object", type=bpy.types.Object)


CLASSES = (ATT3D_PG_keyframe, ATT3D_PG_settings)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.Scene.att3d = PointerProperty(type=ATT3D_PG_settings)


def unregister() -> None:
    del bpy.types.Scene.att3d
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
