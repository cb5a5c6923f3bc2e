"""The shipped teacher (training/shapes/weights/teacher): it loads where the demo's SDS loads it, and
its samples show the asked-for object (a real quality check: it fails if the shipped weights regress)."""
import json

import numpy as np
import pytest
import torch

from training.shapes import teacher as T
from training.shapes.world import COLORS, get_world, view_caption

PROMPTS = ["a red sphere", "a blue cube", "a green cone", "a yellow torus", "a purple cylinder", "a orange capsule"]


def test_shipped_teacher_metadata_and_size():
    folder = T.resolve_teacher("shipped")
    meta = json.loads((folder / T.TEACHER_JSON).read_text())
    assert meta["world_prompt_hash"] == get_world().prompt_hash  # trained on this very world
    assert meta["prediction_type"] == "v_prediction" and meta["image_size"] == 32
    assert not (folder / "checkpoint").exists()
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total < 6 * 2 ** 20  # fp16, no optimizer state
    report = json.loads((folder / "report.json").read_text())
    assert report["steps_trained"] == meta["steps"] and report["accuracy"] >= 0.8


@pytest.mark.slow
def test_shipped_teacher_draws_the_prompt_on_white():
    from backend.text_encoder import TextEncoder
    from training.guidance import GuidanceConfig, build_guidance

    g = build_guidance(GuidanceConfig(kind="pixel", model=str(T.SHIPPED_TEACHER), scale=5.0))
    assert g.prediction_type == "v_prediction" and g.image_size == 32
    unet, _, meta = T.load_teacher("shipped")
    enc = TextEncoder("minilm", 32)
    tokens = enc._encode([view_caption(p, "front") for p in PROMPTS]).tokens
    img = T.sample(unet, tokens, enc._encode([""]).tokens, guidance=1.0, steps=25, seed=0,
                   cfg=T.config_from_dict(meta["training"]), eta=1.0)
    names = [c for c in COLORS if c != "black"]
    for p, im in zip(PROMPTS, img):
        border = torch.cat([im[:, :2].reshape(3, -1), im[:, -2:].reshape(3, -1)], 1)
        assert border.mean() > 0.9, f"{p}: background not white ({border.mean():.2f})"
        fg = (1 - im).amax(0) > 0.3  # pixels clearly not white
        frac = float(fg.float().mean())
        assert 0.05 < frac < 0.6, f"{p}: object covers {frac:.0%} of the image"
        med = im[:, fg].median(dim=1).values.numpy()
        # compare chromaticity (colour / its brightest channel): shading darkens a lit render
        d = [np.abs(med / med.max() - np.array(COLORS[c]) / max(COLORS[c])).sum() for c in names]
        assert names[int(np.argmin(d))] == p.split()[1], f"{p}: drawn {names[int(np.argmin(d))]} ({med.round(2)})"


@pytest.mark.slow
def test_teacher_report_on_a_subset_of_the_world(tmp_path):
    """``teacher_report(prompts=…)``: asks and matches within a subset (its gallery is rendered, not
    cached); the shipped teacher finds most of eight distinct prompts, and the files say so."""
    from PIL import Image

    world = get_world()
    texts = ["a red sphere", "a blue cube wearing a yellow party hat", "a green cone on a black plate",
             "a yellow torus with pink ears", "a purple cylinder with a red ring around it", "a pink capsule",
             "an orange pyramid with a green ball on top", "a black diamond"]
    idx = [world.index(t) for t in texts]
    rep = T.teacher_report("shipped", tmp_path / "r", n_prompts=8, samples_per_prompt=1, grid_prompts=4, steps=20,
                           data_dir=tmp_path / "data", progress=False, prompts=idx)
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").glob("report_views_*"))  # not cached
    assert rep["n_prompts"] == 8 and len(rep["per_sample"]) == 8 and "8 prompts" in rep["gallery"]
    assert {s["nearest"] for s in rep["per_sample"]} <= set(texts)  # matched within the subset only
    assert rep["gt_ceiling"] >= 0.75 and rep["accuracy"] >= 0.75, rep["per_sample"]
    assert json.loads((tmp_path / "r" / "report.json").read_text())["accuracy"] == rep["accuracy"]
    assert Image.open(tmp_path / "r" / "samples.png").size == (2 * 32 * 4, 4 * 32 * 4)  # sample + GT, 4 rows
