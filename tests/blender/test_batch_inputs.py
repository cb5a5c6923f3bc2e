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
    with pytest.raises(inputs.InputFileError, match="JSON nested 100000 levels deep; a chain file needs at most 8"):
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


# -- prompts files an artist would write (issue 26) ------------------------------------------------------
Item = inputs.PromptItem


def _file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("name, text, expected", [
    ("prompts.txt", "# a comment\na red cube\n\n  a blue sphere \n", [Item("a red cube"), Item("a blue sphere")]),
    ("prompts.json", '["a red cube", "a blue sphere"]', [Item("a red cube"), Item("a blue sphere")]),
    ("prompts.txt", ' ["a red cube", "a blue sphere"]\n', [Item("a red cube"), Item("a blue sphere")]),
    ("prompts.json", json.dumps([{"prompt": "a red cube", "name": "Hero", "location": [1, -2.5, 0.5]},
                                 {"prompt": "a blue sphere", "location": [3, 4]}, "a green cone",
                                 {"prompt": "a pink torus", "name": "  ", "location": None}]),
     [Item("a red cube", "Hero", (1.0, -2.5, 0.5)), Item("a blue sphere", None, (3.0, 4.0, 0.0)),
      Item("a green cone"), Item("a pink torus")]),
    ("prompts.json", json.dumps({"prompts": ["a red cube"]}), [Item("a red cube")]),
    ("prompts.csv", "prompt\na red cube\na blue sphere\n", [Item("a red cube"), Item("a blue sphere")]),
    ("prompts.csv", 'Prompt,Name,Location\n"a red cube, shiny",Hero,"1, 2, 0"\na blue sphere,,\n\n',
     [Item("a red cube, shiny", "Hero", (1.0, 2.0, 0.0)), Item("a blue sphere")]),
    ("prompts.csv", "\ufeffname;prompt;x;y;z\nHero;a red cube;1;2;3\n;a blue sphere;;;\n",  # Excel, European
     [Item("a red cube", "Hero", (1.0, 2.0, 3.0)), Item("a blue sphere")]),
    ("prompts.tsv", "prompt\tlocation\na red cube\t(1 2)\n", [Item("a red cube", None, (1.0, 2.0, 0.0))]),
    ("prompts.txt", "prompt,name\na red cube,Hero\n", [Item("a red cube", "Hero")]),  # a header: a CSV
    ("prompts.txt", "a red cube, a blue sphere\n", [Item("a red cube, a blue sphere")]),  # no header: text
])
def test_prompts_files_an_artist_would_write(tmp_path, name, text, expected):
    assert inputs.parse_prompts_file(_file(tmp_path, name, text)) == expected


@pytest.mark.parametrize("name, text, message", [
    ("prompts.csv", "title,notes\na red cube,x\n", "a CSV needs a 'prompt' column in its first row (it has "
                                                    "'title', 'notes')"),
    ("prompts.csv", "prompt,notes\na red cube,x\n", "unknown column 'notes' (the columns are prompt, name, "
                                                     "location or x, y, z)"),
    ("prompts.csv", "prompt,name\na red cube,Hero,extra\n", "prompts.csv:2: 3 cells but the header names 2 "
                                                            "columns (a prompt with a comma must be in double quotes)"),
    ("prompts.csv", "prompt,name\n,Hero\n", "prompts.csv:2: no prompt in this row"),
    ("prompts.csv", "prompt,location\na red cube,up there\n", "prompts.csv:2: 'location' must be 2 or 3 numbers"),
    ("prompts.csv", "prompt,x,y,z\na red cube,1,,\n", "'location' must be 2 or 3 numbers"),
    ("prompts.csv", "prompt,location,x\na red cube,1 2,3\n", "as one 'location' column or as x, y, z columns"),
    ("prompts.csv", "prompt,prompt\na,b\n", "a column is named twice"),
    ("prompts.csv", "prompt\n", "prompts file has no prompts"),
    ("prompts.json", '{"prompt": "a red cube"}', "expected a JSON array of prompts (strings, or objects with a "
                                                 "\"prompt\"), got an object"),
    ("prompts.json", '"a red cube"', "expected a JSON array of prompts"),
    ("prompts.json", "[1, 2]", "item 1: expected a prompt or an object with a \"prompt\", got 1"),
    ("prompts.json", '[["a red cube"]]', "item 1: expected a prompt or an object"),
    ("prompts.json", '[{"promt": "a red cube"}]', "item 1: unknown field 'promt' (the fields are prompt, name, "
                                                  "location)"),
    ("prompts.json", '[{"name": "Hero"}]', "item 1: no \"prompt\""),
    ("prompts.json", '[{"prompt": 5}]', "item 1: a prompt must be text, got 5"),
    ("prompts.json", '[{"prompt": "a", "name": 5}]', "item 1: 'name' must be text, got 5"),
    ("prompts.json", '["a", {"prompt": "b", "location": [1, true]}]', "item 2: 'location' must be 2 or 3 numbers"),
    ("prompts.json", '[{"prompt": "b", "location": [1, 2, 3, 4]}]', "'location' must be 2 or 3 numbers"),
    ("prompts.json", '[{"prompt": "b", "location": "1, 2"}]', "'location' must be 2 or 3 numbers"),
    ("prompts.json", '[{"prompt": "b", "location": ["1", "2"]}]', "'location' must be 2 or 3 numbers"),
    ("prompts.json", '[{"prompt": "b", "location": [1, 1e999]}]', "'location' must be 2 or 3 numbers"),
    ("prompts.json", "[]", "prompts file has no prompts"),
    ("prompts.json", "[\"a red cube\",", "is not valid JSON"),
    ("prompts.json", "a red cube\n", "is not valid JSON"),
    ("prompts.txt", "[" * 50 + "]" * 50, "JSON nested 50 levels deep; a prompts file needs at most 8"),
    ("prompts.json", '["a red cube", "\u200b"]', "item 2: the prompt has no visible characters"),
])
def test_anything_else_is_one_clear_line(tmp_path, name, text, message):
    with pytest.raises(inputs.InputFileError) as e:
        inputs.parse_prompts_file(_file(tmp_path, name, text))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_long_name_is_cut_to_what_blender_holds(tmp_path):
    p = _file(tmp_path, "p.json", json.dumps([{"prompt": "a red cube", "name": "é" * 40}]))
    assert inputs.parse_prompts_file(p)[0].name == "é" * 30  # 60 bytes (Blender holds 63)


def test_the_batch_reads_json_and_csv_with_names_and_locations(bpy_module, addon, tmp_path, fake, capsys):
    from blender_att3d import batch

    bpy = bpy_module
    p = _file(tmp_path, "prompts.json", json.dumps([
        {"prompt": "a red cube", "name": "Hero", "location": [5, 6, 0]}, "a blue sphere", "a green cone"]))
    out = tmp_path / "scene.blend"
    assert batch.main(["--prompts", str(p), "--out", str(out), "--no-camera"], client=fake) == 0
    assert [c[1][0] for c in fake.calls] == ["a red cube", "a blue sphere", "a green cone"]
    objs = {o.name: o for o in bpy.data.objects}
    assert set(objs) == {"Hero", "Blue sphere", "Green cone"}
    assert tuple(objs["Hero"].location) == (5.0, 6.0, 0.0) and objs["Hero"]["att3d_prompt"] == "a red cube"
    # the two without a location share the grid, away from the placed one and from each other
    a, b = (objs[n].location for n in ("Blue sphere", "Green cone"))
    assert (a - b).length > 0.5 and min((a - objs["Hero"].location).length, (b - objs["Hero"].location).length) > 1
    assert "as 'Hero'" in capsys.readouterr().err
    c = _file(tmp_path, "prompts.csv", 'prompt,name,x,y,z\n"a red cube, tall",Tower,0,-3,1\na pink torus,,,,\n')
    fake.calls.clear()
    assert batch.main(["--prompts", str(c), "--out", str(out), "--no-camera"], client=fake) == 0
    assert [c[1][0] for c in fake.calls] == ["a red cube, tall", "a pink torus"]
    assert tuple(bpy.data.objects["Tower"].location) == (0.0, -3.0, 1.0) and "Pink torus" in bpy.data.objects


@pytest.mark.parametrize("name, text", [
    ("prompts.csv", "title,notes\na red cube,x\n"),
    ("prompts.json", '{"prompt": "a red cube"}'),
    ("prompts.json", '[{"prompt": "a red cube", "locaton": [1, 2, 3]}]'),
])
def test_a_wrong_prompts_file_is_exit_2_before_any_generation(bpy_module, addon, tmp_path, fake, capsys, name,
                                                              text):
    from blender_att3d import batch

    out = tmp_path / "scene.blend"
    code = batch.main(["--prompts", str(_file(tmp_path, name, text)), "--out", str(out)], client=fake)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and fake.calls == [] and not out.exists()
    assert len(err) == 1 and err[0].startswith(f"att3d batch: error: prompts file {tmp_path / name}: ")


def test_the_state_cap_is_checked_before_anything_is_generated():
    from blender_att3d import inputs

    chain = {"keyframes": [(1, "a red cube"), (25, "a blue ball")]}
    assert inputs.check_batch([], chain, 4, 128, max_states=12) == 4
    with pytest.raises(inputs.InputFileError, match=r"--max-states: .*at least steps \(4\)"):
        inputs.check_batch([], chain, 4, 128, max_states=2)
