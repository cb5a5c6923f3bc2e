"""Score distillation sampling (SDS, DreamFusion; ATT3D Alg. 1, App. B.1.8): the formulas, and the
SDS step shared by pixel and latent diffusion.

A diffusion guidance takes rendered images ``[B, 3, H, W]`` in [0, 1] and text conditioning and
returns a loss whose gradient on the diffusion model's input ``x`` is::

    grad = w(t) · (ε̂ − ε),     ε̂ = ε_u + Σ_k s_k · (ε_k − ε_u)

with ``t ~ U(t_min, t_max)`` of the schedule (default U(0.02, 0.98), the paper uses U(0.002, 1.0)),
``w(t) = 1 − ᾱ_t`` (``weighting="one_minus_alpha_bar"``) and classifier-free guidance: for one prompt
``ε̂ = ε_u + s(ε_c − ε_u)`` with ``s = 100`` (the paper's value). Several (prompt, weight) terms give
the guidance interpolation of Eq. 11 (its weights are built in ``training/modes/interpolation.py``).

Normalisation (documented, and tested): ``loss = 0.5 · Σ (x − sg(x − grad))² / B``, so
``∂loss/∂x_b = grad_b / B``: the per-image SDS gradient, averaged over the batch. ``x`` is the image
in the model's space: ``2·img − 1`` resized to the model's size for pixel diffusion (so the gradient
on the [0, 1] render is ``2 · grad / B`` when no resize happens), the VAE latents (× the VAE's
``scaling_factor``) for latent diffusion. The loss *value* is ``0.5 · ‖grad‖² / B``, which is not an
objective that decreases (SDS has none); log the gradient norm instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from backend.cameras import Cameras
from backend.text_encoder import TextEncoder

from .base import Guidance, SDSOutput
from .config import GuidanceConfig, Weighting
from .text import view_prompt

#: what a UNet may predict (the scheduler's ``prediction_type``); all are converted to ε
PredictionType = Literal["epsilon", "v_prediction", "sample"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)


# -- the formulas --------------------------------------------------------------------------------

def cfg(eps_uncond: torch.Tensor, eps_conds: Sequence[torch.Tensor],
        weights: Sequence[torch.Tensor | float]) -> torch.Tensor:
    """``ε̂ = ε_u + Σ_k s_k (ε_k − ε_u)``; weights are floats or per-sample ``[B]`` tensors.

    One term is classifier-free guidance; two terms with weights ``(1−α)ω1`` and ``αω2`` are the
    guidance interpolation of Eq. 11 (``training/modes/interpolation.py``).
    """
    out = eps_uncond
    for e, s in zip(eps_conds, weights, strict=True):
        if torch.is_tensor(s) and s.ndim == 1:
            s = s.to(e.dtype).view(-1, *([1] * (e.ndim - 1)))
        out = out + s * (e - eps_uncond)
    return out


def sds_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``0.5 Σ (x − sg(x − grad))² / B``: its gradient on ``x`` is ``grad / B``."""
    target = (x - grad).detach()
    return 0.5 * F.mse_loss(x.float(), target.float(), reduction="sum") / x.shape[0]


def time_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, weighting: str) -> torch.Tensor:
    a = alphas_cumprod.to(t.device)[t].float()
    if weighting == "one_minus_alpha_bar":
        return 1 - a
    if weighting == "sqrt_one_minus_alpha_bar":
        return (1 - a).sqrt()
    if weighting == "uniform":
        return torch.ones_like(a)
    raise ValueError(f"unknown SDS weighting {weighting!r}; choose from {', '.join(WEIGHTINGS)}")


def to_epsilon(out: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The model output as ε: ``epsilon`` as is; ``v_prediction`` (SD 2.x 768-v):
    ``ε = √ᾱ·v + √(1−ᾱ)·x_t``; ``sample`` (x₀): ``ε = (x_t − √ᾱ·x₀) / √(1−ᾱ)``."""
    if prediction_type == "epsilon":
        return out
    a = alpha_bar.view(-1, *([1] * (out.ndim - 1))).to(out)
    if prediction_type == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()
    raise ValueError(f"unknown prediction type {prediction_type!r}; supported: {', '.join(PREDICTION_TYPES)}")


# -- what pixel and latent diffusion share ---------------------------------------------------------

def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16") from None


def scheduler_prediction_type(scheduler) -> str:
    kind = str(getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"scheduler prediction_type {kind!r} is not supported ({', '.join(PREDICTION_TYPES)})")
    return kind


def frozen(module: torch.nn.Module, device, dtype) -> torch.nn.Module:
    """``module`` on ``device`` in ``dtype``, in eval mode, without gradients (a frozen teacher)."""
    module = module.to(device)
    if dtype != torch.float32:  # (a float32 `.to(dtype)` only makes diffusers warn)
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


class DiffusionGuidance(Guidance):
    """The text-embedding cache and the SDS step shared by pixel and latent diffusion; a subclass
    maps images to the model's space (:meth:`encode_images`) and predicts noise (:meth:`predict_noise`)."""

    def __init__(self, config: GuidanceConfig, device="cpu", encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        self.device = torch.device(device)
        self.dtype = pick_dtype(config.dtype, self.device)
        self.encoder = encoder
        self.prediction_type = "epsilon"  # what the UNet predicts (the scheduler's prediction_type)
        self._emb: dict[str, torch.Tensor] = {}
        self._uncond: torch.Tensor | None = None
        if config.t_min < 0 or config.t_max > 1 or config.t_min >= config.t_max:
            raise ValueError(f"need 0 ≤ t_min < t_max ≤ 1, got {config.t_min}, {config.t_max}")
        if config.t_max_end and not (config.t_min < config.t_max_end <= 1 and config.t_anneal_steps > 0):
            raise ValueError(f"guidance.t_max_end {config.t_max_end} needs t_min < t_max_end ≤ 1 and "
                             f"guidance.t_anneal_steps > 0")
        self.step: int | None = None  # the training step (the loop sets it; t_max anneals with it)
        if config.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown SDS weighting {config.weighting!r}; choose from {', '.join(WEIGHTINGS)}")

    # embeddings: each (augmented) prompt is encoded once and kept (CPU, in the guidance dtype)
    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        prompts = list(prompts)
        missing = list(dict.fromkeys(p for p in prompts if p not in self._emb))
        if missing:
            if self.encoder is None:
                raise RuntimeError("this guidance has no text encoder")
            tokens = self.encoder(missing).tokens
            for p, t in zip(missing, tokens):
                self._emb[p] = t.to(self.dtype)
        return torch.stack([self._emb[p] for p in prompts]).to(self.device)

    def precompute(self, prompts: Sequence[str], views: Sequence[str | None] = ("front", "side", "back", "overhead"),
                   release: bool = True) -> int:
        """Encode every (prompt, view) guidance prompt and the unconditional prompt once, up front;
        then release the text encoder's weights (they are reloaded lazily if a new prompt comes)."""
        if self.encoder is None:
            return 0
        views = list(views) if self.config.view_prompts else [None]
        todo = [view_prompt(p, v) for p in prompts for v in views]
        for i in range(0, len(todo), 256):
            self.embed(todo[i:i + 256])
        self.uncond(1)
        if release:
            self.encoder.release()
        return len(todo) + 1

    def uncond(self, n: int) -> torch.Tensor:
        """The unconditional embedding ``[n, L, D]``: the negative prompt (""), encoded as diffusers'
        ``encode_prompt`` does: for CLIP from the last layer even with ``clip_skip`` (diffusers 0.42)."""
        if self._uncond is None:
            if self.encoder is None:
                raise RuntimeError("this guidance has no text encoder")
            skip = {"clip_skip": 0} if getattr(self.encoder, "clip_skip", 0) else {}
            emb = self.encoder([self.config.negative_prompt], **skip).tokens[0]
            self._uncond = emb.to(self.dtype)
        return self._uncond.to(self.device).expand(n, -1, -1)

    def prompts_for(self, prompts: Sequence[str], views: Sequence[str | None] | None) -> list[str]:
        if views is None or not self.config.view_prompts:
            return list(prompts)
        return [view_prompt(p, v) for p, v in zip(prompts, views)]

    # subclasses: images [B,3,H,W] in [0,1] → x in the model's space (with gradient)
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def t_range(self, step: int | None = None) -> tuple[float, float]:
        """``(t_min, t_max)`` at training ``step`` (t_max anneals towards t_max_end when configured)."""
        c = self.config
        t_max = c.t_max
        if c.t_max_end and c.t_anneal_steps and step is not None:
            t_max = c.t_max + (c.t_max_end - c.t_max) * min(1.0, step / c.t_anneal_steps)
        return c.t_min, max(t_max, c.t_min)

    def sample_t(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        T = self.num_train_timesteps
        t_min, t_max = self.t_range(self.step)
        lo = int(t_min * T)
        hi = max(lo + 1, min(T, int(t_max * T) + 1))
        return torch.randint(lo, hi, (n,), generator=generator)

    def forward(self, images: torch.Tensor, conds: Sequence[torch.Tensor],
                weights: Sequence[torch.Tensor | float] | None = None, *, prompts: Sequence[str] = (),
                cams: Cameras | None = None, generator: torch.Generator | None = None,
                uncond: torch.Tensor | None = None, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> SDSOutput:
        """SDS on ``images`` with CFG terms ``conds[k]`` (``[B, L, D]``) of weights ``weights[k]``.

        ``weights`` defaults to ``[config.scale]``. Randomness (t, ε) comes from ``generator`` (on
        the CPU, so runs are reproducible across devices) unless ``t``/``noise`` are given.
        ``prompts`` and ``cams`` are not read: the text is in ``conds``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        b = images.shape[0]
        if isinstance(conds, torch.Tensor):
            conds = [conds]
        weights = [self.config.scale] * len(conds) if weights is None else list(weights)
        x = self.encode_images(images)
        t = self.sample_t(b, generator) if t is None else t.long().cpu()
        if noise is None:
            noise = torch.randn(x.shape, generator=generator)
        noise = noise.to(x.device, torch.float32)
        a = self.alphas_cumprod[t].float().view(b, 1, 1, 1).to(x.device)
        with torch.no_grad():
            x_t = a.sqrt() * x.detach().float() + (1 - a).sqrt() * noise
            uncond = self.uncond(b) if uncond is None else uncond
            embs = torch.cat([uncond, *conds]).to(self.device, self.dtype)
            n = 1 + len(conds)
            eps = self.predict_noise(x_t.to(self.dtype).repeat(n, 1, 1, 1), t.to(self.device).repeat(n), embs)
            eps = to_epsilon(eps.float(), x_t.repeat(n, 1, 1, 1), a.view(b).repeat(n), self.prediction_type).chunk(n)
            eps_hat = cfg(eps[0], eps[1:], [w.to(x.device) if torch.is_tensor(w) else w for w in weights])
            w = time_weight(self.alphas_cumprod, t, self.config.weighting).to(x.device)
            grad = w.view(b, 1, 1, 1) * (eps_hat - noise)
            bad = ~torch.isfinite(grad)
            nonfinite = int(bad.sum())
            if nonfinite:
                grad = torch.where(bad, torch.zeros_like(grad), grad)
            if self.config.grad_clip > 0:
                grad = grad.clamp(-self.config.grad_clip, self.config.grad_clip)
        return SDSOutput(sds_loss(x, grad), grad, t, w.cpu(), nonfinite)
