"""Check Backend (who answers, starting it if needed) and Check Prompt (how close the prompt is to
what the model was trained on)."""
from __future__ import annotations

from bpy.props import BoolProperty
from bpy.types import Operator

from .. import jobs, session
from ..client.base import BackendError, BackendUnavailable
from ..live import prompt_warning
from ..wire import check_prompt
from .run import backend_or_report, run_job


def _info_text(info: dict) -> str:
    parts = [f"{k}: {info[k]}" for k in ("model", "device", "version") if info.get(k)]
    return "Backend OK" + (" — " + ", ".join(parts) if parts else "")


class ATT3D_OT_check_backend(Operator):
    """Ask the backend who it is (starts it if needed)"""

    bl_idname = "att3d.check_backend"
    bl_label = "Check Backend"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        if jobs.busy(jobs.BACKEND):
            return {"CANCELLED"}
        jobs.status[jobs.BACKEND] = ("SORTTIME", "Checking the backend...")
        try:
            backend = session.job_backend()
        except BackendError as e:
            jobs.status[jobs.BACKEND] = ("ERROR", jobs.describe_error(e))
            self.report({"ERROR"}, jobs.status[jobs.BACKEND][1])
            return {"CANCELLED"}

        def work(progress):
            client = backend.get()
            try:
                return client.info()
            except BackendUnavailable:
                # The cached client is dead (its own restart used up): asked explicitly, start afresh.
                if not session.discard(client):
                    raise
                return backend.get().info()

        job = jobs.Job(jobs.BACKEND, "Checking backend", work, cancel=backend.cancel)
        result = run_job(self, job, lambda info: None, self.synchronous, _info_text)
        if result == {"FINISHED"} and job.done.is_set():
            self.report({"INFO"}, jobs.status[jobs.BACKEND][1])
        return result


class ATT3D_OT_check_prompt(Operator):
    """Check how close the prompt is to what the model was trained on"""

    bl_idname = "att3d.check_prompt"
    bl_label = "Check Prompt"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        try:
            p = check_prompt(context.scene.att3d.prompt)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if jobs.busy(jobs.NEAREST):
            return {"CANCELLED"}
        backend = backend_or_report(self, jobs.NEAREST)
        if backend is None:
            return {"CANCELLED"}

        def apply(res):
            jobs.nearest_cache[p] = res

        def done(res):
            return prompt_warning(p) or "The prompt is close to the training prompts"

        job = jobs.Job(jobs.NEAREST, "Checking prompt", lambda progress: backend.get().nearest(p),
                       cancel=backend.cancel)
        result = run_job(self, job, apply, self.synchronous, done)
        if result == {"FINISHED"} and job.done.is_set():
            warn = prompt_warning(p)
            self.report({"WARNING"} if warn else {"INFO"}, warn or "The prompt is close to the training prompts")
        return result
