"""Panels, UI list, Add-menu entry and preferences draw without errors (a recording stub layout,
since headless Blender has no UI), and only refer to properties and operators that exist."""
import re
import types

import pytest


class Layout:
    def __init__(self, log, bpy):
        self.log, self.bpy = log, bpy
        self.use_property_split = False
        self.scale_y = 1.0
        self.ui_units_x = 0

    def _child(self, *a, **k):
        return type(self)(self.log, self.bpy)

    row = column = box = split = _child

    def separator(self, *a, **k):
        pass

    def label(self, text="", icon="NONE", **k):
        self.log.append(("label", text, icon))

    def prop(self, data, name, **k):
        assert name in data.bl_rna.properties, f"no property {name!r} on {data}"
        self.log.append(("prop", name))

    def operator(self, idname, **k):
        mod, op = idname.split(".")
        getattr(getattr(self.bpy.ops, mod), op).get_rna_type()  # raises if not registered
        self.log.append(("operator", idname))
        return types.SimpleNamespace()

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(("progress", round(factor, 2), text))

    def template_list(self, listtype, list_id, data, prop, active_data, active_prop, **k):
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.log.append(("list", listtype))


def _draw(bpy, cls, context, **attrs):
    log = []
    self = types.SimpleNamespace(layout=Layout(log, bpy), **attrs)
    cls.draw(self, context)
    return log


def test_panels_draw(bpy_module, scene, addon):
    bpy = bpy_module
    from blender_att3d import jobs, live, operators, panels

    ctx = bpy.context
    log = _draw(bpy, panels.ATT3D_PT_main, ctx)
    assert ("operator", "att3d.generate") in log and ("prop", "prompt") in log
    # far prompt -> warning; a running job -> progress bar + cancel instead of the button
    scene.att3d.prompt = "a far zebra"
    live.check_prompt_sync("a far zebra")
    job = jobs.Job("main", "Generating", lambda p: None)
    job.progress, job.message = 0.4, "step 2/5"
    jobs._jobs["main"] = job
    try:
        log = _draw(bpy, panels.ATT3D_PT_main, ctx)
    finally:
        jobs._jobs.clear()
    assert any(e[0] == "label" and "Far from what the model" in e[1] for e in log)
    bar = [e for e in log if e[0] == "progress"]
    assert bar and bar[0][1] == 0.4 and re.fullmatch(r"Generating: step 2/5 — \d+\.\d s", bar[0][2]), bar
    assert ("operator", "att3d.cancel") in log
    assert ("operator", "att3d.generate") not in log
    for cls in (panels.ATT3D_PT_chain, panels.ATT3D_PT_blend, panels.ATT3D_PT_backend):
        assert _draw(bpy, cls, ctx)
    log = _draw(bpy, panels.ATT3D_PT_main, ctx)
    assert {("prop", "origin"), ("prop", "target_height"), ("prop", "resolution")} <= set(log)
    log = _draw(bpy, panels.ATT3D_PT_chain, ctx)  # no chain yet: the list and a way to start one
    assert ("list", "ATT3D_UL_chains") in log and ("operator", "att3d.keyframe_add") in log
    bpy.ops.att3d.chain_add()
    chain = scene.att3d.active_chain()
    assert chain.name == "Chain 1" and chain.uid
    log = _draw(bpy, panels.ATT3D_PT_chain, ctx)
    assert ("list", "ATT3D_UL_keyframes") in log and ("operator", "att3d.build_chain") in log
    assert {("prop", "steps"), ("prop", "mode"), ("prop", "interpolation")} <= set(log)
    log = []
    panels.ATT3D_UL_chains.draw_item(None, ctx, Layout(log, bpy), None, chain, 0, None, "")
    assert log == [("prop", "name")]  # each chain shows (and edits) its name
    item = chain.keyframes.add()
    log = []
    panels.ATT3D_UL_keyframes.draw_item(None, ctx, Layout(log, bpy), None, item, 0, None, "")
    assert ("prop", "frame") in log and ("prop", "prompt") in log
    log = []
    operators.menu_add(types.SimpleNamespace(layout=Layout(log, bpy)), ctx)
    assert log == [("operator", "att3d.generate")]
    assert bpy.types.VIEW3D_MT_add.is_extended()


def test_preferences_draw(bpy_module, addon):
    bpy = bpy_module
    from blender_att3d import preferences

    cls = preferences.ATT3D_AddonPreferences
    props = cls.bl_rna.properties
    for mode in ("AUTO", "EMBEDDED", "LOCAL", "REMOTE"):
        log = []
        stub = types.SimpleNamespace(layout=Layout(log, bpy), mode=mode, bl_rna=cls.bl_rna, python_path="",
                                     setup_torch="AUTO", show_setup_commands=True, prestart=True)

        def prop(data, name, log=log, **k):
            log.append(("prop", name))
            if name not in props:
                pytest.fail(name)

        stub.layout.prop = prop
        cls.draw(stub, bpy.context)
        names = {e[1] for e in log if e[0] == "prop"}
        assert ("url" in names) == (mode == "REMOTE") and "model" in names and "prestart" in names
        assert ("operator", "att3d.check_backend") in log and ("operator", "att3d.restart_backend") in log
        assert ("python_path" in names) == (mode in ("AUTO", "LOCAL"))
    assert props["model"].default == "demo"
    from blender_att3d.choices import DEFAULT_RESOLUTION

    assert props["resolution"].default == DEFAULT_RESOLUTION  # the one default of generate, chains, blend, batch
    # one name per mode, the client's; the numbers a saved preference holds are 0.1's (LOCAL was SUBPROCESS)
    assert {i.identifier: i.value for i in props["mode"].enum_items} == {"AUTO": 0, "EMBEDDED": 1, "LOCAL": 2,
                                                                          "REMOTE": 3}
    assert {i.identifier for i in props["device"].enum_items} == {"AUTO", "CPU", "CUDA"}
