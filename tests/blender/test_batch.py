"""Headless batch: python -m blender_att3d.batch ... (same mesh code as the UI): the scene (ground,
grid, camera, light, frame range), exports (valid, at the origin, coloured) and their re-import."""

import numpy as np
import pytest
from conftest import ROOT, run_python


def _inputs(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two things\na red cube\na blue ball\n")
    chain = tmp_path / "chain.txt"
    chain.write_text("1\ta red cube\n25\ta blue ball\n")
    return prompts, chain


def _world_points(obj):
    """World positions of ``obj``'s evaluated mesh (shape keys applied) at the current frame."""
    import bpy

    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def _run(tmp_path, fake, *extra):
    from blender_att3d import batch

    prompts, chain = _inputs(tmp_path)
    out = tmp_path / "scene.blend"
    code = batch.main(["--prompts", str(prompts), "--chain", str(chain), "--out", str(out), "--resolution", "24",
                       "--steps", "3", "--export-dir", str(tmp_path / "exp"), *extra], client=fake)
    assert code == 0 and out.exists()
    return out


def test_batch_scene_rests_on_the_ground_on_a_grid_framed_and_lit(bpy_module, addon, tmp_path, fake):
    bpy = bpy_module
    from bpy_extras.object_utils import world_to_camera_view

    from blender_att3d import keyframes

    out = _run(tmp_path, fake)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "000_Red_cube.glb", "001_Blue_ball.glb", "chain_Red_cube_to_blue_ball.glb"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene = bpy.context.scene
    objs = bpy.data.objects
    assert {"Red cube", "Blue ball", "Red cube to blue ball", "ATT3D Camera", "ATT3D Sun"} <= set(objs.keys())
    root = objs["Red cube to blue ball"]
    pieces = sorted(root.children, key=lambda o: o["att3d_chain_position"])
    assert [len(p.data.shape_keys.key_blocks) for p in pieces] == [3, 3]  # (2 - 1) * 3 + 1 steps, 2 pieces
    assert objs["Red cube"]["att3d_prompt"] == "a red cube" and objs["Red cube"]["att3d_origin"] == "BASE"
    assert (scene.frame_start, scene.frame_end) == (1, 25)  # the chain's range
    # every object rests on the ground: its lowest point at its origin's height (z = 0), at every step
    boxes = []
    for name in ("Red cube", "Blue ball"):
        pts = _world_points(objs[name])
        assert pts[:, 2].min() == pytest.approx(objs[name].location.z, abs=1e-5) == 0.0
        assert (pts.min(0)[:2] + pts.max(0)[:2]) / 2 == pytest.approx(tuple(objs[name].location)[:2], abs=1e-5)
        boxes.append((pts.min(0), pts.max(0)))
    chain_pts = []
    for f in keyframes.step_frames([0, 1 / 3, 2 / 3, 1], [1, 25]):
        scene.frame_set(int(f), subframe=f - int(f))
        shown = [p for p in pieces if not p.hide_render]
        assert len(shown) == 1
        pts = _world_points(shown[0])
        assert pts[:, 2].min() == pytest.approx(root.location.z, abs=1e-5)
        chain_pts.append(pts)
    chain_pts = np.concatenate(chain_pts)
    boxes.append((chain_pts.min(0), chain_pts.max(0)))
    # a grid that never overlaps
    for i, (lo_a, hi_a) in enumerate(boxes):
        for lo_b, hi_b in boxes[i + 1:]:
            apart = (hi_a[:2] <= lo_b[:2]) | (hi_b[:2] <= lo_a[:2])
            assert apart.any(), "two objects overlap on the grid"
    # the camera sees every object whole, and there is a light
    assert scene.camera == objs["ATT3D Camera"] and objs["ATT3D Sun"].type == "LIGHT"
    corners = [np.array([x, y, z]) for lo, hi in boxes for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
               for z in (lo[2], hi[2])]
    from mathutils import Vector

    for c in corners:
        u, v, depth = world_to_camera_view(scene, scene.camera, Vector(c.tolist()))
        assert 0.0 < u < 1.0 and 0.0 < v < 1.0 and depth > 0, c
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_batch_glbs_are_valid_at_the_origin_and_coloured(bpy_module, addon, tmp_path, fake):
    """Every GLB passes the Khronos validator; COLOR_0 is the object's colour (linear), not white;
    the files sit at the origin; the chain GLB holds its pieces, their states' colours and visibility."""
    from gltf_check import assert_valid, glb_json, read_accessor

    from blender_att3d.colors import srgb_to_linear
    from blender_att3d.sizing import anchor

    _run(tmp_path, fake)
    exp = tmp_path / "exp"
    assert_valid(*sorted(exp.iterdir()))
    for name, prompt in (("000_Red_cube.glb", "a red cube"), ("001_Blue_ball.glb", "a blue ball")):
        gltf = glb_json(exp / name)
        attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
        direct = fake.generate(prompt, resolution=24)
        colour = read_accessor(exp / name, gltf, attrs["COLOR_0"])
        assert np.abs(colour - srgb_to_linear(direct.colors)).max() < 1e-6 and colour.max() < 0.99
        pos = read_accessor(exp / name, gltf, attrs["POSITION"])
        z_up = np.stack([pos[:, 0], -pos[:, 2], pos[:, 1]], 1)
        assert z_up == pytest.approx(direct.positions - anchor(direct.positions, "BASE"), abs=1e-6)
        assert "translation" not in gltf["nodes"][0]  # at the origin
    gltf = glb_json(exp / "chain_Red_cube_to_blue_ball.glb")
    assert len(gltf["nodes"][0]["children"]) == 2 and "translation" not in gltf["nodes"][0]
    seq = fake.chain([(0, "a red cube"), (1, "a blue ball")], steps=3, resolution=24)
    for mesh, piece in zip(gltf["meshes"], seq.pieces):
        prim = mesh["primitives"][0]
        colour = read_accessor(exp / "chain_Red_cube_to_blue_ball.glb", gltf, prim["attributes"]["COLOR_0"])
        assert np.abs(colour - srgb_to_linear(piece.colors[piece.key])).max() < 1e-6  # the keyframe's colours
        assert len(prim["targets"]) == len(piece) - 1 and all("COLOR_0" in t for t in prim["targets"])
    # timed to the scene like the add-on's export: the last keyframe (frame 25) plays at (25 − 1) / 24 s
    anim = gltf["animations"][0]
    inputs = [read_accessor(exp / "chain_Red_cube_to_blue_ball.glb", gltf, anim["samplers"][c["sampler"]]["input"])
              for c in anim["channels"] if c["target"]["path"] == "weights"]
    assert max(float(i.max()) for i in inputs) == pytest.approx(24 / 24)
    from blender_att3d.wire.glb import chain_from_glb

    back, info = chain_from_glb((exp / "chain_Red_cube_to_blue_ball.glb").read_bytes())
    assert info["prompts"] == ["a red cube", "a blue ball"] and info["key_frames"] == [1, 25]
    assert len(back.pieces) == 2 and info["fps"] == 24


def test_reimported_glbs_show_the_scenes_colours(bpy_module, addon, tmp_path, fake):
    """Blender's own glTF importer brings back the scene's geometry (at the origin) and colours, and
    a material that shows them; the chain's pieces come back with their shape keys and visibility."""
    bpy = bpy_module
    out = _run(tmp_path, fake)
    exp = tmp_path / "exp"
    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene_colours = {}
    for name in ("Red cube", "Blue ball", "Red cube to blue ball 1: Red cube", "Red cube to blue ball 2: Blue ball"):
        me = bpy.data.objects[name].data
        col = np.empty(len(me.vertices) * 4, np.float32)
        me.color_attributes["att3d_color"].data.foreach_get("color", col)
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        scene_colours[name] = (co.reshape(-1, 3), col.reshape(-1, 4)[:, :3])
    files = {"Red cube": ("000_Red_cube.glb", 0), "Blue ball": ("001_Blue_ball.glb", 0),
             "Red cube to blue ball 1: Red cube": ("chain_Red_cube_to_blue_ball.glb", 0),
             "Red cube to blue ball 2: Blue ball": ("chain_Red_cube_to_blue_ball.glb", 1)}
    for name, (file, piece) in files.items():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.import_scene.gltf(filepath=str(exp / file))
        meshes = [o for o in bpy.data.objects if o.type == "MESH"]
        imp = sorted(meshes, key=lambda o: o.name)[piece]
        me = imp.data
        co, col = scene_colours[name]
        got = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", got)  # the basis: the keyframe's own mesh
        got = got.reshape(-1, 3)
        nearest = np.linalg.norm(got[:, None] - co[None], axis=2)
        assert nearest.min(1).max() < 1e-5  # same places, at the origin, upright
        attr = me.color_attributes[0]
        loop_col = np.empty(len(attr.data) * 4, np.float32)
        attr.data.foreach_get("color", loop_col)  # linear, as stored
        corner_vertex = np.empty(len(me.loops), np.int32)
        me.loops.foreach_get("vertex_index", corner_vertex)
        want = col[nearest.argmin(1)][corner_vertex] if attr.domain == "CORNER" else col[nearest.argmin(1)]
        assert np.abs(loop_col.reshape(-1, 4)[:, :3] - want).max() < 4e-3  # 8-bit colours on import
        bsdf = next(n for n in me.materials[0].node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
        assert bsdf.inputs["Base Color"].links[0].from_node.bl_idname == "ShaderNodeVertexColor"
        if "to blue ball" in name:
            assert len(me.shape_keys.key_blocks) == 3
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_batch_blend_renders_lit_and_framed(bpy_module, addon, tmp_path, fake):
    """Open the batch .blend and render it (Cycles on the CPU, small): a lit image with the objects
    inside the frame, on a background that is not black."""
    bpy = bpy_module
    out = _run(tmp_path, fake)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 8
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 96, 54, 100
    scene.render.filepath = str(tmp_path / "render.png")
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(tmp_path / "render.png"))
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(img.size[1], img.size[0], 4)[..., :3]
    background = np.median(np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]]), axis=0)
    assert background.mean() > 0.2  # lit, not the black of a scene without light
    fg = np.abs(px - background).max(-1) > 0.08
    assert fg.mean() > 0.08  # the objects fill a good part of the frame
    assert not fg[0].any() and not fg[-1].any() and not fg[:, 0].any() and not fg[:, -1].any()  # whole
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_no_camera_flag(bpy_module, addon, tmp_path, fake):
    bpy = bpy_module
    out = _run(tmp_path, fake, "--no-camera", "--origin", "center", "--height", "2")
    bpy.ops.wm.open_mainfile(filepath=str(out))
    assert bpy.context.scene.camera is None and not [o for o in bpy.data.objects if o.type in ("CAMERA", "LIGHT")]
    pts = _world_points(bpy.data.objects["Red cube"])
    assert np.ptp(pts[:, 2]) == pytest.approx(2.0, abs=1e-5)  # --height, in metres
    assert (pts.min(0) + pts.max(0)) / 2 == pytest.approx(tuple(bpy.data.objects["Red cube"].location), abs=1e-5)
    assert bpy.data.objects["Red cube"]["att3d_target_height"] == 2.0
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.mark.parametrize("content", [None, "", "# nothing\n\n"])
def test_bad_prompts_file_clear_error_no_blend(tmp_path, content):
    prompts = tmp_path / "prompts.txt"
    if content is not None:
        prompts.write_text(content)
    out = tmp_path / "scene.blend"
    r = run_python(["-m", "blender_att3d.batch", "--prompts", str(prompts), "--out", str(out)])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("att3d batch: error:")
    assert ("not found" if content is None else "no prompts") in lines[0]
    assert not list(tmp_path.glob("*.blend*")) and not list(tmp_path.glob(".*"))


def test_bad_chain_file_via_script_path(tmp_path):
    """``blender -b -P blender_att3d/batch.py -- ARGS`` runs the file as a script: same checks."""
    prompts, _ = _inputs(tmp_path)
    chain = tmp_path / "chain.txt"
    chain.write_text("1\ta red cube\n1\ta blue ball\n")
    out = tmp_path / "scene.blend"
    r = run_python([str(ROOT / "blender_att3d" / "batch.py"), "--", "--prompts", str(prompts),
                    "--chain", str(chain), "--out", str(out)], cwd=str(tmp_path))
    assert r.returncode == 2 and "chain file" in r.stderr and "frame" in r.stderr
    assert not out.exists()


def test_batch_cli_subprocess_with_client_hook(tmp_path):
    prompts, _ = _inputs(tmp_path)
    out = tmp_path / "scene.blend"
    exp = tmp_path / "exp"
    r = run_python(["-m", "blender_att3d.batch", "--prompts", str(prompts), "--out", str(out),
                    "--resolution", "16", "--client", "fakes:make", "--export-dir", str(exp), "--format", "glb"])
    # exit status 0 after the glTF exporter ran (the bpy 4.2 module crashes on exit without exit_process)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.exists() and out.stat().st_size > 1000
    glbs = sorted(exp.glob("*.glb"))
    assert len(glbs) == 2 and all(g.read_bytes()[:4] == b"glTF" for g in glbs)
    assert "[1/2] generating 'a red cube'" in r.stderr and "wrote" in r.stderr


def test_backend_failure_exit_1_and_no_blend(tmp_path):
    prompts, _ = _inputs(tmp_path)
    out = tmp_path / "scene.blend"
    r = run_python(["-m", "blender_att3d.batch", "--prompts", str(prompts), "--out", str(out),
                    "--client", "fakes:make_unavailable"])
    assert r.returncode == 1 and "not running" in r.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.glob("*.blend*")) and not list(tmp_path.glob(".*"))


def _obj_vertices(path):
    return [tuple(map(float, ln.split()[1:4])) for ln in path.read_text().splitlines() if ln.startswith("v ")]


def test_batch_sequence_chain_exports_every_step_and_keeps_visibility(bpy_module, addon, tmp_path, fake):
    """A mesh-sequence chain shows one step at a time: each step gets its own file, all of them
    with geometry, and the saved scene still shows exactly one step per frame."""
    bpy = bpy_module
    from blender_att3d import batch, keyframes

    prompts, chain = _inputs(tmp_path)
    out, exp = tmp_path / "scene.blend", tmp_path / "exp"
    code = batch.main(["--prompts", str(prompts), "--chain", str(chain), "--out", str(out), "--resolution", "16",
                       "--steps", "2", "--chain-mode", "sequence", "--export-dir", str(exp), "--format", "obj"],
                      client=fake)
    assert code == 0
    steps = sorted(exp.glob("chain_*.obj"))
    assert [p.name for p in steps] == [f"chain_Red_cube_to_blue_ball_{i:03d}.obj" for i in range(3)]
    verts = [_obj_vertices(p) for p in steps]
    assert all(len(v) > 10 for v in verts)
    assert verts[0] != verts[2]  # the steps differ (red cube -> blue ball)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    root = bpy.data.objects["Red cube to blue ball"]
    kids = sorted(root.children, key=lambda o: o["att3d_chain_position"])
    frames = keyframes.step_frames([0.0, 0.5, 1.0], [1, 25])
    for f in (1, 12, 13, 24, 25):
        bpy.context.scene.frame_set(f)
        assert [i for i, o in enumerate(kids) if not o.hide_viewport] == [keyframes.visible_step(f, frames)]
        assert [i for i, o in enumerate(kids) if not o.hide_render] == [keyframes.visible_step(f, frames)]
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_batch_usd_export(bpy_module, addon, tmp_path, fake):
    from blender_att3d import batch

    prompts, _ = _inputs(tmp_path)
    out, exp = tmp_path / "scene.blend", tmp_path / "exp"
    assert batch.main(["--prompts", str(prompts), "--out", str(out), "--resolution", "16", "--export-dir", str(exp),
                       "--format", "usd"], client=fake) == 0
    files = sorted(p.name for p in exp.iterdir())
    assert files == ["000_Red_cube.usd", "001_Blue_ball.usd"] and all((exp / f).stat().st_size > 200 for f in files)
    bpy_module.ops.wm.read_factory_settings(use_empty=True)


def test_blenders_own_gltf_exporter_keeps_a_generated_objects_colours(bpy_module, addon, tmp_path, fake):
    """An artist's File > Export > glTF of a generated object: valid, COLOR_0 its colours (linear)."""
    bpy = bpy_module
    from gltf_check import assert_valid, first_primitive

    from blender_att3d import batch

    out = _run(tmp_path, fake)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    obj = bpy.data.objects["Red cube"]
    path = batch.export_objects([obj], tmp_path / "by_blender.glb", "glb")
    assert_valid(path)
    me = obj.data
    col = np.empty(len(me.vertices) * 4, np.float32)
    me.color_attributes["att3d_color"].data.foreach_get("color", col)
    got = first_primitive(path)["COLOR_0"][:, :3]
    assert got.shape[0] >= len(me.vertices)  # (the exporter may split vertices)
    assert set(map(tuple, np.round(got, 4))) == set(map(tuple, np.round(col.reshape(-1, 4)[:, :3], 4)))
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_textured_batch_glb_brings_its_texture_back(bpy_module, addon, tmp_path, fake):
    """--texture: the GLB holds the baked texture (valid, no COLOR_0) and Blender's importer shows it
    with the same UVs as the scene's object."""
    bpy = bpy_module
    from gltf_check import assert_valid

    from blender_att3d import batch

    prompts, _ = _inputs(tmp_path)
    out, exp = tmp_path / "scene.blend", tmp_path / "exp"
    assert batch.main(["--prompts", str(prompts), "--out", str(out), "--resolution", "16", "--texture",
                       "--export-dir", str(exp)], client=fake) == 0
    assert_valid(exp / "000_Red_cube.glb")
    bpy.ops.wm.open_mainfile(filepath=str(out))
    me = bpy.data.objects["Red cube"].data
    uv = np.empty(len(me.loops) * 2, np.float32)
    me.uv_layers["att3d_uv"].data.foreach_get("uv", uv)
    scene_uvs = {tuple(np.round(x, 5)) for x in uv.reshape(-1, 2)}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(exp / "000_Red_cube.glb"))
    imp = next(o for o in bpy.data.objects if o.type == "MESH").data
    uv2 = np.empty(len(imp.loops) * 2, np.float32)
    imp.uv_layers[0].data.foreach_get("uv", uv2)
    assert {tuple(np.round(x, 5)) for x in uv2.reshape(-1, 2)} == scene_uvs
    tex = next(n for n in imp.materials[0].node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    w, h = tex.image.size
    px = np.empty(w * h * 4, np.float32)
    tex.image.pixels.foreach_get(px)
    expected = fake.generate("a red cube", resolution=16, texture=True).texture
    got = (px.reshape(h, w, 4)[::-1, :, :3] * 255 + 0.5).astype(np.uint8)  # Blender rows are bottom-up
    assert np.array_equal(got, expected)
    bpy.ops.wm.read_factory_settings(use_empty=True)
