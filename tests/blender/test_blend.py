"""Live blend: the preview object's mesh is regenerated in place."""
import numpy as np
import pytest


def _co(me):
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_blend_preview_replaces_geometry_in_place(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d.sizing import anchor

    s = scene.att3d
    s.blend_a, s.blend_b, s.blend_factor, s.resolution = "a red cube", "a blue ball", 0.0, 24
    assert bpy.ops.att3d.blend_preview(synchronous=True) == {"FINISHED"}
    obj = s.blend_object
    assert obj is not None and obj["att3d_blend_preview"]
    me = obj.data
    a = fake.blend("a red cube", "a blue ball", 0.0, resolution=24)
    assert _co(me) == pytest.approx(a.positions - anchor(a.positions, "BASE"), abs=1e-6)  # rests on its origin
    s.blend_factor = 0.75
    bpy.ops.att3d.blend_preview(synchronous=True)
    assert s.blend_object == obj and obj.data == me and len(bpy.data.objects) == 1 and len(bpy.data.meshes) == 1
    b = fake.blend("a red cube", "a blue ball", 0.75, resolution=24)
    assert _co(me) == pytest.approx(b.positions - anchor(b.positions, "BASE"), abs=1e-6)
    assert obj["att3d_blend_factor"] == pytest.approx(0.75)
    # the preview is not a prompt's result: Regenerate does not apply to it
    bpy.context.view_layer.objects.active = obj
    assert not bpy.ops.att3d.regenerate.poll()


def test_blend_needs_both_prompts(bpy_module, scene):
    scene.att3d.blend_a = "a red cube"
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy_module.ops.att3d.blend_preview(synchronous=True)


def test_slider_schedules_debounced_threaded_update(bpy_module, scene, fake, monkeypatch):
    """Moving the slider (interactive) registers a debounce timer; its tick starts a worker."""
    bpy = bpy_module
    from blender_att3d import jobs, live

    monkeypatch.setattr(jobs, "headless", lambda: False)
    s = scene.att3d
    s.blend_a, s.blend_b, s.resolution = "a red cube", "a blue ball", 24
    s.blend_factor = 0.3
    s.blend_factor = 0.6  # a second move before the timer fires: one update, latest value
    assert bpy.app.timers.is_registered(live._blend_timer)
    bpy.app.timers.unregister(live._blend_timer)
    live._blend_timer()  # what the timer would do
    assert jobs.busy("blend")
    jobs.wait("blend")
    blends = [c for c in fake.calls if c[0] == "blend"]
    assert len(blends) == 1 and blends[0][1][2] == pytest.approx(0.6)
    assert s.blend_object is not None


def test_keyed_blend_factor_follows_the_timeline(bpy_module, scene, fake, monkeypatch):
    """The animation system sets a keyed factor without its update callback: the frame change does
    the update (at once in the background, as when rendering an animation; debounced in the UI)."""
    bpy = bpy_module
    from blender_att3d import jobs, live
    from blender_att3d.sizing import anchor

    s = scene.att3d
    s.blend_a, s.blend_b, s.blend_factor, s.resolution = "a red cube", "a blue ball", 0.0, 24
    bpy.ops.att3d.blend_preview(synchronous=True)
    obj = s.blend_object
    s.blend_factor = 0.0
    scene.keyframe_insert("att3d.blend_factor", frame=1)
    s.blend_factor = 1.0
    scene.keyframe_insert("att3d.blend_factor", frame=11)
    scene.frame_set(6)
    want = fake.blend("a red cube", "a blue ball", s.blend_factor, resolution=24)
    assert 0.2 < s.blend_factor < 0.8 and obj["att3d_blend_factor"] == pytest.approx(s.blend_factor)
    assert _co(obj.data) == pytest.approx(want.positions - anchor(want.positions, "BASE"), abs=1e-6)
    n = len([c for c in fake.calls if c[0] == "blend"])
    scene.frame_set(6)  # same value: no new request
    assert len([c for c in fake.calls if c[0] == "blend"]) == n
    monkeypatch.setattr(jobs, "headless", lambda: False)
    scene.frame_set(11)
    assert bpy.app.timers.is_registered(live._blend_timer)
    bpy.app.timers.unregister(live._blend_timer)
    live._blend_timer()
    jobs.wait("blend")
    assert obj["att3d_blend_factor"] == pytest.approx(1.0)
