"""Pixel-space diffusion guidance: DeepFloyd IF stage I (64×64), the Shapes-world teacher, any
diffusers ``UNet2DConditionModel`` + scheduler folder."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from backend.text_encoder import TextEncoder

from .config import GuidanceConfig
from .sds import DiffusionGuidance, frozen, scheduler_prediction_type
from .text import check_token_dim, load_guidance_text_encoder, read_teacher_json


class PixelDiffusionGuidance(DiffusionGuidance):
    """SDS on the render itself (``2·img − 1``, resized to the model's size). A UNet predicting ε
    and a variance (IF: 6 channels) contributes its first 3 channels."""

    def __init__(self, config: GuidanceConfig, device="cpu", unet=None, scheduler=None,
                 encoder: TextEncoder | None = None, cache_dir=None) -> None:
        super().__init__(config, device, encoder)
        from diffusers import DDPMScheduler, UNet2DConditionModel

        if unet is None:
            if not config.model:
                raise ValueError("guidance.model is empty: give a diffusers folder or hub id")
            # loaded in the guidance dtype: IF-I-XL in float32 would need 17 GB of host memory first
            unet = UNet2DConditionModel.from_pretrained(config.model, subfolder="unet", torch_dtype=self.dtype)
            scheduler = DDPMScheduler.from_pretrained(config.model, subfolder="scheduler")
        if encoder is None and (config.model or config.text_encoder):
            self.encoder = load_guidance_text_encoder(config, self.device, cache_dir)
        self.unet = frozen(unet, self.device, self.dtype)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.detach().float().cpu(), persistent=False)
        self.prediction_type = scheduler_prediction_type(scheduler)
        teacher = read_teacher_json(config.model) if config.model else {}
        self.image_size = int(config.image_size or teacher.get("image_size") or unet.config.sample_size)
        check_token_dim(self.encoder, unet)

    @classmethod
    def from_config(cls, config: GuidanceConfig, device="cpu", targets: Callable | None = None,
                    cache_dir=None) -> PixelDiffusionGuidance:
        return cls(config, device, cache_dir=cache_dir)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x

    def predict_noise(self, x_t, t, emb):
        out = self.unet(x_t, t, encoder_hidden_states=emb).sample
        return out[:, :3]
