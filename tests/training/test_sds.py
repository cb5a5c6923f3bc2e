"""SDS and classifier-free guidance on hand-checkable cases (a stub UNet with known ε)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from training.guidance import (GuidanceConfig, LatentDiffusionGuidance, PixelDiffusionGuidance, cfg, sds_loss,
                               tiny_scheduler, view_prompt)


class StubUNet(torch.nn.Module):
    """ε(x_t, t, c) = c[:, 0, 0] everywhere (6 channels, IF-like: only the first 3 are ε)."""

    def __init__(self, size=8, channels=3, nan=False):
        super().__init__()
        self.config = SimpleNamespace(sample_size=size, encoder_hid_dim=None, cross_attention_dim=4,
                                      in_channels=channels)
        self.nan = nan
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, encoder_hidden_states):
        b, _, h, w = x.shape
        val = encoder_hidden_states[:, 0, 0].view(b, 1, 1, 1)
        out = val.expand(b, 6, h, w).clone()
        out[:, 3:] = 1e6  # the variance channels must be ignored
        if self.nan:
            out[:, :, 0, 0] = float("nan")
        return SimpleNamespace(sample=out)


def emb(value, b=1):
    return torch.full((b, 2, 4), float(value))


def make(stub=None, **kw):
    return PixelDiffusionGuidance(GuidanceConfig(kind="pixel", **kw), "cpu", unet=stub or StubUNet(),
                                  scheduler=tiny_scheduler(), encoder=None)


def test_cfg_formula():
    eu, ec = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.allclose(cfg(eu, [ec], [7.5]), eu + 7.5 * (ec - eu))
    s = torch.tensor([1.0, 100.0])
    out = cfg(eu, [ec], [s])
    assert torch.allclose(out[0], ec[0]) and torch.allclose(out[1], eu[1] + 100 * (ec[1] - eu[1]))


def test_guidance_interpolation_eq11():
    """ε̂ = ε_u + (1−α)ω1(ε_1 − ε_u) + αω2(ε_2 − ε_u): CFG on prompt 1 at α=0, on prompt 2 at α=1."""
    eu, e1, e2 = (torch.randn(3, 3, 4, 4) for _ in range(3))
    alpha = torch.tensor([0.0, 1.0, 0.25])
    w1, w2 = 100.0, 50.0
    out = cfg(eu, [e1, e2], [(1 - alpha) * w1, alpha * w2])
    assert torch.allclose(out[0], eu[0] + w1 * (e1[0] - eu[0]), atol=1e-4)
    assert torch.allclose(out[1], eu[1] + w2 * (e2[1] - eu[1]), atol=1e-4)
    assert torch.allclose(out[2], eu[2] + 0.75 * w1 * (e1[2] - eu[2]) + 0.25 * w2 * (e2[2] - eu[2]), atol=1e-4)


def test_sds_gradient_is_w_times_eps_hat_minus_eps():
    g = make(scale=100.0)
    b = 2
    images = torch.rand(b, 3, 8, 8, requires_grad=True)
    t = torch.tensor([100, 700])
    noise = torch.randn(b, 3, 8, 8)
    out = g(images, [emb(0.3, b)], uncond=emb(0.1, b), t=t, noise=noise)
    eps_hat = 0.1 + 100 * (0.3 - 0.1)
    w = 1 - tiny_scheduler().alphas_cumprod[t]
    expected = w.view(b, 1, 1, 1) * (eps_hat - noise)
    assert torch.allclose(out.w, w)
    assert torch.allclose(out.grad, expected, atol=1e-4)
    out.loss.backward()
    # x = 2·img − 1 at the model's size: ∂loss/∂img = 2 · grad / B
    assert torch.allclose(images.grad, 2 * expected / b, atol=1e-4)
    assert out.loss.item() == pytest.approx(0.5 * (expected ** 2).sum().item() / b, rel=1e-4)


def test_sds_loss_normalisation():
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    grad = torch.randn(4, 3, 5, 5)
    sds_loss(x, grad).backward()
    assert torch.allclose(x.grad, grad / 4)


def test_weighting_and_timestep_range():
    g = make(t_min=0.02, t_max=0.98, weighting="uniform")
    t = g.sample_t(5000, torch.Generator().manual_seed(0))
    assert t.min() >= 20 and t.max() <= 980 and t.max() > 950 and t.min() < 50
    out = g(torch.rand(1, 3, 8, 8), [emb(1.0)], uncond=emb(0.0), t=torch.tensor([500]), noise=torch.zeros(1, 3, 8, 8))
    assert torch.allclose(out.grad, torch.full_like(out.grad, 100.0))  # w = 1, ε̂ = 0 + 100·1
    with pytest.raises(ValueError, match="weighting"):
        make(weighting="bogus")
    with pytest.raises(ValueError, match="t_min"):
        make(t_min=0.9, t_max=0.1)


def test_grad_clip_and_nonfinite_are_caught():
    g = make(stub=StubUNet(nan=True), grad_clip=0.5)
    images = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = g(images, [emb(1.0)], uncond=emb(0.0), generator=torch.Generator().manual_seed(0))
    assert out.nonfinite == 3  # pixel (0, 0) of the 3 ε channels
    assert torch.isfinite(out.grad).all() and out.grad.abs().max() <= 0.5
    assert torch.isfinite(out.loss)


def test_render_is_resized_to_the_model_size():
    g = make()
    images = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = g(images, [emb(1.0)], uncond=emb(0.0), generator=torch.Generator().manual_seed(0))
    assert out.grad.shape == (1, 3, 8, 8)
    out.loss.backward()
    assert images.grad.shape == (1, 3, 16, 16) and images.grad.abs().sum() > 0


def test_latent_guidance_without_vae_resizes_to_latents():
    stub = StubUNet(size=4)
    g = LatentDiffusionGuidance(GuidanceConfig(kind="latent", use_vae=False), "cpu", unet=stub,
                                scheduler=tiny_scheduler(), encoder=None)
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = g(images, [emb(1.0, 2)], uncond=emb(0.0, 2), generator=torch.Generator().manual_seed(0))
    assert out.grad.shape == (2, 3, 4, 4)
    out.loss.backward()
    assert images.grad.abs().sum() > 0


def test_view_prompt():
    assert view_prompt("a cat", "front") == "a cat, front view"
    assert view_prompt("a cat", None) == "a cat"
