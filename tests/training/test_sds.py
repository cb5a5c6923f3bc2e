"""SDS and classifier-free guidance on hand-checkable cases (a stub UNet with known ε)."""
from __future__ import annotations

import typing
from types import SimpleNamespace

import pytest
import torch

from training.guidance import (
    GuidanceConfig,
    LatentDiffusionGuidance,
    PixelDiffusionGuidance,
    cfg,
    pick_dtype,
    sds_loss,
    tiny_scheduler,
    view_prompt,
)


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
    gen = torch.Generator().manual_seed(0)
    eu, ec = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    assert torch.allclose(cfg(eu, [ec], [7.5]), eu + 7.5 * (ec - eu))
    s = torch.tensor([1.0, 100.0])
    out = cfg(eu, [ec], [s])
    assert torch.allclose(out[0], ec[0], atol=1e-5) and torch.allclose(out[1], eu[1] + 100 * (ec[1] - eu[1]), atol=1e-5)


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


class LinearVAE(torch.nn.Module):
    """A stand-in VAE whose encoder is a known affine map of the mean colour (a 1×1 "convolution")."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))  # [C, 3]
        self.bias = torch.nn.Parameter(torch.as_tensor(bias, dtype=torch.float32))  # [C]
        self.config = SimpleNamespace(scaling_factor=0.5, block_out_channels=(8, 8, 8, 8))

    def encode(self, x):
        mean = torch.einsum("bchw,dc->bdhw", x, self.weight) + self.bias.view(1, -1, 1, 1)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean))


def test_latent_guidance_without_vae_fits_a_linear_map_to_the_vae():
    """use_vae = false on a 4-channel (Stable Diffusion) UNet: a linear RGB → latent map is fitted once to
    the pipeline's VAE; per step the render goes through that map, not the VAE."""
    weight = torch.tensor([[0.3, 0.2, -0.1], [0.1, 0.5, 0.2], [-0.3, 0.1, 0.3], [-0.2, -0.3, -0.7]])
    bias = torch.tensor([0.1, -0.2, 0.05, 0.3])
    vae = LinearVAE(weight, bias)
    g = LatentDiffusionGuidance(GuidanceConfig(kind="latent", use_vae=False), "cpu", unet=StubUNet(size=4, channels=4),
                                scheduler=tiny_scheduler(), encoder=None, vae=vae)
    assert g.vae is None  # not used per step
    images = torch.rand(2, 3, 4, 4, requires_grad=True)
    x = g.encode_images(images)
    assert x.shape == (2, 4, 4, 4)
    expected = (torch.einsum("bchw,dc->bdhw", images * 2 - 1, weight) + bias.view(1, -1, 1, 1)) * 0.5
    assert torch.allclose(x, expected, atol=1e-4)
    out = g(images, [emb(1.0, 2)], uncond=emb(0.0, 2), generator=torch.Generator().manual_seed(0))
    assert out.grad.shape == (2, 4, 4, 4)
    out.loss.backward()
    assert images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs the pipeline's vae"):
        LatentDiffusionGuidance(GuidanceConfig(kind="latent", use_vae=False), "cpu", unet=StubUNet(size=4, channels=4),
                                scheduler=tiny_scheduler(), encoder=None)
    with pytest.raises(ValueError, match="input channels"):
        LatentDiffusionGuidance(GuidanceConfig(kind="latent", use_vae=False), "cpu", unet=StubUNet(size=4, channels=8),
                                scheduler=tiny_scheduler(), encoder=None)
    with pytest.raises(ValueError, match="needs a VAE"):
        LatentDiffusionGuidance(GuidanceConfig(kind="latent", use_vae=True), "cpu", unet=StubUNet(size=4, channels=4),
                                scheduler=tiny_scheduler(), encoder=None)


@pytest.mark.parametrize("kind", ["v_prediction", "sample"])
def test_v_and_x0_predictions_are_converted_to_epsilon(kind):
    """A v-prediction UNet (SD 2.x 768-v) or an x0 one: SDS still uses w(t)(ε̂ − ε) with ε̂ in ε-space."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=kind)
    g = PixelDiffusionGuidance(GuidanceConfig(kind="pixel", scale=10.0), "cpu", unet=StubUNet(), scheduler=sched,
                               encoder=None)
    assert g.prediction_type == kind
    b, t = 2, torch.tensor([200, 800])
    images, noise = torch.rand(b, 3, 8, 8), torch.randn(b, 3, 8, 8)
    out = g(images, [emb(0.3, b)], uncond=emb(0.1, b), t=t, noise=noise)
    a = sched.alphas_cumprod[t].view(b, 1, 1, 1)
    x_t = a.sqrt() * (images * 2 - 1) + (1 - a).sqrt() * noise
    if kind == "v_prediction":
        eps = lambda v: a.sqrt() * v + (1 - a).sqrt() * x_t  # noqa: E731
    else:
        eps = lambda x0: (x_t - a.sqrt() * x0) / (1 - a).sqrt()  # noqa: E731
    eps_hat = eps(0.1) + 10.0 * (eps(0.3) - eps(0.1))
    assert torch.allclose(out.grad, (1 - a) * (eps_hat - noise), atol=1e-3)
    with pytest.raises(ValueError, match="prediction_type"):
        sched.register_to_config(prediction_type="flow")
        PixelDiffusionGuidance(GuidanceConfig(kind="pixel"), "cpu", unet=StubUNet(), scheduler=sched, encoder=None)


def test_token_width_must_match_the_unet():
    enc = SimpleNamespace(dim=8, encoder_id="some-encoder")
    for cls, kind in [(PixelDiffusionGuidance, "pixel"), (LatentDiffusionGuidance, "latent")]:
        with pytest.raises(ValueError, match="8-d tokens, the UNet expects 4"):
            cls(GuidanceConfig(kind=kind, use_vae=False), "cpu", unet=StubUNet(), scheduler=tiny_scheduler(),
                encoder=enc)


def test_dtype_fp16_on_cuda_fp32_on_cpu():
    assert pick_dtype("auto", torch.device("cuda", 0)) == torch.float16
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype("fp8", torch.device("cpu"))
    assert GuidanceConfig().dtype == "auto" and GuidanceConfig().scale == 100.0
    assert (GuidanceConfig().t_min, GuidanceConfig().t_max) == (0.02, 0.98)
    assert GuidanceConfig().weighting == "one_minus_alpha_bar"


def test_every_guidance_has_one_call_signature():
    """The loop calls every guidance the same way; reconstruction reads prompts= and cams=, diffusion the terms."""
    import inspect

    from backend.cameras import CameraSampler
    from training.guidance import Guidance, ReconstructionGuidance, sds_loss, sphere_targets

    sig = inspect.signature(Guidance.forward)
    for cls in (PixelDiffusionGuidance, LatentDiffusionGuidance, ReconstructionGuidance):
        assert inspect.signature(cls.forward) == sig, cls.__name__
    g = ReconstructionGuidance(sphere_targets)
    cams = CameraSampler().sample(2, torch.Generator().manual_seed(0))
    prompts = ["a red cube", "a blue sphere"]
    conds = [g.embed(g.prompts_for(prompts, cams.view_labels))]  # placeholders: it reads no text
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    out = g(images, conds, None, prompts=prompts, cams=cams, generator=torch.Generator().manual_seed(0))
    target = sphere_targets(prompts, cams, 8, 8)
    assert torch.allclose(out.grad, images.detach() - target)
    assert torch.allclose(out.loss, sds_loss(images, images.detach() - target))
    with pytest.raises(ValueError, match="prompts="):
        g(images, conds)
    # a diffusion guidance reads the terms and ignores prompts / cams
    d = make()
    a = d(torch.rand(1, 3, 8, 8), [emb(1.0)], uncond=emb(0.0), t=torch.tensor([500]), noise=torch.zeros(1, 3, 8, 8))
    b = d(torch.rand(1, 3, 8, 8), [emb(1.0)], uncond=emb(0.0), t=torch.tensor([500]), noise=torch.zeros(1, 3, 8, 8),
          prompts=["ignored"], cams=cams)
    assert torch.equal(a.grad, b.grad)


def test_build_guidance_by_kind():
    from training.guidance import GUIDANCES, ReconstructionGuidance, build_guidance
    from training.guidance.config import GuidanceKind

    assert set(GUIDANCES) == set(typing.get_args(GuidanceKind))
    assert isinstance(build_guidance(GuidanceConfig(kind="reconstruction")), ReconstructionGuidance)
    with pytest.raises(ValueError, match="unknown guidance kind 'nope'; choose pixel, latent"):
        build_guidance(GuidanceConfig(kind="nope"))
