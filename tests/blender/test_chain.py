"""Prompt chains on the timeline: keyframe list operators, mesh sequences, shape keys, GLB export."""
import json
import struct

import numpy as np
import pytest

KEYS = [(1, "a red cube"), (21, "a blue ball"), (61, "a green cone")]


def _set_keyframes(bpy, scene, keys=KEYS, steps=4, mode="SHAPE_KEYS", interpolation="LINEAR"):
    s = scene.att3d
    for frame, prompt in keys:
        assert bpy.ops.att3d.keyframe_add(frame=frame, prompt=prompt) == {"FINISHED"}
    s.chain_steps, s.chain_mode, s.chain_interpolation, s.chain_resolution = steps, mode, interpolation, 24


def _chain_objects(bpy):
    return [o for o in bpy.data.objects if "att3d_chain" in o]


def _frames(steps=4):
    from blender_att3d import keyframes

    positions = [k + s / steps for k in range(len(KEYS) - 1) for s in range(steps)] + [len(KEYS) - 1.0]
    return keyframes.step_frames(positions, [f for f, _ in KEYS])


def test_keyframe_list_operators(bpy_module, scene):
    bpy = bpy_module
    s = scene.att3d
    scene.frame_set(30)
    s.prompt = "a blue ball"
    bpy.ops.att3d.keyframe_add()
    bpy.ops.att3d.keyframe_add(frame=1, prompt="a red cube")
    bpy.ops.att3d.keyframe_add(frame=60, prompt="a green cone")
    assert [(k.frame, k.prompt) for k in s.keyframes] == [(1, "a red cube"), (30, "a blue ball"), (60, "a green cone")]
    assert s.keyframe_index == 2
    bpy.ops.att3d.keyframe_add(frame=30, prompt="a yellow ball")  # same frame: edits it
    assert len(s.keyframes) == 3 and s.keyframes[1].prompt == "a yellow ball" and s.keyframe_index == 1
    bpy.ops.att3d.keyframe_move(direction="UP")  # the prompt moves earlier, frames stay in order
    expected = [(1, "a yellow ball"), (30, "a red cube"), (60, "a green cone")]
    assert [(k.frame, k.prompt) for k in s.keyframes] == expected
    assert s.keyframe_index == 0
    bpy.ops.att3d.keyframe_move(direction="DOWN")
    assert s.keyframes[1].prompt == "a yellow ball" and s.keyframe_index == 1
    bpy.ops.att3d.keyframe_remove()
    assert [k.frame for k in s.keyframes] == [1, 60]


def test_chain_needs_two_distinct_keyframes(bpy_module, scene):
    bpy = bpy_module
    bpy.ops.att3d.keyframe_add(frame=1, prompt="a red cube")
    with pytest.raises(RuntimeError, match="two keyframes"):
        bpy.ops.att3d.build_chain(synchronous=True)


def test_mesh_sequence_shows_exactly_the_right_step(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d import keyframes

    _set_keyframes(bpy, scene, mode="SEQUENCE")
    assert bpy.ops.att3d.build_chain(synchronous=True) == {"FINISHED"}
    assert fake.calls[-1][0] == "chain" and fake.calls[-1][1][3] is False  # consistent=False
    root = next(o for o in _chain_objects(bpy) if o.type == "EMPTY")
    steps = sorted(root.children, key=lambda o: o["att3d_chain_position"])
    assert len(steps) == 9
    frames = _frames()
    assert [o["att3d_chain_position"] for o in steps] == pytest.approx([0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2])
    assert scene.frame_start <= 1 and scene.frame_end >= 61
    for f in (0, 1, 5, 6, 11, 20, 21, 30, 31, 50, 60, 61, 80):
        scene.frame_set(f)
        shown = [i for i, o in enumerate(steps) if not o.hide_viewport]
        assert shown == [keyframes.visible_step(f, frames)], f"frame {f}"
        assert [i for i, o in enumerate(steps) if not o.hide_render] == shown
    fc = steps[3].animation_data.action
    assert fc is not None


def _key_values(obj):
    return np.array([kb.value for kb in obj.data.shape_keys.key_blocks][1:])


def _eval_colour(bpy, obj):
    """Per-vertex base colour the material computes at the current frame (from evaluated mix factors)."""
    from blender_att3d.builders import chain, geometry

    dg = bpy.context.evaluated_depsgraph_get()
    mat = obj.active_material.evaluated_get(dg)
    nodes = mat.node_tree.nodes
    n = obj["att3d_steps"]
    acc = geometry.read_color_attribute(obj.data, chain.STEP_ATTR.format(0))
    for i in range(1, n):
        fac = nodes[f"Mix {i}"].inputs[0].default_value
        col = geometry.read_color_attribute(obj.data, chain.STEP_ATTR.format(i))
        acc = (1 - fac) * acc + fac * col
    return acc


@pytest.mark.parametrize("interpolation", ["LINEAR", "CONSTANT"])
def test_shape_keys_weights_positions_and_colours(bpy_module, scene, fake, interpolation):
    bpy = bpy_module
    from blender_att3d import keyframes

    _set_keyframes(bpy, scene, interpolation=interpolation)
    assert bpy.ops.att3d.build_chain(synchronous=True) == {"FINISHED"}
    assert fake.calls[-1][1][3] is True  # consistent topology asked for
    objs = _chain_objects(bpy)
    assert len(objs) == 1
    obj = objs[0]
    assert bpy.context.active_object == obj
    seq = fake.chain(list(enumerate(p for _, p in KEYS)), steps=4, resolution=24, consistent=True)
    frames = _frames()
    assert len(obj.data.shape_keys.key_blocks) == len(seq)
    colours = []
    for f in (1, 3, 6, 16, 21, 26, 40, 61, 70):
        scene.frame_set(f)
        w = keyframes.expected_weights(f, frames, interpolation)
        assert _key_values(obj) == pytest.approx(w[1:], abs=1e-5), f"frame {f}"
        # the evaluated mesh is the weighted mix of the steps
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        me = ev.to_mesh()
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        expected = sum(wi * p for wi, p in zip(w, seq.positions))
        assert co.reshape(-1, 3) == pytest.approx(expected, abs=1e-4)
        col = _eval_colour(bpy, obj)
        expected_col = sum(wi * c for wi, c in zip(w, seq.colors))
        assert np.abs(col - expected_col).max() < 5e-3, f"frame {f}"
        colours.append(col.mean(0))
    assert np.ptp(np.array(colours), axis=0).max() > 0.05  # the colours change along the timeline
    if interpolation == "CONSTANT":
        scene.frame_set(8)
        assert sorted(_key_values(obj))[-1] == 1.0 and sorted(_key_values(obj))[-2] == 0.0


def test_rebuild_replaces_previous_chain(bpy_module, scene):
    bpy = bpy_module
    _set_keyframes(bpy, scene, mode="SEQUENCE")
    bpy.ops.att3d.build_chain(synchronous=True)
    n_seq = len(_chain_objects(bpy))
    assert n_seq == 10
    counts = (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.actions))
    assert counts == (9, 1, 9)
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_chain_objects(bpy)) == n_seq
    assert (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.actions)) == counts
    scene.att3d.chain_mode = "SHAPE_KEYS"
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_chain_objects(bpy)) == 1 and len(bpy.data.objects) == 1
    assert len(bpy.data.meshes) == 1  # the old meshes went with their objects
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(bpy.data.objects) == 1 and len(bpy.data.meshes) == 1 and len(bpy.data.materials) == 1
    assert len(bpy.data.actions) == 1 and len(bpy.data.shape_keys) == 1  # the morph action, one Key


def _glb_json(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2
    chunk_len, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    return json.loads(data[20:20 + chunk_len])


def test_glb_export_of_shape_keys_has_morph_targets(bpy_module, scene, tmp_path):
    bpy = bpy_module
    from blender_att3d import batch

    _set_keyframes(bpy, scene, steps=2)
    bpy.ops.att3d.build_chain(synchronous=True)
    obj = _chain_objects(bpy)[0]
    out = batch.export_objects([obj], tmp_path / "chain.glb", "glb")
    gltf = _glb_json(out)
    prim = gltf["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 4  # 5 steps: basis + 4 morph targets
    assert "COLOR_0" in prim["attributes"]
    assert gltf.get("animations"), "the key weights are animated"
    assert any(ch["target"]["path"] == "weights" for a in gltf["animations"] for ch in a["channels"])


def test_threaded_build_replaces_chain_as_one_undo_step(bpy_module, scene, fake, monkeypatch):
    """The interactive path: the chain is generated in a worker, built on the main thread by the
    timer callback (called by hand here) as one undo step, and rebuilding replaces it."""
    bpy = bpy_module
    from blender_att3d import jobs

    monkeypatch.setattr(jobs, "headless", lambda: False)
    _set_keyframes(bpy, scene, steps=2)
    bpy.ops.ed.undo_push(message="keyframes")
    assert bpy.ops.att3d.build_chain("EXEC_DEFAULT", True) == {"FINISHED"}
    assert jobs.busy("main") and not _chain_objects(bpy)
    assert not bpy.ops.att3d.build_chain.poll()
    jobs.wait("main")
    objs = _chain_objects(bpy)
    assert len(objs) == 1 and len(objs[0].data.shape_keys.key_blocks) == 5
    assert jobs.status["main"] == ("CHECKMARK", "Built a 5-step chain")
    bpy.ops.att3d.build_chain("EXEC_DEFAULT", True)
    jobs.wait("main")
    assert len(_chain_objects(bpy)) == 1 and len(bpy.data.meshes) == 1
    bpy.ops.ed.undo()  # back to the first build, not to an empty step
    assert len(_chain_objects(bpy)) == 1
    bpy.ops.ed.undo()
    assert not _chain_objects(bpy) and len(bpy.context.scene.att3d.keyframes) == 3
