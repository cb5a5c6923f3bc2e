"""How an operator runs a backend job, and the two operators that serve every job.

Every operator that calls the backend has two paths:
* interactive: the client call runs in a worker thread (:mod:`blender_att3d.jobs`) and the result is
  applied on the main thread from a timer, through the ``att3d.apply_result`` operator, so the result
  is exactly one undo step (the operators that start jobs have no UNDO flag: they would push an empty
  step);
* synchronous (``synchronous=True``, and always headless where timers never fire): call and apply
  in ``execute``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import bpy
from bpy.props import StringProperty
from bpy.types import Operator

from .. import jobs
from ..client.base import BackendError
from ..lifecycle import session

_pending_apply: dict[str, Callable[[], None]] = {}


def apply_with_undo(job: jobs.Job, apply_fn: Callable[[Any], None]) -> None:
    """Timer side: apply through an UNDO operator so the result is one undo step."""
    _pending_apply[job.slot] = lambda: apply_fn(job.result)
    try:
        wm = bpy.context.window_manager
        win = wm.windows[0] if wm is not None and len(wm.windows) else None
        if win is not None:
            with bpy.context.temp_override(window=win):
                bpy.ops.att3d.apply_result("EXEC_DEFAULT", True, slot=job.slot)  # True: push an undo step
        else:
            bpy.ops.att3d.apply_result("EXEC_DEFAULT", True, slot=job.slot)
    except RuntimeError:
        pass
    finally:
        leftover = _pending_apply.pop(job.slot, None)
        if leftover is not None:  # the operator could not run here: apply directly
            leftover()


def _timed(job: jobs.Job, apply_fn: Callable[[Any], None]) -> Callable[[Any], None]:
    """``apply_fn`` as the job's last stage: building the Blender object counts in its time."""
    def apply(result: Any) -> None:
        job.finished = None
        job.report_progress(1.0, jobs.BUILDING)
        try:
            apply_fn(result)
        finally:
            job.finished = time.monotonic()
    return apply


#: what a finished job says: its text (a check mark), or (icon, text)
DoneText = Callable[[Any], "str | tuple[str, str]"]


def _done(job: jobs.Job, done_text: DoneText, timed: bool) -> tuple[str, str]:
    """The status line of a finished job (what it made) and, for the panel, how long each stage took
    and the total from the click."""
    if timed:
        jobs.timings[job.slot] = [*job.stage_times(), ("total from the click", job.elapsed())]
    said = done_text(job.result)
    jobs.status[job.slot] = ("CHECKMARK", said) if isinstance(said, str) else said
    return jobs.status[job.slot]


def run_job(op: Operator | None, job: jobs.Job, apply_fn: Callable[[Any], None], synchronous: bool,
            done_text: DoneText, timed: bool = True, report: bool = False) -> set[str]:
    """Run ``job`` synchronously or in the background; ``apply_fn(result)`` on the main thread.

    ``timed``: the job makes objects; :data:`jobs.timings` says how long each stage took (building
    the object included) and the total from the click. ``report``: a synchronous run also reports
    its status line (an ERROR icon as a warning). In the background the status line is set when
    the timer applies the result, never here: the worker may already be done when this returns,
    but its result is not applied yet (reading the status line then was issue 26's KeyError).
    """
    if timed:
        apply_fn = _timed(job, apply_fn)
    if synchronous or jobs.headless():
        job.apply = lambda j: apply_fn(j.result)
        jobs.run_sync(job)
        if job.error is not None:
            msg = jobs.describe_error(job.error)
            if op is not None:
                op.report({"WARNING"} if "Cancelled" == msg else {"ERROR"}, msg)
            return {"CANCELLED"}
        icon, text = _done(job, done_text, timed)
        if report and op is not None:
            op.report({"WARNING"} if icon == "ERROR" else {"INFO"}, text)
        return {"FINISHED"}

    def apply(j: jobs.Job) -> None:
        apply_with_undo(j, apply_fn)
        _done(j, done_text, timed)

    job.apply = apply
    jobs.start(job)
    return {"FINISHED"}


def backend_or_report(op: Operator, slot: str = jobs.MAIN) -> session.JobBackend | None:
    """Main thread: the job's backend, or None after reporting why there is none."""
    try:
        return session.job_backend()
    except BackendError as e:
        msg = jobs.describe_error(e)
        jobs.status[slot] = ("ERROR", msg)
        op.report({"ERROR"}, msg)
        return None


class ATT3D_OT_apply_result(Operator):
    """Apply a finished ATT3D job (internal)"""

    bl_idname = "att3d.apply_result"
    bl_label = "Apply ATT3D Result"
    bl_options = {"UNDO", "INTERNAL"}

    slot: StringProperty()

    def execute(self, context):
        fn = _pending_apply.pop(self.slot, None)
        if fn is None:
            return {"CANCELLED"}
        fn()
        return {"FINISHED"}


class ATT3D_OT_cancel(Operator):
    """Stop the running ATT3D job"""

    bl_idname = "att3d.cancel"
    bl_label = "Cancel"

    slot: StringProperty(default=jobs.MAIN)

    def execute(self, context):
        if not jobs.cancel(self.slot):
            return {"CANCELLED"}
        return {"FINISHED"}

