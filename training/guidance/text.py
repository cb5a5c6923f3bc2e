"""The text a guidance reads: view-augmented prompts and the diffusion model's own text encoder
(from ``guidance.text_encoder``, a teacher folder's ``att3d_teacher.json``, or a pipeline's
``text_encoder/`` + ``tokenizer/``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from backend.text_encoder import TextEncoder, default_dtype

from .config import GuidanceConfig

#: a teacher folder's metadata (``{"text_encoder": "minilm", "max_length": 32, "image_size": 32}``)
TEACHER_JSON = "att3d_teacher.json"
VIEW_SUFFIX = ", {view} view"


def view_prompt(prompt: str, view: str | None) -> str:
    return prompt if not view else prompt + VIEW_SUFFIX.format(view=view)


def pipeline_text_encoder(root: str, max_length: int | None = None, device="cpu", cache_dir=None,
                          dtype: torch.dtype | None = None, clip_skip: int = 0) -> TextEncoder:
    """The ``text_encoder/`` + ``tokenizer/`` subfolders of a diffusers pipeline (CLIP for SD, T5 for
    IF), through the backend's encoder (``ROOT#text_encoder``), so inference loads it the same way."""
    return TextEncoder(f"{root}#text_encoder", max_length, device=device, cache_dir=cache_dir, dtype=dtype,
                       clip_skip=clip_skip)


def text_dtype(config: GuidanceConfig, device) -> torch.dtype:
    """``guidance.text_dtype``: auto = half precision on CUDA (bf16 where supported), float32 on the CPU."""
    if config.text_dtype == "auto":
        return default_dtype(device)
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[config.text_dtype]


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


def load_guidance_text_encoder(config: GuidanceConfig, device, cache_dir=None) -> TextEncoder:
    """The guidance's own text encoder, by the precedence documented on :class:`GuidanceConfig`."""
    teacher = read_teacher_json(config.model) if config.model else {}
    enc_id = config.text_encoder or teacher.get("text_encoder", "")
    max_length = config.max_length or teacher.get("max_length") or None
    kw = dict(device=device, cache_dir=cache_dir, dtype=text_dtype(config, device), clip_skip=config.clip_skip)
    if enc_id:
        return TextEncoder(enc_id, max_length, **kw)
    if config.model and _has_subfolder(config.model, "text_encoder"):
        return pipeline_text_encoder(config.model, max_length, **kw)
    raise ValueError(f"guidance model {config.model!r} names no text encoder: set guidance.text_encoder "
                     f"(or give the folder a text_encoder/ + tokenizer/ or an {TEACHER_JSON})")


def check_token_dim(encoder: TextEncoder | None, unet) -> None:
    """The encoder's token width must be what the UNet's cross-attention (or IF's projection) takes."""
    need = getattr(unet.config, "encoder_hid_dim", None) or getattr(unet.config, "cross_attention_dim", None)
    if encoder is not None and need and encoder.dim != need:
        raise ValueError(f"guidance text encoder {encoder.encoder_id!r} gives {encoder.dim}-d tokens, "
                         f"the UNet expects {need}: set guidance.text_encoder to the pipeline's own encoder")
