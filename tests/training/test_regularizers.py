"""Surface priors, random interpolation pairs, time-limited runs and the annealed SDS timestep."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import PROMPTS, tiny_config

from backend.mapping_network import Modulation
from backend.model import build_model, load_model
from training.config import config_from_dict
from training.guidance import GuidanceConfig
from training.guidance.tiny import tiny_pixel_guidance
from training.loop import Trainer
from training.modes.interpolation import Interpolation
from training.prompts import PromptSet
from training.regularizers import RegularizerConfig, grid_total_variation, regularizer_terms
from training.train import train


def test_grid_tv_is_zero_for_constant_grids_and_grows_with_noise():
    model = build_model(tiny_config().model)
    pe = model.point_encoder
    flat = Modulation(torch.full((2, pe.n_params), 0.3), torch.zeros(2, 4))
    assert grid_total_variation(pe, flat) == 0
    g = torch.Generator().manual_seed(0)
    small = Modulation(0.1 * torch.randn(2, pe.n_params, generator=g), torch.zeros(2, 4))
    big = Modulation(10 * small.params, small.v)
    assert 0 < grid_total_variation(pe, small) < grid_total_variation(pe, big)
    assert grid_total_variation(pe, big) == pytest.approx(100 * float(grid_total_variation(pe, small)), rel=1e-4)


def test_terms_are_weighted_and_only_those_that_are_on():
    model = build_model(tiny_config().model)
    mod = Modulation(torch.randn(2, model.point_encoder.n_params), torch.zeros(2, 4))
    opacity, dist = torch.full((2, 1, 4, 4), 0.5), torch.full((2, 1, 4, 4), 0.02)
    terms = regularizer_terms(RegularizerConfig(distortion=100, opacity=2), model.point_encoder, mod, opacity, dist)
    assert set(terms) == {"distortion", "opacity"}
    assert float(terms["distortion"]) == pytest.approx(2.0) and float(terms["opacity"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="with_distortion"):
        regularizer_terms(RegularizerConfig(distortion=1), model.point_encoder, mod, opacity, None)
    with pytest.raises(ValueError, match="regularizers.grid_tv must be"):
        tiny_config(regularizers={"grid_tv": -1.0})


def test_a_regularised_run_logs_its_terms_and_the_distortion_pulls_density_together(tmp_path):
    cfg = tiny_config(run={"steps": 4}, regularizers={"distortion": 10.0, "grid_tv": 0.5, "opacity": 0.1})
    r = train(cfg, tmp_path / "run", progress=False)
    assert r.stopped == "done" and r.model_dir is not None
    rec = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert rec["reg_distortion"] > 0 and rec["reg_grid_tv"] > 0 and rec["reg_opacity"] > 0
    # the distortion term's gradient alone makes a fresh model's soft blob less spread along the rays
    t = Trainer(tiny_config(regularizers={"distortion": 1.0}), tmp_path / "t", progress=False)
    b = t.batch()
    opt = torch.optim.Adam(t.model.parameters(), lr=3e-2)
    values = []
    for _ in range(6):
        opt.zero_grad()
        _, _, terms = t.step_module(b.tokens, b.mask, b.cams, torch.Generator().manual_seed(1))
        terms["distortion"].backward()
        opt.step()
        values.append(float(terms["distortion"].detach()))
    assert all(b < a for a, b in zip(values, values[1:])) and values[-1] < 0.9 * values[0], values


def test_random_pairs_draw_two_different_prompts_from_the_whole_set(tmp_path):
    cfg = tiny_config(run={"mode": "interpolation", "batch_size": 64},
                      interpolation={"random_pairs": True, "target": "loss"})
    mode = Interpolation(cfg, PromptSet("test", list(PROMPTS)))
    assert mode.n_items == len(PROMPTS) and mode.pairs == []
    pairs = mode.draw_pairs(torch.randint(0, len(mode.shard), (400,), generator=torch.Generator().manual_seed(0)),
                            torch.Generator().manual_seed(1))
    assert all(a != b for a, b in pairs)
    assert {(a, b) for a, b in pairs} == {(a, b) for a in PROMPTS for b in PROMPTS if a != b}
    r = train(tiny_config(run={"mode": "interpolation", "steps": 3}, interpolation={"random_pairs": True}),
              tmp_path / "run", progress=False)
    assert r.frames_per_prompt == pytest.approx(3 * 2 / len(PROMPTS))
    with pytest.raises(ValueError, match="either pairs or random_pairs"):
        Interpolation(tiny_config(run={"mode": "interpolation"},
                                  interpolation={"random_pairs": True, "pairs": [PROMPTS[:2]]}),
                      PromptSet("test", list(PROMPTS)))


def test_time_limit_finishes_like_a_done_run_and_resume_goes_on(tmp_path):
    cfg = tiny_config(run={"steps": 1000, "time_limit_s": 1e-9, "checkpoint_every": 0})
    r = train(cfg, tmp_path / "run", progress=False)
    assert r.stopped == "time" and r.step == 1 and r.model_dir is not None
    load_model(r.model_dir)
    r2 = train(tiny_config(run={"steps": 3}), tmp_path / "run", progress=False, resume=True)
    assert r2.step == 3 and r2.stopped == "done"
    with pytest.raises(ValueError, match="time_limit_s"):
        tiny_config(run={"time_limit_s": -1.0})


def test_annealed_t_max_goes_from_t_max_to_t_max_end():
    g = tiny_pixel_guidance(GuidanceConfig(kind="tiny-pixel", image_size=8, t_max_end=0.5, t_anneal_steps=100))
    assert g.t_range(0) == (0.02, 0.98) and g.t_range(50) == pytest.approx((0.02, 0.74))
    assert g.t_range(100) == pytest.approx((0.02, 0.5)) and g.t_range(10_000) == pytest.approx((0.02, 0.5))
    g.step = 100
    t = g.sample_t(2000, torch.Generator().manual_seed(0))
    assert int(t.max()) <= 501 and int(t.min()) >= 20
    with pytest.raises(ValueError, match="t_anneal_steps"):
        tiny_pixel_guidance(GuidanceConfig(kind="tiny-pixel", image_size=8, t_max_end=0.5))
    assert config_from_dict({"guidance": {"t_max_end": 0.4, "t_anneal_steps": 10}}).guidance.t_max_end == 0.4
