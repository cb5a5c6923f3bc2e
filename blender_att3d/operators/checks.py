"""Check Backend (who answers, starting it if needed: model, device, what it was trained on) and
Check Prompt (how close the prompt is to what the model was trained on: close, far, or unknown), and
Use Prompt (one of the known prompts suggested under a far prompt, into the prompt field)."""
from __future__ import annotations

import dataclasses

from bpy.props import BoolProperty, StringProperty
from bpy.types import Operator

from .. import jobs
from ..client.base import BackendError, BackendUnavailable
from ..lifecycle import session
from ..live import prompt_closeness
from ..wire import check_prompt
from .run import backend_or_report, run_job


def busy_with_backend(op: Operator) -> bool:
    """True (after saying what runs) while a job of the backend slot runs: the start ahead of time,
    a check, a restart. Its own status line says when it is done."""
    job = jobs.active(jobs.BACKEND)
    if job is None:
        return False
    op.report({"INFO"}, f"{job.label}: {job.message}; its status line says when it is done")
    return True


class ATT3D_OT_check_backend(Operator):
    """Ask the backend who it is (starts it if needed): model, device, what it was trained on"""

    bl_idname = "att3d.check_backend"
    bl_label = "Check Backend"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        if busy_with_backend(self):
            return {"CANCELLED"}
        try:
            backend = session.job_backend()
        except BackendError as e:
            msg = jobs.describe_error(e)
            jobs.status[jobs.BACKEND] = ("ERROR", msg)
            self.report({"ERROR"}, msg)
            return {"CANCELLED"}
        source = backend.settings.source

        def work(progress):
            client = backend.get(progress)
            try:
                info = client.info()
            except BackendUnavailable:
                # The cached client is dead (its restarts used up): asked explicitly, start afresh.
                if not session.discard(client):
                    raise
                info = backend.get(progress).info()
            return dataclasses.replace(info, backend_source=source)

        job = jobs.Job(jobs.BACKEND, "Checking backend", work, cancel=backend.cancel)
        return run_job(self, job, jobs.remember_backend, self.synchronous, lambda info: info.summary(), timed=False,
                       report=True)


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
            self.report({"INFO"}, "Already checking a prompt: its status line says when it is done")
            return {"CANCELLED"}
        backend = backend_or_report(self, jobs.NEAREST)
        if backend is None:
            return {"CANCELLED"}

        def apply(res):
            jobs.nearest_cache[p] = res

        def done(res):  # a far or unknown prompt is no check mark
            return prompt_closeness(p) or ("QUESTION", "Closeness unknown")

        job = jobs.Job(jobs.NEAREST, "Checking prompt", lambda progress: backend.get().nearest(p),
                       cancel=backend.cancel)
        return run_job(self, job, apply, self.synchronous, done, timed=False, report=True)


class ATT3D_OT_use_prompt(Operator):
    """Use this prompt the model was trained on: put it in the prompt field"""

    bl_idname = "att3d.use_prompt"
    bl_label = "Use Prompt"
    bl_options = {"REGISTER", "UNDO"}

    prompt: StringProperty(name="Prompt", options={"SKIP_SAVE"})

    def execute(self, context):
        try:
            p = check_prompt(self.prompt)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        context.scene.att3d.prompt = p  # (its update checks the new prompt's closeness)
        self.report({"INFO"}, f"Prompt: '{p}'")
        return {"FINISHED"}
