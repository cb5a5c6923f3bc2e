"""Scene-level settings (``scene.att3d``): prompt, placement, the scene's prompt chains, live-blend controls."""
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
from .choices import CHAIN_MODES, COLOR_MODES, INTERPOLATIONS, MC_METHODS, ORIGIN_CHOICES


def _prompt_changed(self, context):
    live.schedule_prompt_check(self.prompt)


def _blend_changed(self, context):
    if self.blend_live:
        live.schedule_blend_preview(context.scene)


def _keyframe_frame_changed(self, context):
    """A moved prompt keyframe re-keys its built chain's position curve at once (no backend call)."""
    from . import chains

    chain = chains.chain_of_keyframe(self)
    if chain is not None and context is not None and context.scene is not None:
        chains.retime_to_panel(context.scene, chain)


class ATT3D_PG_keyframe(PropertyGroup):
    frame: IntProperty(name="Frame", description="Frame where the chain reaches this prompt (moving it retimes "
                       "a built chain at once)", default=1, update=_keyframe_frame_changed)
    prompt: StringProperty(name="Prompt", description="What the object looks like at this frame")


class ATT3D_PG_chain(PropertyGroup):
    """One prompt chain of the scene: its name (also its objects' name), keyframes and build settings.
    ``uid`` tags the objects it built, so renaming it, or building another chain, leaves them be."""

    # ``name`` (the visible name) comes with every PropertyGroup
    uid: StringProperty(name="ID", description="Tag on the objects this chain built", options={"HIDDEN"})
    keyframes: CollectionProperty(type=ATT3D_PG_keyframe)
    keyframe_index: IntProperty(name="Active Keyframe", default=0)
    steps: IntProperty(name="Steps", description="Meshes per segment between consecutive keyframes (shape keys: "
                       "at least this many stored states, more where the surface moves more)",
                       default=4, min=1, max=64)
    max_states: IntProperty(name="State Cap", description="Shape keys: at most this many stored states per "
                            "segment, however much the surface moves", default=16, min=1, max=64)
    mode: EnumProperty(name="Build As", items=CHAIN_MODES, default="SHAPE_KEYS")
    interpolation: EnumProperty(name="Interpolation", description="How new keys of the chain's position curve "
                                "move between keyframes (Reset Timing applies it to the curve)",
                                items=INTERPOLATIONS, default="LINEAR")


class ATT3D_PG_settings(PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to make, e.g. 'a red cube wearing a blue party hat'",
                           update=_prompt_changed)
    resolution: IntProperty(name="Resolution", description="Marching-cubes grid size (detail vs time) for "
                            "Generate, chains and the live blend; 0: the default in the add-on preferences",
                            default=0, min=0, max=512, soft_max=256)
    color_mode: EnumProperty(name="Colour", items=COLOR_MODES, default="VERTEX")
    mc: EnumProperty(name="Marching Cubes", description="Which marching cubes turns the density into a mesh",
                     items=MC_METHODS, default="auto")
    origin: EnumProperty(name="Origin", items=ORIGIN_CHOICES, default="BASE",
                         description="Where the object's origin sits: it lands there, at the 3D cursor")
    target_height: FloatProperty(name="Height", description="Scale results to this height (0: as generated, "
                                 "about 1)", default=0.0, min=0.0, soft_max=10.0, subtype="DISTANCE",
                                 unit="LENGTH")

    chains: CollectionProperty(type=ATT3D_PG_chain)
    chain_index: IntProperty(name="Active Chain", default=0)

    blend_a: StringProperty(name="Prompt A", update=_blend_changed)
    blend_b: StringProperty(name="Prompt B", update=_blend_changed)
    blend_factor: FloatProperty(name="Blend", description="0 = prompt A, 1 = prompt B", default=0.5,
                                min=0.0, max=1.0, subtype="FACTOR", update=_blend_changed)
    blend_live: BoolProperty(name="Live", description="Regenerate the preview while the slider moves",
                             default=True)
    blend_object: PointerProperty(name="Preview Object", type=bpy.types.Object)

    def active_chain(self):
        """The chain selected in the list, or None."""
        return self.chains[self.chain_index] if 0 <= self.chain_index < len(self.chains) else None


CLASSES = (ATT3D_PG_keyframe, ATT3D_PG_chain, ATT3D_PG_settings)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.Scene.att3d = PointerProperty(type=ATT3D_PG_settings)


def unregister() -> None:
    del bpy.types.Scene.att3d
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
