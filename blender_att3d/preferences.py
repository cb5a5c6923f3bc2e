"""Add-on preferences: which backend to use and a "Check backend" button with a status line."""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences

from . import jobs
from .choices import DEFAULT_RESOLUTION

MODES = [
    ("AUTO", "Automatic", "In Blender's Python when PyTorch imports there, else a local server"),
    ("EMBEDDED", "Embedded", "Run the model inside Blender (needs PyTorch in Blender's Python)"),
    ("SUBPROCESS", "Local Server", "Start 'att3d serve' with the Python interpreter set below"),
    ("REMOTE", "Remote Server", "Talk to a running 'att3d serve' at a URL"),
]
DEVICES = [("AUTO", "Automatic", "GPU when available"), ("CPU", "CPU", ""), ("CUDA", "CUDA", "NVIDIA GPU")]


def _settings_changed(self, context):
    jobs.status.pop(jobs.BACKEND, None)


class ATT3D_AddonPreferences(AddonPreferences):
    bl_idname = __package__

    mode: EnumProperty(name="Backend", items=MODES, default="AUTO", update=_settings_changed)
    model: StringProperty(name="Model", description="Model name ('demo') or a model folder",
                          default="demo", update=_settings_changed)
    device: EnumProperty(name="Device", items=DEVICES, default="AUTO", update=_settings_changed)
    python_path: StringProperty(name="Python", description="Python interpreter with the 'att3d' package "
                                "installed (for the local server)", subtype="FILE_PATH", update=_settings_changed)
    url: StringProperty(name="URL", description="Address of the remote server, e.g. http://host:8765",
                        update=_settings_changed)
    token: StringProperty(name="Token", description="Access token of the remote server", subtype="PASSWORD",
                          update=_settings_changed)
    resolution: IntProperty(name="Resolution", description="Default marching-cubes grid size of Generate, prompt "
                            "chains and the live blend (a scene's own Resolution overrides it)",
                            default=DEFAULT_RESOLUTION, min=16, max=512, soft_max=256)

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "mode")
        if self.mode == "REMOTE":
            layout.prop(self, "url")
            layout.prop(self, "token")
        else:
            if self.mode in ("SUBPROCESS", "AUTO"):
                layout.prop(self, "python_path")
            layout.prop(self, "device")
        layout.prop(self, "model")
        layout.prop(self, "resolution")
        row = layout.row()
        job = jobs.active(jobs.BACKEND)
        if job is not None:
            row.label(text="Checking the backend...", icon="SORTTIME")
        else:
            row.operator("att3d.check_backend", icon="FILE_REFRESH")
        icon, text = jobs.status.get(jobs.BACKEND, ("QUESTION", "Not checked yet"))
        layout.label(text=text, icon=icon)


CLASSES = (ATT3D_AddonPreferences,)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)


def unregister() -> None:
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
