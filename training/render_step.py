"""The differentiable part of a training step, the module DistributedDataParallel wraps:
tokens → ``m(c)`` → rendered images (and the surface priors of ``[regularizers]``)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from backend.cameras import Cameras
from backend.mapping_network import Modulation
from backend.model import ATT3D

from .config import RenderConfig
from .regularizers import RegularizerConfig, regularizer_terms


class RenderStep(nn.Module):
    """Renders ``height × width`` images with ``n_samples`` stratified samples per ray (``[render]``)."""

    def __init__(self, model: ATT3D, render: RenderConfig, regularizers: RegularizerConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.regularizers = regularizers or RegularizerConfig()
        self.size = (render.height, render.width)
        self.n_samples = render.n_samples
        self.use_env = render.use_env
        self.normals = render.normals

    def modulation(self, tokens: torch.Tensor, mask: torch.Tensor) -> Modulation:
        return self.model.modulate(tokens, mask)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, cams: Cameras,
                generator: torch.Generator | None = None,
                extra: Callable[[Callable[..., Modulation]], dict[str, torch.Tensor]] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """→ (images ``[B, 3, H, W]``, opacity ``[B, 1, H, W]``, the weighted regulariser terms by name).
        ``extra(modulation)``: more weighted terms of the mode that read the mapping network (the
        interpolation anchor), computed here so that DDP sees every parameter used in its forward."""
        mod = self.modulation(tokens, mask)
        reg = self.regularizers
        out = self.model.render(mod, cams, self.size[0], self.size[1], n_samples=self.n_samples, stratified=True,
                                use_env=self.use_env, normals=self.normals, generator=generator,
                                with_distortion=bool(reg.distortion))
        terms = regularizer_terms(reg, self.model.point_encoder, mod, out.opacity, out.distortion) if reg.active else {}
        if extra is not None:
            terms = {**terms, **extra(self.modulation)}
        return out.rgb, out.opacity, terms
