"""What every guidance is: one call signature, so the training loop never asks which kind it holds."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from backend.cameras import Cameras
from backend.text_encoder import TextEncoder


@dataclass
class SDSOutput:
    """What a guidance returns (reconstruction too: its loss has the same normalisation)."""

    loss: torch.Tensor  # scalar, gradient grad / B on x
    grad: torch.Tensor  # [B, C, h, w] w(t)(ε̂ − ε) after clipping, float32
    t: torch.Tensor  # [B] integer timesteps
    w: torch.Tensor  # [B] weights w(t)
    nonfinite: int = 0  # elements of grad that were NaN/inf and were zeroed


class Guidance(torch.nn.Module):
    """A loss on rendered images whose gradient says how they should change.

    A training mode builds the classifier-free guidance terms with :meth:`embed` and
    :meth:`prompts_for` (and mixes them as its equations say), and names the prompt each image
    should show; the loop then calls every guidance the same way::

        out = guidance(images, conds, weights, prompts=shown, cams=cams, generator=rng)

    - ``images``: ``[B, 3, H, W]`` renders in [0, 1], with gradient;
    - ``conds``, ``weights``: CFG terms ``[B, L, D]`` and their weights (floats or per-image ``[B]``;
      ``None`` = the configured scale), read by diffusion guidance;
    - ``prompts``, ``cams``: the one prompt each image should show and its camera, read by
      reconstruction (it renders their ground truth);
    - ``generator``: the CPU random stream of t and ε; ``uncond``, ``t``, ``noise``: fixed values for tests.

    Each guidance ignores what it does not read.
    """

    #: the guidance's own text encoder (None: it reads no text)
    encoder: TextEncoder | None = None

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """The conditioning ``[n, L, D]`` of each prompt (cached)."""
        raise NotImplementedError

    def prompts_for(self, prompts: Sequence[str], views: Sequence[str | None] | None) -> list[str]:
        """The text the guidance reads for each (prompt, camera view)."""
        return list(prompts)

    def precompute(self, prompts: Sequence[str]) -> int:
        """Embed every guidance prompt of a run up front; returns how many were encoded."""
        return 0

    def forward(self, images: torch.Tensor, conds: Sequence[torch.Tensor],
                weights: Sequence[torch.Tensor | float] | None = None, *, prompts: Sequence[str] = (),
                cams: Cameras | None = None, generator: torch.Generator | None = None,
                uncond: torch.Tensor | None = None, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> SDSOutput:
        raise NotImplementedError
