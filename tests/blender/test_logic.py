"""The bpy-free logic of the add-on."""
import json

import numpy as np
import pytest

from blender_att3d import logic


def test_name_from_prompt():
    assert logic.name_from_prompt("a red sports car!") == "Red sports car"
    assert logic.name_from_prompt("  the   BLUE vase ") == "BLUE vase"
    assert logic.name_from_prompt("!!!") == "ATT3D"
    long = logic.name_from_prompt("é" * 200)
    assert len(long.encode()) <= 60 and long


def test_check_prompt():
    assert logic.check_prompt("  a   cat ") == "a cat"
    for bad in ("", "   ", None, "x" * (logic.MAX_PROMPT_CHARS + 1)):
        with pytest.raises(ValueError):
            logic.check_prompt(bad)


def test_frames_and_visibility():
    # 3 keyframes at frames 1, 41, 101 with 4 steps per segment: positions 0, .25, ..., 2
    positions = [k + s / 4 for k in range(2) for s in range(4)] + [2.0]
    frames = logic.step_frames(positions, [1, 41, 101])
    assert frames[0] == 1 and frames[4] == 41 and frames[-1] == 101
    assert frames[1] == pytest.approx(11) and frames[5] == pytest.approx(56)
    assert logic.visible_step(0, frames) == 0
    assert logic.visible_step(10.9, frames) == 0 and logic.visible_step(11, frames) == 1
    assert logic.visible_step(500, frames) == 8
    # exactly one step visible at every frame
    keys = logic.sequence_visibility_keys(frames)
    for f in np.arange(-5, 110, 0.5):
        vis = []
        for i, ks in enumerate(keys):
            past = [h for fr, h in ks if fr <= f]
            hidden = past[-1] if past else ks[0][1]
            vis.append(not hidden)
        assert sum(vis) == 1 and vis.index(True) == logic.visible_step(f, frames)


def test_weights_partition_of_unity():
    frames = [1.0, 5.0, 9.0, 20.0]
    for f in np.linspace(-3, 25, 57):
        for mode in ("LINEAR", "CONSTANT"):
            w = logic.expected_weights(f, frames, mode)
            assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert logic.expected_weights(7, frames, "LINEAR")[1:3] == pytest.approx([0.5, 0.5])
    assert logic.expected_weights(7, frames, "CONSTANT")[1] == 1.0
    # the shape-key keyframes reproduce the expected weights when evaluated piecewise-linearly
    kk = logic.shape_key_weight_keys(frames, "LINEAR")
    for f in (3.0, 7.0, 12.0):
        vals = [np.interp(f, [k[0] for k in ks], [k[1] for k in ks]) for ks in kk]
        assert vals == pytest.approx(logic.expected_weights(f, frames)[1:])


def test_duplicate_keyframes_rejected():
    with pytest.raises(ValueError, match="frame"):
        logic.sorted_keyframes([(1, "a"), (1, "b")])
    with pytest.raises(ValueError, match="two"):
        logic.sorted_keyframes([(1, "a")])


def test_parse_prompts_file(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("# comment\na red cube\n\n  a   blue ball \n")
    assert logic.parse_prompts_file(p) == ["a red cube", "a blue ball"]
    p.write_text("# only comments\n\n")
    with pytest.raises(logic.InputFileError, match="no prompts"):
        logic.parse_prompts_file(p)
    with pytest.raises(logic.InputFileError, match="not found"):
        logic.parse_prompts_file(tmp_path / "missing.txt")
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(logic.InputFileError, match="UTF-8"):
        logic.parse_prompts_file(p)


def test_parse_chain_file(tmp_path):
    t = tmp_path / "c.txt"
    t.write_text("48\ta blue sphere\n# c\n1\ta red cube\n")
    assert logic.parse_chain_file(t) == {"keyframes": [(1.0, "a red cube"), (48.0, "a blue sphere")], "steps": None}
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"keyframes": [{"frame": 1, "prompt": "a"}, {"frame": 9, "prompt": "b"}], "steps": 3}))
    assert logic.parse_chain_file(j)["steps"] == 3
    j.write_text(json.dumps([[1, "a"], [9, "b"]]))
    assert len(logic.parse_chain_file(j)["keyframes"]) == 2
    for bad in ("x\ta cube\n2\tb\n", "1\ta\n", "1 a\n1 b\n", "[[1, 2, 3]]", "{not json", "1\n2\n"):
        t.write_text(bad)
        with pytest.raises(logic.InputFileError):
            logic.parse_chain_file(t)


def test_loopback():
    assert logic.is_loopback_url("http://127.0.0.1:8765")
    assert logic.is_loopback_url("http://localhost:1/x")
    assert logic.is_loopback_url("http://[::1]:80")
    assert not logic.is_loopback_url("https://att3d.example.com")
    assert not logic.is_loopback_url("http://10.0.0.5:8765")


def test_srgb_roundtrip():
    c = np.linspace(0, 1, 101, dtype=np.float32)
    assert logic.linear_to_srgb(logic.srgb_to_linear(c)) == pytest.approx(c, abs=1e-5)
