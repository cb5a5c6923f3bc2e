"""Headless batch: python -m blender_att3d.batch ... (same mesh code as the UI)."""

import pytest
from conftest import ROOT, run_python


def _inputs(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two things\na red cube\na blue ball\n")
    chain = tmp_path / "chain.txt"
    chain.write_text("1\ta red cube\n25\ta blue ball\n")
    return prompts, chain


def test_batch_in_process_writes_blend_that_reopens(bpy_module, addon, tmp_path, fake):
    bpy = bpy_module
    from blender_att3d import batch

    prompts, chain = _inputs(tmp_path)
    out = tmp_path / "scene.blend"
    code = batch.main(["--prompts", str(prompts), "--chain", str(chain), "--out", str(out), "--resolution", "24",
                       "--steps", "3", "--export-dir", str(tmp_path / "exp"), "--format", "glb"], client=fake)
    assert code == 0 and out.exists()
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "000_Red_cube.glb", "001_Blue_ball.glb", "chain_Red_cube_to_blue_ball.glb"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    names = sorted(o.name for o in bpy.data.objects)
    assert names == ["Blue ball", "Red cube", "Red cube to blue ball"]
    chain_obj = bpy.data.objects["Red cube to blue ball"]
    assert len(chain_obj.data.shape_keys.key_blocks) == 4  # (2 - 1) * 3 + 1 steps
    assert bpy.data.objects["Red cube"]["att3d_prompt"] == "a red cube"
    assert bpy.context.scene.frame_start == 1 and bpy.context.scene.frame_end == 25
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
