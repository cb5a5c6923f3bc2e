"""Chain keyframe maths: frames, visibility, shape-key weights (no bpy)."""
import numpy as np
import pytest

from blender_att3d import keyframes


def test_frames_and_visibility():
    # 3 keyframes at frames 1, 41, 101 with 4 steps per segment: positions 0, .25, ..., 2
    positions = [k + s / 4 for k in range(2) for s in range(4)] + [2.0]
    frames = keyframes.step_frames(positions, [1, 41, 101])
    assert frames[0] == 1 and frames[4] == 41 and frames[-1] == 101
    assert frames[1] == pytest.approx(11) and frames[5] == pytest.approx(56)
    assert keyframes.visible_step(0, frames) == 0
    assert keyframes.visible_step(10.9, frames) == 0 and keyframes.visible_step(11, frames) == 1
    assert keyframes.visible_step(500, frames) == 8
    # exactly one step visible at every frame
    keys = keyframes.sequence_visibility_keys(frames)
    for f in np.arange(-5, 110, 0.5):
        vis = []
        for ks in keys:
            past = [h for fr, h in ks if fr <= f]
            hidden = past[-1] if past else ks[0][1]
            vis.append(not hidden)
        assert sum(vis) == 1 and vis.index(True) == keyframes.visible_step(f, frames)


def test_weights_partition_of_unity():
    frames = [1.0, 5.0, 9.0, 20.0]
    for f in np.linspace(-3, 25, 57):
        for mode in ("LINEAR", "CONSTANT"):
            w = keyframes.expected_weights(f, frames, mode)
            assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert keyframes.expected_weights(7, frames, "LINEAR")[1:3] == pytest.approx([0.5, 0.5])
    assert keyframes.expected_weights(7, frames, "CONSTANT")[1] == 1.0
    # the shape-key keyframes reproduce the expected weights when evaluated piecewise-linearly
    kk = keyframes.shape_key_weight_keys(frames, "LINEAR")
    for f in (3.0, 7.0, 12.0):
        vals = [np.interp(f, [k[0] for k in ks], [k[1] for k in ks]) for ks in kk]
        assert vals == pytest.approx(keyframes.expected_weights(f, frames)[1:])


def test_duplicate_keyframes_rejected():
    with pytest.raises(ValueError, match="frame"):
        keyframes.sorted_keyframes([(1, "a"), (1, "b")])
    with pytest.raises(ValueError, match="two"):
        keyframes.sorted_keyframes([(1, "a")])
