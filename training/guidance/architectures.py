"""The published architectures of the teachers the shipped configs name, as small config JSONs
(``architectures/``), so that ``att3d train --dry-run`` counts parameters and ``att3d doctor --gpu-bench``
builds real-size models without downloading anything.

A component's config comes from a local folder when the model id is one (``unet/config.json``, ...),
else from the shipped JSON of a known hub id; models are built on the ``meta`` device to count their
parameters (no memory), or directly on a GPU in half precision for the benchmark.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

ARCH_DIR = Path(__file__).resolve().parent / "architectures"

_SD15 = {"unet": "sd15_unet.json", "vae": "sd15_vae.json", "text_encoder": "clip_vit_large_patch14_text.json",
         "tokenizer": None, "scheduler": None}
#: hub id → {component subfolder (or "model" for a single model) → shipped JSON (None: no weights)}
KNOWN: dict[str, dict[str, str | None]] = {
    "DeepFloyd/IF-I-XL-v1.0": {"unet": "if_i_xl_unet.json", "text_encoder": "t5_v1_1_xxl.json",
                               "tokenizer": None, "scheduler": None},
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _SD15,
    "runwayml/stable-diffusion-v1-5": _SD15,
    "google/t5-v1_1-xxl": {"model": "t5_v1_1_xxl.json"},
    "openai/clip-vit-large-patch14": {"model": "clip_vit_large_patch14_text.json"},
    "openai/clip-vit-base-patch32": {"model": "clip_vit_base_patch32.json"},
}


def shipped_config(name: str) -> dict[str, Any]:
    """A shipped architecture JSON (its ``_comment`` dropped)."""
    data = json.loads((ARCH_DIR / name).read_text())
    return {k: v for k, v in data.items() if k != "_comment"}


def is_local(model_id: str) -> bool:
    return Path(model_id.partition("#")[0]).expanduser().is_dir()


def component_config(model_id: str, component: str = "model") -> tuple[dict[str, Any] | None, str]:
    """``(config, where it came from)`` of a model's component: a local folder's ``config.json`` (``model``:
    the folder's own; ``ROOT#text_encoder`` reads that subfolder), else the shipped JSON of a known hub id;
    ``(None, "unknown")`` otherwise."""
    root, _, sub = model_id.partition("#")
    if sub and component == "model":
        component = sub
    local = Path(root).expanduser()
    if local.is_dir():
        f = local / "config.json" if component == "model" else local / component / "config.json"
        if f.is_file():
            return json.loads(f.read_text()), f"local {f}"
        return None, f"local folder without {f.relative_to(local)}"
    name = KNOWN.get(root, {}).get(component)
    if name:
        return shipped_config(name), f"shipped architectures/{name}"
    return None, "unknown"


def build(config: dict[str, Any], device: str | torch.device = "meta", dtype: torch.dtype | None = None):
    """The model a config describes, with random weights, on ``device`` in ``dtype``.

    It is constructed on the ``meta`` device (no memory, well under a second for IF-I-XL), converted to
    ``dtype`` there, then materialised straight on ``device`` (e.g. a GPU in half precision: never a
    float32 copy on the host) with random weights: N(0, 0.02) matrices, zero biases, unit norm scales.
    """
    with torch.device("meta"):
        if config.get("_class_name") in ("UNet2DConditionModel", "AutoencoderKL"):
            import diffusers

            model = getattr(diffusers, config["_class_name"]).from_config(config)
        else:
            model = _transformers_model(config)
    if dtype is not None:  # (tensor by tensor: diffusers' .to(dtype) warns about float32 modules)
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.data = t.data.to(dtype)
    if torch.device(device).type == "meta":
        return model
    model = model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    return model


def _transformers_model(config: dict[str, Any]):
    from transformers import (
        AutoConfig,
        AutoModel,
        CLIPModel,
        CLIPTextConfig,
        CLIPTextModel,
        T5Config,
        T5EncoderModel,
    )

    kind = config.get("model_type", "")
    kw = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("model_type", "architectures")}
    if kind in ("t5", "umt5", "mt5"):
        return T5EncoderModel(T5Config(**kw))
    if kind == "clip_text_model":
        return CLIPTextModel(CLIPTextConfig(**kw))
    if kind == "clip":
        from transformers import CLIPConfig

        if "text_config" not in config:  # a CLIP text encoder folder saved as a whole CLIP config
            return CLIPTextModel(CLIPTextConfig(**kw))
        return CLIPModel(CLIPConfig(**kw))
    return AutoModel.from_config(AutoConfig.for_model(kind, **kw))


def param_count(config: dict[str, Any]) -> int:
    """Parameters of the model a config describes (built on the meta device)."""
    return sum(p.numel() for p in build(config, "meta").parameters())
