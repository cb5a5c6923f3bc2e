"""Generate / regenerate / cancel / errors / prompt warning, through the registered operators."""
import numpy as np
import pytest

from fakes import FakeClient, make_unavailable


def _att3d_objects(bpy):
    return [o for o in bpy.data.objects if "att3d_prompt" in o]


def test_generate_sync_at_cursor_with_material_colours_and_provenance(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d import mesh_build

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
    # geometry and colours are exactly the client's
    expected = fake.generate("a red sports car", resolution=48)
    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    assert co.reshape(-1, 3) == pytest.approx(expected.positions, abs=1e-6)
    assert len(me.polygons) == len(expected.faces)
    corners = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", corners)
    assert (corners.reshape(-1, 3) == expected.faces).all()
    me.validate()  # no errors to fix: validate() returns True when it changed something
    assert not me.validate() and len(me.edges) == 3 * len(me.polygons) // 2
    cols = mesh_build.read_color_attribute(me)
    assert np.abs(cols - expected.colors).max() < 2e-3
    # material: Color Attribute -> Principled base colour
    mat = obj.active_material
    bsdf = next(n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    link = bsdf.inputs["Base Color"].links[0]
    assert link.from_node.bl_idname == "ShaderNodeVertexColor"
    assert link.from_node.layer_name == mesh_build.COLOR_ATTR
    # provenance
    assert obj["att3d_prompt"] == "a red sports car"
    assert obj["att3d_model"] == "fake-model"
    assert obj["att3d_resolution"] == 48
    assert obj["att3d_chain_position"] == -1.0


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
    from blender_att3d import backend_client, jobs

    backend_client.set_override(make_unavailable())
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
    from blender_att3d import backend_client, jobs

    backend_client.set_override(FakeClient(delay=0.3))
    monkeypatch.setattr(jobs, "headless", lambda: False)
    bpy.ops.ed.undo_push(message="empty")
    scene.collection.objects.link(bpy.data.objects.new("Marker", None))
    bpy.ops.ed.undo_push(message="marker")
    assert bpy.ops.att3d.generate(prompt="a teapot") == {"FINISHED"}
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
    bpy.ops.ed.redo()
    assert sorted(o.name for o in bpy.data.objects) == ["Marker", "Teapot"]


def test_cancel_threaded_job(bpy_module, scene, monkeypatch):
    bpy = bpy_module
    from blender_att3d import backend_client, jobs

    backend_client.set_override(FakeClient(delay=2.0))
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
    from blender_att3d import operators

    assert operators.check_prompt_sync("a red cube")["far"] is False
    assert operators.prompt_warning("a red cube") is None
    operators.check_prompt_sync("a  far zebra")
    assert "Far from what the model was trained on" in operators.prompt_warning("a far zebra")


def test_online_access_only_for_remote_non_loopback(bpy_module):
    from blender_att3d import backend_client
    from blender_att3d.client.base import BackendUnavailable

    assert not bpy_module.app.online_access
    backend_client.check_online_access("remote", "http://127.0.0.1:8765")
    backend_client.check_online_access("subprocess", "")
    with pytest.raises(BackendUnavailable, match="Online access"):
        backend_client.check_online_access("remote", "https://att3d.example.com")
