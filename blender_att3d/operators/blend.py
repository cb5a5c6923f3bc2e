"""Update Blend: the blend of prompts A and B into the preview object, now (the slider's live
update is :mod:`blender_att3d.live`)."""
from __future__ import annotations

from bpy.props import BoolProperty
from bpy.types import Operator

from .. import jobs
from ..client.base import BackendError
from ..live import blend_job
from ..placement import apply_blend
from .run import run_job


class ATT3D_OT_blend_preview(Operator):
    """Generate the blend of prompts A and B into the preview object now"""

    bl_idname = "att3d.blend_preview"
    bl_label = "Update Blend"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        try:
            job, name = blend_job(context.scene)
        except ValueError as e:
            self.report({"ERROR"}, f"Blend: {e}")
            return {"CANCELLED"}
        except BackendError as e:
            self.report({"ERROR"}, jobs.describe_error(e))
            return {"CANCELLED"}
        if jobs.busy(jobs.BLEND):
            return {"CANCELLED"}
        return run_job(self, job, lambda data: apply_blend(data, name), self.synchronous,
                       lambda d: f"Blend updated ({d.n_vertices:,} vertices)")
