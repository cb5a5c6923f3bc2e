"""Score distillation sampling (SDS, DreamFusion; ATT3D Alg. 1, App. B.1.8) behind one interface.

A guidance takes rendered images ``[B, 3, H, W]`` in [0, 1] and text conditioning and returns a
loss whose gradient on the diffusion model's input ``x`` is::

    grad = w(t) · (ε̂ − ε),     ε̂ = ε_u + Σ_k s_k · (ε_k − ε_u)

with ``t ~ U(t_min, t_max)`` of the schedule (default U(0.02, 0.98), the paper uses U(0.002, 1.0)),
``w(t) = 1 − ᾱ_t`` (``weighting="one_minus_alpha_bar"``) and classifier-free guidance: for one prompt
``ε̂ = ε_u + s(ε_c − ε_u)`` with ``s = 100`` (the paper's value). Several (prompt, weight) terms give
the guidance interpolation of Eq. 11 (see :func:`cfg`).

Normalisation (documented, and tested): ``loss = 0.5 · Σ (x − sg(x − grad))² / B``, so
``∂loss/∂x_b = grad_b / B``: the per-image SDS gradient, averaged over the batch. ``x`` is the image
in the model's space: ``2·img − 1`` resized to the model's size for pixel diffusion (so the gradient
on the [0, 1] render is ``2 · grad / B`` when no resize happens), the VAE latents (× the VAE's
``scaling_factor``) for latent diffusion. The loss *value* is ``0.5 · ‖grad‖² / B``, which is not an
objective that decreases (SDS has none); log the gradient norm instead.

Implementations: :class:`PixelDiffusionGuidance` (DeepFloyd IF stage I, the Shapes-world teacher,
any diffusers ``UNet2DConditionModel`` + scheduler), :class:`LatentDiffusionGuidance` (Stable
Diffusion 1.x/2.x, with or without the VAE) and :class:`ReconstructionGuidance` (known target
images, a 3D-supervised mode for tests; never the default). :func:`build_guidance` makes one from a
:class:`GuidanceConfig`.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from backend.text_encoder import TextEncoder

TEACHER_JSON = "att3d_teacher.json"
WEIGHTINGS = ("one_minus_alpha_bar", "uniform", "sqrt_one_minus_alpha_bar")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
VIEW_SUFFIX = ", {view} view"


@dataclass
class GuidanceConfig:
    #: pixel | latent | reconstruction | tiny-pixel (a random tiny UNet built on the fly: smoke runs)
    kind: str = "pixel"
    #: a diffusers folder or hub id (``unet/``, ``scheduler/`` [, ``vae/``, ``text_encoder/``, ``tokenizer/``])
    model: str = ""
    #: the guidance's own text encoder: "" = the teacher's ``att3d_teacher.json`` or the pipeline's
    #: ``text_encoder/`` + ``tokenizer/``; else anything ``backend.TextEncoder`` loads (folder, hub id, "minilm")
    text_encoder: str = ""
    max_length: int = 0  # 0 = the encoder's default (77 for CLIP/T5)
    scale: float = 100.0  # classifier-free guidance weight s
    t_min: float = 0.02
    t_max: float = 0.98
    weighting: str = "one_minus_alpha_bar"
    grad_clip: float = 0.0  # clamp each element of w(t)(ε̂ − ε) to ±grad_clip (0 = off)
    image_size: int = 0  # pixel: the model's resolution (0 = the UNet's sample_size)
    use_vae: bool = True  # latent: False = resize the render to the latent size directly
    vae_resolution: int = 512  # latent: the render is resized to this before the VAE
    negative_prompt: str = ""  # the unconditional prompt
    view_prompts: bool = True  # append ", front view" etc. to the guidance prompt (never the mapping input)
    dtype: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | float32 | float16 | bfloat16
    seed: int = 0  # tiny-pixel: the random UNet's seed


@dataclass
class SDSOutput:
    loss: torch.Tensor  # scalar, gradient grad / B on x
    grad: torch.Tensor  # [B, C, h, w] w(t)(ε̂ − ε) after clipping, float32
    t: torch.Tensor  # [B] integer timesteps
    w: torch.Tensor  # [B] weights w(t)
    nonfinite: int = 0  # elements of grad that were NaN/inf and were zeroed


# -- the formulas --------------------------------------------------------------------------------

def cfg(eps_uncond: torch.Tensor, eps_conds: Sequence[torch.Tensor],
        weights: Sequence[torch.Tensor | float]) -> torch.Tensor:
    """``ε̂ = ε_u + Σ_k s_k (ε_k − ε_u)``; weights are floats or per-sample ``[B]`` tensors.

    One term is classifier-free guidance. Two terms with weights ``(1−α)ω1`` and ``αω2`` are the
    guidance interpolation of Eq. 11 (the paper writes ``ε_prompt i`` for the guidance direction
    ``ε_i − ε_u``: at α = 0 it is plain CFG on prompt 1, at α = 1 on prompt 2).
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


def view_prompt(prompt: str, view: str | None) -> str:
    return prompt if not view else prompt + VIEW_SUFFIX.format(view=view)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16") from None


# -- text encoders of diffusers pipelines ----------------------------------------------------------

def pipeline_text_encoder(root: str, max_length: int | None = None, device="cpu", cache_dir=None) -> TextEncoder:
    """The ``text_encoder/`` + ``tokenizer/`` subfolders of a diffusers pipeline (CLIP for SD, T5 for
    IF), through the backend's encoder (``ROOT#text_encoder``), so inference loads it the same way."""
    return TextEncoder(f"{root}#text_encoder", max_length, device=device, cache_dir=cache_dir)


def _has_subfolder(root: str, sub: str) -> bool:
    p = Path(root)
    if p.is_dir():
        return (p / sub).is_dir()
    try:  # a hub id (in the local HF cache when offline)
        from huggingface_hub import file_exists

        return file_exists(root, f"{sub}/config.json") or file_exists(root, f"{sub}/tokenizer_config.json")
    except Exception:
        return False


def read_teacher_json(root: str) -> dict[str, Any]:
    p = Path(root) / TEACHER_JSON
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object")
    return data


def load_guidance_text_encoder(cfg_: GuidanceConfig, device, cache_dir=None) -> TextEncoder:
    """The guidance's own text encoder, by the precedence documented on :class:`GuidanceConfig`."""
    teacher = read_teacher_json(cfg_.model) if cfg_.model else {}
    enc_id = cfg_.text_encoder or teacher.get("text_encoder", "")
    max_length = cfg_.max_length or teacher.get("max_length") or None
    if enc_id:
        return TextEncoder(enc_id, max_length, device=device, cache_dir=cache_dir)
    if cfg_.model and _has_subfolder(cfg_.model, "text_encoder"):
        return pipeline_text_encoder(cfg_.model, max_length, device=device, cache_dir=cache_dir)
    raise ValueError(f"guidance model {cfg_.model!r} names no text encoder: set guidance.text_encoder "
                     f"(or give the folder a text_encoder/ + tokenizer/ or an {TEACHER_JSON})")


def _check_token_dim(encoder: TextEncoder | None, unet) -> None:
    need = getattr(unet.config, "encoder_hid_dim", None) or getattr(unet.config, "cross_attention_dim", None)
    if encoder is not None and need and encoder.dim != need:
        raise ValueError(f"guidance text encoder {encoder.encoder_id!r} gives {encoder.dim}-d tokens, "
                         f"the UNet expects {need}: set guidance.text_encoder to the pipeline's own encoder")


def _prediction_type(scheduler) -> str:
    kind = str(getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"scheduler prediction_type {kind!r} is not supported ({', '.join(PREDICTION_TYPES)})")
    return kind


def _cast(module: torch.nn.Module, device, dtype) -> torch.nn.Module:
    module = module.to(device)
    if dtype != torch.float32:  # (a float32 `.to(dtype)` only makes diffusers warn)
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


# -- the guidances --------------------------------------------------------------------------------

class Guidance(torch.nn.Module):
    """Base class: the text-embedding cache and the SDS step shared by pixel and latent diffusion."""

    kind = "base"

    def __init__(self, config: GuidanceConfig, device="cpu", encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        self.device = torch.device(device)
        self.dtype = pick_dtype(config.dtype, self.device)
        self.encoder = encoder
        self.prediction_type = "epsilon"  # what the UNet predicts (the scheduler's prediction_type)
        self._emb: dict[str, torch.Tensor] = {}
        if config.t_min < 0 or config.t_max > 1 or config.t_min >= config.t_max:
            raise ValueError(f"need 0 ≤ t_min < t_max ≤ 1, got {config.t_min}, {config.t_max}")
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
        todo = [view_prompt(p, v) for p in prompts for v in views] + [self.config.negative_prompt]
        for i in range(0, len(todo), 256):
            self.embed(todo[i:i + 256])
        if release and getattr(self.encoder, "_model", None) is not None:
            self.encoder._model = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return len(todo)

    def uncond(self, n: int) -> torch.Tensor:
        return self.embed([self.config.negative_prompt] * n)

    def prompts_for(self, prompts: Sequence[str], views: Sequence[str] | None) -> list[str]:
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

    def sample_t(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        T = self.num_train_timesteps
        lo = int(self.config.t_min * T)
        hi = max(lo + 1, min(T, int(self.config.t_max * T) + 1))
        return torch.randint(lo, hi, (n,), generator=generator)

    def forward(self, images: torch.Tensor, conds: Sequence[torch.Tensor],
                weights: Sequence[torch.Tensor | float] | None = None, *,
                uncond: torch.Tensor | None = None, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> SDSOutput:
        """SDS on ``images`` with CFG terms ``conds[k]`` (``[B, L, D]``) of weights ``weights[k]``.

        ``weights`` defaults to ``[config.scale]``. Randomness (t, ε) comes from ``generator`` (on
        the CPU, so runs are reproducible across devices) unless ``t``/``noise`` are given.
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


class PixelDiffusionGuidance(Guidance):
    """Pixel-space diffusion: DeepFloyd IF stage I (64×64), the Shapes-world teacher, any
    ``UNet2DConditionModel`` + scheduler. A UNet predicting ε and a variance (IF: 6 channels)
    contributes its first 3 channels."""

    kind = "pixel"

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
        self.unet = _cast(unet, self.device, self.dtype)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.detach().float().cpu(), persistent=False)
        self.prediction_type = _prediction_type(scheduler)
        teacher = read_teacher_json(config.model) if config.model else {}
        self.image_size = int(config.image_size or teacher.get("image_size") or unet.config.sample_size)
        _check_token_dim(self.encoder, unet)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x

    def predict_noise(self, x_t, t, emb):
        out = self.unet(x_t, t, encoder_hidden_states=emb).sample
        return out[:, :3]


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


class LatentDiffusionGuidance(Guidance):
    """Latent diffusion (Stable Diffusion 1.x / 2.x): render → resize → VAE encode (with gradient)
    × ``scaling_factor`` → latent SDS. ``use_vae=False`` skips the VAE at every step: the render (in
    [−1, 1]) is resized to the latent size and mapped to the latent channels by a linear map fitted
    once to the pipeline's VAE (:func:`fit_rgb_to_latent`; cheap and approximate; a 3-channel UNet
    takes the render as is).
    ``v_prediction`` UNets (SD 2.x 768-v) are converted to ε through the scheduler's prediction type."""

    kind = "latent"

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
        self.unet = _cast(unet, self.device, self.dtype)
        if vae is not None:
            vae = _cast(vae, self.device, self.dtype)
        self.vae = vae if config.use_vae else None
        if config.use_vae and self.vae is None:
            raise ValueError("guidance.use_vae = true needs a VAE (the pipeline's vae/ folder)")
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.detach().float().cpu(), persistent=False)
        self.prediction_type = _prediction_type(scheduler)
        self.latent_size = int(unet.config.sample_size)
        _check_token_dim(self.encoder, unet)
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


class ReconstructionGuidance(torch.nn.Module):
    """3D-supervised reconstruction against known target images: ``loss = 0.5 Σ (x − target)² / B``.

    ``targets(prompts, cams, height, width) → [B, 3, H, W]`` renders the known ground truth (the
    Shapes world's analytic scenes, or :func:`sphere_targets`). For tests and an explicitly named
    mode; never a default.
    """

    kind = "reconstruction"

    def __init__(self, targets: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.targets = targets
        self.encoder = None

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> SDSOutput:
        grad = (images - target.to(images)).detach()
        b = images.shape[0]
        zeros = torch.zeros(b, dtype=torch.long)
        return SDSOutput(sds_loss(images, grad), grad, zeros, torch.ones(b))


def prompt_color(prompt: str) -> torch.Tensor:
    """A deterministic colour for a prompt (for :func:`sphere_targets`)."""
    import hashlib

    h = hashlib.sha256(prompt.encode()).digest()
    return torch.tensor([0.15 + 0.7 * h[i] / 255 for i in range(3)])


def sphere_targets(prompts: Sequence[str], cams, height: int, width: int, radius: float = 0.6) -> torch.Tensor:
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


# -- tiny pipelines (smoke runs and tests) -----------------------------------------------------------

def tiny_unet(image_size: int = 32, in_channels: int = 3, out_channels: int = 6, token_dim: int = 384,
              seed: int = 0, use_encoder_hid_dim: bool = True):
    """A ~0.2M-parameter random ``UNet2DConditionModel`` (IF-like: ε + variance channels)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kw = dict(encoder_hid_dim=token_dim, cross_attention_dim=32) if use_encoder_hid_dim else \
            dict(cross_attention_dim=token_dim)
        return UNet2DConditionModel(
            sample_size=image_size, in_channels=in_channels, out_channels=out_channels, layers_per_block=1,
            block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8, norm_num_groups=8, **kw)


def tiny_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


def build_guidance(config: GuidanceConfig, device="cpu", targets: Callable | None = None,
                   cache_dir=None) -> torch.nn.Module:
    """A guidance from its config. ``targets`` is the ground-truth renderer for ``reconstruction``."""
    if config.kind == "pixel":
        return PixelDiffusionGuidance(config, device, cache_dir=cache_dir)
    if config.kind == "latent":
        return LatentDiffusionGuidance(config, device, cache_dir=cache_dir)
    if config.kind == "tiny-pixel":
        encoder = load_guidance_text_encoder(
            GuidanceConfig(text_encoder=config.text_encoder or "minilm", max_length=config.max_length), device, cache_dir)
        size = config.image_size or 32
        return PixelDiffusionGuidance(config, device, unet=tiny_unet(size, token_dim=encoder.dim, seed=config.seed),
                                      scheduler=tiny_scheduler(), encoder=encoder)
    if config.kind == "reconstruction":
        return ReconstructionGuidance(targets or sphere_targets)
    raise ValueError(f"unknown guidance kind {config.kind!r}; choose pixel, latent, reconstruction or tiny-pixel")
