"""Guidance: the losses that tell the renders how to change (paper Alg. 1, App. B.1.8).

One module per concern, each guidance with the same call signature (:class:`Guidance`):

- ``config.py``: :class:`GuidanceConfig`, the ``[guidance]`` section;
- ``base.py``: :class:`Guidance` (the call signature) and :class:`SDSOutput`;
- ``sds.py``: the SDS formulas (CFG and Eq. 11's sum, the loss, w(t), ε from v / x₀) and
  :class:`DiffusionGuidance`, the SDS step pixel and latent diffusion share;
- ``pixel.py``: :class:`PixelDiffusionGuidance` (DeepFloyd IF stage I, the Shapes-world teacher);
- ``latent.py``: :class:`LatentDiffusionGuidance` (Stable Diffusion 1.x / 2.x, with or without the VAE);
- ``reconstruction.py``: :class:`ReconstructionGuidance` (known target images; tests, synthetic worlds);
- ``tiny.py``: tiny random pipelines (the ``tiny-pixel`` guidance of smoke runs, tests);
- ``text.py``: view prompts, the teacher JSON and the diffusion model's own text encoder.

:func:`build_guidance` makes one from a :class:`GuidanceConfig` by its ``kind``.
"""
from __future__ import annotations

from collections.abc import Callable

from .base import Guidance, SDSOutput
from .config import GuidanceConfig
from .latent import LatentDiffusionGuidance, fit_rgb_to_latent
from .pixel import PixelDiffusionGuidance
from .reconstruction import ReconstructionGuidance, prompt_color, sphere_targets
from .sds import (
    PREDICTION_TYPES,
    WEIGHTINGS,
    DiffusionGuidance,
    cfg,
    pick_dtype,
    sds_loss,
    time_weight,
    to_epsilon,
)
from .text import TEACHER_JSON, load_guidance_text_encoder, pipeline_text_encoder, read_teacher_json, view_prompt
from .tiny import tiny_pixel_guidance, tiny_scheduler, tiny_unet

#: guidance.kind → builder ``(config, device, targets, cache_dir) → Guidance``
GUIDANCES: dict[str, Callable[..., Guidance]] = {
    "pixel": PixelDiffusionGuidance.from_config,
    "latent": LatentDiffusionGuidance.from_config,
    "reconstruction": ReconstructionGuidance.from_config,
    "tiny-pixel": tiny_pixel_guidance,
}


def build_guidance(config: GuidanceConfig, device="cpu", targets: Callable | None = None,
                   cache_dir=None) -> Guidance:
    """A guidance from its config. ``targets`` is the ground-truth renderer for ``reconstruction``."""
    try:
        build = GUIDANCES[config.kind]
    except KeyError:
        raise ValueError(f"unknown guidance kind {config.kind!r}; choose {', '.join(GUIDANCES)}") from None
    return build(config, device, targets, cache_dir)


__all__ = [
    "GUIDANCES", "PREDICTION_TYPES", "TEACHER_JSON", "WEIGHTINGS", "DiffusionGuidance", "Guidance", "GuidanceConfig",
    "LatentDiffusionGuidance", "PixelDiffusionGuidance", "ReconstructionGuidance", "SDSOutput", "build_guidance",
    "cfg", "fit_rgb_to_latent", "load_guidance_text_encoder", "pick_dtype", "pipeline_text_encoder", "prompt_color",
    "read_teacher_json", "sds_loss", "sphere_targets", "time_weight", "tiny_pixel_guidance", "tiny_scheduler",
    "tiny_unet", "to_epsilon", "view_prompt",
]
