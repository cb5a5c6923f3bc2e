"""The ``[guidance]`` section of a training config: one dataclass for every guidance kind."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: pixel | latent | reconstruction | tiny-pixel (a random tiny UNet built on the fly: smoke runs)
GuidanceKind = Literal["pixel", "latent", "reconstruction", "tiny-pixel"]
#: w(t) of the SDS gradient
Weighting = Literal["one_minus_alpha_bar", "uniform", "sqrt_one_minus_alpha_bar"]
#: auto = fp16 on CUDA, fp32 on the CPU
DType = Literal["auto", "float32", "float16", "bfloat16"]


@dataclass
class GuidanceConfig:
    kind: GuidanceKind = "pixel"
    #: a diffusers folder or hub id (``unet/``, ``scheduler/`` [, ``vae/``, ``text_encoder/``, ``tokenizer/``])
    model: str = ""
    #: the guidance's own text encoder: "" = the teacher's ``att3d_teacher.json`` or the pipeline's
    #: ``text_encoder/`` + ``tokenizer/``; else anything ``backend.TextEncoder`` loads (folder, hub id, "minilm")
    text_encoder: str = ""
    max_length: int = 0  # 0 = the encoder's default (77 for CLIP/T5)
    scale: float = 100.0  # classifier-free guidance weight s
    t_min: float = 0.02
    t_max: float = 0.98
    #: anneal the upper end of t linearly from t_max to t_max_end over t_anneal_steps training steps
    #: (0 = off): late training sees less noise and refines detail (DreamTime, ProlificDreamer)
    t_max_end: float = 0.0
    t_anneal_steps: int = 0
    weighting: Weighting = "one_minus_alpha_bar"
    grad_clip: float = 0.0  # clamp each element of w(t)(ε̂ − ε) to ±grad_clip (0 = off)
    image_size: int = 0  # pixel: the model's resolution (0 = the UNet's sample_size)
    use_vae: bool = True  # latent: False = resize the render to the latent size directly
    vae_resolution: int = 512  # latent: the render is resized to this before the VAE
    negative_prompt: str = ""  # the unconditional prompt
    #: CLIP guidance: condition on the hidden states this many layers before the last (diffusers'
    #: ``clip_skip``; as StableDiffusionPipeline.encode_prompt, the negative prompt is encoded without it)
    clip_skip: int = 0
    view_prompts: bool = True  # append ", front view" etc. to the guidance prompt (never the mapping input)
    dtype: DType = "auto"  # the UNet (and VAE)
    #: the guidance's text encoder: auto = bf16 on GPUs that support it, else fp16 on CUDA; fp32 on the CPU
    text_dtype: DType = "auto"
    seed: int = 0  # tiny-pixel: the random UNet's seed
