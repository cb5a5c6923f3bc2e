"""Chain keyframe maths (no bpy): frames, the position drivers' expressions, retiming."""
import numpy as np
import pytest

from blender_att3d import keyframes
from blender_att3d.wire.chain_position import piece_showing, tent_weights, track_samples


def _eval(expr: str, p: float):
    """What Blender's simple-expression evaluator computes (the same grammar as Python here)."""
    return eval(expr, {"__builtins__": {}}, {"p": p, "min": min, "max": max,
                                             "clamp": lambda x, lo, hi: min(max(x, lo), hi)})


def test_frames_and_steps():
    # 3 keyframes at frames 1, 41, 101 with 4 steps per segment: positions 0, .25, ..., 2
    positions = [k + s / 4 for k in range(2) for s in range(4)] + [2.0]
    frames = keyframes.step_frames(positions, [1, 41, 101])
    assert frames[0] == 1 and frames[4] == 41 and frames[-1] == 101
    assert frames[1] == pytest.approx(11) and frames[5] == pytest.approx(56)
    assert keyframes.visible_step(0, frames) == 0
    assert keyframes.visible_step(10.9, frames) == 0 and keyframes.visible_step(11, frames) == 1
    assert keyframes.visible_step(500, frames) == 8


def test_weight_expressions_are_the_tent_weights_and_sum_to_one():
    times = [0.5, 0.75, 1.0, 1.25, 1.5, 1.7]
    for p in np.linspace(0.0, 2.0, 81):
        want = tent_weights(times, p)
        got = [_eval(keyframes.weight_expression(times, j), p) for j in range(len(times))]
        assert got == pytest.approx(want, abs=1e-12), p
        assert sum(got) == pytest.approx(1.0) and min(got) >= 0
    assert tent_weights(times, 1.1) == pytest.approx([0, 0, 0.6, 0.4, 0, 0])
    with pytest.raises(ValueError, match="no weight"):
        keyframes.weight_expression([1.0], 0)


def test_hidden_expressions_show_exactly_one_piece():
    starts = [0.0, 0.5, 1.5, 2.5]
    for p in np.concatenate([np.linspace(-1, 4, 101), [0.5 - 4e-6, 1.5 + 4e-6]]):  # float32 rounding at a swap
        shown = [j for j in range(len(starts)) if not _eval(keyframes.hidden_expression(starts, j) or "False", p)]
        assert shown == [piece_showing(starts, p)], p
    assert keyframes.hidden_expression([0.0], 0) is None


def test_retiming_moves_keys_with_their_keyframes():
    old, new = [1.0, 48.0, 96.0], [1.0, 60.0, 96.0]
    assert keyframes.warp_frame(48, old, new) == 60
    assert keyframes.warp_frame(1, old, new) == 1 and keyframes.warp_frame(96, old, new) == 96
    assert keyframes.warp_frame(24.5, old, new) == pytest.approx(30.5)  # the middle of a segment stays its middle
    assert keyframes.warp_frame(120, old, [5.0, 60.0, 100.0]) == 124  # a loop's keys after the last move with it
    assert keyframes.warp_frame(-3, old, [5.0, 60.0, 100.0]) == 1
    with pytest.raises(ValueError):
        keyframes.warp_frame(3, old, [1.0])
    assert keyframes.position_keys([1, 48, 96]) == [(1.0, 0.0), (48.0, 1.0), (96.0, 2.0)]


def test_track_samples_cross_every_stored_state():
    t, p = track_samples([0.0, 1.0, 2.0], [0.0, 1.0, 1.0], [0.25, 0.5, 1.0])
    assert t.tolist() == [0.0, 0.25, 0.5, 1.0, 2.0] and p.tolist() == [0.0, 0.25, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="increasing"):
        track_samples([0.0, 0.0], [0.0, 1.0], [0.5])


def test_duplicate_keyframes_rejected():
    with pytest.raises(ValueError, match="frame"):
        keyframes.sorted_keyframes([(1, "a"), (1, "b")])
    with pytest.raises(ValueError, match="two"):
        keyframes.sorted_keyframes([(1, "a")])
