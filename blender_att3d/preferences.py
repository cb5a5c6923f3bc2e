"""Add-on preferences: which backend to use, finding or setting up a local one without a terminal,
and Check / Restart Backend with a status line.

The *Python* field forgives (``~``, quotes, a venv folder or its ``bin/``) and is checked as soon as
it changes: one sentence says what the interpreter has, or what is wrong with it. Left empty, the
add-on finds a backend by itself (:mod:`.local_backend`) and says which one it uses; when there is
none, *Set Up Local Backend* installs one into the extension's own folder (:mod:`.setup_job`).
"""
from __future__ import annotations

import threading
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences

from . import jobs
from .choices import DEFAULT_RESOLUTION
from .lifecycle import local_backend, session, setup_job
from .lifecycle.setup_backend import SetupError, describe

#: the backend modes (blender_att3d.client.settings.MODES, in capitals). The numbers are what a saved
#: preference holds: LOCAL keeps SUBPROCESS's 2, its identifier until 0.1, so old preferences still load
MODES = [
    ("AUTO", "Automatic", "In Blender's Python when PyTorch is there, else a local server", "", 0),
    ("EMBEDDED", "Embedded", "Run the model inside Blender (needs PyTorch in Blender's Python)", "", 1),
    ("LOCAL", "Local", "Start 'att3d serve' on this computer, with the backend found or set up below", "", 2),
    ("REMOTE", "Remote", "Talk to a running 'att3d serve' at a URL", "", 3),
]
DEVICES = [("AUTO", "Automatic", "GPU when available"), ("CPU", "CPU", ""), ("CUDA", "CUDA", "NVIDIA GPU")]
PYTHON_CHECK = "python"  # the jobs slot of the Python field's check

#: the Python field's last check: (text checked, icon, sentence)
python_check: dict[str, tuple[str, str, str]] = {}
_plan_cache: dict[str, str] = {}


def _settings_changed(self, context):
    jobs.status.pop(jobs.BACKEND, None)
    jobs.remember_backend(None)


def _check_python(text: str) -> tuple[str, str]:
    """(icon, sentence) for the Python field (any thread: no Blender data)."""
    try:
        found = local_backend.normalize_python_field(text)
    except ValueError as e:
        return "ERROR", str(e)
    if found is None:
        return "NONE", ""
    try:
        info = local_backend.probe(found)
    except ValueError as e:
        return "ERROR", str(e)
    return "CHECKMARK", local_backend.probe_text(info)


def _python_changed(self, context):
    _settings_changed(self, context)
    text = self.python_path
    python_check.pop("result", None)
    if not local_backend._strip(text):
        return
    if jobs.headless():  # no timers: check now
        python_check["result"] = (text, *_check_python(text))
        return
    if jobs.busy(PYTHON_CHECK):
        python_check["pending"] = (text, "", "")
        return

    def apply(job):
        python_check["result"] = (text, *job.result)
        pending = python_check.pop("pending", None)
        if pending is not None and pending[0] != text:
            prefs = session.get_prefs()
            if prefs is not None:
                _python_changed(prefs, None)

    jobs.start(jobs.Job(PYTHON_CHECK, "Checking the interpreter", lambda progress: _check_python(text), apply))


def setup_indexes(prefs) -> setup_job.Indexes:
    """Where the set-up takes its packages from, as the preferences say it."""
    if prefs is None:
        return setup_job.Indexes()
    return setup_job.Indexes(prefs.setup_index, prefs.setup_index_url, prefs.setup_torch_index,
                             prefs.setup_torch_index_url)


def _commands_text(user_root: str, torch: str, indexes: setup_job.Indexes | None = None) -> str:
    indexes = indexes or setup_job.Indexes()
    key = f"{user_root}|{torch}|{indexes}"
    if key not in _plan_cache:
        try:
            _plan_cache[key] = describe(setup_job.plan_for(user_root, torch, indexes))
        except SetupError as e:
            _plan_cache[key] = f"The set-up cannot run: {e}"
    return _plan_cache[key]


#: what "pip's configured index" is on this computer (asked once, in the background: pip takes ~0.5 s)
_pip_index: dict[str, str] = {}


def pip_index_text() -> str:
    """"pip's configured index (https://mirror/simple)", or that it is being looked up."""
    if "label" in _pip_index:
        return _pip_index["label"]
    if "asked" not in _pip_index:
        _pip_index["asked"] = "yes"

        def ask() -> None:
            from .lifecycle.setup_backend import pip_index

            _pip_index["label"] = pip_index().label()  # shown at the next redraw (bpy is main-thread only)

        threading.Thread(target=ask, daemon=True, name="att3d-pip-index").start()
    return "pip's configured index (looking it up...)"


class ATT3D_AddonPreferences(AddonPreferences):
    bl_idname = __package__

    mode: EnumProperty(name="Backend", items=MODES, default="AUTO", update=_settings_changed)
    model: StringProperty(name="Model", description="Model name ('demo') or a model folder",
                          default="demo", update=_settings_changed)
    device: EnumProperty(name="Device", items=DEVICES, default="AUTO", update=_settings_changed)
    python_path: StringProperty(name="Python", description="Optional: the Python interpreter of an environment "
                                "with att3d (or that environment's folder). Empty: found automatically",
                                subtype="FILE_PATH", update=_python_changed)
    url: StringProperty(name="URL", description="Address of the remote server, e.g. http://host:8765",
                        update=_settings_changed)
    token: StringProperty(name="Token", description="Access token of the remote server", subtype="PASSWORD",
                          update=_settings_changed)
    prestart: BoolProperty(name="Start the backend ahead of time", default=True,
                           description="Start the backend when the add-on is enabled or a file is loaded, so the "
                           "first Generate finds it ready")
    setup_torch: EnumProperty(name="PyTorch", items=setup_job.TORCH_ITEMS, default="AUTO",
                              description="Which PyTorch build Set Up Local Backend installs")
    setup_index: EnumProperty(name="Package Index", items=setup_job.INDEX_ITEMS, default="PIP",
                              description="Where Set Up Local Backend takes att3d's dependencies from")
    setup_index_url: StringProperty(name="Index URL", description="The package index (a mirror) to use, e.g. "
                                    "https://mirror.example/simple")
    setup_torch_index: EnumProperty(name="PyTorch Index", items=setup_job.TORCH_INDEX_ITEMS, default="PYTORCH",
                                    description="Where Set Up Local Backend takes PyTorch from")
    setup_torch_index_url: StringProperty(name="PyTorch Index URL", description="A PyTorch wheel index (a mirror "
                                          "of download.pytorch.org/whl/cpu, /cu128 ...)")
    show_setup_commands: BoolProperty(name="Show the commands", default=False,
                                      description="The exact commands the set-up runs, and its log file")
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
            if self.mode in ("LOCAL", "AUTO"):
                draw_local(self, layout.box())
            layout.prop(self, "device")
        layout.prop(self, "model")
        layout.prop(self, "resolution")
        layout.prop(self, "prestart")
        row = layout.row(align=True)
        job = jobs.active(jobs.BACKEND)
        if job is None:
            row.operator("att3d.check_backend", icon="FILE_REFRESH")
            row.operator("att3d.restart_backend", icon="RECOVER_LAST")
        from .panels import draw_backend_status

        draw_backend_status(layout)


def draw_local(prefs, box) -> None:
    """Which local backend is used, the Python field with its check, and the set-up."""
    root = session.user_root()
    try:
        box.label(text=f"Local backend: {local_backend.find(prefs.python_path, root).describe()}", icon="CHECKMARK")
    except ValueError as e:
        box.label(text=f"The Python field: {e}", icon="ERROR")
    except local_backend.NoBackend:
        box.label(text="No local backend yet: set one up below, or give a Python with att3d", icon="INFO")
    box.prop(prefs, "python_path")
    check = python_check.get("result")
    if jobs.busy(PYTHON_CHECK):
        box.label(text="Checking the interpreter...", icon="SORTTIME")
    elif check is not None and check[0] == prefs.python_path and check[1] != "NONE":
        box.label(text=check[2], icon=check[1])
    draw_setup(prefs, box, root)


def draw_setup(prefs, box, root: str | None) -> None:
    """Set Up Local Backend (with its PyTorch choice and commands), its progress, or Remove Backend."""
    run = setup_job.current
    if root is None:
        box.label(text="Set Up Local Backend needs the add-on installed as an extension", icon="INFO")
        return
    if run is not None and run.running:
        row = box.row(align=True)
        if hasattr(row, "progress"):  # Blender 4.0+
            row.progress(factor=run.percent / 100.0, type="BAR", text=f"{run.progress_text()} {run.percent}%")
        else:  # pragma: no cover
            row.label(text=f"{run.progress_text()} {run.percent}%")
        row.operator("att3d.cancel_setup", text="", icon="CANCEL")
        for note in run.notes:  # e.g. PyTorch from pip's index: its own could not be reached
            box.label(text=note[:1].upper() + note[1:], icon="INFO")
        box.label(text=f"Log: {run.log}")
        return
    own = local_backend.addon_backend(root)
    if own is not None:
        row = box.row(align=True)
        row.label(text=f"Set up by the add-on: {own.detail}", icon="CHECKMARK")
        row.operator("att3d.remove_backend", icon="TRASH")
    else:
        row = box.row(align=True)
        row.prop(prefs, "setup_torch")
        row.operator("att3d.setup_backend", icon="IMPORT")
        col = box.column(align=True)
        col.prop(prefs, "setup_index")
        if prefs.setup_index == "CUSTOM":
            col.prop(prefs, "setup_index_url")
        col.prop(prefs, "setup_torch_index")
        if prefs.setup_torch_index == "CUSTOM":
            col.prop(prefs, "setup_torch_index_url")
        if "PIP" in (prefs.setup_index, prefs.setup_torch_index) or prefs.setup_torch_index == "PYTORCH":
            col.label(text=f"Here, {pip_index_text()}", icon="INFO")
        offline = session.online_access_message("set a backend up (it downloads PyTorch, 1–3 GB)")
        if offline:
            box.label(text=offline, icon="ERROR")
    if run is not None and not run.running and run.result is None:
        box.label(text=run.end_text(), icon="CANCEL" if run.cancelled else "ERROR")
    box.prop(prefs, "show_setup_commands")
    if prefs.show_setup_commands:
        col = box.column(align=True)
        col.scale_y = 0.8
        for line in _commands_text(root, prefs.setup_torch, setup_indexes(prefs)).splitlines():
            col.label(text=line)
        row = box.row(align=True)
        row.operator("att3d.copy_setup_commands", icon="COPYDOWN")
        log = Path(root) / local_backend.SETUP_LOG
        if log.exists():
            row.operator("wm.path_open", text="Open Log", icon="TEXT").filepath = str(log)


CLASSES = (ATT3D_AddonPreferences,)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)


def unregister() -> None:
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
