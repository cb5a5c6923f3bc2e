"""The teacher's denoising loss: ε or v targets, optionally min-SNR-γ weighted."""
from __future__ import annotations

import torch

from .config import check_trainable_prediction_type


def diffusion_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
                   prediction_type: str = "epsilon", snr_gamma: float = 0.0) -> torch.Tensor:
    """The denoising loss for one batch: MSE against ε or v = √ᾱ·ε − √(1−ᾱ)·x0, optionally min-SNR-γ
    weighted (per sample, normalised so that every timestep's weight is ≤ 1)."""
    check_trainable_prediction_type(prediction_type)
    a = alpha_bar.view(-1, 1, 1, 1)
    # v as in diffusers' DDPMScheduler.get_velocity, here from ᾱ rather than from timesteps
    target = noise if prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    per = (pred - target).pow(2).mean((1, 2, 3))
    if snr_gamma > 0:
        snr = alpha_bar / (1 - alpha_bar)
        w = snr.clamp(max=snr_gamma) / (snr if prediction_type == "epsilon" else snr + 1)
        per = per * w
    return per.mean()
