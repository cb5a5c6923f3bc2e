"""The differentiable part of a training step, the module DistributedDataParallel wraps:
tokens → ``m(c)`` → rendered images."""
from __future__ import annotations

import torch
from torch import nn

from backend.cameras import Cameras
from backend.mapping_network import Modulation
from backend.model import ATT3D

from .config import RenderConfig


class RenderStep(nn.Module):
    """Renders ``height × width`` images with ``n_samples`` stratified samples per ray (``[render]``)."""

    def __init__(self, model: ATT3D, render: RenderConfig) -> None:
        super().__init__()
        self.model = model
        self.size = (render.height, render.width)
        self.n_samples = render.n_samples
        self.use_env = render.use_env
        self.normals = render.normals

    def modulation(self, tokens: torch.Tensor, mask: torch.Tensor) -> Modulation:
        return self.model.modulate(tokens, mask)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, cams: Cameras,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mod = self.modulation(tokens, mask)
        out = self.model.render(mod, cams, self.size[0], self.size[1], n_samples=self.n_samples, stratified=True,
                                use_env=self.use_env, normals=self.normals, generator=generator)
        return out.rgb, out.opacity
