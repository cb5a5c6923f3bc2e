"""Batch inputs that are checked whole before anything is generated: deeply nested JSON, booleans
posing as frames or steps, chains over the protocol's limits (exit 2 with one line, no mesh made)."""
import json

import pytest

from blender_att3d import inputs
from blender_att3d.wire.limits import Limits


def _chain(tmp_path, data, raw: str | None = None):
    p = tmp_path / "chain.json"
    p.write_text(raw if raw is not None else json.dumps(data))
    return p


def test_deeply_nested_json_is_one_clear_line(tmp_path):
    p = _chain(tmp_path, None, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(inputs.InputFileError, match="JSON nested 100000 levels deep; a chain needs at most 8"):
        inputs.parse_chain_file(p)
    # brackets inside prompts are text, not nesting
    ok = _chain(tmp_path, [[1, "a [[[[[[[[[[cube]]]]]]]]]]"], [2, "{{{{{{{{{{"]])
    assert inputs.parse_chain_file(ok)["keyframes"][1] == (2.0, "{{{{{{{{{{")
    assert inputs.json_depth('{"a": [1, "\\"[[[["]}') == 2


@pytest.mark.parametrize("data,message", [
    ([[False, "a red cube"], [10, "a blue ball"]], "false is not a frame number"),
    ([[1, "a red cube"], [True, "a blue ball"]], "true is not a frame number"),
    ({"keyframes": [{"frame": 1, "prompt": "a"}, {"frame": 2, "prompt": "b"}], "steps": True},
     "'steps' must be a positive integer, got true"),
    ({"keyframes": [{"frame": 1, "prompt": "a"}, {"frame": 2, "prompt": "b"}], "steps": 2.5},
     "'steps' must be a positive integer, got 2.5"),
    ([[i, f"prompt {i}"] for i in range(65)], "65 keyframes; the limit is 64"),
    ([[1, "a red cube"], [2, "\u200b"]], "no visible characters"),
    ([[1, "a red cube"], [2, "\ud800"]], "unpaired UTF-16 surrogate"),
])
def test_chain_values_of_the_wrong_kind(tmp_path, data, message):
    with pytest.raises(inputs.InputFileError, match=message.replace("(", r"\(")):
        inputs.parse_chain_file(_chain(tmp_path, data))


def test_check_batch_checks_the_whole_chain_against_the_limits():
    chain = {"keyframes": [(1.0, "a"), (9.0, "b"), (20.0, "c")], "steps": None}
    assert inputs.check_batch(["a red cube"], chain, None, 128) == 4
    assert inputs.check_batch([], dict(chain, steps=7), None, 128) == 7
    assert inputs.check_batch([], chain, 3, 128) == 3  # --steps wins over the file
    with pytest.raises(inputs.InputFileError, match="the chain would have 257 meshes .* the limit is 256"):
        inputs.check_batch([], chain, 128, 128)
    with pytest.raises(inputs.InputFileError, match="--steps must be a positive integer, got 0"):
        inputs.check_batch([], chain, 0, 128)
    with pytest.raises(inputs.InputFileError, match="--resolution must be an integer in 16–512, got 1024"):
        inputs.check_batch([], chain, None, 1024)
    # a server's own (smaller) limits
    with pytest.raises(inputs.InputFileError, match="the limit is 8"):
        inputs.check_batch([], chain, 4, 128, Limits(max_chain_meshes=8))
    with pytest.raises(inputs.InputFileError, match="the limit is 5"):
        inputs.check_batch(["a red cube"], None, None, 128, Limits(max_prompt_chars=5))


def test_a_chain_over_the_limit_fails_before_any_prompt_is_generated(bpy_module, addon, tmp_path, fake, capsys):
    from blender_att3d import batch

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\na blue ball\n")
    chain = _chain(tmp_path, {"keyframes": [{"frame": 1, "prompt": "a"}, {"frame": 9, "prompt": "b"}], "steps": 300})
    out = tmp_path / "scene.blend"
    code = batch.main(["--prompts", str(prompts), "--chain", str(chain), "--out", str(out)], client=fake)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and fake.calls == [] and not out.exists()
    assert err[-1].startswith("att3d batch: error: the chain would have 301 meshes")
    # the backend's limits are checked once it is loaded, still before generating
    fake.limits = Limits(max_chain_meshes=3)
    chain.write_text(json.dumps([[1, "a"], [9, "b"]]))
    code = batch.main(["--prompts", str(prompts), "--chain", str(chain), "--out", str(out), "--steps", "3"],
                      client=fake)
    assert code == 2 and fake.calls == [] and not out.exists()
    assert "the chain would have 4 meshes" in capsys.readouterr().err
