"""Surface priors added to the SDS loss (``[regularizers]``; all off by default, as in the paper).

SDS at the teacher's resolution only sees what the renders show. A soft density — a hill of
density that the renderer composites into a plausible object — hides what the extracted isosurface
shows: lumps (the finest grid level wiggling inside the soft shell), mottled colours (albedo
averaged along the ray through the shell) and too-fat objects (the iso level lies outside the
visual surface). Measured on the shipped demo v1 (16 unseen prompts, 128³): mean angle of the
mesh normals to the true surface 21.8° (the extraction's floor 1.5°), volume 1.44× the true one,
and the extraction level of 5 sits where the density has only reached a fifth of its maximum (27).

* ``distortion``: λ on the mean per-ray distortion of Mip-NeRF 360 (``backend.renderer.distortion``):
  the weights of a ray should sit in one thin surface, so density rises sharply there and the
  isosurface is the surface the teacher saw;
* ``grid_tv``: λ on the total variation (mean squared difference of neighbours) of every dense
  grid level the mapping network makes for the batch: a smoothness prior on the hypernetwork's
  output, against lumps finer than the renders resolve;
* ``opacity``: λ on the mean rendered opacity (sparsity): empty space stays empty, objects are not
  inflated.

Each term's gradient is a fraction of the SDS gradient at the suggested weights (measured on the
demo model: SDS 9, distortion 0.003 per unit λ, grid TV 2.3, opacity 0.044).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.mapping_network import Modulation
from backend.point_encoder import PointEncoder


@dataclass
class RegularizerConfig:
    distortion: float = 0.0  # λ on the mean per-ray distortion (e.g. 1000)
    grid_tv: float = 0.0  # λ on the dense grids' total variation (e.g. 1)
    opacity: float = 0.0  # λ on the mean rendered opacity (e.g. 10)

    @property
    def active(self) -> bool:
        return bool(self.distortion or self.grid_tv or self.opacity)


def grid_total_variation(encoder: PointEncoder, mod: Modulation) -> torch.Tensor:
    """Σ over dense levels of the mean squared difference between neighbouring grid values (x, y, z)."""
    if mod.params is None:  # the concatenation variant's grid is shared: nothing per prompt
        levels = encoder.levels(None, 1)
    else:
        levels = encoder.levels(mod.params, mod.params.shape[0])
    tv = levels[0].new_zeros(())
    for grid in levels[: len(encoder.resolutions)]:  # [B, C, R, R, R]
        tv = tv + sum(grid.diff(dim=d).pow(2).mean() for d in (2, 3, 4))
    return tv


def regularizer_terms(config: RegularizerConfig, encoder: PointEncoder, mod: Modulation,
                      opacity: torch.Tensor, distortion: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The weighted terms that are on, by name (their sum joins the loss)."""
    terms: dict[str, torch.Tensor] = {}
    if config.distortion:
        if distortion is None:
            raise ValueError("regularizers.distortion needs the renderer's distortion (with_distortion=True)")
        terms["distortion"] = config.distortion * distortion.mean()
    if config.grid_tv:
        terms["grid_tv"] = config.grid_tv * grid_total_variation(encoder, mod)
    if config.opacity:
        terms["opacity"] = config.opacity * opacity.mean()
    return terms
