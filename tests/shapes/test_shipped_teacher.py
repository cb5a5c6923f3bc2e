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


def test_shipped_teacher_draws_the_prompt_on_white():
    from backend.text_encoder import TextEncoder
    from training.guidance import GuidanceConfig, build_guidance

    g = build_guidance(GuidanceConfig(kind="pixel", model=str(T.SHIPPED_TEACHER), scale=5.0))
    assert g.prediction_type == "v_prediction" and g.image_size == 32
    unet, _, meta = T.load_teacher("shipped")
    enc = TextEncoder("minilm", 32)
    tokens = enc._encode([view_caption(p, "front") for p in PROMPTS]).tokens
    img = T.sample(unet, tokens, enc._encode([""]).tokens, guidance=1.0, steps=25, seed=0,
                   cfg=T._cfg_from_dict(meta["training"]), eta=1.0)
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
