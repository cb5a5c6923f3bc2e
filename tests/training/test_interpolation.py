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


WORLDISH = ["a red cube", "a blue cube", "a red cube with blue ears", "a green cone", "a tree in the winter",
            "a tree in the summer"]


def make_random_pair_trainer(tmp_path, batch=40, **interpolation):
    cfg = tiny_config(run={"mode": "interpolation", "batch_size": batch}, prompts={"list": WORLDISH},
                      model={"text_encoder": "guidance"},
                      interpolation={"target": "latent", "random_pairs": True, "kappa": [[1e9, 2.0]], **interpolation})
    return Trainer(cfg, tmp_path, guidance=FakeGuidance(), progress=False)


def test_endpoint_share_trains_plain_prompts(tmp_path):
    """Beta(κ, κ) never draws an endpoint; endpoint_share puts that share of the batch at α ∈ {0, 1}."""
    plain = make_random_pair_trainer(tmp_path / "a").batch().alpha
    assert ((plain > 0) & (plain < 1)).all()
    b = make_random_pair_trainer(tmp_path / "b", endpoint_share=0.5).batch()
    ends, rest = b.alpha[:20], b.alpha[20:]
    assert set(ends.tolist()) == {0.0, 1.0} and ((rest > 0) & (rest < 1)).all()
    t = make_random_pair_trainer(tmp_path / "c", endpoint_share=0.5)
    b = t.batch()
    i1 = [t.mode.index[p.split(" → ")[0]] for p in b.prompts]
    i2 = [t.mode.index[p.split(" → ")[1]] for p in b.prompts]
    for k in range(20):  # an endpoint row is exactly its prompt's mapping input
        want = t.mode.tokens[i2[k] if b.alpha[k] == 1 else i1[k]]
        assert torch.equal(b.tokens[k], want)


def test_nearest_partners_are_the_nearest_by_embedding(tmp_path):
    from training.modes.interpolation import nearest_partners

    t = make_random_pair_trainer(tmp_path, partners="nearest", neighbours=1)
    table = nearest_partners(t.mode.tokens, t.mode.mask, 1)[:, 0]
    for label in t.batch().prompts:
        a, b = label.split(" → ")
        assert t.mode.prompts[int(table[t.mode.index[a]])] == b
    # the table: each prompt's most similar other prompt by mask-averaged embedding
    m = t.mode.mask.float().unsqueeze(-1)
    pooled = torch.nn.functional.normalize((t.mode.tokens * m).sum(1) / m.sum(1), dim=-1)
    sim = pooled @ pooled.T
    sim.fill_diagonal_(-2)
    assert torch.equal(table, sim.argmax(1))


def test_focus_share_draws_from_the_focus_prompts(tmp_path):
    cfg = tiny_config(run={"batch_size": 40}, prompts={"list": WORLDISH, "focus": ["tree"], "focus_share": 0.25},
                      model={"text_encoder": "guidance"})
    b = Trainer(cfg, tmp_path, guidance=FakeGuidance(), progress=False).batch()
    rows = torch.linspace(0, 39, 10).round().long().tolist()  # spread over the batch: first and last among them
    assert rows[0] == 0 and rows[-1] == 39
    assert all("tree" in b.prompts[k] for k in rows)
    others = [p for k, p in enumerate(b.prompts) if k not in rows]
    assert sum("tree" in p for p in others) < 22  # the rest: all prompts, about a third trees
    with pytest.raises(ValueError, match="focus_share"):
        tiny_config(prompts={"focus_share": 0.5}).validate()


def test_anchor_term_holds_the_modulations(tmp_path):
    """λ · mean((m(c) − m₀(c))²) / mean(m₀(c)²) over the pair prompts: 0 at the start, growing as the
    mapping network moves, and it pulls back (its gradient points to the start)."""
    t = make_random_pair_trainer(tmp_path, anchor=2.0)
    b = t.batch()
    terms = t.mode.anchor_terms(b, t.model.modulate)
    # (not exactly 0: spectral norm's power iteration moves on in training mode, not in the frozen copy)
    assert float(terms["anchor"].detach()) < 1e-5
    with torch.no_grad():
        for p in t.model.mapping.parameters():
            p.add_(0.01 * torch.randn_like(p))
    moved = t.mode.anchor_terms(b, t.model.modulate)["anchor"]
    assert float(moved.detach()) > 1e-3
    # the loop adds it to the loss (a guidance that can take a step: reconstruction)
    cfg = tiny_config(run={"mode": "interpolation", "batch_size": 4}, interpolation={"random_pairs": True,
                                                                                      "anchor": 2.0})
    r = Trainer(cfg, tmp_path / "r", progress=False)
    r.train_step()
    r.train_step()
    assert "anchor" in r.last_terms and r.last_terms["anchor"] > 0
