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
    # timed to a scene: one frame per prompt, increasing, not before the start frame; fps > 0
    (["interpolate", "a", "b", "c", "--out", "{tmp}/seq", "--frames", "1,48", "--fps", "24"],
     "2 frames for 3 prompts: give one frame per prompt"),
    (["interpolate", "a", "b", "c", "--out", "{tmp}/seq", "--frames", "1,48,40", "--fps", "24"],
     "frames must increase: 40 follows 48"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--frames", "1,48", "--fps", "24", "--frame-start", "10"],
     "frame 1 is before the start frame 10"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--frames", "1,48", "--fps", "0"], "fps must be more than 0"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--frames", "1,48", "--fps", "nan"], "fps must be a finite"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--frames", "1,x", "--fps", "24"], "numbers separated by commas"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--frames", "1,48"], "--frames needs --fps"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--fps", "24"], "give --frames too"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--frame-start", "0"], "give --frames too"),
    (["interpolate", "a", "b", "--out", "{tmp}/seq", "--steps", "4", "--max-states", "3"], "at least steps (4)"),
])
def test_bad_input_is_one_clean_line(capsys, tiny_model_dir, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("att3d: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "a.glb").exists() and not (tmp_path / "seq").exists()


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
    from backend.export import export_mesh
    from backend.inference import Pipeline

    # the middle keyframe's step is the directly generated mesh: the low-passed surface, before Taubin
    pipe = Pipeline(str(tiny_model_dir), device="cpu")
    export_mesh(pipe.mesh(pipe.modulate(pipe.embed("a blue sphere")), 32, lowpass=True), tmp_path / "k.glb")
    direct = trimesh.load(tmp_path / "k.glb", force="mesh", process=False)
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


def test_interpolate_frames_time_the_glb_to_the_scene(capsys, tiny_model_dir, tmp_path):
    """Keyframes on scene frames 1, 48 and 96 at 24 fps play at (f − 1) / 24 s, where Blender's glTF
    importer puts them back on their frames; the steps between follow the keyframes' frames."""
    from gltf_check import assert_valid, glb_json, read_accessor

    out = tmp_path / "seq"
    code, stdout, err = run(capsys, "interpolate", "a red cube", "a blue sphere", "a green cone", "--steps", "2",
                            "--out", str(out), "--consistent", "--resolution", "24", "--model", str(tiny_model_dir),
                            "--frames", "1,48,96", "--fps", "24")
    assert code == 0, err
    manifest = json.loads((out / "sequence.json").read_text())
    assert manifest["frames"] == [1, 48, 96] and manifest["fps"] == 24 and manifest["frame_start"] == 1
    assert [s["frame"] for s in manifest["steps"]] == [1, 24.5, 48, 72, 96]
    assert [s["seconds"] for s in manifest["steps"]] == pytest.approx([0, 23.5 / 24, 47 / 24, 71 / 24, 95 / 24])
    glb = out / "sequence.glb"
    assert_valid(glb)
    gltf = glb_json(glb)
    anim = gltf["animations"][0]
    times = {round(float(t), 5) for ch in anim["channels"]
             for t in read_accessor(glb, gltf, anim["samplers"][ch["sampler"]]["input"]).ravel()}
    assert round(95 / 24, 5) in times and round(47 / 24, 5) in times  # the last and the middle keyframe
    assert max(times) == pytest.approx(95 / 24, abs=1e-5) and min(times) == 0
    # without --frames: one step per second, as before
    code, _, err = run(capsys, "interpolate", "a red cube", "a blue sphere", "--steps", "2", "--out",
                       str(tmp_path / "plain"), "--resolution", "24", "--model", str(tiny_model_dir))
    assert code == 0, err
    plain = json.loads((tmp_path / "plain" / "sequence.json").read_text())
    assert [s["seconds"] for s in plain["steps"]] == [0, 1, 2] and "frames" not in plain


def test_every_resolution_default_is_128():
    """One default (the wire's) for the CLI, the batch tool, the add-on, the engine and its requests, the
    service and the clients."""
    import dataclasses
    import inspect

    from backend.cli import build_parser
    from backend.engine import Blend, Chain, Engine, Generate
    from backend.inference import Pipeline
    from backend.service.schemas import BlendRequest, ChainRequest, GenerateRequest
    from blender_att3d import choices
    from blender_att3d.batch import parser as batch_parser
    from blender_att3d.client.base import Client
    from blender_att3d.client.embedded import EmbeddedClient
    from blender_att3d.client.http import HTTPClient
    from blender_att3d.wire.limits import DEFAULT_RESOLUTION

    assert DEFAULT_RESOLUTION == choices.DEFAULT_RESOLUTION == 128
    p = build_parser()
    for argv in (["generate", "a", "--out", "a.glb"], ["interpolate", "a", "b", "--out", "seq"], ["demo"]):
        assert p.parse_args(argv).resolution == 128, argv
    assert batch_parser().parse_args(["--out", "a.blend"]).resolution == 128
    for cls in (Engine, Client, EmbeddedClient, HTTPClient):
        for name in ("generate", "blend", "chain"):
            assert inspect.signature(getattr(cls, name)).parameters["resolution"].default == 128, (cls, name)
    for name in ("mesh", "chain"):
        assert inspect.signature(getattr(Pipeline, name)).parameters["resolution"].default == 128, name
    for req in (Generate, Blend, Chain):
        assert {f.name: f.default for f in dataclasses.fields(req)}["resolution"] == 128, req
    for model in (GenerateRequest, BlendRequest, ChainRequest):
        assert model.model_fields["resolution"].default == 128, model
