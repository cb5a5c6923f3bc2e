"""Latent diffusion guidance (Stable Diffusion 1.x / 2.x), with or without the VAE at every step."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from backend.text_encoder import TextEncoder

from .config import GuidanceConfig
from .sds import DiffusionGuidance, frozen, scheduler_prediction_type
from .text import check_token_dim, load_guidance_text_encoder


@torch.no_grad()
def fit_rgb_to_latent(vae, scaling_factor: float, size: int = 64, levels: int = 3) -> torch.Tensor:
    """A linear map ``[4, C]`` (three colour rows, then a bias row) from an image in [−1, 1] to the VAE's
    scaled latents, least-squares fitted on flat-colour images (``levels``³ colours) encoded once by the
    VAE itself. It is what ``use_vae = false`` uses instead of the encoder at every step."""
    g = torch.linspace(-1, 1, levels)
    colours = torch.cartesian_prod(g, g, g)  # [n, 3]
    param = next(vae.parameters())
    images = colours[:, :, None, None].expand(-1, -1, size, size).to(param.device, param.dtype)
    latents = vae.encode(images).latent_dist.mean.float().mean(dim=(2, 3)).cpu() * scaling_factor  # [n, C]
    a = torch.cat([colours, torch.ones(len(colours), 1)], dim=1)  # [n, 4]
    return torch.linalg.lstsq(a, latents).solution  # [4, C]


class LatentDiffusionGuidance(DiffusionGuidance):
    """Latent diffusion (Stable Diffusion 1.x / 2.x): render → resize → VAE encode (with gradient)
    × ``scaling_factor`` → latent SDS. ``use_vae=False`` skips the VAE at every step: the render (in
    [−1, 1]) is resized to the latent size and mapped to the latent channels by a linear map fitted
    once to the pipeline's VAE (:func:`fit_rgb_to_latent`; cheap and approximate; a 3-channel UNet
    takes the render as is).
    ``v_prediction`` UNets (SD 2.x 768-v) are converted to ε through the scheduler's prediction type."""

    def __init__(self, config: GuidanceConfig, device="cpu", unet=None, scheduler=None, vae=None,
                 encoder: TextEncoder | None = None, cache_dir=None) -> None:
        super().__init__(config, device, encoder)
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        if unet is None:
            if not config.model:
                raise ValueError("guidance.model is empty: give a Stable Diffusion folder or hub id")
            unet = UNet2DConditionModel.from_pretrained(config.model, subfolder="unet", torch_dtype=self.dtype)
            scheduler = DDPMScheduler.from_pretrained(config.model, subfolder="scheduler")
            if vae is None and (config.use_vae or int(unet.config.in_channels) == 4):
                vae = AutoencoderKL.from_pretrained(config.model, subfolder="vae", torch_dtype=self.dtype)
        if encoder is None and (config.model or config.text_encoder):
            self.encoder = load_guidance_text_encoder(config, self.device, cache_dir)
        self.unet = frozen(unet, self.device, self.dtype)
        if vae is not None:
            vae = frozen(vae, self.device, self.dtype)
        self.vae = vae if config.use_vae else None
        if config.use_vae and self.vae is None:
            raise ValueError("guidance.use_vae = true needs a VAE (the pipeline's vae/ folder)")
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.detach().float().cpu(), persistent=False)
        self.prediction_type = scheduler_prediction_type(scheduler)
        self.latent_size = int(unet.config.sample_size)
        check_token_dim(self.encoder, unet)
        self.rgb_to_latent: torch.Tensor | None = None
        if self.vae is not None:
            self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 0.18215))
            factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
            self.vae_resolution = int(config.vae_resolution or self.latent_size * factor)
        else:
            channels = int(unet.config.in_channels)
            if channels == 4:  # SD's latents: a linear map fitted once to this pipeline's own VAE
                if vae is None:
                    raise ValueError("guidance.use_vae = false on a 4-channel (latent) UNet needs the pipeline's "
                                     "vae/ once, to fit the linear RGB → latent map")
                self.rgb_to_latent = fit_rgb_to_latent(vae, float(getattr(vae.config, "scaling_factor", 0.18215)))
            elif channels != 3:
                raise ValueError(f"guidance.use_vae = false: the UNet takes {channels} input channels; only 3 "
                                 f"(the render itself) or 4 (Stable Diffusion latents, a linear map) are supported")

    @classmethod
    def from_config(cls, config: GuidanceConfig, device="cpu", targets: Callable | None = None,
                    cache_dir=None) -> LatentDiffusionGuidance:
        return cls(config, device, cache_dir=cache_dir)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        if self.vae is None:
            x = F.interpolate(x, (self.latent_size, self.latent_size), mode="bilinear", align_corners=False)
            if self.rgb_to_latent is not None:
                m = self.rgb_to_latent.to(x.device)
                x = torch.einsum("bchw,cd->bdhw", x.float(), m[:3]) + m[3].view(1, -1, 1, 1)
            return x
        x = F.interpolate(x, (self.vae_resolution, self.vae_resolution), mode="bilinear", align_corners=False)
        posterior = self.vae.encode(x.to(self.dtype)).latent_dist
        # The mean, not a sample: the render is deterministic, and a sample would add noise the
        # SDS noise already provides (threestudio and stable-dreamfusion sample; the difference is small).
        return posterior.mean.float() * self.scaling_factor

    def predict_noise(self, x_t, t, emb):
        return self.unet(x_t, t, encoder_hidden_states=emb).sample[:, :x_t.shape[1]]  # ε of learned-variance UNets
