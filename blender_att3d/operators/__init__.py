"""The add-on's operators, one module per panel concern, and their registration.

* :mod:`.run`: how an operator runs a backend job (worker thread + one undo step, or synchronous),
  ``att3d.apply_result`` and ``att3d.cancel``;
* :mod:`.generate`: ``att3d.generate``, ``att3d.regenerate``;
* :mod:`.checks`: ``att3d.check_backend``, ``att3d.check_prompt``, ``att3d.use_prompt``;
* :mod:`.chain`: ``att3d.chain_add/remove``, ``att3d.keyframe_add/remove/move``, ``att3d.build_chain``,
  ``att3d.chain_reset_timing/select_timing``, ``att3d.export_chain``, ``att3d.import_chain``;
* :mod:`.blend`: ``att3d.blend_preview``.

The backend's own operators (set up, remove, restart) are :mod:`blender_att3d.lifecycle.operators`.
Where results land is :mod:`blender_att3d.placement`; the debounced live updates are
:mod:`blender_att3d.live`.
"""
from __future__ import annotations

import bpy

from .. import jobs, live
from .blend import ATT3D_OT_blend_preview
from .chain import (
    ATT3D_OT_build_chain,
    ATT3D_OT_chain_add,
    ATT3D_OT_chain_remove,
    ATT3D_OT_chain_reset_timing,
    ATT3D_OT_chain_select_timing,
    ATT3D_OT_export_chain,
    ATT3D_OT_import_chain,
    ATT3D_OT_keyframe_add,
    ATT3D_OT_keyframe_move,
    ATT3D_OT_keyframe_remove,
    menu_export,
    menu_import,
)
from .checks import ATT3D_OT_check_backend, ATT3D_OT_check_prompt, ATT3D_OT_use_prompt
from .generate import ATT3D_OT_generate, ATT3D_OT_regenerate
from .run import ATT3D_OT_apply_result, ATT3D_OT_cancel

CLASSES = (ATT3D_OT_generate, ATT3D_OT_regenerate, ATT3D_OT_apply_result, ATT3D_OT_cancel,
           ATT3D_OT_check_backend, ATT3D_OT_check_prompt, ATT3D_OT_use_prompt, ATT3D_OT_keyframe_add,
           ATT3D_OT_keyframe_remove, ATT3D_OT_keyframe_move, ATT3D_OT_build_chain, ATT3D_OT_chain_add,
           ATT3D_OT_chain_remove, ATT3D_OT_blend_preview, ATT3D_OT_chain_reset_timing, ATT3D_OT_chain_select_timing,
           ATT3D_OT_export_chain, ATT3D_OT_import_chain)


def menu_add(self, context):
    op = self.layout.operator(ATT3D_OT_generate.bl_idname, text="ATT3D from Prompt...", icon="OUTLINER_OB_MESH")
    op.use_dialog = True


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.VIEW3D_MT_add.append(menu_add)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    if jobs.on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(jobs.on_load_pre)
    if live.on_frame_change not in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.append(live.on_frame_change)


def unregister() -> None:
    bpy.types.VIEW3D_MT_add.remove(menu_add)
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    if jobs.on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(jobs.on_load_pre)
    if live.on_frame_change in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.remove(live.on_frame_change)
    jobs.cancel_all()
    live.cancel_timers()
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
