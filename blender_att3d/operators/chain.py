"""The Prompt Chain panel's operators: the scene's chains (add / remove), the active chain's
keyframes (add / remove / move), and Build Animation."""
from __future__ import annotations

import uuid

from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import Operator

from .. import jobs
from ..builders.chain import remove_chain
from ..keyframes import sorted_keyframes
from ..placement import active_collection_name, build_chain_objects, fit_frame_range_to_chains, fit_of, resolution_of
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
    """Generate the selected prompt chain and animate it on the timeline (replaces that chain's objects only)"""

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
            keys = sorted_keyframes((k.frame, k.prompt) for k in chain.keyframes)
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
        steps, res, mode = chain.steps, resolution_of(context.scene), chain.mode
        interp, chain_id, name = chain.interpolation, chain.uid, chain.name or None
        loc, fit = tuple(context.scene.cursor.location), fit_of(context.scene)
        scene_name, coll_name = context.scene.name, active_collection_name(context)

        def work(progress):
            return backend.get(progress).chain(list(enumerate(prompts)), steps=steps, resolution=res,
                                               consistent=(mode == "SHAPE_KEYS"), progress=progress)

        def apply(seq):
            build_chain_objects(seq, key_frames, mode, interp, chain_id, res, loc, scene_name, coll_name,
                                name=name, fit=fit)

        return run_job(self, jobs.Job(jobs.MAIN, f"Building '{name or 'the chain'}'", work, cancel=backend.cancel),
                       apply, self.synchronous, lambda seq: f"Built a {len(seq)}-step chain")
