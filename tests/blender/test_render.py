"""A tiny headless render (Cycles on the CPU, 64x64) of a generated object is not empty."""
import numpy as np


def test_render_generated_object_not_empty(bpy_module, scene, tmp_path):
    bpy = bpy_module
    from blender_att3d import bench

    scene.cursor.location = (0, 0, 0)
    scene.att3d.origin = "CENTER"  # the staging camera looks at the origin
    bpy.ops.att3d.generate(prompt="a red cube", resolution=48, synchronous=True)
    obj = bpy.context.active_object
    bench.stage_for_render(scene, obj, size=64, samples=4)
    px = bench.render_to(scene, tmp_path / "render.png")
    assert px.shape == (64, 64, 4)
    background = px[0, 0, :3]
    differs = np.abs(px[..., :3] - background).max(-1) > 0.05
    assert differs.mean() > 0.05, "the object is not visible in the render"
    assert differs[24:40, 24:40].mean() > 0.9  # it is in the middle of the frame
    # it shows the object's own colours (the fake's colour for this prompt), not plain grey
    centre = px[28:36, 28:36, :3].reshape(-1, 3).mean(0)
    assert np.ptp(centre) > 0.03


def test_chain_frames_render_differently(bpy_module, scene, tmp_path):
    bpy = bpy_module
    from blender_att3d import bench

    for frame, prompt in ((1, "a red cube"), (11, "a blue ball")):
        bpy.ops.att3d.keyframe_add(frame=frame, prompt=prompt)
    scene.att3d.active_chain().steps, scene.att3d.resolution, scene.att3d.origin = 2, 32, "CENTER"
    bpy.ops.att3d.build_chain(synchronous=True)
    bench.stage_for_render(scene, bpy.context.active_object, size=32, samples=2)
    scene.frame_set(1)
    a = bench.render_to(scene, tmp_path / "a.png")
    scene.frame_set(11)
    b = bench.render_to(scene, tmp_path / "b.png")
    assert np.abs(a[12:20, 12:20, :3].mean((0, 1)) - b[12:20, 12:20, :3].mean((0, 1))).max() > 0.03
