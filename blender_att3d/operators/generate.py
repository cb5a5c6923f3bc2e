"""Generate an object from a prompt, and Regenerate one in place from its stored prompt."""
from __future__ import annotations

from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import Operator

from .. import jobs
from ..builders.objects import PROP_COLOR_MODE, PROP_PROMPT, PROP_RESOLUTION, is_single_result
from ..choices import COLOR_MODES
from ..naming import name_from_prompt
from ..placement import (
    active_collection_name,
    fit_of,
    fit_of_object,
    place_generated,
    resolution_of,
    update_generated,
)
from ..wire import check_prompt
from .run import backend_or_report, run_job


class ATT3D_OT_generate(Operator):
    """Generate a 3D object from the prompt, its origin (base or centre) at the 3D cursor"""

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
        return context.scene is not None and not jobs.busy(jobs.MAIN)

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
            prompt = check_prompt(self.prompt or settings.prompt)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if jobs.busy(jobs.MAIN):
            self.report({"ERROR"}, "ATT3D is already working on something: wait or cancel it")
            return {"CANCELLED"}
        backend = backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        res = self.resolution or resolution_of(context.scene)
        mode = settings.color_mode if self.color_mode == "PANEL" else self.color_mode
        loc = tuple(context.scene.cursor.location)
        fit = fit_of(context.scene)
        scene_name, coll_name = context.scene.name, active_collection_name(context)

        mc = {"mc": settings.mc} if settings.mc != "auto" else {}  # the default: clients of any age

        def work(progress):
            return backend.get(progress).generate(prompt, resolution=res, texture=(mode == "TEXTURE"),
                                                  progress=progress, **mc)

        def apply(data):
            place_generated(data, prompt, res, mode, loc, scene_name, coll_name, fit)

        def done(d):
            note = " — no texture baked, vertex colours used" if mode == "TEXTURE" and d.texture is None else ""
            return f"Made '{name_from_prompt(prompt)}' ({d.n_vertices:,} vertices){note}"

        job = jobs.Job(jobs.MAIN, f"Generating '{prompt}'", work, cancel=backend.cancel)
        return run_job(self, job, apply, self.synchronous, done)


class ATT3D_OT_regenerate(Operator):
    """Generate the active object again from its stored prompt and settings (mesh replaced in place)"""

    bl_idname = "att3d.regenerate"
    bl_label = "Regenerate"
    bl_options = {"REGISTER"}  # the result is its own undo step (apply_result)

    synchronous: BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and is_single_result(obj) and not jobs.busy(jobs.MAIN)

    def execute(self, context):
        obj = context.active_object
        prompt = obj[PROP_PROMPT]
        res = int(obj.get(PROP_RESOLUTION, 0)) or resolution_of(context.scene)
        fit = fit_of_object(obj, fit_of(context.scene))
        mode = str(obj.get(PROP_COLOR_MODE, "VERTEX"))
        backend = backend_or_report(self)
        if backend is None:
            return {"CANCELLED"}
        name = obj.name

        def work(progress):
            return backend.get(progress).generate(prompt, resolution=res, texture=(mode == "TEXTURE"),
                                                  progress=progress)

        def apply(data):
            update_generated(name, data, prompt, res, mode, fit)

        return run_job(self, jobs.Job(jobs.MAIN, f"Regenerating '{prompt}'", work, cancel=backend.cancel), apply,
                       self.synchronous, lambda d: f"Regenerated '{name}'")
