"""Prompt chains on the timeline: the scene's chains and their keyframes, mesh sequences, shape keys
(one topology per keyframe, exact at every keyframe), several chains side by side."""
import numpy as np
import pytest

KEYS = [(1, "a red cube"), (21, "a blue ball"), (61, "a green cone")]


def _set_keyframes(bpy, scene, keys=KEYS, steps=4, mode="SHAPE_KEYS", interpolation="LINEAR"):
    for frame, prompt in keys:
        assert bpy.ops.att3d.keyframe_add(frame=frame, prompt=prompt) == {"FINISHED"}
    chain = scene.att3d.active_chain()
    chain.steps, chain.mode, chain.interpolation = steps, mode, interpolation
    scene.att3d.resolution = 24
    return chain


def _chain_objects(bpy, uid=None):
    return [o for o in bpy.data.objects if "att3d_chain" in o and (uid is None or o["att3d_chain"] == uid)]


def _frames(steps=4):
    from blender_att3d import keyframes

    positions = [k + s / steps for k in range(len(KEYS) - 1) for s in range(steps)] + [len(KEYS) - 1.0]
    return keyframes.step_frames(positions, [f for f, _ in KEYS])


def _evaluated(bpy, obj):
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    return co.reshape(-1, 3)


def _placed(data):
    from blender_att3d.sizing import anchor

    return data.positions - anchor(data.positions, "BASE")


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
    root = next(o for o in _chain_objects(bpy) if o.type == "EMPTY")
    assert root.name == "Chain 1"
    steps = sorted(root.children, key=lambda o: o["att3d_chain_position"])
    assert len(steps) == 9
    frames = _frames()
    assert [o["att3d_chain_position"] for o in steps] == pytest.approx([0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2])
    assert (scene.frame_start, scene.frame_end) == (1, 61)  # the chain's range, not 1–250
    for f in (0, 1, 5, 6, 11, 20, 21, 30, 31, 50, 60, 61, 80):
        scene.frame_set(f)
        shown = [i for i, o in enumerate(steps) if not o.hide_viewport]
        assert shown == [keyframes.visible_step(f, frames)], f"frame {f}"
        assert [i for i, o in enumerate(steps) if not o.hide_render] == shown


def _colour(bpy, obj):
    """Per-vertex base colour (sRGB) the material computes at the current frame: the basis
    attribute plus each delta attribute times its evaluated Mix factor."""
    from blender_att3d.builders import chain, geometry
    from blender_att3d.colors import linear_to_srgb

    dg = bpy.context.evaluated_depsgraph_get()
    nodes = obj.active_material.evaluated_get(dg).node_tree.nodes
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


@pytest.mark.parametrize("interpolation", ["LINEAR", "CONSTANT"])
def test_shape_keys_are_each_keyframes_own_mesh_and_morph_between(bpy_module, scene, fake, interpolation):
    bpy = bpy_module
    from blender_att3d import keyframes
    from blender_att3d.colors import linear_to_srgb, srgb_to_linear

    _set_keyframes(bpy, scene, interpolation=interpolation)
    assert bpy.ops.att3d.build_chain(synchronous=True) == {"FINISHED"}
    assert fake.calls[-1][1][3] is True  # consistent topology asked for
    root = bpy.context.active_object
    assert root.type == "EMPTY" and root.name == "Chain 1" and root["att3d_pieces"] == 3
    pieces = sorted(root.children, key=lambda o: o["att3d_chain_position"])
    assert [o.name for o in pieces] == ["Chain 1 1: Red cube", "Chain 1 2: Blue ball", "Chain 1 3: Green cone"]
    seq = fake.chain(list(enumerate(p for _, p in KEYS)), steps=4, resolution=24, consistent=True)
    assert (scene.frame_start, scene.frame_end) == (1, 61)
    # at every keyframe exactly its own piece shows, and it is the directly generated object
    for (frame, prompt), obj in zip(KEYS, pieces):
        scene.frame_set(frame)
        assert [o for o in pieces if not o.hide_viewport] == [obj] == [o for o in pieces if not o.hide_render]
        direct = fake.generate(prompt, resolution=24)
        assert _evaluated(bpy, obj) == pytest.approx(_placed(direct), abs=1e-5)
        assert np.abs(_colour(bpy, obj) - direct.colors).max() < 2e-3
    # the pieces swap at each segment's middle (frames 11 and 41)
    for f, shown in ((10, 0), (11, 1), (40, 1), (41, 2)):
        scene.frame_set(f)
        assert [i for i, o in enumerate(pieces) if not o.hide_viewport] == [shown], f
    # between states: the weighted mix of the piece's states, positions and colours alike
    from blender_att3d.sizing import anchor

    for f in (3, 6, 9, 16, 26, 33, 50, 58):
        scene.frame_set(f)
        i = [i for i, o in enumerate(pieces) if not o.hide_viewport][0]
        obj, piece = pieces[i], seq.pieces[i]
        frames = list(obj["att3d_state_frames"])
        w = keyframes.expected_weights(f, frames, interpolation)
        placed = [p - anchor(p, "BASE") for p in piece.positions]
        assert _evaluated(bpy, obj) == pytest.approx(sum(wi * p for wi, p in zip(w, placed)), abs=1e-4), f
        expected = linear_to_srgb(sum(wi * srgb_to_linear(c) for wi, c in zip(w, piece.colors)))
        assert np.abs(_colour(bpy, obj) - expected).max() < 3e-3, f
        if interpolation == "CONSTANT":
            assert sorted(w)[-1] == 1.0


def test_several_chains_rebuilding_one_leaves_the_others(bpy_module, scene):
    bpy = bpy_module
    s = scene.att3d
    first = _set_keyframes(bpy, scene, mode="SEQUENCE")
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_chain_objects(bpy, first.uid)) == 10
    counts = (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.actions))
    assert counts == (9, 1, 9)
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
    first.name = "Renamed"  # renaming keeps the tie to its objects: the next build replaces them
    bpy.ops.att3d.build_chain(synchronous=True)
    assert len(_chain_objects(bpy, first.uid)) == 4 and bpy.data.objects.get("Renamed") is not None
    uid = first.uid
    assert bpy.ops.att3d.chain_remove() == {"FINISHED"}  # removes the first chain and its objects only
    assert not _chain_objects(bpy, uid) and [c.name for c in s.chains] == ["Morph"]
    assert {o.name: o.as_pointer() for o in _chain_objects(bpy, uid2)} == mine
    assert (scene.frame_start, scene.frame_end) == (100, 148)


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
    assert len(objs) == 4 and sum(len(o.data.shape_keys.key_blocks) for o in objs if o.type == "MESH") == 2 + 3 + 2
    assert jobs.status["main"] == ("CHECKMARK", "Built a 5-step chain")
    bpy.ops.att3d.build_chain("EXEC_DEFAULT", True)
    jobs.wait("main")
    assert len(_chain_objects(bpy)) == 4 and len(bpy.data.meshes) == 3
    bpy.ops.ed.undo()  # back to the first build, not to an empty step
    assert len(_chain_objects(bpy)) == 4
    bpy.ops.ed.undo()
    assert not _chain_objects(bpy) and len(bpy.context.scene.att3d.active_chain().keyframes) == 3
