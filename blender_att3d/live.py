"""What updates while the user types or drags: the prompt's "far from the training prompts" warning
and the live blend preview. Two debounced ``bpy.app.timers`` callbacks and their module state; the
scene settings' update callbacks (:mod:`.properties`) schedule them.

Timers never fire headless (the ``bpy`` module, ``blender -b``): there, scheduling does nothing and
the operators' synchronous paths (:func:`check_prompt_sync`, ``att3d.blend_preview``) do the work.
"""
from __future__ import annotations

import bpy

from . import jobs
from .client.base import BackendError
from .lifecycle import session
from .placement import apply_blend, resolution_of
from .wire import check_prompt
from .wire import closeness as closeness_text
from .wire.types import Neighbors

# -- the prompt's distance to the training prompts ----------------------------------------------------
_prompt_to_check: list[str] = []  # the latest prompt typed, waiting for the debounce timer


UNKNOWN = closeness_text.UNKNOWN


def closeness(prompt: str) -> closeness_text.Closeness | None:
    """How close ``prompt`` is to what the model was trained on, once the backend told
    (:func:`wire.closeness.describe_closeness`: far with the words new to the model and the nearest
    known prompts to use instead, close, or unknown); None while not checked yet."""
    res = jobs.nearest_cache.get(" ".join(prompt.split()))
    return closeness_text.describe_closeness(res) if res is not None else None


def prompt_closeness(prompt: str) -> tuple[str, str] | None:
    """(icon, one line) of :func:`closeness`, for status lines and reports."""
    c = closeness(prompt)
    return (c.icon, c.line()) if c is not None else None


def prompt_suggestions(prompt: str) -> list[str]:
    """The nearest known prompts the panel offers under a far ``prompt`` (empty when close or unknown)."""
    c = closeness(prompt)
    return c.suggestions if c is not None else []


def prompt_warning(prompt: str) -> str | None:
    """The panel's warning for ``prompt``: the text when it is far, else None."""
    c = prompt_closeness(prompt)
    return c[1] if c is not None and c[0] == "ERROR" else None


def check_prompt_sync(prompt: str) -> Neighbors | None:
    """client.nearest(prompt) now, cached for the panel (headless and tests)."""
    try:
        p = check_prompt(prompt)
        res = session.get_client().nearest(p)
    except (ValueError, BackendError):
        return None
    jobs.nearest_cache[p] = res
    return res


def _nearest_timer() -> float | None:
    if not _prompt_to_check:
        return None
    if jobs.busy(jobs.NEAREST):
        return 0.3
    prompt = _prompt_to_check.pop()
    _prompt_to_check.clear()
    try:
        p = check_prompt(prompt)
        backend = session.job_backend()
    except (ValueError, BackendError):
        return None
    if p in jobs.nearest_cache:
        return None

    def apply(job):
        if job.result is not None:
            jobs.nearest_cache[p] = job.result

    jobs.start(jobs.Job(jobs.NEAREST, "Checking prompt", lambda progress: backend.get().nearest(p), apply,
                        cancel=backend.cancel))
    return None


def schedule_prompt_check(prompt: str, delay: float = 0.5) -> None:
    """Debounced, off the main thread: fetch client.nearest(prompt) for the warning."""
    if jobs.headless() or not prompt.strip():
        return
    _prompt_to_check[:] = [prompt]
    jobs.debounce(_nearest_timer, delay)


# -- live blend --------------------------------------------------------------------------------------
_blend_dirty: list[str] = []  # the scene whose blend slider moved, waiting for the debounce timer


def blend_job(scene) -> tuple[jobs.Job, str]:
    """Main thread: the job that blends the scene's prompts A and B, and the scene's name.
    Raises ValueError for a bad prompt, BackendError for a backend Blender may not reach."""
    s = scene.att3d
    a, b = check_prompt(s.blend_a), check_prompt(s.blend_b)
    backend = session.job_backend()
    alpha, res, name = float(s.blend_factor), resolution_of(scene), scene.name

    def work(progress):
        return backend.get(progress).blend(a, b, alpha, resolution=res, progress=progress)

    return jobs.Job(jobs.BLEND, "Blending", work, cancel=backend.cancel), name


def _blend_timer() -> float | None:
    if not _blend_dirty:
        return None
    if jobs.busy(jobs.BLEND):
        return 0.05
    scene = bpy.data.scenes.get(_blend_dirty[-1])
    _blend_dirty.clear()
    if scene is None:
        return None
    try:
        job, name = blend_job(scene)
    except (ValueError, BackendError) as e:
        jobs.status[jobs.BLEND] = ("ERROR", str(e) if isinstance(e, ValueError) else jobs.describe_error(e))
        return None

    def apply(j):
        apply_blend(j.result, name)
        if _blend_dirty:  # the slider moved while we were working
            jobs.debounce(_blend_timer, 0.01)

    job.apply = apply
    jobs.start(job)
    return None


def schedule_blend_preview(scene, delay: float = 0.12) -> None:
    """Debounced live update of the blend preview (interactive sessions only)."""
    if jobs.headless():
        return
    _blend_dirty[:] = [scene.name]
    if not jobs.busy(jobs.BLEND):
        jobs.debounce(_blend_timer, delay)


def _blend_animated(scene) -> bool:
    ad = scene.animation_data
    if ad is None:
        return False
    if ad.action is not None:
        from .builders.animation import fcurves_of

        if fcurves_of(scene).find("att3d.blend_factor") is not None:
            return True
    return any(d.data_path == "att3d.blend_factor" for d in ad.drivers)


@bpy.app.handlers.persistent
def on_frame_change(scene, depsgraph=None) -> None:
    """A keyed (or driven) Blend factor follows the timeline: the animation system sets the value
    without its update callback, so the frame change updates the preview (debounced while the UI
    runs; at once in the background, e.g. rendering an animation)."""
    s = getattr(scene, "att3d", None)
    obj = s.blend_object if s is not None else None
    if obj is None or not s.blend_live or not _blend_animated(scene):
        return
    if abs(float(obj.get("att3d_blend_factor", -1.0)) - float(s.blend_factor)) < 1e-6:
        return
    if not jobs.headless():
        schedule_blend_preview(scene, delay=0.0)
        return
    try:
        job, name = blend_job(scene)
        apply_blend(job.work(None), name)
    except (ValueError, BackendError) as e:
        jobs.status[jobs.BLEND] = ("ERROR", str(e) if isinstance(e, ValueError) else jobs.describe_error(e))


def cancel_timers() -> None:
    """Unregister both debounce timers (the add-on is being disabled)."""
    for fn in (_nearest_timer, _blend_timer):
        jobs.cancel_debounced(fn)
