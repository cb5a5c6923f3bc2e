"""The "ATT3D" tab of the 3D viewport sidebar (N panel)."""
from __future__ import annotations

import bpy
from bpy.types import Panel, UIList

from . import chains, jobs
from .builders.objects import PROP_PROMPT, is_single_result
from .jobs import BLEND, MAIN
from .lifecycle import session
from .live import closeness
from .placement import resolution_of


def progress_text(job: jobs.Job) -> str:
    """What the job waits for right now and the time since the click: never a silent bar."""
    return f"{job.label}: {job.message} — {job.elapsed():.1f} s"


def _progress(layout, job: jobs.Job) -> None:
    row = layout.row(align=True)
    text = progress_text(job)
    if hasattr(row, "progress"):  # Blender 4.0+
        row.progress(factor=job.progress, type="BAR", text=text)
    else:  # pragma: no cover
        row.label(text=f"{text} ({job.progress:.0%})")
    row.operator("att3d.cancel", text="", icon="CANCEL").slot = job.slot


def _status(layout, slot: str) -> None:
    st = jobs.status.get(slot)
    if st is not None:
        icon, text = st
        layout.label(text=text, icon=icon)
    stages = jobs.timings.get(slot)
    if st is not None and st[0] == "CHECKMARK" and stages:
        col = layout.column(align=True)
        col.scale_y = 0.7
        for name, seconds in stages:
            col.label(text=f"{name}: {seconds:.2f} s")


def draw_backend_status(layout) -> None:
    """The backend's state: a start or check in progress, its status line, what it said about itself."""
    job = jobs.active(jobs.BACKEND)
    if job is not None:
        layout.label(text=progress_text(job), icon="SORTTIME")
    else:
        icon, text = jobs.status.get(jobs.BACKEND, ("QUESTION", "Not checked yet"))
        layout.label(text=text, icon=icon)
    if jobs.backend_info is not None:
        col = layout.column(align=True)
        col.scale_y = 0.8
        for line in jobs.backend_info.lines():
            col.label(text=line)


def draw_closeness(layout, prompt: str) -> None:
    """Under the prompt: how close it is to what the model was trained on and, when far, which
    words are new to the model and the nearest known prompts as buttons that put them in the field."""
    c = closeness(prompt) if prompt else None
    if c is None:
        return
    icon, head, detail, suggestions = c
    col = layout.column(align=True)
    col.label(text=head, icon=icon)
    if detail:
        col.label(text=detail[:1].upper() + detail[1:], icon="BLANK1")
    if suggestions:
        col.label(text="Known prompts to try:", icon="BLANK1")
        for p in suggestions:
            col.operator("att3d.use_prompt", text=p, icon="FORWARD").prompt = p


class ATT3D_PT_main(Panel):
    bl_idname = "ATT3D_PT_main"
    bl_label = "ATT3D"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ATT3D"

    def draw(self, context):
        layout = self.layout
        s = context.scene.att3d
        layout.prop(s, "prompt", text="")
        draw_closeness(layout, s.prompt)
        col = layout.column(align=True)
        col.prop(s, "resolution", text="Resolution" if s.resolution else f"Resolution: default {resolution_of(None)}")
        col.prop(s, "color_mode", text="")
        col.prop(s, "mc", text="")
        row = layout.row(align=True)
        row.prop(s, "origin", expand=True)
        layout.prop(s, "target_height")
        job = jobs.active(MAIN)
        if job is not None:
            _progress(layout, job)
        else:
            row = layout.row()
            row.scale_y = 1.4
            row.operator("att3d.generate", icon="SHADERFX")
        _status(layout, MAIN)
        if any("Set Up Local Backend" in jobs.status.get(k, ("", ""))[1] for k in (MAIN, jobs.BACKEND)):
            op = layout.operator("preferences.addon_show", text="Open the Add-on's Preferences", icon="PREFERENCES")
            op.module = session.addon_package()
        obj = context.active_object
        if obj is not None and is_single_result(obj):
            box = layout.box()
            box.label(text=f"'{obj[PROP_PROMPT]}'", icon="INFO")
            box.operator("att3d.regenerate", icon="FILE_REFRESH")


class ATT3D_UL_keyframes(UIList):
    bl_idname = "ATT3D_UL_keyframes"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        sub = row.row(align=True)
        sub.ui_units_x = 3.5
        sub.prop(item, "frame", text="", emboss=False)
        row.prop(item, "prompt", text="", emboss=False, icon="KEYFRAME")


class ATT3D_UL_chains(UIList):
    bl_idname = "ATT3D_UL_chains"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        layout.prop(item, "name", text="", emboss=False, icon="RENDER_ANIMATION")


class ATT3D_PT_chain(Panel):
    bl_idname = "ATT3D_PT_chain"
    bl_label = "Prompt Chains"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ATT3D"
    bl_parent_id = "ATT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.att3d
        row = layout.row()
        row.template_list("ATT3D_UL_chains", "", s, "chains", s, "chain_index", rows=2)
        col = row.column(align=True)
        col.operator("att3d.chain_add", text="", icon="ADD")
        col.operator("att3d.chain_remove", text="", icon="REMOVE")
        chain = s.active_chain()
        if chain is None:
            layout.operator("att3d.keyframe_add", icon="KEYFRAME")
            return
        row = layout.row()
        row.template_list("ATT3D_UL_keyframes", "", chain, "keyframes", chain, "keyframe_index", rows=4)
        col = row.column(align=True)
        col.operator("att3d.keyframe_add", text="", icon="ADD")
        col.operator("att3d.keyframe_remove", text="", icon="REMOVE")
        col.separator()
        col.operator("att3d.keyframe_move", text="", icon="TRIA_UP").direction = "UP"
        col.operator("att3d.keyframe_move", text="", icon="TRIA_DOWN").direction = "DOWN"
        col = layout.column(align=True)
        col.prop(chain, "steps")
        if chain.mode == "SHAPE_KEYS":
            col.prop(chain, "max_states")
        layout.prop(chain, "mode", expand=True)
        layout.prop(chain, "interpolation", expand=True)
        if jobs.active(MAIN) is None:
            root = chains.built_root(chain)
            row = layout.row()
            row.scale_y = 1.2
            row.operator("att3d.build_chain", icon="RENDER_ANIMATION",
                         text="Build Animation" if root is None else "Rebuild Animation")
        draw_chain_state(layout, context.scene, chain)


def draw_chain_state(layout, scene, chain) -> None:
    """Whether the built chain matches its keyframes, what drives it, and its timing and export tools."""
    root = chains.built_root(chain)
    if root is None:
        return
    reasons = chains.stale_reasons(scene, chain)
    box = layout.box()
    if reasons:
        box.label(text="Out of date: " + "; ".join(reasons), icon="ERROR")
        box.label(text="Rebuild updates it in place (objects, modifiers and timing stay)")
    else:
        pieces = root.get("att3d_pieces")
        what = f"{pieces} pieces" if pieces else f"{len(root.children)} steps"
        box.label(text=f"Built: '{root.name}', {what}; timing: its Chain Position curve", icon="CHECKMARK")
        move = root.get("att3d_max_move_voxels")
        if move is not None:
            box.label(text=f"Largest vertex move between stored states: {float(move):.1f} voxels")
    row = box.row(align=True)
    row.operator("att3d.chain_select_timing", icon="GRAPH")
    row.operator("att3d.chain_reset_timing", icon="IPO_BEZIER")
    box.operator("att3d.export_chain", icon="EXPORT", text="Export Chain (.glb)…")


class ATT3D_PT_blend(Panel):
    bl_idname = "ATT3D_PT_blend"
    bl_label = "Live Blend"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ATT3D"
    bl_parent_id = "ATT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.att3d
        layout.prop(s, "blend_a", text="A")
        layout.prop(s, "blend_b", text="B")
        layout.prop(s, "blend_factor", slider=True)
        layout.prop(s, "blend_live", toggle=True)
        job = jobs.active(BLEND)
        if job is not None:
            _progress(layout, job)
        else:
            layout.operator("att3d.blend_preview", icon="FILE_REFRESH")
        _status(layout, BLEND)


class ATT3D_PT_backend(Panel):
    bl_idname = "ATT3D_PT_backend"
    bl_label = "Backend"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ATT3D"
    bl_parent_id = "ATT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        draw_backend_status(layout)
        row = layout.row(align=True)
        row.operator("att3d.check_backend", icon="FILE_REFRESH")
        row.operator("att3d.restart_backend", icon="RECOVER_LAST")


CLASSES = (ATT3D_PT_main, ATT3D_UL_keyframes, ATT3D_UL_chains, ATT3D_PT_chain, ATT3D_PT_blend, ATT3D_PT_backend)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)


def unregister() -> None:
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
