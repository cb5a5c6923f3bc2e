"""The three interpolation targets of App. B.1.14 (Eq. 8, 10, 11) and view-augmented guidance prompts."""
from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import tiny_config

from backend.text_encoder import TextEmbedding
from training.guidance import DiffusionGuidance, GuidanceConfig
from training.loop import Trainer
from training.modes.interpolation import kappa_at


class FakeEncoder:
    """Deterministic pseudo-embeddings: a prompt → [L, D] filled from its hash."""

    encoder_id, dim, max_length, clip_skip = "fake", 4, 3, 0

    def __init__(self):
        self.seen = []

    def release(self):
        pass

    def __call__(self, prompts):
        self.seen += list(prompts)
        rows = []
        for p in prompts:
            g = torch.Generator().manual_seed(int(hashlib.sha256(p.encode()).hexdigest()[:8], 16))
            rows.append(torch.randn(self.max_length, self.dim, generator=g))
        return TextEmbedding(torch.stack(rows), torch.ones(len(prompts), self.max_length, dtype=torch.bool))


class FakeGuidance(DiffusionGuidance):
    def __init__(self):
        super().__init__(GuidanceConfig(kind="pixel"), "cpu", FakeEncoder())


PAIRS = [["a pig made out of gold", "a pig carved out of wood"]]


def make_trainer(tmp_path, target, batch=64):
    cfg = tiny_config(run={"mode": "interpolation", "batch_size": batch},
                      prompts={"list": PAIRS[0]}, model={"text_encoder": "guidance"},
                      interpolation={"target": target, "pairs": PAIRS, "scale1": 100.0, "scale2": 50.0,
                                     "kappa": [[10, 0.5]]})
    return Trainer(cfg, tmp_path, guidance=FakeGuidance(), progress=False)


def embeddings(t, prompts, views):
    return t.guidance.embed([f"{p}, {v} view" for p, v in zip(prompts, views)])


@pytest.mark.parametrize("target", ["latent", "loss", "guidance"])
def test_mapping_input_is_the_interpolated_embedding(tmp_path, target):
    t = make_trainer(tmp_path, target)
    b = t.batch()
    a = b.alpha.view(-1, 1, 1)
    c1, c2 = t.mode.tokens[t.mode.index[PAIRS[0][0]]], t.mode.tokens[t.mode.index[PAIRS[0][1]]]
    assert torch.allclose(b.tokens, (1 - a) * c1 + a * c2, atol=1e-6)
    assert 0 <= b.alpha.min() and b.alpha.max() <= 1
    # view augmentation goes to the guidance prompt only, never to the mapping input
    assert not any(" view" in p for p in t.mode.prompts)
    assert all(p.endswith(" view") for p in t.guidance._emb if p)


def test_latent_interpolation_guides_with_the_interpolated_embedding(tmp_path):
    t = make_trainer(tmp_path, "latent")
    b = t.batch()
    n = len(b.views)
    e1 = embeddings(t, [PAIRS[0][0]] * n, b.views)
    e2 = embeddings(t, [PAIRS[0][1]] * n, b.views)
    a = b.alpha.view(-1, 1, 1)
    assert len(b.conds) == 1 and b.weights is None
    assert torch.allclose(b.conds[0], (1 - a) * e1 + a * e2, atol=1e-6)


def test_loss_interpolation_picks_prompt_two_with_probability_alpha(tmp_path):
    t = make_trainer(tmp_path, "loss", batch=400)
    b = t.batch()
    n = len(b.views)
    e1 = embeddings(t, [PAIRS[0][0]] * n, b.views)
    e2 = embeddings(t, [PAIRS[0][1]] * n, b.views)
    z = b.z
    for i in range(n):
        assert torch.equal(b.conds[0][i], (e2 if z[i] else e1)[i])
    # Z ~ Bern(α): the frequency of prompt 2 follows α
    alpha = b.alpha
    hi, lo = alpha > 0.8, alpha < 0.2
    assert z[hi].float().mean() > 0.8 and z[lo].float().mean() < 0.2
    assert abs(z.float().mean() - alpha.mean()) < 0.08


def test_guidance_interpolation_weights_follow_eq11(tmp_path):
    t = make_trainer(tmp_path, "guidance")
    b = t.batch()
    n = len(b.views)
    assert len(b.conds) == 2
    assert torch.equal(b.conds[0], embeddings(t, [PAIRS[0][0]] * n, b.views))
    assert torch.equal(b.conds[1], embeddings(t, [PAIRS[0][1]] * n, b.views))
    w1, w2 = b.weights
    assert torch.allclose(w1, (1 - b.alpha) * 100.0) and torch.allclose(w2, b.alpha * 50.0)


def test_kappa_shapes_alpha(tmp_path):
    t = make_trainer(tmp_path, "latent", batch=2000)
    small = t.batch().alpha  # κ = 0.5: mass near the endpoints
    t.config.interpolation.kappa = [[1e9, 20.0]]
    big = t.batch().alpha  # κ = 20: concentrated at the midpoint
    assert ((small - 0.5).abs() > 0.4).float().mean() > 0.3
    assert ((big - 0.5).abs() < 0.15).float().mean() > 0.8


def test_amortized_batch_view_prompts_reach_the_guidance_only(tmp_path):
    """Amortized step: the mapping network reads the plain prompt's tokens; the guidance reads the
    prompt + ", <view> view" of each sampled camera. Adam defaults to β1 = 0 (App. B.1.10)."""
    prompts = ["a red cube", "a blue sphere", "a green cone"]
    cfg = tiny_config(run={"batch_size": 16}, prompts={"list": prompts}, model={"text_encoder": "guidance"})
    t = Trainer(cfg, tmp_path, guidance=FakeGuidance(), progress=False)
    assert t.optimizer.param_groups[0]["betas"] == (0.0, 0.999)
    b = t.batch()
    plain = FakeEncoder()(b.prompts).tokens
    assert torch.equal(b.tokens, plain)
    assert set(b.views) <= {"front", "side", "back", "overhead"} and len(set(b.views)) > 1
    assert torch.equal(b.conds[0], embeddings(t, b.prompts, b.views))
    assert not torch.equal(b.conds[0], plain)
    t.config.guidance.view_prompts = False
    b = t.batch()
    assert b.views == [None] * 16 and torch.equal(b.conds[0], FakeEncoder()(b.prompts).tokens)


def test_kappa_schedule():
    sched = [[5000, 2.0], [1e12, 0.5]]
    assert kappa_at(sched, 0) == 2.0 and kappa_at(sched, 5000) == 2.0 and kappa_at(sched, 5001) == 0.5
