"""Tiny random diffusion pipelines: the ``tiny-pixel`` guidance of smoke runs, and tests."""
from __future__ import annotations

from collections.abc import Callable

import torch

from .config import GuidanceConfig
from .pixel import PixelDiffusionGuidance
from .text import load_guidance_text_encoder


def tiny_unet(image_size: int = 32, in_channels: int = 3, out_channels: int = 6, token_dim: int = 384,
              seed: int = 0, use_encoder_hid_dim: bool = True):
    """A ~0.2M-parameter random ``UNet2DConditionModel`` (IF-like: ε + variance channels)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kw = dict(encoder_hid_dim=token_dim, cross_attention_dim=32) if use_encoder_hid_dim else \
            dict(cross_attention_dim=token_dim)
        return UNet2DConditionModel(
            sample_size=image_size, in_channels=in_channels, out_channels=out_channels, layers_per_block=1,
            block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8, norm_num_groups=8, **kw)


def tiny_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


def tiny_pixel_guidance(config: GuidanceConfig, device="cpu", targets: Callable | None = None,
                        cache_dir=None) -> PixelDiffusionGuidance:
    """``guidance.kind = "tiny-pixel"``: pixel SDS from a random tiny UNet (seed ``guidance.seed``) that
    reads ``guidance.text_encoder`` (MiniLM by default): the whole pipeline runs, nothing is learnt."""
    encoder = load_guidance_text_encoder(
        GuidanceConfig(text_encoder=config.text_encoder or "minilm", max_length=config.max_length), device, cache_dir)
    size = config.image_size or 32
    return PixelDiffusionGuidance(config, device, unet=tiny_unet(size, token_dim=encoder.dim, seed=config.seed),
                                  scheduler=tiny_scheduler(), encoder=encoder)
