"""The Prompt Chain panel's operators: keyframe add / remove / move, and Build Animation."""
from __future__ import annotations

from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import Operator

from .. import jobs
from ..keyframes import sorted_keyframes
from ..placement import active_collection_name, build_chain_objects
from .run import backend_or_report, run_job


def _sorted_insert(settings, index: int) -> int:
    """Move item ``index`` to its place by frame; returns its new index."""
    kfs = settings.keyframes
    frame = kfs[index].frame
    target = sum(1 for i, k in enumerate(kfs) if i != index and k.frame < frame)
    if target != index:
        kfs.move(index, target)
    return target


class ATT3D_OT_keyframe_add(Operator):
    """Add a prompt keyframe at the current frame (the panel's prompt)"""

    bl_idname = "att3d.keyframe_add"
    bl_label = "Add Prompt Keyframe"
    bl_options = {"REGISTER", "UNDO"}

    frame: IntProperty(name="Frame", description="-1: the current frame", default=-1)
    prompt: StringProperty(name="Prompt", description="Empty: the panel's prompt")

    def execute(self, context):
        s = context.scene.att3d
        frame = context.scene.frame_current if self.frame < 0 else self.frame
        prompt = self.prompt or s.prompt
        for i, k in enumerate(s.keyframes):
            if k.frame == frame:
                if prompt:
                    k.prompt = prompt
                s.keyframe_index = i
                self.report({"INFO"}, f"Updated the keyframe on frame {frame}")
                return {"FINISHED"}
        k = s.keyframes.add()
        k.frame, k.prompt = frame, prompt
        s.keyframe_index = _sorted_insert(s, len(s.keyframes) - 1)
        return {"FINISHED"}


class ATT3D_OT_keyframe_remove(Operator):
    """Remove the selected prompt keyframe"""

    bl_idname = "att3d.keyframe_remove"
    bl_label = "Remove Prompt Keyframe"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        s = context.scene.att3d
        return 0 <= s.keyframe_index < len(s.keyframes)

    def execute(self, context):
        s = context.scene.att3d
        s.keyframes.remove(s.keyframe_index)
        s.keyframe_index = min(s.keyframe_index, len(s.keyframes) - 1)
        return {"FINISHED"}


class ATT3D_OT_keyframe_move(Operator):
    """Move the selected prompt earlier or later in the chain (the frames stay in order)"""

    bl_idname = "att3d.keyframe_move"
    bl_label = "Move Prompt Keyframe"
    bl_options = {"REGISTER", "UNDO"}

    direction: EnumProperty(items=[("UP", "Up", ""), ("DOWN", "Down", "")])

    @classmethod
    def poll(cls, context):
        s = context.scene.att3d
        return 0 <= s.keyframe_index < len(s.keyframes) and len(s.keyframes) > 1

    def execute(self, context):
        s = context.scene.att3d
        i = s.keyframe_index
        j = i - 1 if self.direction == "UP" else i + 1
        if not 0 <= j < len(s.keyframes):
            return {"CANCELLED"}
        a, b = s.keyframes[i], s.keyframes[j]
        a.prompt, b.prompt = b.prompt, a.prompt
        s.keyframe_index = j
        return {"FINISHED"}


class ATT3D_OT_build_chain(Operator):
    """Generate the prompt chain and animate it on the timeline (replaces the previous chain)"""

    bl_idname = "att3d.build_chain"
    bl_label = "Build Animation"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not jobs.busy(jobs.MAIN)

    def execute(self, context):
        s = context.scene.att3d
        try:
            keys = sorted_keyframes((k.frame, k.prompt) for k in s.keyframes)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        backend = backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        key_frames = [f for f, _ in keys]
        prompts = [p for _, p in keys]
        steps, res, mode = s.chain_steps, s.chain_resolution, s.chain_mode
        interp, chain_id = s.chain_interpolation, s.chain_id or "chain"
        loc = tuple(context.scene.cursor.location)
        scene_name, coll_name = context.scene.name, active_collection_name(context)

        def work(progress):
            return backend.get(progress).chain(list(enumerate(prompts)), steps=steps, resolution=res,
                                               consistent=(mode == "SHAPE_KEYS"), progress=progress)

        def apply(seq):
            build_chain_objects(seq, key_frames, mode, interp, chain_id, res, loc, scene_name, coll_name)

        return run_job(self, jobs.Job(jobs.MAIN, "Building the chain", work, cancel=backend.cancel), apply,
                       self.synchronous, lambda seq: f"Built a {len(seq)}-step chain")
