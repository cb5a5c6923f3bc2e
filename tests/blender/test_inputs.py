"""Batch input files: the prompts file and the chain file (no bpy)."""
import json

import pytest

from blender_att3d import inputs


def test_parse_prompts_file(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("# comment\na red cube\n\n  a   blue ball \n")
    assert inputs.parse_prompts_file(p) == [inputs.PromptItem("a red cube"), inputs.PromptItem("a blue ball")]
    p.write_text("# only comments\n\n")
    with pytest.raises(inputs.InputFileError, match="no prompts"):
        inputs.parse_prompts_file(p)
    with pytest.raises(inputs.InputFileError, match="not found"):
        inputs.parse_prompts_file(tmp_path / "missing.txt")
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(inputs.InputFileError, match="UTF-8"):
        inputs.parse_prompts_file(p)


def test_parse_chain_file(tmp_path):
    t = tmp_path / "c.txt"
    t.write_text("48\ta blue sphere\n# c\n1\ta red cube\n")
    assert inputs.parse_chain_file(t) == {"keyframes": [(1.0, "a red cube"), (48.0, "a blue sphere")], "steps": None}
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"keyframes": [{"frame": 1, "prompt": "a"}, {"frame": 9, "prompt": "b"}], "steps": 3}))
    assert inputs.parse_chain_file(j)["steps"] == 3
    j.write_text(json.dumps([[1, "a"], [9, "b"]]))
    assert len(inputs.parse_chain_file(j)["keyframes"]) == 2
    for bad in ("x\ta cube\n2\tb\n", "1\ta\n", "1 a\n1 b\n", "[[1, 2, 3]]", "{not json", "1\n2\n"):
        t.write_text(bad)
        with pytest.raises(inputs.InputFileError):
            inputs.parse_chain_file(t)
