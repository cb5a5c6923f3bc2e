"""The shipped demo model: loads, generates closed meshes whose colour matches the prompt (a real
quality check on a handful of seen prompts: it fails if the shipped weights regress)."""
import json

import numpy as np
import pytest

from backend.model import SHIPPED_DIR
from training.shapes.world import COLORS, get_world

DEMO = SHIPPED_DIR / "demo"
pytestmark = pytest.mark.skipif(not (DEMO / "model.safetensors").is_file(), reason="demo model not shipped yet")


@pytest.fixture(scope="module")
def pipe():
    from backend.inference import Pipeline

    return Pipeline("demo", device="cpu")


@pytest.fixture(scope="module")
def config():
    return json.loads((DEMO / "config.json").read_text())


def test_size_and_provenance(config):
    total = sum(f.stat().st_size for f in SHIPPED_DIR.rglob("*") if f.is_file())
    assert total <= 32 * 2 ** 20
    sh = config["provenance"]["shapes"]
    world = get_world()
    assert sh["world_prompt_hash"] == world.prompt_hash
    assert sh["split"] in ("12.5%", "50%")
    if sh.get("soup"):  # a mean of runs (training/soup.py): each recorded by name, weights hash and training
        assert len(sh["soup"]) >= 2 and sh["steps"] is None
        for run in sh["soup"]:
            assert run["name"] and len(run["sha256"]) == 64 and run["weight"] > 0 and run["steps"] > 0
    else:
        assert sh["steps"] > 0 and sh["frames_per_prompt"] > 0
    assert sh["guidance"]["loss"] == "SDS only" and sh["guidance"]["scale"] > 0


def _seen_plain_prompts(config, n=4):
    """Seen prompts without accessories (their colour is the whole object's), spread over colours."""
    world = get_world()
    seen = world.split(config["provenance"]["shapes"]["split_fraction"])["seen"]
    out, colors = [], set()
    for i in seen:
        p = world.prompts[i]
        if p.accessory in ("none", "ring", "ears") and p.color not in colors and p.color != "black":
            out.append(p)
            colors.add(p.color)
    return out[:n]


@pytest.mark.slow
def test_generates_closed_meshes_of_the_right_colour(pipe, config):
    import trimesh

    from backend.engine import Engine

    prompts = _seen_plain_prompts(config)
    assert len(prompts) >= 3
    right = 0
    for p in prompts:
        mesh = Engine(pipe).generate(p.text, resolution=48)
        tm = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
        assert len(mesh.faces) > 100 and tm.is_watertight and tm.volume > 0, p.text
        assert np.abs(mesh.positions).max() < 1.0
        # the main colour of the mesh (median vertex colour) is nearer the prompt's colour than any other
        med = np.median(mesh.colors, axis=0)
        names = list(COLORS)
        d = [np.abs(med - np.array(COLORS[c])).sum() for c in names]
        right += names[int(np.argmin(d))] == p.color
    assert right >= len(prompts) - 1, f"only {right}/{len(prompts)} meshes have their prompt's colour"


@pytest.mark.slow
def test_att3d_demo_writes_the_default_prompt_as_glb_and_preview(tmp_path):
    """What `make demo` runs: "a red cube wearing a blue party hat" (a prompt it never trained on)."""
    from PIL import Image

    from backend.cli import main

    assert main(["--quiet", "demo", "--out", str(tmp_path), "--resolution", "64", "--device", "cpu"]) == 0
    from gltf_check import first_primitive

    from blender_att3d.colors import linear_to_srgb

    prim = first_primitive(tmp_path / "demo.glb")
    rgb = linear_to_srgb(prim["COLOR_0"][:, :3])  # COLOR_0 is linear: back to display values
    red = (rgb[:, 0] > 0.5) & (rgb[:, 1] < 0.35) & (rgb[:, 2] < 0.35)
    blue = (rgb[:, 2] > 0.5) & (rgb[:, 0] < 0.35)
    assert red.mean() > 0.3 and blue.mean() > 0.02, (red.mean(), blue.mean())
    # the hat is on top: blue vertices sit above the red body (glTF is Y-up)
    y = prim["POSITION"][:, 1]
    assert np.median(y[blue]) > np.median(y[red])
    assert Image.open(tmp_path / "demo.png").size[0] >= 256
    _check_seasons_glb(tmp_path / "seasons.glb")


def _check_seasons_glb(path):
    """`make demo`'s second file: the tree through the four seasons, one keyframe piece per season with
    morph targets between them, timed (2 s per change), each piece the colours of its season."""
    from gltf_check import assert_valid, glb_json, read_accessor

    from blender_att3d.colors import linear_to_srgb

    assert_valid(path)
    gltf = glb_json(path)
    assert len(gltf["meshes"]) == 4 and all(m["primitives"][0].get("targets") for m in gltf["meshes"])
    times = [read_accessor(path, gltf, s["input"]).max() for s in gltf["animations"][0]["samplers"]]
    assert max(times) == pytest.approx(6.0)  # three changes of season, 2 s each
    med = [np.median(linear_to_srgb(read_accessor(path, gltf, m["primitives"][0]["attributes"]["COLOR_0"])[:, :3]),
                     axis=0) for m in gltf["meshes"]]
    spring, summer, fall, winter = med
    assert summer[1] > summer[0] and summer[1] > summer[2]  # green leaves
    assert fall[0] > fall[1] + 0.2 and fall[0] > fall[2] + 0.3  # orange-red
    chroma = [float(c.max() - c.min()) for c in med]
    assert chroma[3] < min(chroma[:3])  # winter: bare grey-brown under white snow, the least colourful
    assert spring[1] > spring[2]  # pale green (with pink blossom)
