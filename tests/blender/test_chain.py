"""Prompt chains on the timeline: the scene's chains and their keyframes; chains driven by one
position curve (shape keys exact at every keyframe, colours mixing like positions, visibility);
retiming without the backend; easing; stale builds and rebuilding in place; playing without the
add-on; several chains side by side."""
import json

import numpy as np
import pytest
from conftest import run_python

KEYS = [(1, "a red cube"), (21, "a blue ball"), (61, "a green cone")]
ANIMATOR_KEYS = [(1, "a red cube"), (48, "a blue ball"), (96, "a green cone")]


def _set_keyframes(bpy, scene, keys=KEYS, steps=4, mode="SHAPE_KEYS", interpolation="LINEAR"):
    for frame, prompt in keys:
        assert bpy.ops.att3d.keyframe_add(frame=frame, prompt=prompt) == {"FINISHED"}
    chain = scene.att3d.active_chain()
    chain.steps, chain.mode, chain.interpolation = steps, mode, interpolation
    scene.att3d.resolution = 24
    return chain


def _chain_objects(bpy, uid=None):
    return [o for o in bpy.data.objects if "att3d_chain" in o and (uid is None or o["att3d_chain"] == uid)]


def _root(bpy, uid=None):
    return next(o for o in _chain_objects(bpy, uid) if o.type == "EMPTY")


def _pieces(root):
    return sorted(root.children, key=lambda o: o["att3d_piece"])


def _position(root):
    return float(root["att3d_chain_position"])


def _evaluated(bpy, obj):
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    return co.reshape(-1, 3)


def _shown(pieces, attr="hide_viewport"):
    return [i for i, o in enumerate(pieces) if not getattr(o, attr)]


def _placed(positions):
    from blender_att3d.sizing import anchor

    return positions - anchor(positions, "BASE")


def _colour(bpy, obj):
    """Per-vertex base colour (sRGB) the material computes at the current frame: the basis attribute
    plus each delta attribute times its evaluated Mix factor in the piece's colour group."""
    from blender_att3d.builders import chain, geometry
    from blender_att3d.colors import linear_to_srgb

    dg = bpy.context.evaluated_depsgraph_get()
    group = bpy.data.node_groups[obj[chain.PROP_COLOR_GROUP]]
    nodes = group.evaluated_get(dg).nodes
    me = obj.data
    acc = np.empty(len(me.vertices) * 4, np.float32)
    me.color_attributes[geometry.COLOR_ATTR].data.foreach_get("color", acc)
    acc = acc.reshape(-1, 4)[:, :3]
    others = [j for j in range(obj["att3d_states"]) if j != obj["att3d_key_state"]]
    for i, j in enumerate(others):
        fac = nodes[f"Mix {i}"].inputs[0].default_value
        assert nodes[f"Delta {i}"].layer_name == chain.DELTA_ATTR.format(j)
        d = np.empty(len(me.vertices) * 4, np.float32)
        me.color_attributes[chain.DELTA_ATTR.format(j)].data.foreach_get("color", d)
        acc = acc + fac * d.reshape(-1, 4)[:, :3]
    return linear_to_srgb(acc)


def _drivers(idblock):
    ad = idblock.animation_data
    return list(ad.drivers) if ad is not None else []


def test_keyframe_list_operators(bpy_module, scene):
    bpy = bpy_module
    s = scene.att3d
    scene.frame_set(30)
    s.prompt = "a blue ball"
    bpy.ops.att3d.keyframe_add()  # no chain yet: one is made
    chain = s.active_chain()
    assert len(s.chains) == 1 and chain.name == "Chain 1"
    bpy.ops.att3d.keyframe_add(frame=1, prompt="a red cube")
    bpy.ops.att3d.keyframe_add(frame=60, prompt="a green cone")
    assert [(k.frame, k.prompt) for k in chain.keyframes] == [(1, "a red cube"), (30, "a blue ball"),
                                                              (60, "a green cone")]
    assert chain.keyframe_index == 2
    bpy.ops.att3d.keyframe_add(frame=30, prompt="a yellow ball")  # same frame: edits it
    assert len(chain.keyframes) == 3 and chain.keyframes[1].prompt == "a yellow ball" and chain.keyframe_index == 1
    bpy.ops.att3d.keyframe_move(direction="UP")  # the prompt moves earlier, frames stay in order
    expected = [(1, "a yellow ball"), (30, "a red cube"), (60, "a green cone")]
    assert [(k.frame, k.prompt) for k in chain.keyframes] == expected
    assert chain.keyframe_index == 0
    bpy.ops.att3d.keyframe_move(direction="DOWN")
    assert chain.keyframes[1].prompt == "a yellow ball" and chain.keyframe_index == 1
    bpy.ops.att3d.keyframe_remove()
    assert [k.frame for k in chain.keyframes] == [1, 60]
    bpy.ops.att3d.chain_add()  # a second chain starts empty and becomes the active one
    assert [c.name for c in s.chains] == ["Chain 1", "Chain 2"] and s.chain_index == 1
    assert len(s.active_chain().keyframes) == 0 and s.chains[0].uid != s.chains[1].uid


def test_chain_needs_two_distinct_keyframes(bpy_module, scene):
    bpy = bpy_module
    with pytest.raises(RuntimeError, match="Add a prompt chain"):
        bpy.ops.att3d.build_chain(synchronous=True)
    bpy.ops.att3d.keyframe_add(frame=1, prompt="a red cube")
    with pytest.raises(RuntimeError, match="two keyframes"):
        bpy.ops.att3d.build_chain(synchronous=True)


def test_mesh_sequence_shows_exactly_the_right_step(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d import keyframes

    _set_keyframes(bpy, scene, mode="SEQUENCE")
    assert bpy.ops.att3d.build_chain(synchronous=True) == {"FINISHED"}
    assert fake.calls[-1][0] == "chain" and fake.calls[-1][1][3] is False  # consistent=False
    root = _root(bpy)
    assert root.name == "Chain 1"
    steps = _pieces(root)
    assert len(steps) == 9
    positions = [0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2]
    assert [o["att3d_chain_position"] for o in steps] == pytest.approx(positions)
    frames = keyframes.step_frames(positions, [f for f, _ in KEYS])
    assert (scene.frame_start, scene.frame_end) == (1, 61)  # the chain's range, not 1–250
    for f in (0, 1, 5, 6, 11, 20, 21, 30, 31, 50, 60, 61, 80):
        scene.frame_set(f)
        assert _shown(steps) == [keyframes.visible_step(f, frames)] == _shown(steps, "hide_render"), f"frame {f}"


@pytest.mark.parametrize("interpolation", ["LINEAR", "CONSTANT"])
def test_shape_keys_follow_one_position_exact_at_every_keyframe(bpy_module, scene, fake, interpolation):
    bpy = bpy_module
    from blender_att3d.colors import linear_to_srgb, srgb_to_linear
    from blender_att3d.wire.chain_position import tent_weights

    _set_keyframes(bpy, scene, interpolation=interpolation)
    assert bpy.ops.att3d.build_chain(synchronous=True) == {"FINISHED"}
    assert fake.calls[-1][1][3] is True  # consistent topology asked for
    root = bpy.context.active_object
    assert root.type == "EMPTY" and root.name == "Chain 1" and root["att3d_pieces"] == 3
    pieces = _pieces(root)
    assert [o.name for o in pieces] == ["Chain 1 1: Red cube", "Chain 1 2: Blue ball", "Chain 1 3: Green cone"]
    seq = fake.chain(list(enumerate(p for _, p in KEYS)), steps=4, resolution=24, consistent=True)
    assert (scene.frame_start, scene.frame_end) == (1, 61)
    # the chain's timing is one F-curve on the root; everything else is drivers, each a simple expression
    fcs = root.animation_data.action
    assert fcs is not None
    from blender_att3d.builders.chain import position_fcurve

    fc = position_fcurve(root)
    assert [tuple(k.co) for k in fc.keyframe_points] == [(1, 0), (21, 1), (61, 2)]
    assert {k.interpolation for k in fc.keyframe_points} == {interpolation}
    for o in pieces:
        assert o.animation_data.action is None and o.data.shape_keys.animation_data.action is None
        drivers = _drivers(o) + _drivers(o.data.shape_keys) + _drivers(bpy.data.node_groups[o["att3d_color_group"]])
        assert len(drivers) == 2 + 2 * (o["att3d_states"] - 1)
        assert all(d.driver.is_simple_expression and d.driver.is_valid for d in drivers)
    # at every keyframe exactly its own piece shows, and it is the directly generated object
    for k, ((frame, prompt), obj) in enumerate(zip(KEYS, pieces)):
        scene.frame_set(frame)
        assert _position(root) == k
        assert [pieces[i] for i in _shown(pieces)] == [obj] == [pieces[i] for i in _shown(pieces, "hide_render")]
        direct = fake.generate(prompt, resolution=24)
        assert _evaluated(bpy, obj) == pytest.approx(_placed(direct.positions), abs=1e-5)
        assert np.abs(_colour(bpy, obj) - direct.colors).max() < 2e-3
    if interpolation == "CONSTANT":  # each keyframe held until the next
        for f, k in ((2, 0), (20, 0), (21, 1), (60, 1)):
            scene.frame_set(f)
            assert _position(root) == k and _shown(pieces) == [k], f
        return
    # the pieces swap at each segment's middle (frames 11 and 41)
    for f, shown in ((10, 0), (11, 1), (40, 1), (41, 2)):
        scene.frame_set(f)
        assert _shown(pieces) == [shown], f
    # between states: the weighted mix of the piece's states, positions and colours alike
    for f in (3, 6, 9, 16, 26, 33, 50, 58):
        scene.frame_set(f)
        i = _shown(pieces)[0]
        obj, piece = pieces[i], seq.pieces[i]
        assert list(obj["att3d_state_times"]) == pytest.approx(piece.times)
        w = tent_weights(piece.times, _position(root))
        assert _evaluated(bpy, obj) == pytest.approx(sum(wi * _placed(p) for wi, p in zip(w, piece.positions)),
                                                     abs=1e-4), f
        expected = linear_to_srgb(sum(wi * srgb_to_linear(c) for wi, c in zip(w, piece.colors)))
        assert np.abs(_colour(bpy, obj) - expected).max() < 3e-3, f


def _build_animator_chain(bpy, scene, fake, interpolation="LINEAR"):
    chain = _set_keyframes(bpy, scene, keys=ANIMATOR_KEYS, interpolation=interpolation)
    assert bpy.ops.att3d.build_chain(synchronous=True) == {"FINISHED"}
    return chain, _root(bpy, chain.uid)


def _shown_mesh(bpy, root):
    pieces = _pieces(root)
    (i,) = _shown(pieces)
    return i, _evaluated(bpy, pieces[i])


def test_moving_a_keyframe_retimes_without_the_backend(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d import chains

    chain, root = _build_animator_chain(bpy, scene, fake)
    scene.frame_set(48)
    before = _shown_mesh(bpy, root)
    scene.frame_set(30)
    at30 = _shown_mesh(bpy, root)
    calls = len(fake.calls)
    chain.keyframes[1].frame = 60  # what the panel's frame field does
    assert len(fake.calls) == calls  # no backend call
    assert chains.stale_reasons(scene, chain) == []  # timing never makes a chain stale
    scene.frame_set(60)
    after = _shown_mesh(bpy, root)
    assert after[0] == before[0] and np.abs(after[1] - before[1]).max() < 1e-5
    scene.frame_set(96)
    assert _position(root) == 2
    # a frame in the first segment now shows what an earlier frame did: (30 − 1) · 47/59 + 1 ≈ 24.1
    scene.frame_set(1 + round((30 - 1) * 59 / 47))  # frame 37 ≈ the old frame 30's share of the segment
    assert _position(root) == pytest.approx(36 / 59, abs=1e-6)
    assert at30[0] == _shown_mesh(bpy, root)[0]
    assert list(root["att3d_key_frames"]) == [1, 60, 96]
    # an edited curve keeps its edits: a hold (an extra key at position 1) moves with its keyframe
    from blender_att3d.builders.chain import position_fcurve

    fc = position_fcurve(root)
    fc.keyframe_points.insert(70, 1.0)
    chain.keyframes[1].frame = 50
    got = [tuple(k.co) for k in fc.keyframe_points]
    assert np.asarray(got) == pytest.approx(np.asarray([(1, 0), (50, 1), (50 + 10 * 46 / 36, 1), (96, 2)]), abs=1e-4)


def test_an_ease_eases_whole_segments(bpy_module, scene, fake):
    """The old per-state curves pulsed at every stored state; one eased position curve gives one
    speed maximum per segment."""
    bpy = bpy_module
    chain, root = _build_animator_chain(bpy, scene, fake, interpolation="EASE")
    pieces = _pieces(root)
    speeds = {0: [], 1: []}  # per segment: mean vertex move per frame (frames where one piece shows at both)
    scene.frame_set(1)
    prev_i, prev = _shown_mesh(bpy, root)
    for f in range(2, 97):
        scene.frame_set(f)
        i, cur = _shown_mesh(bpy, root)
        if i == prev_i:
            speeds[0 if f <= 48 else 1].append(float(np.linalg.norm(cur - prev, axis=1).mean()))
        prev_i, prev = i, cur
    assert len(pieces) == 3
    for seg, s in speeds.items():
        s = np.asarray(s)
        assert s[0] < 0.2 * s.max() and s[-1] < 0.2 * s.max(), seg  # it eases out and in
        peaks = [k for k in range(1, len(s) - 1) if s[k] > s[k - 1] and s[k] >= s[k + 1]]
        assert len(peaks) == 1, (seg, np.round(s / s.max(), 3))


def test_stale_chain_rebuilds_in_place_keeping_the_animators_work(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d import chains
    from blender_att3d.builders.chain import position_fcurve

    chain, root = _build_animator_chain(bpy, scene, fake)
    assert chains.stale_reasons(scene, chain) == []
    pieces = _pieces(root)
    root.location = (2.0, 1.0, 0.5)
    root.rotation_euler = (0.0, 0.0, 0.7)
    mid = pieces[1]
    mid.scale = (1.5, 1.5, 1.5)
    mid.modifiers.new("Subdivision", "SUBSURF").levels = 2
    mid.active_material.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.123
    fc = position_fcurve(root)
    fc.keyframe_points[1].interpolation = "BEZIER"  # the animator's own timing edit
    names = [o.name for o in pieces]
    chain.keyframes[1].prompt = "a yellow ball"
    assert chains.stale_reasons(scene, chain) == ["prompts changed"]
    scene.att3d.resolution = 32
    assert chains.stale_reasons(scene, chain) == ["prompts changed", "resolution 32 (built at 24)"]
    bpy.ops.att3d.build_chain(synchronous=True)
    assert chains.stale_reasons(scene, chain) == []
    assert _root(bpy, chain.uid) == root and len(_chain_objects(bpy, chain.uid)) == 4
    assert tuple(root.location) == pytest.approx((2.0, 1.0, 0.5)) and root.rotation_euler[2] == pytest.approx(0.7)
    new_pieces = _pieces(root)
    assert [o.as_pointer() for o in new_pieces] == [o.as_pointer() for o in pieces]
    assert new_pieces[1].name == "Chain 1 2: Yellow ball" and names[1] == "Chain 1 2: Blue ball"
    assert tuple(mid.scale) == pytest.approx((1.5,) * 3) and [m.type for m in mid.modifiers] == ["SUBSURF"]
    assert mid.modifiers[0].levels == 2 and mid.parent == root
    assert mid.active_material.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value == \
        pytest.approx(0.123)
    assert position_fcurve(root).keyframe_points[1].interpolation == "BEZIER"
    scene.frame_set(48)
    direct = fake.generate("a yellow ball", resolution=32)
    assert _shown(new_pieces) == [1]
    np.testing.assert_allclose(mid.data.shape_keys.key_blocks[0].data[0].co, _placed(direct.positions)[0], atol=1e-5)
    assert np.abs(_colour(bpy, mid) - direct.colors).max() < 2e-3
    # only the new data is left: three meshes, three colour groups, three materials
    assert (len(bpy.data.meshes), len(bpy.data.node_groups), len(bpy.data.materials)) == (3, 3, 3)


def test_a_rebuild_with_more_pieces_adds_objects_like_their_siblings(bpy_module, scene, fake):
    bpy = bpy_module
    chain, root = _build_animator_chain(bpy, scene, fake)
    _pieces(root)[0].modifiers.new("Subdivision", "SUBSURF")
    bpy.ops.att3d.keyframe_add(frame=120, prompt="a pink torus")
    bpy.ops.att3d.build_chain(synchronous=True)
    pieces = _pieces(root)
    assert len(pieces) == 4 and [m.type for m in pieces[3].modifiers] == ["SUBSURF"]
    assert list(root["att3d_key_frames"]) == [1, 48, 96, 120] and scene.frame_end == 120
    bpy.ops.att3d.keyframe_remove()  # the active keyframe: frame 120
    bpy.ops.att3d.keyframe_remove()
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_pieces(root)) == 2 and len(bpy.data.meshes) == 2


def test_a_saved_chain_plays_without_the_addon_and_with_scripts_off(bpy_module, scene, fake, tmp_path):
    bpy = bpy_module
    _build_animator_chain(bpy, scene, fake, interpolation="EASE")
    root = _root(bpy)
    frames = [1, 10, 24, 25, 48, 60, 72, 73, 96]
    want = {}
    for f in frames:
        scene.frame_set(f)
        i, mesh = _shown_mesh(bpy, root)
        group = bpy.data.node_groups[_pieces(root)[i]["att3d_color_group"]]
        facs = [n.inputs[0].default_value for n in group.evaluated_get(bpy.context.evaluated_depsgraph_get()).nodes
                if n.name.startswith("Mix ")]
        want[f] = {"shown": i, "mean": mesh.mean(0).tolist(), "first": mesh[0].tolist(), "facs": facs}
    path = tmp_path / "chain.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    code = f"""
import json, sys, numpy as np, bpy
bpy.context.preferences.filepaths.use_scripts_auto_execute = False
bpy.ops.wm.open_mainfile(filepath={str(path)!r})
assert not any("att3d" in a.module for a in bpy.context.preferences.addons)
assert "blender_att3d" not in sys.modules
scene = bpy.context.scene
root = next(o for o in scene.objects if o.type == "EMPTY")
pieces = sorted(root.children, key=lambda o: o["att3d_piece"])
out = {{}}
for f in {frames}:
    scene.frame_set(f)
    dg = bpy.context.evaluated_depsgraph_get()
    shown = [i for i, o in enumerate(pieces) if not o.hide_viewport and not o.hide_render]
    ev = pieces[shown[0]].evaluated_get(dg)
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    obj = pieces[shown[0]]
    group = bpy.data.node_groups[obj["att3d_color_group"]].evaluated_get(dg)
    facs = [n.inputs[0].default_value for n in group.nodes if n.name.startswith("Mix ")]
    out[f] = {{"shown": shown, "mean": co.mean(0).tolist(), "first": co[0].tolist(), "facs": facs}}
    ev.to_mesh_clear()
print("RESULT " + json.dumps({{"frames": out, "autoexec_fail": bpy.app.autoexec_fail}}))
"""
    r = run_python(code, timeout=180)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, r.stdout[-2000:] + r.stderr[-2000:]
    got = json.loads(line[len("RESULT "):])
    assert got["autoexec_fail"] is False
    for f in frames:
        g, w = got["frames"][str(f)], want[f]
        assert g["shown"] == [w["shown"]], f
        assert g["mean"] == pytest.approx(w["mean"], abs=1e-5) and g["first"] == pytest.approx(w["first"], abs=1e-5)
        assert g["facs"] == pytest.approx(w["facs"], abs=1e-6), f  # the colours mix the same way
    assert any(0.01 < x < 0.99 for x in want[60]["facs"])  # (an in-between frame that mixes two states)


def test_several_chains_rebuilding_one_leaves_the_others(bpy_module, scene):
    bpy = bpy_module
    s = scene.att3d
    first = _set_keyframes(bpy, scene, mode="SEQUENCE")
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_chain_objects(bpy, first.uid)) == 10
    counts = (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.actions))
    assert counts == (9, 1, 1)  # one action: the root's position curve
    bpy.ops.att3d.chain_add(name="Morph")
    second = _set_keyframes(bpy, scene, keys=[(100, "a pink torus"), (148, "a black cone")], steps=2)
    bpy.ops.att3d.build_chain(synchronous=True)
    uid2 = second.uid  # (a chain item may move in the list: keep its tag, not the item)
    mine = {o.name: o.as_pointer() for o in _chain_objects(bpy, uid2)}
    assert "Morph" in mine and len(mine) == 1 + 2  # a root and one object per keyframe
    assert (scene.frame_start, scene.frame_end) == (1, 148)  # the range spans both chains
    s.chain_index = 0
    first.mode = "SHAPE_KEYS"
    bpy.ops.att3d.build_chain(synchronous=True)  # rebuild the first chain, differently
    assert {o.name: o.as_pointer() for o in _chain_objects(bpy, uid2)} == mine  # untouched
    assert len(_chain_objects(bpy, first.uid)) == 1 + 3
    assert len(bpy.data.meshes) == 3 + 2  # the first chain's old meshes went with their objects
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(bpy.data.meshes) == 5 and len(bpy.data.materials) == 5 and len(bpy.data.shape_keys) == 5
    first.name = "Renamed"  # renaming keeps the tie to its objects: the next build updates them
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_chain_objects(bpy, first.uid)) == 4
    uid = first.uid
    assert bpy.ops.att3d.chain_remove() == {"FINISHED"}  # removes the first chain and its objects only
    assert not _chain_objects(bpy, uid) and [c.name for c in s.chains] == ["Morph"]
    assert {o.name: o.as_pointer() for o in _chain_objects(bpy, uid2)} == mine
    assert (scene.frame_start, scene.frame_end) == (100, 148)
    assert len(bpy.data.node_groups) == 2 and len(bpy.data.actions) == 1


def test_threaded_build_is_one_undo_step(bpy_module, scene, fake, monkeypatch):
    """The interactive path: the chain is generated in a worker, built on the main thread by the
    timer callback (called by hand here) as one undo step, and rebuilding updates it."""
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
    assert len(objs) == 4 and sum(len(o.data.shape_keys.key_blocks) for o in objs if o.type == "MESH") == 2 + 3 + 2
    assert jobs.status["main"] == ("CHECKMARK", "Built a 5-step chain")
    bpy.context.scene.att3d.active_chain().keyframes[1].prompt = "a pink ball"
    bpy.ops.ed.undo_push(message="prompt")
    bpy.ops.att3d.build_chain("EXEC_DEFAULT", True)
    jobs.wait("main")
    assert len(_chain_objects(bpy)) == 4 and len(bpy.data.meshes) == 3
    assert _pieces(_root(bpy))[1].name.endswith("Pink ball")
    bpy.ops.ed.undo()  # back to the first build, not to an empty step
    assert len(_chain_objects(bpy)) == 4 and _pieces(_root(bpy))[1].name.endswith("Blue ball")
    bpy.ops.ed.undo()
    bpy.ops.ed.undo()
    assert not _chain_objects(bpy) and len(bpy.context.scene.att3d.active_chain().keyframes) == 3


def test_reset_timing_applies_the_panels_interpolation_only_when_asked(bpy_module, scene, fake):
    bpy = bpy_module
    from blender_att3d.builders.chain import position_fcurve

    chain, root = _build_animator_chain(bpy, scene, fake)
    chain.interpolation = "EASE"  # a default for new keys: the built curve stays as it is
    assert {k.interpolation for k in position_fcurve(root).keyframe_points} == {"LINEAR"}
    assert bpy.ops.att3d.chain_reset_timing() == {"FINISHED"}
    kps = position_fcurve(root).keyframe_points
    assert {k.interpolation for k in kps} == {"BEZIER"}
    assert all(k.handle_left[1] == k.co[1] == k.handle_right[1] for k in kps)  # level: ease out and in
    scene.frame_set(24)
    assert 0.3 < _position(root) < 0.7
    scene.frame_set(5)
    assert _position(root) < (5 - 1) / 47  # slower than linear near a keyframe
    assert bpy.ops.att3d.chain_select_timing() == {"FINISHED"} and bpy.context.active_object == root


def test_panel_says_when_a_chain_is_out_of_date_and_offers_its_timing_and_export(bpy_module, scene, fake):
    bpy = bpy_module
    from test_ui import Layout, _draw

    from blender_att3d import operators, panels

    chain, root = _build_animator_chain(bpy, scene, fake)
    log = _draw(bpy, panels.ATT3D_PT_chain, bpy.context)
    labels = [e[1] for e in log if e[0] == "label"]
    assert any(t.startswith("Built: 'Chain 1', 3 pieces; timing: its Chain Position curve") for t in labels), labels
    assert any(t.startswith("Largest vertex move between stored states: ") and t.endswith(" voxels")
               for t in labels), labels
    assert fake.calls[-1][1][4] == 16  # the panel's State Cap went with the request
    assert {("operator", "att3d.chain_select_timing"), ("operator", "att3d.chain_reset_timing"),
            ("operator", "att3d.export_chain"), ("prop", "max_states")} <= set(log)
    chain.keyframes[2].frame = 90  # timing alone: still up to date
    assert not any("Out of date" in e[1] for e in _draw(bpy, panels.ATT3D_PT_chain, bpy.context) if e[0] == "label")
    chain.keyframes[0].prompt = "a purple cube"
    labels = [e[1] for e in _draw(bpy, panels.ATT3D_PT_chain, bpy.context) if e[0] == "label"]
    assert "Out of date: prompts changed" in labels
    for menu in (operators.menu_export, operators.menu_import):
        log = []
        menu(type("M", (), {"layout": Layout(log, bpy)})(), bpy.context)
        assert log in ([("operator", "att3d.export_chain")], [("operator", "att3d.import_chain")])
    assert bpy.types.TOPBAR_MT_file_export.is_extended() and bpy.types.TOPBAR_MT_file_import.is_extended()
