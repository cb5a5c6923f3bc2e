import json
import os
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from backend.cli import main


def run(capsys, *argv):
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_generate_writes_glb_and_preview(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "a.glb"
    code, stdout, err = run(capsys, "generate", "a red cube", "--model", str(tiny_model_dir), "--out", str(out),
                            "--resolution", "48", "--preview", str(tmp_path / "p.png"))
    assert code == 0, err
    assert "wrote" in stdout
    from gltf_check import assert_valid, first_primitive

    assert_valid(out)
    prim = first_primitive(out)
    assert len(prim["indices"]) > 0 and prim["COLOR_0"].shape == prim["POSITION"].shape
    from PIL import Image

    img = Image.open(tmp_path / "p.png")
    assert img.size == (4 * 128, 2 * 128)


@pytest.mark.parametrize("args,message", [
    (["generate", "   ", "--out", "{tmp}/a.glb"], "the prompt is empty"),
    (["generate", "a cube", "--out", "{tmp}/a.glb", "--resolution", "8"], "resolution must be an integer in 16–512"),
    (["generate", "a cube", "--out", "{tmp}/a.glb", "--resolution", "1024"], "resolution must be an integer in 16–512"),
    (["generate", "a cube", "--out", "{tmp}/a.glb", "--model", "no-such-model"], "model 'no-such-model' not found"),
    (["generate", "a cube", "--out", "{tmp}/a.stl"], "unsupported output format '.stl'"),
    (["generate", "a cube", "--out", "/proc/nope/a.glb"], "cannot"),
    (["generate", "x" * 600, "--out", "{tmp}/a.glb"], "the limit is 500"),
    (["interpolate", "a cube", "--out", "{tmp}/seq"], "at least two prompts"),
])
def test_bad_input_is_one_clean_line(capsys, tiny_model_dir, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("att3d: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "a.glb").exists()


@pytest.mark.slow
def test_unwritable_output_as_a_real_process(tiny_model_dir, tmp_path):
    """The installed entry point: exit code 2, one line, no traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a file instead
        target = tmp_path / "file.txt"
        target.write_text("x")
        out = target / "a.glb"
    else:
        out = ro / "a.glb"
    p = subprocess.run([sys.executable, "-m", "backend.cli", "generate", "a cube", "--model", str(tiny_model_dir),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("att3d: error: cannot") and "Traceback" not in p.stderr


def test_interpolate_consistent_writes_keyframe_pieces(capsys, tiny_model_dir, tmp_path):
    from gltf_check import assert_valid, glb_json

    code, out, err = run(capsys, "interpolate", "a red cube", "a blue sphere", "a green cone", "--steps", "2",
                         "--out", str(tmp_path / "seq"), "--consistent", "--resolution", "32",
                         "--model", str(tiny_model_dir))
    assert code == 0, err
    assert "3 keyframe pieces" in out
    manifest = json.loads((tmp_path / "seq" / "sequence.json").read_text())
    assert [s["position"] for s in manifest["steps"]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    meshes = [trimesh.load(tmp_path / "seq" / s["file"], force="mesh", process=False) for s in manifest["steps"]]
    code, _, _ = run(capsys, "generate", "a blue sphere", "--out", str(tmp_path / "k.glb"), "--resolution", "32",
                     "--model", str(tiny_model_dir))
    direct = trimesh.load(tmp_path / "k.glb", force="mesh", process=False)
    assert code == 0  # the middle keyframe's step is the directly generated mesh
    assert np.array_equal(meshes[2].faces, direct.faces) and np.allclose(meshes[2].vertices, direct.vertices)
    assert_valid(tmp_path / "seq" / "sequence.glb", *[tmp_path / "seq" / s["file"] for s in manifest["steps"]])
    gltf = glb_json(tmp_path / "seq" / "sequence.glb")
    assert len(gltf["nodes"][0]["children"]) == 3  # one node per keyframe piece
    assert {ch["target"]["path"] for ch in gltf["animations"][0]["channels"]} == {"weights", "scale"}
    assert (tmp_path / "seq" / "sequence.glb").stat().st_mode & 0o777 == 0o644  # a file to share, not private


def test_init_model_with_overrides(capsys, tmp_path):
    code, out, err = run(capsys, "init-model", str(tmp_path / "m"), "--preset", "tiny", "--set", "v_dim=4",
                         "--set", "mapping=attention")
    assert code == 0, err
    arch = json.loads((tmp_path / "m" / "config.json").read_text())["architecture"]
    assert arch["v_dim"] == 4 and arch["mapping"] == "attention" and arch["resolutions"] == [8, 12, 16]
    code, out, err = run(capsys, "init-model", str(tmp_path / "n"), "--set", "wings=3")
    assert code == 2 and "unknown architecture keys: wings" in err
