"""Training the teacher: resumable (``DIR/checkpoint/``), warm-startable from another teacher
(``init``), with an EMA of the weights that is exported as the teacher folder as it goes."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.guidance import TEACHER_JSON

from ..cache import DEFAULT_DATA_DIR
from ..world import ShapesWorld, get_world
from .checkpoint import load_checkpoint, read_checkpoint_state, save_checkpoint
from .config import TeacherConfig, build_scheduler, build_unet, check_trainable_prediction_type, config_from_dict
from .data import caption_ids, prepare_data
from .folder import export_teacher, read_teacher_meta, resolve_teacher
from .loss import diffusion_loss


def _run_config(out: Path, resume: bool, cfg: TeacherConfig | None, init: str | Path | None, recipe: dict | None,
                data_dir: str | Path | None) -> tuple[TeacherConfig, dict | None, Path | None, dict | None, Path]:
    """The recipe of this run: a resumed checkpoint's, else the warm-start teacher's, else ``cfg``
    (default :class:`TeacherConfig`), with ``recipe`` set on new runs. Checked before any data is
    prepared. → (config, checkpoint state, init folder, init metadata, data folder)."""
    state = read_checkpoint_state(out)
    if state is not None:
        if not resume:
            raise ValueError(f"{out} already holds a teacher checkpoint; pass --resume to continue it")
        cfg = config_from_dict(state["config"])
        data_dir = data_dir or state.get("data_dir")
    init_meta = None
    if init is not None and state is None:
        init = resolve_teacher(init)
        init_meta = read_teacher_meta(init)
        cfg = config_from_dict(init_meta["training"])  # the architecture and recipe of the teacher it continues
    cfg = cfg or TeacherConfig()
    recipe = {k: v for k, v in (recipe or {}).items() if v is not None}
    unknown = sorted(set(recipe) - set(asdict(cfg)))
    if unknown:
        raise ValueError(f"unknown teacher settings: {', '.join(unknown)}")
    if state is not None:
        changed = {k: v for k, v in recipe.items() if getattr(cfg, k) != v}
        if changed:
            raise ValueError(f"{out} was trained with " + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in changed)
                             + "; a resumed run keeps its recipe (warm-start a new folder with --init to change it)")
    cfg = replace(cfg, **recipe)
    check_trainable_prediction_type(cfg.prediction_type)  # before any data is prepared
    return cfg, state, init, init_meta, Path(data_dir or DEFAULT_DATA_DIR)


def _load_data(data_dir: Path, cfg: TeacherConfig, world: ShapesWorld, prompts: Sequence[int] | None,
               progress: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images ``[N, S, S, 3]`` uint8, caption row of each image ``[N]``, caption table ``[C, L, D]`` fp16,
    the rows of the images of ``cfg.focus`` prompts), prepared on first use."""
    from safetensors.torch import load_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: extra threads only spin on a shared CPU
    try:
        paths = prepare_data(data_dir, cfg, world, prompts, progress)
    finally:
        torch.set_num_threads(threads)
    images = torch.from_numpy(np.load(paths["images"]))
    labels = json.loads(paths["labels"].read_text())
    ids = caption_ids(world, None if prompts is None else list(prompts))
    cap_ids = torch.tensor([ids[(p, v)] for p, v in zip(labels["prompts"], labels["views"])])
    focus = torch.tensor([k for k, p in enumerate(labels["prompts"])
                          if any(f in world.texts[p] for f in cfg.focus)], dtype=torch.long)
    if cfg.focus and cfg.focus_share > 0 and not len(focus):
        raise ValueError(f"no prompt of the world contains any of the focus phrases {list(cfg.focus)}")
    return images, cap_ids, load_file(str(paths["captions"]))["tokens"], focus


def _warm_start(init: Path, init_meta: dict, unet, ema, log: dict[str, Any]) -> int:
    """Start from another teacher's UNet (weights and EMA alike); → the step count it carries on from."""
    from diffusers import UNet2DConditionModel

    warm = UNet2DConditionModel.from_pretrained(str(init / "unet"), torch_dtype=torch.float32).state_dict()
    unet.load_state_dict(warm)
    ema.load_state_dict(warm)
    step = int(init_meta.get("steps", 0))
    log["seconds"] = float(init_meta.get("train_seconds", 0.0))
    log["init"] = {"from": str(init), "steps": step, "prediction_type": init_meta.get("prediction_type", "epsilon")}
    return step


def _train_step(unet, opt: torch.optim.Optimizer, images: torch.Tensor, cap_ids: torch.Tensor, tokens: torch.Tensor,
                acp: torch.Tensor, cfg: TeacherConfig, step: int, focus: torch.Tensor | None = None) -> float:
    """One optimizer step on a batch drawn from a generator seeded by the step (a resumed run sees the
    same batches; ``cfg.focus_share`` of it from the ``focus`` rows); → the loss."""
    g = torch.Generator().manual_seed(cfg.seed * 7919 + step)  # resumable data order
    idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g)
    if focus is not None and len(focus) and cfg.focus_share > 0:
        n = int(round(cfg.focus_share * cfg.batch_size))
        idx[:n] = focus[torch.randint(0, len(focus), (n,), generator=g)]
    x = images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1
    flip = torch.rand(cfg.batch_size, generator=g) < 0.5  # the world is mirror symmetric in x
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    cid = cap_ids[idx]
    drop = torch.rand(cfg.batch_size, generator=g) < cfg.cond_dropout
    cid = torch.where(drop, torch.zeros_like(cid), cid)
    c = tokens[cid].float()
    t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    a = acp[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x + (1 - a).sqrt() * noise
    pred = unet(xt, t, encoder_hidden_states=c).sample
    loss = diffusion_loss(pred, x, noise, acp[t], cfg.prediction_type, cfg.snr_gamma)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    return loss.item()


@torch.no_grad()
def _update_ema(ema, unet, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), unet.parameters()):
        pe.lerp_(p, 1 - d)


def train_teacher(out: str | Path, steps: int = 4000, resume: bool = False, cfg: TeacherConfig | None = None,
                  data_dir: str | Path | None = None, world: ShapesWorld | None = None,
                  prompts: Sequence[int] | None = None, save_every: int = 100, export_every: int = 500,
                  progress: bool = True, log_file: str | Path | None = None,
                  init: str | Path | None = None, recipe: dict | None = None) -> Path:
    """Train (or resume) the teacher in ``out``; returns the folder.

    ``recipe``: :class:`TeacherConfig` fields to set on a new or warm-started run (e.g.
    ``{"prediction_type": "v_prediction", "snr_gamma": 5}`` to fine-tune an ε teacher into a v one); a
    resumed run keeps its checkpoint's recipe, and asking for another one is an error.
    ``init``: a teacher folder (e.g. ``"shipped"``) to warm-start a new run from: its UNet becomes
    both the weights and the EMA, its step count carries on, the optimizer starts fresh (a shipped
    teacher has no optimizer state). Continues training that an earlier machine could not finish."""
    from tqdm import tqdm

    out = Path(out)
    world = world or get_world()
    cfg, state, init, init_meta, data_dir = _run_config(out, resume, cfg, init, recipe, data_dir)
    images, cap_ids, tokens, focus = _load_data(data_dir, cfg, world, prompts, progress)

    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg)
    ema = build_unet(cfg)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    log = {"loss": [], "seconds": 0.0}
    if state is not None:
        load_checkpoint(out, unet, ema, opt, state)
        step, log = state["step"], state["log"]
    elif init_meta is not None:
        step = _warm_start(init, init_meta, unet, ema, log)
    acp = build_scheduler(cfg).alphas_cumprod.float()
    n_params = sum(p.numel() for p in unet.parameters())
    logf = open(log_file, "a") if log_file else None
    if logf:
        print(f"# teacher: {n_params / 1e6:.2f}M params, {len(images)} images ({len(focus)} in focus), "
              f"{tokens.shape[0]} captions, resume at step {step}", file=logf, flush=True)
    unet.train()
    bar = tqdm(total=steps, initial=min(step, steps), desc="teacher", disable=not progress, file=sys.stderr)
    t_last = time.perf_counter()
    run_loss = []
    while step < steps:
        run_loss.append(_train_step(unet, opt, images, cap_ids, tokens, acp, cfg, step, focus))
        step += 1
        _update_ema(ema, unet, cfg.ema_decay, step)
        bar.update()
        bar.set_postfix(loss=f"{np.mean(run_loss[-50:]):.4f}")
        now = time.perf_counter()
        log["seconds"] += now - t_last
        t_last = now
        if step % 10 == 0:
            log["loss"].append([step, float(np.mean(run_loss[-10:]))])
            if logf:
                print(f"step {step} loss {np.mean(run_loss[-10:]):.4f} elapsed {log['seconds']:.0f}s", file=logf,
                      flush=True)
        if step % save_every == 0 or step == steps:
            save_checkpoint(out, unet, ema, opt, step, cfg, log, data_dir)
        if step % export_every == 0 or step == steps:
            export_teacher(out, ema, cfg, step, world, {"n_params": n_params, "train_seconds": log["seconds"]})
    bar.close()
    if not (out / TEACHER_JSON).is_file():
        export_teacher(out, ema, cfg, step, world, {"n_params": n_params, "train_seconds": log["seconds"]})
    if logf:
        logf.close()
    return out
