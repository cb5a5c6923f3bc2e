"""Operators: generate, regenerate, cancel, check backend/prompt, chain keyframes, build chain, blend.

Every operator that calls the backend has two paths:
* interactive: the client call runs in a worker thread (:mod:`.jobs`) and the result is applied on
  the main thread from a timer, through the ``att3d.apply_result`` operator, so the result is exactly
  one undo step (the operators that start jobs have no UNDO flag: they would push an empty step);
* synchronous (``synchronous=True``, and always headless where timers never fire): call and apply
  in ``execute``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import Operator

from . import backend_client, jobs, logic, mesh_build
from .client.base import BackendError, BackendUnavailable, Cancelled
from .properties import COLOR_MODES

MAIN = "main"  # one generate/chain job at a time
BLEND = "blend"
NEAREST = "nearest"
BACKEND = "backend"

_pending_apply: dict[str, Callable[[], None]] = {}


# -- helpers ---------------------------------------------------------------------------------------
def _model_name(meta: dict) -> str:
    if meta.get("model"):
        return str(meta["model"])
    return backend_client.settings_from_prefs(backend_client.get_prefs())["model"]


def _target(scene_name: str, collection_name: str | None):
    """Scene, view layer and collection to put a result in (looked up again when applying)."""
    scene = bpy.data.scenes.get(scene_name) or bpy.context.scene
    ctx_scene = getattr(bpy.context, "scene", None)
    view_layer = bpy.context.view_layer if ctx_scene == scene and bpy.context.view_layer else scene.view_layers[0]
    coll = bpy.data.collections.get(collection_name) if collection_name else None
    if coll is None or coll.name not in scene.collection.children_recursive and coll != scene.collection:
        coll = scene.collection
    return scene, view_layer, coll


def _collection_name(context) -> str | None:
    coll = getattr(context, "collection", None)
    if coll is None or coll == context.scene.collection:
        return None
    return coll.name


def _apply_with_undo(job: jobs.Job, apply_fn: Callable[[Any], None]) -> None:
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


def _run(op: Operator | None, job: jobs.Job, apply_fn: Callable[[Any], None], synchronous: bool,
         done_text: Callable[[Any], str]) -> set[str]:
    """Run ``job`` synchronously or in the background; ``apply_fn(result)`` on the main thread."""
    if synchronous or jobs.headless():
        job.apply = lambda j: apply_fn(j.result)
        jobs.run_sync(job)
        if job.error is not None:
            msg = jobs.describe_error(job.error)
            if op is not None:
                op.report({"WARNING"} if "Cancelled" == msg else {"ERROR"}, msg)
            return {"CANCELLED"}
        jobs.status[job.slot] = ("CHECKMARK", done_text(job.result))
        return {"FINISHED"}

    def apply(j: jobs.Job) -> None:
        _apply_with_undo(j, apply_fn)
        jobs.status[j.slot] = ("CHECKMARK", done_text(j.result))

    job.apply = apply
    jobs.start(job)
    return {"FINISHED"}


class _Backend:
    """The backend of one job: settings read on the main thread, the client got in the worker.

    Getting the client can start a local server or load a model (seconds to minutes): that must
    not happen on Blender's main thread, so :meth:`get` runs inside the job's ``work``.
    """

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.client = None

    def get(self, progress=None):
        if progress is not None:
            progress(0.0, "connecting to the backend")
        self.client = backend_client.client_for(self.settings)
        if progress is not None and progress(0.0, "working"):  # cancelled while it started
            raise Cancelled("cancelled")
        return self.client

    def cancel(self) -> None:
        if self.client is not None:
            self.client.cancel()


def _backend() -> _Backend:
    """Main thread: the configured backend (raises BackendUnavailable at once for a remote one
    Blender may not reach)."""
    return _Backend(backend_client.current_settings())


def _backend_or_report(op: Operator, slot: str = MAIN) -> _Backend | None:
    try:
        return _backend()
    except BackendError as e:
        msg = jobs.describe_error(e)
        jobs.status[slot] = ("ERROR", msg)
        op.report({"ERROR"}, msg)
        return None


def place_generated(data, prompt: str, resolution: int, color_mode: str, location, scene_name: str,
                    collection_name: str | None = None):
    """Main thread: the generated mesh as a new object at ``location``, selected and active."""
    scene, view_layer, coll = _target(scene_name, collection_name)
    obj = mesh_build.create_object(coll, data, logic.name_from_prompt(prompt), location, color_mode,
                                   prompt=prompt, model=_model_name(data.meta), resolution=resolution)
    mesh_build.select_only(view_layer, obj)
    return obj


def build_chain_objects(seq, key_frames, mode: str, interpolation: str, chain_id: str, resolution: int,
                        location, scene_name: str, collection_name: str | None = None):
    """Main thread: replace the previous chain with this one (mesh sequence or shape keys)."""
    scene, view_layer, coll = _target(scene_name, collection_name)
    mesh_build.remove_chain(chain_id)
    frames = logic.step_frames(seq.steps, key_frames)
    name = logic.chain_name(seq.prompts[0], seq.prompts[-1])
    kw = dict(location=location, model=_model_name(seq.meta), resolution=resolution)
    if mode == "SHAPE_KEYS":
        obj = mesh_build.build_shape_keys(coll, seq, frames, name, chain_id, interpolation, **kw)
    else:
        obj = mesh_build.build_sequence(coll, seq, frames, name, chain_id, **kw)
    if scene.frame_end < frames[-1] or scene.frame_start > frames[0]:
        mesh_build.set_frame_range(scene, frames)
    mesh_build.select_only(view_layer, obj)
    scene.frame_set(scene.frame_current)
    return obj


# -- generate ----------------------------------------------------------------------------------------
class ATT3D_OT_generate(Operator):
    """Generate a 3D object from the prompt at the 3D cursor"""

    bl_idname = "att3d.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    prompt: StringProperty(name="Prompt", description="Empty: the prompt in the ATT3D panel")
    resolution: IntProperty(name="Resolution", description="0: the panel's resolution", default=0, min=0, max=512)
    color_mode: EnumProperty(name="Colour", items=[("PANEL", "Panel Setting", "")] + COLOR_MODES, default="PANEL")
    synchronous: BoolProperty(name="Synchronous", description="Wait for the result (scripts, headless)",
                              default=False, options={"SKIP_SAVE", "HIDDEN"})
    use_dialog: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not jobs.busy(MAIN)

    def invoke(self, context, event):
        if self.use_dialog:
            if not self.prompt:
                self.prompt = context.scene.att3d.prompt
            return context.window_manager.invoke_props_dialog(self)
        return self.execute(context)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "prompt")
        layout.prop(self, "resolution")
        layout.prop(self, "color_mode")

    def execute(self, context):
        settings = context.scene.att3d
        try:
            prompt = logic.check_prompt(self.prompt or settings.prompt)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if jobs.busy(MAIN):
            self.report({"ERROR"}, "ATT3D is already working on something: wait or cancel it")
            return {"CANCELLED"}
        backend = _backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        res = self.resolution or settings.resolution
        mode = settings.color_mode if self.color_mode == "PANEL" else self.color_mode
        loc = tuple(context.scene.cursor.location)
        scene_name, coll_name = context.scene.name, _collection_name(context)

        def work(progress):
            return backend.get(progress).generate(prompt, resolution=res, texture=(mode == "TEXTURE"),
                                                  progress=progress)

        def apply(data):
            place_generated(data, prompt, res, mode, loc, scene_name, coll_name)

        job = jobs.Job(MAIN, f"Generating '{prompt}'", work, cancel=backend.cancel)
        def done(d):
            note = " — no texture baked, vertex colours used" if mode == "TEXTURE" and d.texture is None else ""
            return f"Made '{logic.name_from_prompt(prompt)}' ({d.n_vertices:,} vertices){note}"

        return _run(self, job, apply, self.synchronous, done)


class ATT3D_OT_regenerate(Operator):
    """Generate the active object again from its stored prompt and resolution (mesh replaced in place)"""

    bl_idname = "att3d.regenerate"
    bl_label = "Regenerate"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return (obj is not None and obj.type == "MESH" and mesh_build.is_single_result(obj)
                and not jobs.busy(MAIN))

    def execute(self, context):
        obj = context.active_object
        prompt = obj[mesh_build.PROP_PROMPT]
        res = int(obj.get(mesh_build.PROP_RESOLUTION, 0)) or context.scene.att3d.resolution
        mode = str(obj.get(mesh_build.PROP_COLOR_MODE, "VERTEX"))
        backend = _backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        name = obj.name

        def work(progress):
            return backend.get(progress).generate(prompt, resolution=res, texture=(mode == "TEXTURE"),
                                                  progress=progress)

        def apply(data):
            target = bpy.data.objects.get(name)
            if target is None:
                return
            mesh_build.update_object(target, data, mode)
            mesh_build.set_provenance(target, data.meta, prompt=prompt, model=_model_name(data.meta), resolution=res)

        return _run(self, jobs.Job(MAIN, f"Regenerating '{prompt}'", work, cancel=backend.cancel), apply,
                    self.synchronous, lambda d: f"Regenerated '{name}'")


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

    slot: StringProperty(default=MAIN)

    def execute(self, context):
        if not jobs.cancel(self.slot):
            return {"CANCELLED"}
        return {"FINISHED"}


# -- backend / prompt checks -------------------------------------------------------------------------
def _info_text(info: dict) -> str:
    parts = [f"{k}: {info[k]}" for k in ("model", "device", "version") if info.get(k)]
    return "Backend OK" + (" — " + ", ".join(parts) if parts else "")


class ATT3D_OT_check_backend(Operator):
    """Ask the backend who it is (starts it if needed)"""

    bl_idname = "att3d.check_backend"
    bl_label = "Check Backend"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        if jobs.busy(BACKEND):
            return {"CANCELLED"}
        jobs.status[BACKEND] = ("SORTTIME", "Checking the backend...")
        try:
            backend = _backend()
        except BackendError as e:
            jobs.status[BACKEND] = ("ERROR", jobs.describe_error(e))
            self.report({"ERROR"}, jobs.status[BACKEND][1])
            return {"CANCELLED"}

        def work(progress):
            client = backend.get()
            try:
                return client.info()
            except BackendUnavailable:
                # The cached client is dead (its own restart used up): asked explicitly, start afresh.
                if not backend_client.discard(client):
                    raise
                return backend.get().info()

        job = jobs.Job(BACKEND, "Checking backend", work, cancel=backend.cancel)
        result = _run(self, job, lambda info: None, self.synchronous, _info_text)
        if result == {"FINISHED"} and job.done.is_set():
            self.report({"INFO"}, jobs.status[BACKEND][1])
        return result


def prompt_warning(prompt: str) -> str | None:
    """The panel's warning for ``prompt`` (None when unknown yet or close to the training prompts)."""
    res = jobs.nearest_cache.get(" ".join(prompt.split()))
    if not res or not res.get("far"):
        return None
    nb = res.get("neighbors") or []
    near = f"; closest: '{nb[0]['prompt']}'" if nb and nb[0].get("prompt") else ""
    return f"Far from what the model was trained on{near}"


def check_prompt_sync(prompt: str) -> dict | None:
    """client.nearest(prompt) now, cached for the panel (headless and tests)."""
    try:
        p = logic.check_prompt(prompt)
        res = backend_client.get_client().nearest(p)
    except (ValueError, BackendError):
        return None
    jobs.nearest_cache[p] = res
    return res


_prompt_to_check: list[str] = []


def _nearest_timer() -> float | None:
    if not _prompt_to_check:
        return None
    if jobs.busy(NEAREST):
        return 0.3
    prompt = _prompt_to_check.pop()
    _prompt_to_check.clear()
    try:
        p = logic.check_prompt(prompt)
        backend = _backend()
    except (ValueError, BackendError):
        return None
    if p in jobs.nearest_cache:
        return None

    def apply(job):
        if job.result is not None:
            jobs.nearest_cache[p] = job.result

    jobs.start(jobs.Job(NEAREST, "Checking prompt", lambda progress: backend.get().nearest(p), apply,
                        cancel=backend.cancel))
    return None


def schedule_prompt_check(prompt: str, delay: float = 0.5) -> None:
    """Debounced, off the main thread: fetch client.nearest(prompt) for the warning."""
    if jobs.headless() or not prompt.strip():
        return
    _prompt_to_check[:] = [prompt]
    jobs.debounce(_nearest_timer, delay)


class ATT3D_OT_check_prompt(Operator):
    """Check how close the prompt is to what the model was trained on"""

    bl_idname = "att3d.check_prompt"
    bl_label = "Check Prompt"

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        try:
            p = logic.check_prompt(context.scene.att3d.prompt)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if jobs.busy(NEAREST):
            return {"CANCELLED"}
        backend = _backend_or_report(self, NEAREST)
        if backend is None:
            return {"CANCELLED"}

        def apply(res):
            jobs.nearest_cache[p] = res

        def done(res):
            return prompt_warning(p) or "The prompt is close to the training prompts"

        job = jobs.Job(NEAREST, "Checking prompt", lambda progress: backend.get().nearest(p), cancel=backend.cancel)
        result = _run(self, job, apply, self.synchronous, done)
        if result == {"FINISHED"} and job.done.is_set():
            warn = prompt_warning(p)
            self.report({"WARNING"} if warn else {"INFO"}, warn or "The prompt is close to the training prompts")
        return result


# -- chain keyframes ---------------------------------------------------------------------------------
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
        return context.scene is not None and not jobs.busy(MAIN)

    def execute(self, context):
        s = context.scene.att3d
        try:
            keys = logic.sorted_keyframes((k.frame, k.prompt) for k in s.keyframes)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        backend = _backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        key_frames = [f for f, _ in keys]
        prompts = [p for _, p in keys]
        steps, res, mode = s.chain_steps, s.chain_resolution, s.chain_mode
        interp, chain_id = s.chain_interpolation, s.chain_id or "chain"
        loc = tuple(context.scene.cursor.location)
        scene_name, coll_name = context.scene.name, _collection_name(context)

        def work(progress):
            return backend.get(progress).chain(list(enumerate(prompts)), steps=steps, resolution=res,
                                               consistent=(mode == "SHAPE_KEYS"), progress=progress)

        def apply(seq):
            build_chain_objects(seq, key_frames, mode, interp, chain_id, res, loc, scene_name, coll_name)

        return _run(self, jobs.Job(MAIN, "Building the chain", work, cancel=backend.cancel), apply,
                    self.synchronous, lambda seq: f"Built a {len(seq)}-step chain")


# -- live blend --------------------------------------------------------------------------------------
_blend_dirty: list[str] = []


def apply_blend(data, scene_name: str, location=None):
    """Main thread: put the blend in the preview object, replacing its mesh geometry in place."""
    scene, view_layer, coll = _target(scene_name, None)
    s = scene.att3d
    obj = s.blend_object
    if obj is None or obj.type != "MESH" or obj.name not in scene.objects:
        loc = location if location is not None else tuple(scene.cursor.location)
        obj = mesh_build.create_object(coll, data, "ATT3D Blend", loc, "VERTEX",
                                       model=_model_name(data.meta), resolution=s.blend_resolution)
        obj[mesh_build.PROP_BLEND] = True
        s.blend_object = obj
    else:
        mesh_build.replace_geometry(obj, data)
        mesh_build.set_provenance(obj, data.meta, model=_model_name(data.meta), resolution=s.blend_resolution)
    obj["att3d_blend_a"], obj["att3d_blend_b"] = s.blend_a, s.blend_b
    obj["att3d_blend_factor"] = float(s.blend_factor)
    return obj


def _blend_job(scene) -> tuple[jobs.Job, str]:
    s = scene.att3d
    a, b = logic.check_prompt(s.blend_a), logic.check_prompt(s.blend_b)
    backend = _backend()
    alpha, res, name = float(s.blend_factor), s.blend_resolution, scene.name

    def work(progress):
        return backend.get(progress).blend(a, b, alpha, resolution=res, progress=progress)

    return jobs.Job(BLEND, "Blending", work, cancel=backend.cancel), name


def _blend_timer() -> float | None:
    if not _blend_dirty:
        return None
    if jobs.busy(BLEND):
        return 0.05
    scene = bpy.data.scenes.get(_blend_dirty[-1])
    _blend_dirty.clear()
    if scene is None:
        return None
    try:
        job, name = _blend_job(scene)
    except (ValueError, BackendError) as e:
        jobs.status[BLEND] = ("ERROR", str(e) if isinstance(e, ValueError) else jobs.describe_error(e))
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
    if not jobs.busy(BLEND):
        jobs.debounce(_blend_timer, delay)


class ATT3D_OT_blend_preview(Operator):
    """Generate the blend of prompts A and B into the preview object now"""

    bl_idname = "att3d.blend_preview"
    bl_label = "Update Blend"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        try:
            job, name = _blend_job(context.scene)
        except ValueError as e:
            self.report({"ERROR"}, f"Blend: {e}")
            return {"CANCELLED"}
        except BackendError as e:
            self.report({"ERROR"}, jobs.describe_error(e))
            return {"CANCELLED"}
        if jobs.busy(BLEND):
            return {"CANCELLED"}
        return _run(self, job, lambda data: apply_blend(data, name), self.synchronous,
                    lambda d: f"Blend updated ({d.n_vertices:,} vertices)")


CLASSES = (ATT3D_OT_generate, ATT3D_OT_regenerate, ATT3D_OT_apply_result, ATT3D_OT_cancel,
           ATT3D_OT_check_backend, ATT3D_OT_check_prompt, ATT3D_OT_keyframe_add, ATT3D_OT_keyframe_remove,
           ATT3D_OT_keyframe_move, ATT3D_OT_build_chain, ATT3D_OT_blend_preview)


def menu_add(self, context):
    op = self.layout.operator(ATT3D_OT_generate.bl_idname, text="ATT3D from Prompt...", icon="OUTLINER_OB_MESH")
    op.use_dialog = True


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.VIEW3D_MT_add.append(menu_add)
    if jobs.on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(jobs.on_load_pre)


def unregister() -> None:
    bpy.types.VIEW3D_MT_add.remove(menu_add)
    if jobs.on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(jobs.on_load_pre)
    jobs.cancel_all()
    for fn in (_nearest_timer, _blend_timer):
        jobs.cancel_debounced(fn)
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
