"""The Prompt Chain panel's operators: the scene's chains (add / remove), the active chain's
keyframes (add / remove / move), Build Animation, its timing (reset, select), and a chain's GLB
export and import (also in File → Export / Import)."""
from __future__ import annotations

import uuid

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import Operator
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import chains, jobs
from ..builders.chain import remove_chain
from ..placement import active_collection_name, build_chain_objects, fit_frame_range_to_chains, fit_of
from .run import backend_or_report, run_job


def new_chain(settings, name: str = ""):
    """A new, empty chain at the end of the scene's list, made active; named "Chain N" by default."""
    taken = {c.name for c in settings.chains}
    if not name:
        n = len(settings.chains) + 1
        while f"Chain {n}" in taken:
            n += 1
        name = f"Chain {n}"
    chain = settings.chains.add()
    chain.name, chain.uid = name, uuid.uuid4().hex[:12]
    settings.chain_index = len(settings.chains) - 1
    return chain


def _sorted_insert(chain, index: int) -> int:
    """Move item ``index`` to its place by frame; returns its new index."""
    kfs = chain.keyframes
    frame = kfs[index].frame
    target = sum(1 for i, k in enumerate(kfs) if i != index and k.frame < frame)
    if target != index:
        kfs.move(index, target)
    return target


def _has_active_keyframe(context) -> bool:
    chain = context.scene.att3d.active_chain()
    return chain is not None and 0 <= chain.keyframe_index < len(chain.keyframes)


class ATT3D_OT_chain_add(Operator):
    """Add a new prompt chain to the scene (each chain builds its own objects)"""

    bl_idname = "att3d.chain_add"
    bl_label = "Add Prompt Chain"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Name", description="Empty: 'Chain N'")

    def execute(self, context):
        new_chain(context.scene.att3d, self.name)
        return {"FINISHED"}


class ATT3D_OT_chain_remove(Operator):
    """Remove the selected prompt chain and the objects it built"""

    bl_idname = "att3d.chain_remove"
    bl_label = "Remove Prompt Chain"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene.att3d.active_chain() is not None and not jobs.busy(jobs.MAIN)

    def execute(self, context):
        s = context.scene.att3d
        remove_chain(s.active_chain().uid)
        s.chains.remove(s.chain_index)
        s.chain_index = min(s.chain_index, len(s.chains) - 1)
        fit_frame_range_to_chains(context.scene)
        return {"FINISHED"}


class ATT3D_OT_keyframe_add(Operator):
    """Add a prompt keyframe at the current frame (the panel's prompt) to the selected chain"""

    bl_idname = "att3d.keyframe_add"
    bl_label = "Add Prompt Keyframe"
    bl_options = {"REGISTER", "UNDO"}

    frame: IntProperty(name="Frame", description="-1: the current frame", default=-1)
    prompt: StringProperty(name="Prompt", description="Empty: the panel's prompt")

    def execute(self, context):
        s = context.scene.att3d
        chain = s.active_chain() or new_chain(s)
        frame = context.scene.frame_current if self.frame < 0 else self.frame
        prompt = self.prompt or s.prompt
        for i, k in enumerate(chain.keyframes):
            if k.frame == frame:
                if prompt:
                    k.prompt = prompt
                chain.keyframe_index = i
                self.report({"INFO"}, f"Updated the keyframe on frame {frame}")
                return {"FINISHED"}
        k = chain.keyframes.add()
        k.frame, k.prompt = frame, prompt
        chain.keyframe_index = _sorted_insert(chain, len(chain.keyframes) - 1)
        return {"FINISHED"}


class ATT3D_OT_keyframe_remove(Operator):
    """Remove the selected prompt keyframe"""

    bl_idname = "att3d.keyframe_remove"
    bl_label = "Remove Prompt Keyframe"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _has_active_keyframe(context)

    def execute(self, context):
        chain = context.scene.att3d.active_chain()
        chain.keyframes.remove(chain.keyframe_index)
        chain.keyframe_index = min(chain.keyframe_index, len(chain.keyframes) - 1)
        return {"FINISHED"}


class ATT3D_OT_keyframe_move(Operator):
    """Move the selected prompt earlier or later in the chain (the frames stay in order)"""

    bl_idname = "att3d.keyframe_move"
    bl_label = "Move Prompt Keyframe"
    bl_options = {"REGISTER", "UNDO"}

    direction: EnumProperty(items=[("UP", "Up", ""), ("DOWN", "Down", "")])

    @classmethod
    def poll(cls, context):
        return _has_active_keyframe(context) and len(context.scene.att3d.active_chain().keyframes) > 1

    def execute(self, context):
        chain = context.scene.att3d.active_chain()
        i = chain.keyframe_index
        j = i - 1 if self.direction == "UP" else i + 1
        if not 0 <= j < len(chain.keyframes):
            return {"CANCELLED"}
        a, b = chain.keyframes[i], chain.keyframes[j]
        a.prompt, b.prompt = b.prompt, a.prompt
        chain.keyframe_index = j
        return {"FINISHED"}


class ATT3D_OT_build_chain(Operator):
    """Generate the selected prompt chain and animate it on the timeline (an existing build of it is
    updated in place: its objects' transforms, modifiers, materials and timing stay)"""

    bl_idname = "att3d.build_chain"
    bl_label = "Build Animation"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not jobs.busy(jobs.MAIN)

    def execute(self, context):
        s = context.scene.att3d
        chain = s.active_chain()
        if chain is None:
            self.report({"ERROR"}, "Add a prompt chain and its keyframes first")
            return {"CANCELLED"}
        try:
            keys = chains.panel_keyframes(chain)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        backend = backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        if not chain.uid:  # a chain made by hand (a script): give it its tag now
            chain.uid = uuid.uuid4().hex[:12]
        key_frames = [f for f, _ in keys]
        prompts = [p for _, p in keys]
        record = chains.build_settings(context.scene, chain)
        steps, res, mode = chain.steps, record["resolution"], chain.mode
        max_states = max(chain.max_states, steps)
        interp, chain_id, name = chain.interpolation, chain.uid, chain.name or None
        loc, fit = tuple(context.scene.cursor.location), fit_of(context.scene)
        scene_name, coll_name = context.scene.name, active_collection_name(context)

        def work(progress):
            return backend.get(progress).chain(list(enumerate(prompts)), steps=steps, resolution=res,
                                               consistent=(mode == "SHAPE_KEYS"), progress=progress,
                                               max_states=max_states if mode == "SHAPE_KEYS" else None)

        def apply(seq):
            build_chain_objects(seq, key_frames, mode, interp, chain_id, res, loc, scene_name, coll_name,
                                name=name, fit=fit, record=record)

        return run_job(self, jobs.Job(jobs.MAIN, f"Building '{name or 'the chain'}'", work, cancel=backend.cancel),
                       apply, self.synchronous, lambda seq: f"Built a {len(seq)}-step chain")


def _active_chain_root(context):
    chain = context.scene.att3d.active_chain()
    return chains.built_root(chain) if chain is not None else None


class ATT3D_OT_chain_reset_timing(Operator):
    """Key the chain's position curve afresh from the prompt keyframes with the chosen interpolation
    (replaces your edits of that curve)"""

    bl_idname = "att3d.chain_reset_timing"
    bl_label = "Reset Timing"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_chain_root(context) is not None

    def execute(self, context):
        chain = context.scene.att3d.active_chain()
        try:
            chains.reset_timing(context.scene, chain)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"'{chain.name}': position keyed {chain.interpolation.lower()} on its keyframes")
        return {"FINISHED"}


class ATT3D_OT_chain_select_timing(Operator):
    """Select the chain's root: its position curve (the chain's whole timing) shows in the Graph Editor
    and the Dope Sheet"""

    bl_idname = "att3d.chain_select_timing"
    bl_label = "Select Timing"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_chain_root(context) is not None

    def execute(self, context):
        from ..builders.objects import select_only

        select_only(context.view_layer, _active_chain_root(context))
        return {"FINISHED"}


def _chain_root_for_export(context):
    """The chain to export: the active object's chain, else the panel's active chain."""
    from ..builders.chain import chain_root
    from ..builders.objects import PROP_CHAIN

    obj = context.active_object
    if obj is not None and PROP_CHAIN in obj:
        return chain_root(obj[PROP_CHAIN])
    return _active_chain_root(context)


class ATT3D_OT_export_chain(Operator, ExportHelper):
    """Export a prompt chain as one GLB: its pieces, position/normal/colour morph targets and one
    animation timed to the scene (the add-on's import brings it back as a live chain)"""

    bl_idname = "att3d.export_chain"
    bl_label = "Export ATT3D Chain (.glb)"
    bl_options = {"REGISTER"}

    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene is not None and _chain_root_for_export(context) is not None

    def invoke(self, context, event):
        root = _chain_root_for_export(context)
        if root is not None and not self.filepath:
            self.filepath = bpy.path.clean_name(root.name) + self.filename_ext
        return ExportHelper.invoke(self, context, event)

    def execute(self, context):
        from ..chain_io import export_chain_glb
        from ..wire.fileio import WriteFailed

        root = _chain_root_for_export(context)
        if root is None:
            self.report({"ERROR"}, "Select a built prompt chain (or build the panel's chain) to export")
            return {"CANCELLED"}
        try:
            path = export_chain_glb(root, context.scene, bpy.path.abspath(self.filepath))
        except WriteFailed as e:  # one line: which file, why (a full disk), the earlier file unchanged
            self.report({"ERROR"}, f"Could not export '{root.name}': {e}")
            return {"CANCELLED"}
        except (OSError, ValueError) as e:
            self.report({"ERROR"}, f"Could not export '{root.name}': {getattr(e, 'strerror', None) or e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported '{root.name}' to {path}")
        return {"FINISHED"}


class ATT3D_OT_import_chain(Operator, ImportHelper):
    """Import a prompt chain GLB exported by this add-on as a live chain (pieces, shape keys, drivers,
    colours and its position curve), with its keyframes in the Prompt Chains panel"""

    bl_idname = "att3d.import_chain"
    bl_label = "Import ATT3D Chain (.glb)"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})

    def execute(self, context):
        from ..chain_io import import_chain
        from ..placement import fit_frame_range_to_chains

        path = bpy.path.abspath(self.filepath)
        s = context.scene.att3d
        chain = new_chain(s)
        try:
            root = import_chain(path, context.scene, context.collection or context.scene.collection,
                                tuple(context.scene.cursor.location), chain_item=chain)
        except (OSError, ValueError) as e:
            s.chains.remove(s.chain_index)
            s.chain_index = min(s.chain_index, len(s.chains) - 1)
            self.report({"ERROR"}, f"Could not import {path}: {getattr(e, 'strerror', None) or e}")
            return {"CANCELLED"}
        chain.name = root.name
        fit_frame_range_to_chains(context.scene)
        context.scene.frame_set(context.scene.frame_current)
        self.report({"INFO"}, f"Imported the chain '{root.name}' ({len(chain.keyframes)} keyframes)")
        return {"FINISHED"}


def menu_export(self, context):
    self.layout.operator(ATT3D_OT_export_chain.bl_idname, text="ATT3D Prompt Chain (.glb)")


def menu_import(self, context):
    self.layout.operator(ATT3D_OT_import_chain.bl_idname, text="ATT3D Prompt Chain (.glb)")
