"""3D-supervised reconstruction against known target images: a guidance for tests and synthetic
worlds whose ground truth can be rendered; never a default."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

from backend.cameras import Cameras

from .base import Guidance, SDSOutput
from .config import GuidanceConfig
from .sds import sds_loss


class ReconstructionGuidance(Guidance):
    """``loss = 0.5 Σ (x − target)² / B`` (the SDS normalisation, with ``grad = x − target``).

    ``targets(prompts, cams, height, width) → [B, 3, H, W]`` renders the known ground truth of the
    prompt each image should show (the Shapes world's analytic scenes, or :func:`sphere_targets`).
    """

    def __init__(self, targets: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.targets = targets
        self.encoder = None

    @classmethod
    def from_config(cls, config: GuidanceConfig, device="cpu", targets: Callable | None = None,
                    cache_dir=None) -> ReconstructionGuidance:
        return cls(targets or sphere_targets)

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        # It reads no text: empty placeholders, so that a mode builds (and mixes) its CFG terms the
        # same way for every guidance; the prompt each image should show comes as `prompts=`.
        return torch.zeros(len(prompts), 1, 1)

    def forward(self, images: torch.Tensor, conds: Sequence[torch.Tensor],
                weights: Sequence[torch.Tensor | float] | None = None, *, prompts: Sequence[str] = (),
                cams: Cameras | None = None, generator: torch.Generator | None = None,
                uncond: torch.Tensor | None = None, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> SDSOutput:
        """Reads ``prompts`` and ``cams`` (the ground truth to render); the CFG terms are not used."""
        if cams is None or len(prompts) != images.shape[0]:
            raise ValueError("reconstruction guidance needs prompts= (one per image) and cams=")
        target = self.targets(list(prompts), cams, images.shape[-2], images.shape[-1])
        grad = (images - target.to(images)).detach()
        b = images.shape[0]
        zeros = torch.zeros(b, dtype=torch.long)
        return SDSOutput(sds_loss(images, grad), grad, zeros, torch.ones(b))


def prompt_color(prompt: str) -> torch.Tensor:
    """A deterministic colour for a prompt (for :func:`sphere_targets`)."""
    h = hashlib.sha256(prompt.encode()).digest()
    return torch.tensor([0.15 + 0.7 * h[i] / 255 for i in range(3)])


def sphere_targets(prompts: Sequence[str], cams: Cameras, height: int, width: int,
                   radius: float = 0.6) -> torch.Tensor:
    """Ground truth for reconstruction tests: a sphere of a per-prompt colour on white (albedo)."""
    from backend.renderer import render

    colors = torch.stack([prompt_color(p) for p in prompts]).to(cams.eye.device)

    def field(points):
        inside = (points.norm(dim=-1) < radius).float()
        return inside * 50.0, colors[:, None, :].expand(-1, points.shape[1], -1)

    with torch.no_grad():
        return render(field, cams, height, width, n_samples=32, stratified=False,
                      shading=torch.zeros(len(prompts), dtype=torch.long, device=cams.eye.device),
                      need_normals=False).rgb
