"""Keyframes and F-curves: 4.2's legacy ``Action.fcurves`` and 4.4+/5.x layered actions
(channelbags), and the scene's frame range.
"""
from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np


def fcurves_of(idblock, action_name: str | None = None):
    """The F-curve collection animating ``idblock``, creating action/slot/channelbag as needed.

    Blender 4.4+ (and 5.x, where ``Action.fcurves`` is gone): the channelbag of the ID's slot.
    Blender 4.2/4.3: the legacy ``Action.fcurves``.
    """
    from bpy_extras import anim_utils

    ad = idblock.animation_data or idblock.animation_data_create()
    action = ad.action
    if action is None:
        action = bpy.data.actions.new(action_name or f"{idblock.name}Action")
        ad.action = action
    if hasattr(anim_utils, "action_ensure_channelbag_for_slot"):
        slot = ad.action_slot
        if slot is None:
            slot = action.slots.new(id_type=idblock.id_type, name=idblock.name)
            ad.action_slot = slot
        return anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves
    return action.fcurves  # pragma: no cover - Blender < 4.4


def set_keys(fcurves, data_path: str, keys: Sequence[tuple[float, float]], interpolation: str,
             index: int = 0):
    """An F-curve with exactly ``keys`` (frame, value) and the given interpolation."""
    fc = fcurves.find(data_path, index=index)
    if fc is not None:
        fcurves.remove(fc)
    fc = fcurves.new(data_path, index=index)
    kps = fc.keyframe_points
    kps.add(len(keys))
    kps.foreach_set("co", np.asarray(keys, dtype=np.float32).ravel())
    for kp in kps:
        kp.interpolation = interpolation
        kp.handle_left_type = kp.handle_right_type = "VECTOR"
    fc.update()
    return fc


def set_frame_range(scene, frames: Sequence[float]) -> None:
    scene.frame_start = int(np.floor(min(frames)))
    scene.frame_end = max(int(np.ceil(max(frames))), scene.frame_start + 1)
