"""A chain to one GLB and back: the add-on's export (and the batch's, the same writer) is valid,
carries colour morph targets and plays on the scene's timing; its import gives back a live chain."""
import numpy as np
import pytest
from gltf_check import assert_valid, glb_json, read_accessor
from test_chain import ANIMATOR_KEYS, _build_animator_chain, _colour, _pieces, _root, _shown, _shown_mesh


def _animation(path, gltf):
    anim = gltf["animations"][0]
    return {(c["target"]["node"], c["target"]["path"]): anim["samplers"][c["sampler"]] for c in anim["channels"]}


def _at(path, gltf, sampler, t):
    """A sampler's output at time ``t`` (LINEAR between samples, STEP holds)."""
    ts = read_accessor(path, gltf, sampler["input"]).ravel()
    out = read_accessor(path, gltf, sampler["output"])
    out = out.reshape(len(ts), -1)
    if sampler["interpolation"] == "STEP":
        return out[max(0, int(np.searchsorted(ts, t + 1e-6, side="right")) - 1)]
    return np.stack([np.interp(t, ts, out[:, k]) for k in range(out.shape[1])])


def test_exported_chain_is_valid_coloured_and_timed_to_the_scene(bpy_module, scene, fake, tmp_path):
    bpy = bpy_module
    chain, root = _build_animator_chain(bpy, scene, fake, interpolation="EASE")
    scene.render.fps = 24
    path = tmp_path / "chain.glb"
    bpy.context.view_layer.objects.active = _pieces(root)[1]  # the active object's chain is the one exported
    assert bpy.ops.att3d.export_chain(filepath=str(path)) == {"FINISHED"}
    assert_valid(path)
    gltf = glb_json(path)
    pieces = gltf["nodes"][0]["children"]
    assert len(pieces) == 3
    for node in pieces:
        prim = gltf["meshes"][gltf["nodes"][node]["mesh"]]["primitives"][0]
        assert prim["targets"] and all({"POSITION", "NORMAL", "COLOR_0"} == set(t) for t in prim["targets"])
    by = _animation(path, gltf)
    for k, (frame, _) in enumerate(ANIMATOR_KEYS):  # keyframe k on frame f plays at (f − 1) / 24 s
        t = (frame - 1) / 24
        for j, node in enumerate(pieces):
            assert _at(path, gltf, by[(node, "scale")], t)[0] == (1.0 if j == k else 0.0), (frame, j)
        assert np.abs(_at(path, gltf, by[(pieces[k], "weights")], t)).max() < 1e-6  # the keyframe's own mesh
    assert read_accessor(path, gltf, by[(pieces[2], "weights")]["input"]).max() == pytest.approx(95 / 24)
    # between keyframes the weights follow the eased curve: the GLB at frame f shows what Blender shows
    for f in (10, 30, 60, 80):
        scene.frame_set(f)
        i, mesh = _shown_mesh(bpy, root)
        node = pieces[i]
        prim = gltf["meshes"][gltf["nodes"][node]["mesh"]]["primitives"][0]
        w = _at(path, gltf, by[(node, "weights")], (f - 1) / 24)
        pos = read_accessor(path, gltf, prim["attributes"]["POSITION"]) + sum(
            wi * read_accessor(path, gltf, t["POSITION"]) for wi, t in zip(w, prim["targets"]))
        blender_y_up = np.stack([mesh[:, 0], mesh[:, 2], -mesh[:, 1]], 1)
        assert np.abs(pos - blender_y_up).max() < 1e-4, f


def test_export_refuses_clearly_and_keeps_the_old_file(bpy_module, scene, fake, tmp_path):
    bpy = bpy_module
    with pytest.raises(RuntimeError):  # nothing to export: the operator's poll says no
        bpy.ops.att3d.export_chain(filepath=str(tmp_path / "none.glb"))
    _build_animator_chain(bpy, scene, fake)
    old = tmp_path / "chain.glb"
    old.write_bytes(b"an earlier export")
    missing = tmp_path / "no such folder" / "chain.glb"
    with pytest.raises(RuntimeError, match="Could not export 'Chain 1'"):
        bpy.ops.att3d.export_chain(filepath=str(missing))
    assert not missing.parent.exists() and old.read_bytes() == b"an earlier export"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_import_gives_back_a_live_chain(bpy_module, scene, fake, tmp_path):
    bpy = bpy_module
    from blender_att3d.builders.chain import position_fcurve

    chain, root = _build_animator_chain(bpy, scene, fake, interpolation="EASE")
    position_fcurve(root).keyframe_points[1].co[1] = 1.0  # (unchanged) an edited curve travels as it is
    want = {}
    for f in (1, 30, 48, 70, 96):
        scene.frame_set(f)
        i, mesh = _shown_mesh(bpy, root)
        want[f] = (i, mesh, _colour(bpy, _pieces(root)[i]))
    keys = [tuple(k.co) + tuple(k.handle_left) + tuple(k.handle_right) for k in position_fcurve(root).keyframe_points]
    path = tmp_path / "chain.glb"
    bpy.ops.att3d.export_chain(filepath=str(path))
    assert bpy.ops.att3d.chain_remove() == {"FINISHED"}
    assert not [o for o in bpy.data.objects if "att3d_chain" in o]
    calls = len(fake.calls)
    scene.frame_set(1)
    assert bpy.ops.att3d.import_chain(filepath=str(path)) == {"FINISHED"}
    assert len(fake.calls) == calls  # no backend needed
    item = scene.att3d.active_chain()
    assert [(k.frame, k.prompt) for k in item.keyframes] == ANIMATOR_KEYS and item.name == "Chain 1"
    new_root = _root(bpy, item.uid)
    got = [tuple(k.co) + tuple(k.handle_left) + tuple(k.handle_right)
           for k in position_fcurve(new_root).keyframe_points]
    assert np.asarray(got) == pytest.approx(np.asarray(keys), abs=1e-5)
    assert (scene.frame_start, scene.frame_end) == (1, 96)
    for f, (i, mesh, colour) in want.items():
        scene.frame_set(f)
        j, got = _shown_mesh(bpy, new_root)
        assert j == i and np.abs(got - mesh).max() < 1e-5, f
        assert np.abs(_colour(bpy, _pieces(new_root)[j]) - colour).max() < 1e-4, f
    # it is a live chain: retiming works on it like on a built one
    from blender_att3d import chains

    assert chains.stale_reasons(scene, item) == []
    item.keyframes[1].frame = 60
    scene.frame_set(60)
    assert _shown(_pieces(new_root)) == [1]


def test_import_says_what_is_wrong(bpy_module, scene, tmp_path):
    bpy = bpy_module
    from blender_att3d.wire import glb
    from blender_att3d.wire.types import MeshData

    plain = tmp_path / "plain.glb"
    plain.write_bytes(glb.mesh_glb(MeshData(np.eye(3, dtype=np.float32), [[0, 1, 2]], np.ones((3, 3)))))
    with pytest.raises(RuntimeError, match="not an ATT3D prompt chain.*File > Import > glTF 2.0"):
        bpy.ops.att3d.import_chain(filepath=str(plain))
    with pytest.raises(RuntimeError, match="No such file"):
        bpy.ops.att3d.import_chain(filepath=str(tmp_path / "missing.glb"))
    assert len(scene.att3d.chains) == 0 and not bpy.data.objects  # nothing half-made
