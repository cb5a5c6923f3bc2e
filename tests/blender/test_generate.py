"""Generate / regenerate / cancel / errors / prompt warning, through the registered operators."""
import numpy as np
import pytest
from fakes import FakeClient, make_unavailable


def _att3d_objects(bpy):
    return [o for o in bpy.data.objects if "att3d_prompt" in o]


def test_generate_sync_at_cursor_with_material_colours_and_provenance(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d.builders import geometry

    other = bpy.data.objects.new("Other", None)
    scene.collection.objects.link(other)
    other.select_set(True)
    scene.cursor.location = (1.5, -2.0, 0.25)
    scene.att3d.prompt = "a red sports car"
    scene.att3d.resolution = 48
    assert bpy.ops.att3d.generate(synchronous=True) == {"FINISHED"}
    objs = _att3d_objects(bpy)
    assert len(objs) == 1
    obj = objs[0]
    assert obj.name == "Red sports car"
    assert tuple(obj.location) == pytest.approx((1.5, -2.0, 0.25))
    assert bpy.context.view_layer.objects.active == obj and obj.select_get() and not other.select_get()
    assert fake.calls[-1] == ("generate", ("a red sports car", 48, False))
    # geometry and colours are exactly the client's, moved so that the origin is the bottom centre
    expected = fake.generate("a red sports car", resolution=48)
    lo, hi = expected.positions.min(0), expected.positions.max(0)
    base = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], np.float32)
    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    assert co.reshape(-1, 3) == pytest.approx(expected.positions - base, abs=1e-6)
    world_z = [(obj.matrix_world @ v.co).z for v in me.vertices]
    assert min(world_z) == pytest.approx(0.25, abs=1e-6)  # it rests on the cursor's height, not half under it
    assert len(me.polygons) == len(expected.faces)
    corners = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", corners)
    assert (corners.reshape(-1, 3) == expected.faces).all()
    me.validate()  # no errors to fix: validate() returns True when it changed something
    assert not me.validate() and len(me.edges) == 3 * len(me.polygons) // 2
    cols = geometry.read_color_attribute(me)
    assert np.abs(cols - expected.colors).max() < 2e-3
    # material: Color Attribute -> Principled base colour
    mat = obj.active_material
    bsdf = next(n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    link = bsdf.inputs["Base Color"].links[0]
    assert link.from_node.bl_idname == "ShaderNodeVertexColor"
    assert link.from_node.layer_name == geometry.COLOR_ATTR
    # provenance
    assert obj["att3d_prompt"] == "a red sports car"
    assert obj["att3d_model"] == "fake-model"
    assert obj["att3d_resolution"] == 48
    assert obj["att3d_chain_position"] == -1.0
    assert obj["att3d_origin"] == "BASE" and obj["att3d_target_height"] == 0.0 and obj["att3d_scale"] == 1.0


def test_centre_origin_and_target_height_are_kept_by_regenerate(bpy_module, scene, fake):
    bpy = bpy_module
    scene.cursor.location = (0.0, 0.0, 0.0)
    scene.att3d.origin, scene.att3d.target_height = "CENTER", 2.0
    assert bpy.ops.att3d.generate(prompt="a tall tower", synchronous=True) == {"FINISHED"}
    obj = bpy.context.active_object

    def box(o):
        co = np.array([tuple(o.matrix_world @ v.co) for v in o.data.vertices])
        return co.min(0), co.max(0)

    lo, hi = box(obj)
    assert hi[2] - lo[2] == pytest.approx(2.0, abs=1e-5)  # the asked height, in scene units
    assert (lo + hi) / 2 == pytest.approx([0, 0, 0], abs=1e-5)  # centred on the origin
    expected = fake.generate("a tall tower", resolution=128)
    scale = 2.0 / np.ptp(expected.positions[:, 2])
    assert obj["att3d_origin"] == "CENTER" and obj["att3d_target_height"] == 2.0
    assert obj["att3d_scale"] == pytest.approx(scale, rel=1e-6)
    assert hi[0] - lo[0] == pytest.approx(np.ptp(expected.positions[:, 0]) * scale, rel=1e-5)  # uniform scale
    scene.att3d.origin, scene.att3d.target_height = "BASE", 0.0  # the scene changed; the object keeps its own
    assert bpy.ops.att3d.regenerate(synchronous=True) == {"FINISHED"}
    lo2, hi2 = box(obj)
    assert lo2 == pytest.approx(lo, abs=1e-5) and hi2 == pytest.approx(hi, abs=1e-5)


def test_one_resolution_default_for_generate_chains_and_blend(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d import live
    from blender_att3d.choices import DEFAULT_RESOLUTION

    assert scene.att3d.resolution == 0  # the scene follows the preferences' default
    bpy.ops.att3d.generate(prompt="a red cube", synchronous=True)
    assert fake.calls[-1] == ("generate", ("a red cube", DEFAULT_RESOLUTION, False))
    bpy.ops.att3d.keyframe_add(frame=1, prompt="a red cube")
    bpy.ops.att3d.keyframe_add(frame=9, prompt="a blue ball")
    bpy.ops.att3d.build_chain(synchronous=True)
    assert fake.calls[-1][0] == "chain" and fake.calls[-1][1][2] == DEFAULT_RESOLUTION
    scene.att3d.blend_a, scene.att3d.blend_b = "a red cube", "a blue ball"
    job, _ = live.blend_job(scene)
    job.run()
    assert fake.calls[-1][0] == "blend" and fake.calls[-1][1][3] == DEFAULT_RESOLUTION
    scene.att3d.resolution = 40  # the scene's own value wins everywhere
    bpy.ops.att3d.generate(prompt="a red cube", synchronous=True)
    assert fake.calls[-1][1][1] == 40


def test_generate_texture_mode(bpy_module, scene):
    bpy = bpy_module
    assert bpy.ops.att3d.generate(prompt="a wooden crate", color_mode="TEXTURE", synchronous=True) == {"FINISHED"}
    obj = bpy.context.active_object
    tex = next(n for n in obj.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    img = tex.image
    assert img is not None and tuple(img.size) == (32, 32) and img.packed_file is not None
    assert "att3d_uv" in obj.data.uv_layers
    px = np.empty(32 * 32 * 4, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(32, 32, 4)
    # the fake texture's top image rows are red: Blender stores rows bottom-up
    assert px[-1, 0, 0] == pytest.approx(1.0) and px[0, 0, 0] < 1.0


def test_empty_prompt_is_an_error(bpy_module, scene, fake):
    bpy = bpy_module
    scene.att3d.prompt = "   "
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy.ops.att3d.generate(synchronous=True)
    assert not _att3d_objects(bpy) and not fake.calls


def test_backend_unavailable_reports_and_sets_status(bpy_module, scene):
    bpy = bpy_module
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    session.set_override(make_unavailable())
    with pytest.raises(RuntimeError, match="Backend unavailable"):
        bpy.ops.att3d.generate(prompt="a chair", synchronous=True)
    assert jobs.status["main"][0] == "ERROR" and "not running" in jobs.status["main"][1]
    with pytest.raises(RuntimeError, match="Backend unavailable"):
        bpy.ops.att3d.check_backend(synchronous=True)
    assert jobs.status["backend"][0] == "ERROR"


def test_check_backend_ok(bpy_module, scene):
    from blender_att3d import jobs

    assert bpy_module.ops.att3d.check_backend(synchronous=True) == {"FINISHED"}
    assert jobs.status["backend"][0] == "CHECKMARK" and "fake-model" in jobs.status["backend"][1]


def test_threaded_generate_applies_on_main_thread_and_can_be_undone(bpy_module, scene, monkeypatch):
    """The interactive path: worker thread, then the timer callback applies (called by hand here)."""
    bpy = bpy_module
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    session.set_override(FakeClient(delay=0.3))
    monkeypatch.setattr(jobs, "headless", lambda: False)
    bpy.ops.ed.undo_push(message="empty")
    scene.collection.objects.link(bpy.data.objects.new("Marker", None))
    bpy.ops.ed.undo_push(message="marker")
    # called as the button does (undo=True): the operator itself must push no (empty) undo step
    assert bpy.ops.att3d.generate("EXEC_DEFAULT", True, prompt="a teapot") == {"FINISHED"}
    assert jobs.busy("main") and not _att3d_objects(bpy)  # returned at once, work still running
    assert bpy.app.timers.is_registered(jobs.poll)
    assert not bpy.ops.att3d.generate.poll()  # the button is replaced while it runs
    jobs.wait("main")
    assert not jobs.busy("main")
    objs = _att3d_objects(bpy)
    assert [o.name for o in objs] == ["Teapot"]
    assert jobs.status["main"][0] == "CHECKMARK"
    # applying the result was its own undo step: one undo removes the object, keeps the marker
    bpy.ops.ed.undo()
    assert sorted(o.name for o in bpy.data.objects) == ["Marker"]
    bpy.ops.ed.undo()  # the step before is "marker"'s predecessor: no empty "Generate" step between
    assert sorted(o.name for o in bpy.data.objects) == []
    bpy.ops.ed.redo()
    bpy.ops.ed.redo()
    assert sorted(o.name for o in bpy.data.objects) == ["Marker", "Teapot"]


def test_cancel_threaded_job(bpy_module, scene, monkeypatch):
    bpy = bpy_module
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    session.set_override(FakeClient(delay=2.0))
    monkeypatch.setattr(jobs, "headless", lambda: False)
    bpy.ops.att3d.generate(prompt="a slow thing")
    assert bpy.ops.att3d.cancel(slot="main") == {"FINISHED"}
    jobs.wait("main", timeout=5)
    assert jobs.status["main"] == ("CANCEL", "Cancelled")
    assert not _att3d_objects(bpy)


def test_regenerate_replaces_mesh_in_place(bpy_module, scene, fake):
    bpy = bpy_module
    bpy.ops.att3d.generate(prompt="a red cube", resolution=32, synchronous=True)
    obj = bpy.context.active_object
    me = obj.data
    obj.data.vertices[0].co = (5, 5, 5)
    assert bpy.ops.att3d.regenerate(synchronous=True) == {"FINISHED"}
    assert obj.data == me and tuple(me.vertices[0].co) != (5, 5, 5)
    assert fake.calls[-1] == ("generate", ("a red cube", 32, False))
    assert len(bpy.data.objects) == 1


def test_prompt_warning(bpy_module, scene):
    from blender_att3d import live

    assert live.check_prompt_sync("a red cube").far is False
    assert live.prompt_warning("a red cube") is None
    live.check_prompt_sync("a  far zebra")
    assert "Far from what the model was trained on" in live.prompt_warning("a far zebra")


def test_online_access_only_for_remote_non_loopback(bpy_module):
    import sys

    from blender_att3d.client.settings import BackendSettings, BadSetting
    from blender_att3d.lifecycle import session

    assert not bpy_module.app.online_access
    on = session.online_access
    assert BackendSettings(mode="remote", url="http://127.0.0.1:8765").resolve(online=on).mode == "remote"
    assert BackendSettings(mode="local", python=sys.executable).resolve(online=on).mode == "local"
    with pytest.raises(BadSetting, match="Online access") as e:
        BackendSettings(mode="remote", url="https://att3d.example.com").resolve(online=on)
    assert e.value.setting == "online"


def test_regenerate_textured_object_keeps_a_fresh_texture(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d.builders import objects

    bpy.ops.att3d.generate(prompt="a wooden crate", resolution=24, color_mode="TEXTURE", synchronous=True)
    obj = bpy.context.active_object
    assert obj[objects.PROP_COLOR_MODE] == "TEXTURE"
    old_image = next(n for n in obj.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage").image
    old_name = old_image.name
    assert bpy.ops.att3d.regenerate(synchronous=True) == {"FINISHED"}
    assert fake.calls[-1] == ("generate", ("a wooden crate", 24, True))  # asked for a texture again
    assert "att3d_uv" in obj.data.uv_layers and len(obj.data.uv_layers["att3d_uv"].data) == len(obj.data.loops)
    assert len(bpy.data.materials) == 1
    tex = next(n for n in obj.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    assert tex.image is not None and tex.image.packed_file is not None
    assert old_name not in bpy.data.images or bpy.data.images[old_name] == tex.image
    assert len(bpy.data.images) == 1  # the old image did not pile up


def test_regenerate_without_texture_falls_back_to_vertex_colours(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d.builders import objects

    bpy.ops.att3d.generate(prompt="a wooden crate", resolution=24, color_mode="TEXTURE", synchronous=True)
    obj = bpy.context.active_object
    # the backend sends no texture this time (e.g. baking unavailable): the object must still show colours
    orig = fake.generate
    fake.generate = lambda *a, **k: orig(a[0], resolution=k.get("resolution", 128))
    bpy.ops.att3d.regenerate(synchronous=True)
    bsdf = next(n for n in obj.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    assert bsdf.inputs["Base Color"].links[0].from_node.bl_idname == "ShaderNodeVertexColor"
    assert obj[objects.PROP_COLOR_MODE] == "VERTEX"
    assert len(bpy.data.materials) == 1 and len(bpy.data.images) == 0


def test_threaded_generate_starts_the_backend_off_the_main_thread(bpy_module, scene, monkeypatch):
    """Getting the client can start a server or load a model: never inside execute() (UI thread)."""
    import threading
    import time

    import blender_att3d.client as client_pkg
    from blender_att3d import jobs
    from blender_att3d.client.settings import BackendSettings
    from blender_att3d.lifecycle import session

    bpy = bpy_module
    release = threading.Event()
    on_main = []

    def make_client(settings, on_stage=None):
        on_main.append(threading.current_thread() is threading.main_thread())
        if not release.wait(5):
            raise RuntimeError("make_client blocked the operator")
        return FakeClient()

    monkeypatch.setattr(client_pkg, "make_client", make_client, raising=False)
    monkeypatch.setattr(jobs, "headless", lambda: False)
    session.set_override(None)
    session.close()
    try:
        assert bpy.ops.att3d.generate(prompt="a teapot") == {"FINISHED"}
        assert jobs.busy("main")
        for _ in range(100):  # the worker shows that it waits for the backend
            if jobs.active("main").message == "loading the model":
                break
            time.sleep(0.05)
        # automatic mode: torch imports here, so the backend is the embedded one, loading its model
        assert jobs.active("main").message == "loading the model"
        assert [s for s, _ in jobs.active("main").stages] == ["starting the backend", "loading the model"]
        release.set()
        jobs.wait("main")
        assert on_main == [False]
        assert [o.name for o in _att3d_objects(bpy)] == ["Teapot"]
        # the remote/online-access check still answers at once, in the operator
        monkeypatch.setattr(session, "settings_from_prefs",
                            lambda prefs: BackendSettings(mode="remote", url="https://x.example"))
        with pytest.raises(RuntimeError, match="Online access"):
            bpy.ops.att3d.generate(prompt="a teapot")
        assert not jobs.busy("main") and on_main == [False]
    finally:
        release.set()
        session.close()


def test_cancel_while_the_backend_starts(bpy_module, scene, monkeypatch):
    import threading

    import blender_att3d.client as client_pkg
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    bpy = bpy_module
    release = threading.Event()
    made = []

    def make_client(settings, on_stage=None):
        release.wait(5)
        made.append(FakeClient())
        return made[-1]

    monkeypatch.setattr(client_pkg, "make_client", make_client, raising=False)
    monkeypatch.setattr(jobs, "headless", lambda: False)
    session.set_override(None)
    session.close()
    try:
        bpy.ops.att3d.generate(prompt="a teapot")
        bpy.ops.att3d.cancel(slot="main")
        release.set()
        jobs.wait("main")
        assert jobs.status["main"] == ("CANCEL", "Cancelled")
        assert made and not made[0].calls  # no generation ran after the cancel
        assert not _att3d_objects(bpy)
    finally:
        release.set()
        session.close()


def test_opening_a_file_drops_running_jobs(bpy_module, scene, monkeypatch, tmp_path):
    """Blender removes timers when another file opens; a job left behind would keep the panel busy."""
    bpy = bpy_module
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    path = tmp_path / "other.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    session.set_override(FakeClient(delay=2.0))
    monkeypatch.setattr(jobs, "headless", lambda: False)
    bpy.ops.att3d.generate(prompt="a slow thing")
    assert jobs.busy("main")
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert not jobs.busy("main") and "main" not in jobs.status
    assert bpy.ops.att3d.generate.poll()
    assert not bpy.app.timers.is_registered(jobs.poll)


def test_prompt_check_is_debounced_and_threaded(bpy_module, scene, fake, monkeypatch):
    bpy = bpy_module
    from blender_att3d import jobs, live

    monkeypatch.setattr(jobs, "headless", lambda: False)
    scene.att3d.prompt = "a far"
    scene.att3d.prompt = "a far zebra"  # typing: one check, for the latest text
    assert bpy.app.timers.is_registered(live._nearest_timer)
    bpy.app.timers.unregister(live._nearest_timer)
    live._nearest_timer()
    assert jobs.busy("nearest")
    jobs.wait("nearest")
    assert [c for c in fake.calls if c[0] == "nearest"] == [("nearest", "a far zebra")]
    assert live.prompt_warning("a far zebra") == ("Far from what the model was trained on "
                                                  "(new to it: 'far', 'zebra')")
    assert live.prompt_suggestions("a far zebra") == ["a red cube", "a blue sphere", "a green cone"]


def test_check_prompt_operator_reports(bpy_module, scene):
    bpy = bpy_module
    scene.att3d.prompt = "a red cube"
    assert bpy.ops.att3d.check_prompt(synchronous=True) == {"FINISHED"}
    scene.att3d.prompt = ""
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy.ops.att3d.check_prompt(synchronous=True)


def test_the_marching_cubes_setting_reaches_the_backend(bpy_module, scene, fake):
    bpy = bpy_module
    assert scene.att3d.mc == "auto"
    assert bpy.ops.att3d.generate(prompt="a red cube", synchronous=True) == {"FINISHED"}
    assert fake.mc == "auto"  # not sent: the backend's default
    for mc in ("pymcubes", "torch", "skimage"):
        scene.att3d.mc = mc
        assert bpy.ops.att3d.generate(prompt="a red cube", synchronous=True) == {"FINISHED"}
        assert fake.mc == mc
