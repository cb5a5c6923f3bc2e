"""Start the backend ahead of time, so that the first Generate usually finds it ready.

When the add-on is enabled (Blender starting with it, or the checkbox) and when a file is loaded,
and the preference *Start the backend ahead of time* is on (the default), a background job in the
``backend`` slot builds the client: the local server starts and loads its model while the artist
is still setting up the scene. A Generate clicked meanwhile waits for that start and names its
stages. Never headless (``blender -b``, the ``bpy`` module): timers do not fire there, and a batch
starts its own backend.
"""
from __future__ import annotations

import dataclasses

import bpy

from .. import jobs
from ..client.base import BackendError
from . import session, setup_job

DELAY_S = 1.0  # after registration: let Blender finish starting first


def prestart() -> bool:
    """Main thread: start the backend in the background if the preference asks for it and it is
    not running yet. True when a start began."""
    if jobs.headless() or setup_job.running() or jobs.busy(jobs.BACKEND):
        return False
    prefs = session.get_prefs()
    if prefs is None or not getattr(prefs, "prestart", False):
        return False
    try:
        settings = session.current_settings(prefs)
    except BackendError as e:  # e.g. no backend set up yet: say so where the artist looks
        jobs.status[jobs.BACKEND] = ("INFO", str(e))
        return False
    if settings.mode == "remote" or session.cached_client(settings) is not None:
        return False
    source = settings.source

    def work(progress):
        client = session.client_for(settings, lambda text: progress(0.0, text))
        return dataclasses.replace(client.info(), backend_source=source)

    def apply(job: jobs.Job) -> None:
        jobs.remember_backend(job.result)
        jobs.status[jobs.BACKEND] = ("CHECKMARK", f"{job.result.summary()} (started in {job.elapsed():.1f} s)")

    jobs.start(jobs.Job(jobs.BACKEND, "Starting the backend", work, apply))
    return True


def _timer() -> None:
    try:
        prestart()
    except Exception as e:  # never break Blender's start-up over this
        jobs.status[jobs.BACKEND] = ("ERROR", f"Could not start the backend ahead of time: {e}")
    return None


@bpy.app.handlers.persistent
def on_load_post(*_args) -> None:
    """A file was loaded: start the backend if it is not running (the load dropped running jobs)."""
    if not jobs.headless():
        bpy.app.timers.register(_timer, first_interval=DELAY_S)


def register() -> None:
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)
    if not jobs.headless():
        bpy.app.timers.register(_timer, first_interval=DELAY_S)


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
