"""Real loading paths: tiny IF-like, SD-like and Shapes-teacher folders built from configs, saved with
``save_pretrained`` and loaded by path through the code users run (no network)."""
from __future__ import annotations

import json

import pytest
import tiny_pipelines
import torch
from conftest import TINY_MODEL

from training.config import config_from_dict
from training.guidance import GuidanceConfig, LatentDiffusionGuidance, PixelDiffusionGuidance, build_guidance, tiny_unet
from training.train import train


@pytest.fixture(scope="module")
def if_like(tmp_path_factory):
    """unet/ (with encoder_hid_dim, ε + variance), scheduler/, text_encoder/ (T5), tokenizer/ (Unigram, T5's)."""
    return tiny_pipelines.if_like(tmp_path_factory.mktemp("if_like"))


@pytest.fixture(scope="module")
def sd_like(tmp_path_factory):
    """unet/ (4 latent channels), vae/, scheduler/ (PNDM, as SD ships), text_encoder/ (CLIP), tokenizer/ (CLIP BPE)."""
    return tiny_pipelines.sd_like(tmp_path_factory.mktemp("sd_like"))


def test_if_like_folder_loads_and_guides(if_like):
    g = build_guidance(GuidanceConfig(kind="pixel", model=str(if_like)))
    assert isinstance(g, PixelDiffusionGuidance) and g.encoder.encoder_id == f"{if_like}#text_encoder"
    assert g.encoder.kind == "t5" and g.image_size == 16 and g.dtype == torch.float32
    images = torch.rand(2, 3, 24, 24, requires_grad=True)
    cond = g.embed(["a cat, front view", "a dog, side view"])
    assert cond.shape == (2, 77, 16)
    out = g(images, [cond], generator=torch.Generator().manual_seed(0))
    assert out.grad.shape == (2, 3, 16, 16) and torch.isfinite(out.grad).all()
    out.loss.backward()
    assert images.grad.abs().sum() > 0
    # embeddings are cached: a second call does not run the text encoder
    g.encoder.release()
    g.embed(["a cat, front view"])
    assert g.encoder._model is None


def test_sd_like_folder_loads_and_guides_through_the_vae(sd_like):
    g = build_guidance(GuidanceConfig(kind="latent", model=str(sd_like), vae_resolution=16))
    assert isinstance(g, LatentDiffusionGuidance) and g.vae is not None and g.encoder.kind == "clip"
    assert g.scaling_factor == 0.5
    images = torch.rand(2, 3, 20, 20, requires_grad=True)
    out = g(images, [g.embed(["a cat", "a dog"])], generator=torch.Generator().manual_seed(0))
    assert out.grad.shape == (2, 4, 8, 8)  # latents of the 16×16 VAE input
    out.loss.backward()
    assert images.grad.abs().sum() > 0  # the gradient flows through the VAE encoder to the render


def test_sd_like_folder_without_the_vae(sd_like):
    """guidance.use_vae = false: the VAE is used once, to fit the linear RGB → latent map, then dropped."""
    g = build_guidance(GuidanceConfig(kind="latent", model=str(sd_like), use_vae=False))
    assert g.vae is None and g.rgb_to_latent is not None and g.prediction_type == "epsilon"
    images = torch.rand(2, 3, 20, 20, requires_grad=True)
    out = g(images, [g.embed(["a cat", "a dog"])], generator=torch.Generator().manual_seed(0))
    assert out.grad.shape == (2, 4, 8, 8) and torch.isfinite(out.grad).all()
    out.loss.backward()
    assert images.grad.abs().sum() > 0


def test_train_with_an_if_like_folder(if_like, tmp_path):
    cfg = config_from_dict({
        "run": {"steps": 2, "batch_size": 2, "device": "cpu", "preview_every": 0},
        "prompts": {"list": ["a cat", "a dog"]},
        "guidance": {"kind": "pixel", "model": str(if_like), "max_length": 8},
        "model": {**TINY_MODEL, "text_encoder": "minilm"},
        "render": {"height": 12, "width": 12, "n_samples": 8},
    })
    r = train(cfg, tmp_path / "run", progress=False)
    assert r.step == 2 and all(torch.isfinite(torch.tensor(r.losses)))


def test_model_can_reuse_the_pipelines_own_text_encoder(if_like, tmp_path):
    """model.text_encoder = "guidance": the mapping network reads the pipeline's T5 tokens (as the
    paper reuses its diffusion model's tokens) and inference loads that encoder by the same id."""
    from backend.engine import Engine
    from backend.inference import Pipeline

    cfg = config_from_dict({"run": {"steps": 1, "batch_size": 1, "device": "cpu", "preview_every": 0},
                            "prompts": {"list": ["a cat"]},
                            "guidance": {"kind": "pixel", "model": str(if_like), "max_length": 8},
                            "model": {**TINY_MODEL, "text_encoder": "guidance"},
                            "render": {"height": 12, "width": 12, "n_samples": 8}})
    r = train(cfg, tmp_path / "run", progress=False)
    pipe = Pipeline(str(r.model_dir), device="cpu")
    assert pipe.model.config.text_encoder == f"{if_like}#text_encoder"
    assert pipe.encoder.kind == "t5" and pipe.model.config.token_dim == 16
    assert len(Engine(pipe).generate("a cat", resolution=16).positions) > 0


def test_teacher_folder_trains_a_model_generate_loads(tmp_path):
    """The Shapes-world teacher layout: unet/, scheduler/ and att3d_teacher.json naming the encoder."""
    from diffusers import DDPMScheduler

    from backend.engine import Engine
    from backend.inference import Pipeline

    teacher = tmp_path / "teacher"
    tiny_unet(16, token_dim=384, seed=2).save_pretrained(teacher / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(teacher / "scheduler")
    (teacher / "att3d_teacher.json").write_text(json.dumps({"text_encoder": "minilm", "max_length": 16,
                                                            "image_size": 16}))
    cfg = config_from_dict({
        "run": {"steps": 2, "batch_size": 2, "device": "cpu"},
        "guidance": {"kind": "pixel", "model": str(teacher), "scale": 20.0},
        "model": {**TINY_MODEL, "text_encoder": "guidance"},
        "render": {"height": 12, "width": 12, "n_samples": 8},
    })
    r = train(cfg, tmp_path / "run", prompts=["a red cube", "a blue ball"], progress=False)
    pipe = Pipeline(str(r.model_dir), device="cpu")
    assert pipe.model.config.text_encoder == "minilm" and pipe.model.config.max_length == 16
    mesh = Engine(pipe).generate("a red cube", resolution=16)
    assert mesh.meta["prompt"] == "a red cube"
