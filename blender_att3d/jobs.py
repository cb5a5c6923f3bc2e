"""Background jobs: the client call runs in a worker thread, its result is applied on Blender's main
thread from a ``bpy.app.timers`` callback. Headless (``bpy`` module, ``blender -b``) timers never
fire, so callers run the same functions synchronously there (:func:`run_sync`).

State shown by the panels (progress, status lines, prompt warnings) lives here, not in ID data:
draw() callbacks may not write to ID properties, and none of it belongs in the .blend.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import bpy

from .client.base import BackendError, BackendUnavailable, Cancelled, InvalidRequest
from .wire.types import Neighbors, ServerInfo

POLL_S = 0.1

# Job slots: one job at a time in each.
MAIN = "main"  # generate / regenerate / build chain
BLEND = "blend"  # the live blend preview
NEAREST = "nearest"  # the prompt's distance to the training prompts
BACKEND = "backend"  # Check Backend


class Job:
    def __init__(self, slot: str, label: str, work: Callable[[Callable], Any],
                 apply: Callable[[Job], None] | None = None, cancel: Callable[[], None] | None = None):
        self.slot, self.label, self.work, self.apply, self._cancel_fn = slot, label, work, apply, cancel
        self.progress = 0.0
        self.message = "starting"
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self.started = time.monotonic()
        self.finished: float | None = None
        #: (stage, seconds since the click) each time the message changed: what the wait was for
        self.stages: list[tuple[str, float]] = []
        self.thread: threading.Thread | None = None

    def report_progress(self, fraction: float, message: str = "") -> bool:
        self.progress = max(0.0, min(1.0, float(fraction)))
        if message and message != self.message:
            self.message = message
            self.stages.append((message, time.monotonic() - self.started))
        return self.cancel_requested.is_set()

    def elapsed(self) -> float:
        """Seconds since the click (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    def stage_times(self) -> list[tuple[str, float]]:
        """How long each named stage took, in order (repeats merged; bookkeeping messages left out)."""
        end = self.elapsed()
        out: dict[str, float] = {}
        for i, (name, t) in enumerate(self.stages):
            nxt = self.stages[i + 1][1] if i + 1 < len(self.stages) else end
            if name not in _BOOKKEEPING:
                out[name] = out.get(name, 0.0) + max(0.0, nxt - t)
        return list(out.items())

    def run(self) -> None:
        try:
            self.result = self.work(self.report_progress)
            if self.cancel_requested.is_set():
                raise Cancelled("cancelled")
        except BaseException as e:  # noqa: BLE001 - reported on the main thread
            self.error = e
            if not isinstance(e, BackendError):
                traceback.print_exc()
        finally:
            self.finished = time.monotonic()
            self.done.set()

    def cancel(self) -> None:
        self.cancel_requested.set()
        self.message = "cancelling"
        if self._cancel_fn is not None:
            try:
                self._cancel_fn()
            except Exception:
                pass


#: progress messages that are not stages of the work (left out of :meth:`Job.stage_times`)
_BOOKKEEPING = {"starting", "backend ready", "working", "done", "cancelling", "queued"}
#: what the main thread does with a result (the last stage of every job that makes objects)
BUILDING = "building the Blender object"

_jobs: dict[str, Job] = {}
#: Status line per slot: (icon, text); the panel shows it.
status: dict[str, tuple[str, str]] = {}
#: Per slot: how long each stage of the last finished job took ((stage, seconds), ...).
timings: dict[str, list[tuple[str, float]]] = {}
#: Prompt -> client.nearest() result (for the "far from training prompts" warning).
nearest_cache: dict[str, Neighbors] = {}
#: What the backend said about itself at the last check (model, device, training prompts ...), or None.
backend_info: ServerInfo | None = None


def remember_backend(info: ServerInfo | None) -> None:
    """Keep what the backend said about itself (the panel shows it), or forget it (None)."""
    global backend_info
    backend_info = info


def describe_error(e: BaseException) -> str:
    if isinstance(e, Cancelled):
        return "Cancelled"
    if isinstance(e, BackendUnavailable):  # the message says where to look, once
        return f"Backend unavailable: {e}"
    if isinstance(e, InvalidRequest):
        return f"Invalid request: {e}"
    if isinstance(e, BackendError):
        return f"Backend error: {e}"
    return f"{type(e).__name__}: {e}"


def active(slot: str) -> Job | None:
    return _jobs.get(slot)


def busy(slot: str) -> bool:
    return slot in _jobs


def headless() -> bool:
    return bool(bpy.app.background)


def tag_redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for win in wm.windows:
        for area in win.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


def start(job: Job) -> Job:
    """Run ``job.work`` in a thread; ``job.apply`` runs on the main thread when it is done."""
    if job.slot in _jobs:
        raise RuntimeError(f"a {job.slot} job is already running")
    _jobs[job.slot] = job
    status.pop(job.slot, None)
    timings.pop(job.slot, None)
    job.thread = threading.Thread(target=job.run, name=f"att3d-{job.slot}", daemon=True)
    job.thread.start()
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_S)
    return job


def finish(job: Job) -> None:
    """Main thread: apply a finished job's result (or record its error)."""
    if _jobs.get(job.slot) is job:  # a synchronous job never took the slot of a background one
        del _jobs[job.slot]
    if job.error is not None:
        status[job.slot] = ("CANCEL" if isinstance(job.error, Cancelled) else "ERROR", describe_error(job.error))
    elif job.apply is not None:
        try:
            job.apply(job)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            job.error = e
            status[job.slot] = ("ERROR", f"Could not apply the result: {e}")


def poll() -> float | None:
    """Timer callback: apply finished jobs, keep progress bars moving; None stops the timer."""
    for job in [j for j in _jobs.values() if j.done.is_set()]:
        finish(job)
    tag_redraw()
    return POLL_S if _jobs else None


def run_sync(job: Job) -> Job:
    """Run a job in the calling thread and apply it at once (headless paths and tests)."""
    job.run()
    finish(job)
    return job


def wait(slot: str, timeout: float = 30.0) -> None:
    """Wait for the job in ``slot`` and apply it as the timer would (tests of the threaded path)."""
    job = _jobs.get(slot)
    if job is None:
        return
    if not job.done.wait(timeout):
        raise TimeoutError(f"{slot} job still running after {timeout} s")
    poll()


def cancel(slot: str) -> bool:
    job = _jobs.get(slot)
    if job is None:
        return False
    job.cancel()
    return True


def drop(slot: str) -> bool:
    """Cancel the job in ``slot`` and forget it: its result is never applied and its status line is
    not touched (what replaces it says what happened). True when there was one."""
    job = _jobs.pop(slot, None)
    if job is None:
        return False
    job.cancel()
    return True


def cancel_all() -> None:
    for job in list(_jobs.values()):
        job.cancel()
    _jobs.clear()
    if bpy.app.timers.is_registered(poll):
        bpy.app.timers.unregister(poll)


@bpy.app.handlers.persistent
def on_load_pre(*_args) -> None:
    """Another file is opening: drop running jobs (their results belong to the closing file, and
    Blender removes the poll timer with it, which would leave the panel busy for ever)."""
    cancel_all()
    for slot in [k for k in status if k != BACKEND]:
        status.pop(slot, None)


def debounce(fn: Callable[[], None], delay: float) -> None:
    """(Re)schedule ``fn`` to run once, ``delay`` seconds after the last call."""
    if bpy.app.timers.is_registered(fn):
        bpy.app.timers.unregister(fn)
    bpy.app.timers.register(fn, first_interval=delay)


def cancel_debounced(fn: Callable) -> None:
    if bpy.app.timers.is_registered(fn):
        bpy.app.timers.unregister(fn)
