"""The backend's life cycle from the preferences: Set Up Local Backend (and Cancel), Remove Backend,
Restart Backend, Copy Setup Commands. The installer itself is :mod:`.setup_backend`, run by
:mod:`.setup_job`."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty
from bpy.types import Operator

from .. import jobs
from ..client.base import BackendError
from ..operators.checks import busy_with_backend
from ..preferences import setup_indexes
from . import prestart, session, setup_job
from .setup_backend import SetupError, describe

POLL_S = 0.5


def _user_root(op: Operator) -> str | None:
    root = session.user_root()
    if root is None:
        op.report({"ERROR"}, "The add-on is not installed as an extension, so it has no folder of its own to set a "
                             "backend up in; install the extension zip, or set the Python field")
    return root


def _setup_poll() -> float | None:
    """Timer: redraw the preferences while the installer runs; wrap up when it ends."""
    jobs.tag_redraw()
    run = setup_job.current
    if run is None or run.running:
        return POLL_S if run is not None else None
    finish_setup(run)
    return None


def finish_setup(run: setup_job.SetupRun) -> None:
    """Main thread: the installer ended. Ready: use the new backend (started ahead when asked)."""
    if run.result is not None:
        jobs.status[jobs.BACKEND] = ("CHECKMARK", run.end_text())
        session.close()  # the next request builds a client for the new backend
        prestart.prestart()
    elif run.cancelled:
        jobs.status[jobs.BACKEND] = ("CANCEL", run.end_text())
    else:
        jobs.status[jobs.BACKEND] = ("ERROR", run.end_text())
    jobs.tag_redraw()


class ATT3D_OT_setup_backend(Operator):
    """Install a local backend (PyTorch and att3d, a few GB from the package index) into the add-on's own \
folder: no terminal needed"""

    bl_idname = "att3d.setup_backend"
    bl_label = "Set Up Local Backend"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        if setup_job.running():
            self.report({"WARNING"}, "The set-up is already running")
            return {"CANCELLED"}
        offline = session.online_access_message("download PyTorch and the backend's packages (1–3 GB), or set the "
                                                "backend up in a terminal with the commands shown here")
        if offline:
            jobs.status[jobs.BACKEND] = ("ERROR", offline)
            self.report({"ERROR"}, offline)
            return {"CANCELLED"}
        root = _user_root(self)
        if root is None:
            return {"CANCELLED"}
        prefs = session.get_prefs()
        torch = prefs.setup_torch if prefs is not None else "AUTO"
        indexes = setup_indexes(prefs)
        try:
            setup_job.plan_for(root, torch, indexes)  # bad choices, a missing wheel or URL: one sentence here
        except SetupError as e:
            jobs.status[jobs.BACKEND] = ("ERROR", f"Set-up: {e}")
            self.report({"ERROR"}, f"Set-up: {e}")
            return {"CANCELLED"}
        # A start ahead of time (or a check) of the old backend is dropped, and a client it is still
        # building is closed when built (session.close), so no server of the old backend holds files
        # the set-up replaces; when it is done the new backend starts (finish_setup).
        jobs.drop(jobs.BACKEND)
        session.close()
        jobs.status.pop(jobs.BACKEND, None)
        run = setup_job.current = setup_job.SetupRun(root, torch, indexes)
        if self.synchronous or jobs.headless():
            run.wait()
            finish_setup(run)
            level = {"INFO"} if run.result is not None else {"WARNING"} if run.cancelled else {"ERROR"}
            self.report(level, run.end_text())
            return {"FINISHED"} if run.result is not None else {"CANCELLED"}
        bpy.app.timers.register(_setup_poll, first_interval=POLL_S)
        return {"FINISHED"}


class ATT3D_OT_cancel_setup(Operator):
    """Stop the set-up; nothing half-installed is left behind"""

    bl_idname = "att3d.cancel_setup"
    bl_label = "Cancel Set-Up"

    def execute(self, context):
        if not setup_job.running():
            return {"CANCELLED"}
        setup_job.current.cancel()
        return {"FINISHED"}


class ATT3D_OT_remove_backend(Operator):
    """Delete the backend the add-on set up (its folder and log); the add-on itself stays"""

    bl_idname = "att3d.remove_backend"
    bl_label = "Remove Backend"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        if setup_job.running() or jobs.busy(jobs.BACKEND):
            self.report({"ERROR"}, "The backend is being set up or started: wait or cancel it first")
            return {"CANCELLED"}
        root = _user_root(self)
        if root is None:
            return {"CANCELLED"}

        def work(progress):
            progress(0.0, "stopping the backend")
            session.close()  # a server running from that folder stops first (seconds)
            progress(0.5, "deleting its folder")
            return setup_job.remove_backend(root)

        def done(removed):
            setup_job.current = None
            jobs.remember_backend(None)
            return "INFO", "Backend removed" if removed else "There was no backend set up by the add-on"

        from ..operators.run import run_job

        job = jobs.Job(jobs.BACKEND, "Removing the backend", work)
        return run_job(self, job, lambda removed: None, self.synchronous, done, timed=False, report=True)


class ATT3D_OT_restart_backend(Operator):
    """Stop the backend and start it again (after a crash, or to pick up new settings)"""

    bl_idname = "att3d.restart_backend"
    bl_label = "Restart Backend"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        if busy_with_backend(self):
            return {"CANCELLED"}
        try:
            settings = session.current_settings()
        except BackendError as e:
            msg = jobs.describe_error(e)
            jobs.status[jobs.BACKEND] = ("ERROR", msg)
            self.report({"ERROR"}, msg)
            return {"CANCELLED"}

        def work(progress):
            return session.restart(settings, lambda text: progress(0.0, text)).info()

        job = jobs.Job(jobs.BACKEND, "Restarting the backend", work)
        from ..operators.run import run_job

        return run_job(self, job, jobs.remember_backend, self.synchronous,
                       lambda info: f"Restarted in {job.elapsed():.1f} s — {info.summary()}", timed=False,
                       report=True)


class ATT3D_OT_copy_setup_commands(Operator):
    """Copy the exact set-up commands, to run them in a terminal instead"""

    bl_idname = "att3d.copy_setup_commands"
    bl_label = "Copy Commands"

    def execute(self, context):
        root = _user_root(self)
        if root is None:
            return {"CANCELLED"}
        prefs = session.get_prefs()
        try:
            plan = setup_job.plan_for(root, prefs.setup_torch if prefs is not None else "AUTO", setup_indexes(prefs))
        except SetupError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        context.window_manager.clipboard = describe(plan)
        self.report({"INFO"}, "Set-up commands copied")
        return {"FINISHED"}


CLASSES = (ATT3D_OT_setup_backend, ATT3D_OT_cancel_setup, ATT3D_OT_remove_backend, ATT3D_OT_restart_backend,
           ATT3D_OT_copy_setup_commands)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)


def unregister() -> None:
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
