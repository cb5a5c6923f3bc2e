"""The teacher: a small pixel-space text-conditional DDPM that plays the pretrained text-to-image model
for the Shapes world.

A diffusers ``UNet2DConditionModel`` at 32×32 (RGB in [−1, 1], v-prediction with min-SNR-5 loss
weighting by default, cosine ``DDPMScheduler``) conditioned by cross-attention on MiniLM token embeddings
(``backend.text_encoder.TextEncoder("minilm")``, 32 × 384, padding zeroed, exactly what the text
encoder returns), with classifier-free dropout (10 % of captions replaced by the empty prompt) so
guidance works. It trains on ground-truth renders of **all** world prompts from the world's training
camera distribution, captioned with the view (``"…, front view"``).

The trained folder is a diffusers-style pipeline folder that pixel guidance loads by path, the same
code path as DeepFloyd IF::

    DIR/unet/{config.json,diffusion_pytorch_model.safetensors}   (EMA weights)
    DIR/scheduler/scheduler_config.json
    DIR/att3d_teacher.json      {"text_encoder": "minilm", "max_length": 32, "image_size": 32, ...}
    DIR/checkpoint/             resumable training state (safetensors + JSON, no pickles)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from backend.fileio import write_folder_atomically

from .world import VIEW_LABELS, ShapesWorld, camera_sampler, get_world, render_scenes, view_caption

TEACHER_JSON = "att3d_teacher.json"
#: the teacher that ships with the repository (fp16, no checkpoint): what the demo model was trained from
SHIPPED_TEACHER = Path(__file__).resolve().parent / "weights" / "teacher"
DEFAULT_DATA_DIR = Path(os.environ.get("ATT3D_SHAPES_DATA", Path.home() / ".cache" / "att3d" / "shapes"))


@dataclass
class TeacherConfig:
    image_size: int = 32
    block_out_channels: tuple = (32, 64, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 16
    text_encoder: str = "minilm"
    max_length: int = 32
    token_dim: int = 384
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # what the UNet predicts: "v_prediction" predicts the image itself at high noise, so a small,
    # briefly trained model gets the layout, size and background right; the first teacher was
    # "epsilon" and after 8000 CPU steps still drew oversized objects on tinted backgrounds (500 steps
    # of fine-tuning it into v fixed that: nearest-GT accuracy 0.17 → 0.83 on 24 prompts, CFG 1)
    prediction_type: str = "v_prediction"
    # min-SNR-γ loss weighting (Hang et al. 2023; 0 = off): stops the many nearly noise-free
    # timesteps from dominating the gradient
    snr_gamma: float = 5.0
    # training
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.0
    cond_dropout: float = 0.1
    ema_decay: float = 0.995
    seed: int = 0
    # data
    views_per_prompt: int = 8
    n_samples: int = 48


def build_unet(cfg: TeacherConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(sample_size=cfg.image_size, in_channels=3, out_channels=3,
                                block_out_channels=tuple(cfg.block_out_channels),
                                layers_per_block=cfg.layers_per_block, down_block_types=down, up_block_types=up,
                                cross_attention_dim=cfg.token_dim, attention_head_dim=cfg.attention_head_dim,
                                norm_num_groups=cfg.norm_num_groups)


def build_scheduler(cfg: TeacherConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=True)


PREDICTION_TYPES = ("epsilon", "v_prediction")


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {prediction_type!r}; choose {', '.join(PREDICTION_TYPES)}")


def diffusion_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
                   prediction_type: str = "epsilon", snr_gamma: float = 0.0) -> torch.Tensor:
    """The denoising loss for one batch: MSE against ε or v = √ᾱ·ε − √(1−ᾱ)·x0, optionally min-SNR-γ
    weighted (per sample, normalised so that every timestep's weight is ≤ 1)."""
    _check_prediction_type(prediction_type)
    a = alpha_bar.view(-1, 1, 1, 1)
    # v as in diffusers' DDPMScheduler.get_velocity, here from ᾱ rather than from timesteps
    target = noise if prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    per = (pred - target).pow(2).mean((1, 2, 3))
    if snr_gamma > 0:
        snr = alpha_bar / (1 - alpha_bar)
        w = snr.clamp(max=snr_gamma) / (snr if prediction_type == "epsilon" else snr + 1)
        per = per * w
    return per.mean()


# -- atomic file helpers ------------------------------------------------------------------------------

def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


# -- data: GT renders and caption embeddings ------------------------------------------------------

def data_paths(data_dir: Path, cfg: TeacherConfig) -> dict[str, Path]:
    tag = f"{cfg.image_size}px_{cfg.views_per_prompt}v"
    return {"images": data_dir / f"renders_{tag}.npy", "labels": data_dir / f"renders_{tag}.json",
            "chunks": data_dir / f"chunks_{tag}", "captions": data_dir / f"captions_{cfg.text_encoder}_{cfg.max_length}.safetensors"}


def prepare_data(data_dir: str | Path = DEFAULT_DATA_DIR, cfg: TeacherConfig | None = None,
                 world: ShapesWorld | None = None, prompts: Sequence[int] | None = None,
                 progress: bool = True, chunk: int = 64) -> dict[str, Path]:
    """Pre-render GT images of every prompt from random training cameras (resumable by chunks) and
    the MiniLM embeddings of every distinct caption. Returns the file paths."""
    from tqdm import tqdm

    cfg = cfg or TeacherConfig()
    world = world or get_world()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = data_paths(data_dir, cfg)
    idx = list(range(len(world))) if prompts is None else list(prompts)
    if prompts is not None:  # a subset (tests): its own files
        tag = f"_{len(idx)}p_{abs(hash(tuple(idx))) % 10 ** 8}"
        paths = {k: v.with_name(v.stem + tag + v.suffix) for k, v in paths.items()}
    if not (paths["images"].is_file() and paths["labels"].is_file()):
        jobs = [(p, v) for p in idx for v in range(cfg.views_per_prompt)]
        paths["chunks"].mkdir(parents=True, exist_ok=True)
        n_chunks = math.ceil(len(jobs) / chunk)
        sampler = camera_sampler()
        for c in tqdm(range(n_chunks), desc="GT renders", disable=not progress, file=sys.stderr):
            f = paths["chunks"] / f"{c:05d}.npy"
            if f.is_file():
                continue
            part = jobs[c * chunk:(c + 1) * chunk]
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + c)
            cams = sampler.sample(len(part), generator=g)
            scenes = world.scenes([p for p, _ in part])
            rgb = torch.zeros(len(part), 3, cfg.image_size, cfg.image_size)
            lit = cams.shading > 0  # only lit renders need normals: render the two groups apart
            for group in (lit, ~lit):
                sel = group.nonzero()[:, 0]
                if len(sel):
                    r = render_scenes([scenes[i] for i in sel.tolist()], cams[sel], cfg.image_size, cfg.n_samples)
                    rgb[sel] = r.rgb
            img = (rgb.clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
            views = np.array([VIEW_LABELS.index(l if l in VIEW_LABELS else "side") for l in cams.view_labels],
                             dtype=np.uint8)
            arr = np.concatenate([img.reshape(len(part), -1), views[:, None]], axis=1)
            _atomic_save_npy(f, arr)
        arrs = [np.load(paths["chunks"] / f"{c:05d}.npy") for c in range(n_chunks)]
        arr = np.concatenate(arrs)
        s = cfg.image_size
        _atomic_save_npy(paths["images"], arr[:, :-1].reshape(-1, s, s, 3))
        labels = {"prompts": [p for p, _ in jobs], "views": arr[:, -1].tolist(), "view_labels": list(VIEW_LABELS),
                  "prompt_hash": world.prompt_hash}
        tmp = paths["labels"].with_suffix(".tmp")
        tmp.write_text(json.dumps(labels))
        os.replace(tmp, paths["labels"])
        shutil.rmtree(paths["chunks"], ignore_errors=True)
    ensure_caption_embeddings(paths["captions"], world, cfg, progress, prompts)
    return paths


def all_captions(world: ShapesWorld, prompts: Sequence[int] | None = None) -> list[str]:
    """Every caption the teacher sees: "" (the unconditional prompt), then each prompt × view."""
    idx = range(len(world)) if prompts is None else prompts
    return [""] + [view_caption(world.texts[i], v) for i in idx for v in VIEW_LABELS]


def caption_ids(world: ShapesWorld, prompts: Sequence[int] | None = None) -> dict[tuple[int, int], int]:
    """(prompt index, view index) → row of the caption-embedding table of :func:`all_captions`."""
    idx = range(len(world)) if prompts is None else prompts
    return {(p, v): 1 + k * len(VIEW_LABELS) + v for k, p in enumerate(idx) for v in range(len(VIEW_LABELS))}


def ensure_caption_embeddings(path: Path, world: ShapesWorld, cfg: TeacherConfig, progress: bool = True,
                              prompts: Sequence[int] | None = None):
    """``{"tokens": [C, L, D] fp16}`` for :func:`all_captions`, computed once in batches."""
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from backend.text_encoder import TextEncoder

    caps = all_captions(world, prompts)
    if path.is_file():
        try:
            d = load_file(str(path))
            if d["tokens"].shape[0] == len(caps):
                return d["tokens"]
        except Exception:
            pass
    enc = TextEncoder(cfg.text_encoder, cfg.max_length)
    out = []
    for s in tqdm(range(0, len(caps), 256), desc="captions", disable=not progress, file=sys.stderr):
        out.append(enc._encode(caps[s:s + 256]).tokens.half())
    tokens = torch.cat(out)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"tokens": tokens.contiguous()}, str(tmp), metadata={"prompt_hash": world.prompt_hash})
    os.replace(tmp, path)
    return tokens


# -- checkpoints --------------------------------------------------------------------------------------

def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"state.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict = {}
    for k, v in tensors.items():
        _, pid, name = k.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder: Path, unet, ema, opt, step: int, cfg: TeacherConfig, log: dict,
                    data_dir: Path | None = None) -> None:
    from safetensors.torch import save_file

    def write(tmp: Path):
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
        tensors, meta = _flatten_optimizer(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": _cfg_dict(cfg), "optimizer": meta,
                                                    "data_dir": str(data_dir) if data_dir else None, "log": log}, indent=1))

    write_folder_atomically(folder / "checkpoint", write)


def _cfg_from_dict(d: dict) -> TeacherConfig:
    """The inverse of :func:`_cfg_dict` (JSON turns the channel tuple into a list). Configs written
    before the recipe options existed were ε-prediction without loss weighting."""
    legacy = {"prediction_type": "epsilon", "snr_gamma": 0.0}
    return TeacherConfig(**{**legacy, **d, "block_out_channels": tuple(d["block_out_channels"])})


def _cfg_dict(cfg: TeacherConfig) -> dict:
    d = asdict(cfg)
    d["block_out_channels"] = list(cfg.block_out_channels)
    return d


def export_teacher(folder: Path, ema, cfg: TeacherConfig, step: int, world: ShapesWorld, extra: dict | None = None):
    """(Re)write ``unet/``, ``scheduler/`` and ``att3d_teacher.json`` (atomically, each)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_folder_atomically(folder / "unet", lambda tmp: ema.save_pretrained(str(tmp), safe_serialization=True))
    write_folder_atomically(folder / "scheduler", lambda tmp: build_scheduler(cfg).save_pretrained(str(tmp)))
    meta = {"kind": "pixel-ddpm", "text_encoder": cfg.text_encoder, "max_length": cfg.max_length,
            "token_dim": cfg.token_dim, "image_size": cfg.image_size, "channels": 3, "value_range": [-1, 1],
            "prediction_type": cfg.prediction_type, "background": "white", "unconditional_prompt": "",
            "caption_format": "{prompt}, {view} view", "view_labels": list(VIEW_LABELS),
            "world": "shapes", "world_prompt_hash": world.prompt_hash, "steps": step,
            "training": _cfg_dict(cfg), **(extra or {})}
    tmp = folder / f".{TEACHER_JSON}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, folder / TEACHER_JSON)


def resolve_teacher(teacher: str | Path | None = None) -> Path:
    """A teacher folder: ``teacher`` as given ("shipped" or None = :data:`SHIPPED_TEACHER`); checked."""
    path = SHIPPED_TEACHER if teacher in (None, "", "shipped") else Path(teacher)
    if not (path / TEACHER_JSON).is_file():
        hint = " (the shipped teacher is missing from this checkout)" if path == SHIPPED_TEACHER else ""
        raise ValueError(f"{path}: not a teacher folder (no {TEACHER_JSON}){hint}; "
                         "train one with `att3d train-teacher --out DIR`")
    return path


def ship_teacher(src: str | Path, dest: str | Path = SHIPPED_TEACHER) -> Path:
    """Copy a trained teacher (its EMA UNet in fp16, scheduler, metadata; no checkpoint) to ``dest``."""
    from diffusers import UNet2DConditionModel

    src, dest = Path(src), Path(dest)
    resolve_teacher(src)
    unet = UNet2DConditionModel.from_pretrained(str(src / "unet")).to(torch.float16)

    def write(tmp: Path) -> None:
        unet.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        shutil.copytree(src / "scheduler", tmp / "scheduler")
        shutil.copy2(src / TEACHER_JSON, tmp / TEACHER_JSON)
        for extra in ("report.json", "samples.png"):
            if (src / extra).is_file():
                shutil.copy2(src / extra, tmp / extra)

    write_folder_atomically(dest, write)
    return dest


def load_teacher(folder: str | Path, device="cpu"):
    """→ (unet, scheduler, meta) from a teacher folder (the guidance's own loader may be used instead)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    folder = resolve_teacher(folder)
    meta = json.loads((folder / TEACHER_JSON).read_text())
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=torch.float32).to(device).eval()
    sched = DDPMScheduler.from_pretrained(str(folder / "scheduler"))
    return unet, sched, meta


# -- training -------------------------------------------------------------------------------------------

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
    ck = out / "checkpoint"
    state = None
    if ck.is_dir() and (ck / "state.json").is_file():
        if not resume:
            raise ValueError(f"{out} already holds a teacher checkpoint; pass --resume to continue it")
        state = json.loads((ck / "state.json").read_text())
        cfg = _cfg_from_dict(state["config"])
        data_dir = data_dir or state.get("data_dir")
    init_meta = None
    if init is not None and state is None:
        init = resolve_teacher(init)
        init_meta = json.loads((init / TEACHER_JSON).read_text())
        cfg = _cfg_from_dict(init_meta["training"])  # the architecture and recipe of the teacher it continues
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
    _check_prediction_type(cfg.prediction_type)  # before any data is prepared
    data_dir = Path(data_dir or DEFAULT_DATA_DIR)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: extra threads only spin on a shared CPU
    try:
        paths = prepare_data(data_dir, cfg, world, prompts, progress)
    finally:
        torch.set_num_threads(threads)
    images = torch.from_numpy(np.load(paths["images"]))  # [N, S, S, 3] uint8
    labels = json.loads(paths["labels"].read_text())
    ids = caption_ids(world, None if prompts is None else list(prompts))
    cap_ids = torch.tensor([ids[(p, v)] for p, v in zip(labels["prompts"], labels["views"])])
    from safetensors.torch import load_file

    tokens = load_file(str(paths["captions"]))["tokens"]  # [C, L, D] fp16

    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg)
    ema = build_unet(cfg)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    log = {"loss": [], "seconds": 0.0}
    if state is not None:
        unet.load_state_dict(load_file(str(ck / "model.safetensors")))
        ema.load_state_dict(load_file(str(ck / "ema.safetensors")))
        opt.load_state_dict(_unflatten_optimizer(load_file(str(ck / "optimizer.safetensors")), state["optimizer"]))
        step, log = state["step"], state["log"]
    elif init_meta is not None:
        from diffusers import UNet2DConditionModel

        warm = UNet2DConditionModel.from_pretrained(str(init / "unet"), torch_dtype=torch.float32).state_dict()
        unet.load_state_dict(warm)
        ema.load_state_dict(warm)
        step = int(init_meta.get("steps", 0))
        log["seconds"] = float(init_meta.get("train_seconds", 0.0))
        log["init"] = {"from": str(init), "steps": step, "prediction_type": init_meta.get("prediction_type", "epsilon")}
    sched = build_scheduler(cfg)
    acp = sched.alphas_cumprod.float()
    n_params = sum(p.numel() for p in unet.parameters())
    logf = open(log_file, "a") if log_file else None
    if logf:
        print(f"# teacher: {n_params / 1e6:.2f}M params, {len(images)} images, {tokens.shape[0]} captions, "
              f"resume at step {step}", file=logf, flush=True)
    unet.train()
    bar = tqdm(total=steps, initial=min(step, steps), desc="teacher", disable=not progress, file=sys.stderr)
    t_last = time.perf_counter()
    run_loss = []
    while step < steps:
        g = torch.Generator().manual_seed(cfg.seed * 7919 + step)  # resumable data order
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g)
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
        step += 1
        d = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - d)
        run_loss.append(loss.item())
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


# -- sampling -----------------------------------------------------------------------------------------

@torch.no_grad()
def sample(unet, tokens: torch.Tensor, null: torch.Tensor, guidance: float = 5.0, steps: int = 50,
           seed: int = 0, cfg: TeacherConfig | None = None, image_size: int = 32, eta: float = 0.0) -> torch.Tensor:
    """DDIM with classifier-free guidance; tokens ``[B, L, D]`` → images ``[B, 3, S, S]`` in [0, 1].
    ``cfg`` gives the noise schedule and prediction type (those of the teacher's training).
    ``eta`` = 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling (more forgiving of an
    undertrained model's x0 estimates at high noise)."""
    from diffusers import DDIMScheduler

    cfg = cfg or TeacherConfig()
    sched = DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                          prediction_type=cfg.prediction_type, clip_sample=True, set_alpha_to_one=True)
    sched.set_timesteps(steps)
    b = tokens.shape[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, image_size, image_size, generator=g)
    guided = guidance != 1.0  # CFG 1 is the conditional model alone: no unconditional pass needed
    cond = torch.cat([null.expand(b, -1, -1), tokens]).float() if guided else tokens.float()
    for t in sched.timesteps:
        out = unet(torch.cat([x, x]) if guided else x, t, encoder_hidden_states=cond).sample
        if guided:
            ou, oc = out.chunk(2)
            out = ou + guidance * (oc - ou)
        x = sched.step(out, t, x, eta=eta, generator=g).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


# -- report: does the teacher know the world? ----------------------------------------------------------

REPORT_VIEW_SEED = 12345
# The teacher does not know the exact camera, so a sample is matched against many views of every
# prompt. The measure's ceiling (a fresh GT render from a random front-ish camera finds its own
# prompt) was 0.67 with 6 views and is 0.92 with 24 (64 prompts; the gallery takes ~30 min to render
# on 2 cores, once, then it is cached).
REPORT_VIEWS = 24


def _report_sampler():
    """The training camera distribution narrowed to front-ish views (the report asks for "front view")."""
    return replace(camera_sampler(), azimuth=(-40.0, 40.0), elevation=(-5.0, 45.0))


def report_cameras(n_views: int = REPORT_VIEWS):
    """The fixed view set of the teacher report: ``n_views`` front-view cameras drawn once (seeded)
    from the training distribution (azimuth within ±45°), albedo and lit alike."""
    return _report_sampler().sample(n_views, generator=torch.Generator().manual_seed(REPORT_VIEW_SEED))


def report_gallery(world: ShapesWorld, data_dir: Path, size: int = 32, n_views: int = REPORT_VIEWS,
                   progress: bool = True, prompts: Sequence[int] | None = None) -> torch.Tensor:
    """GT renders of every prompt (or of ``prompts``, not cached) from the fixed report views
    ``[P, V, 3, S, S]`` (cached as uint8)."""
    from tqdm import tqdm

    rows = list(range(len(world))) if prompts is None else list(prompts)
    path = Path(data_dir) / f"report_views_{size}px_{n_views}v_{world.prompt_hash[:12]}.npy"
    if prompts is None and path.is_file():
        return torch.from_numpy(np.load(path)).float() / 255
    cams = report_cameras(n_views)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        per = max(1, 64 // n_views)
        for s in tqdm(range(0, len(rows), per), desc="report GT", disable=not progress, file=sys.stderr):
            idx = rows[s:s + per]
            scenes = [sc for sc in world.scenes(idx) for _ in range(n_views)]
            cam = cams[torch.arange(n_views).repeat(len(idx))]
            rgb = torch.zeros(len(scenes), 3, size, size)
            lit = cam.shading > 0
            for group in (lit, ~lit):
                sel = group.nonzero()[:, 0]
                if len(sel):
                    rgb[sel] = render_scenes([scenes[i] for i in sel.tolist()], cam[sel], size).rgb
            out.append(rgb.reshape(len(idx), n_views, 3, size, size))
    finally:
        torch.set_num_threads(threads)
    arr = (torch.cat(out).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if prompts is None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        _atomic_save_npy(path, arr)
    return torch.from_numpy(arr).float() / 255


def nearest_prompts(images: torch.Tensor, gallery: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """For images ``[N, 3, S, S]`` and a gallery ``[P, V, 3, S, S]``: the prompt of the nearest
    gallery image (min over views of the mean squared distance) and all distances ``[N, P]``."""
    p, v = gallery.shape[:2]
    g = gallery.reshape(p * v, -1)
    ds = []
    for s in range(0, len(images), chunk):
        x = images[s:s + chunk].reshape(-1, g.shape[1])
        d = torch.cdist(x, g) ** 2 / g.shape[1]
        ds.append(d.reshape(len(x), p, v).min(-1).values)
    d = torch.cat(ds)
    return d.argmin(-1), d


@torch.no_grad()
def teacher_report(teacher: str | Path, out: str | Path, n_prompts: int = 64, samples_per_prompt: int = 2,
                   grid_prompts: int = 16, guidance: float = 1.0, steps: int = 50, seed: int = 0, eta: float = 1.0,
                   data_dir: str | Path | None = None, progress: bool = True, batch: int = 64,
                   prompts: Sequence[int] | None = None) -> dict:
    """Samples of the teacher for an evenly spread set of prompts ("…, front view", DDIM with CFG);
    accuracy = the fraction whose nearest GT render (fixed front-ish view set, all prompts) belongs
    to the asked prompt; also per attribute. Writes ``samples.png`` and ``report.json`` into ``out``."""
    from PIL import Image
    from tqdm import tqdm

    from backend.text_encoder import TextEncoder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = get_world()
    data_dir = Path(data_dir or DEFAULT_DATA_DIR)
    unet, _, meta = load_teacher(teacher)
    size = int(meta["image_size"])
    cfg = _cfg_from_dict(meta["training"])
    enc = TextEncoder(meta.get("text_encoder", "minilm"), meta.get("max_length", 32))
    # ``prompts``: a subset of the world (quick checks, tests) that is both asked and matched against
    pool = list(range(len(world))) if prompts is None else list(prompts)
    pos = [pool[i] for i in np.linspace(0, len(pool) - 1, min(n_prompts, len(pool))).round().astype(int)]
    caps = [view_caption(world.texts[i], "front") for i in pos]
    null = enc._encode([""]).tokens
    tokens = enc._encode(caps).tokens.repeat_interleave(samples_per_prompt, 0)
    asked = torch.tensor(pos).repeat_interleave(samples_per_prompt)
    t0 = time.perf_counter()
    imgs = []
    for s in tqdm(range(0, len(tokens), batch), desc="sampling", disable=not progress, file=sys.stderr):
        imgs.append(sample(unet, tokens[s:s + batch], null, guidance, steps, seed + s, cfg, image_size=size, eta=eta))
    imgs = torch.cat(imgs)
    sample_seconds = time.perf_counter() - t0
    gallery = report_gallery(world, data_dir, size, progress=progress, prompts=prompts)
    rows_of = torch.tensor(pool)  # gallery row → prompt index
    near = rows_of[nearest_prompts(imgs, gallery)[0]]
    ok = near == asked
    P = world.prompts
    attr = {k: float(np.mean([getattr(P[a], k) == getattr(P[b], k) for a, b in zip(asked.tolist(), near.tolist())]))
            for k in ("shape", "color", "accessory", "accessory_color")}
    # GT ceiling of the measure: fresh GT renders (training cameras) of the same prompts
    cam = _report_sampler().sample(len(pos), generator=torch.Generator().manual_seed(seed + 99))
    gt = render_scenes(world.scenes(pos), cam, size).rgb.clamp(0, 1)
    gt_near = rows_of[nearest_prompts(gt, gallery)[0]]
    ceiling = float((gt_near == torch.tensor(pos)).float().mean())
    # grid: grid_prompts rows × (samples, then one GT render)
    rows = pos[:: max(1, len(pos) // grid_prompts)][:grid_prompts]
    cells = []
    for r in rows:
        k = pos.index(r)
        row = [imgs[k * samples_per_prompt + j] for j in range(samples_per_prompt)] + [gallery[pool.index(r), 0]]
        cells.append(torch.cat(row, -1))
    grid = torch.cat(cells, -2)
    png = out / "samples.png"
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize(
        (grid.shape[-1] * 4, grid.shape[-2] * 4), Image.NEAREST).save(png)
    (out / "grid_prompts.txt").write_text("\n".join(world.texts[r] for r in rows) + "\n")
    rep = {"teacher": str(teacher), "steps_trained": meta.get("steps"), "train_seconds": meta.get("train_seconds"),
           "n_params": meta.get("n_params"), "n_prompts": len(pos), "samples_per_prompt": samples_per_prompt,
           "sampler": f"DDIM {steps} steps, eta {eta}, CFG {guidance}",
           "prediction_type": cfg.prediction_type, "caption": "{prompt}, front view",
           "gallery": f"GT renders of {'all ' if prompts is None else ''}{len(pool)} prompts from {REPORT_VIEWS} "
                      "fixed front-ish views",
           "accuracy": float(ok.float().mean()), "attribute_accuracy": attr, "gt_ceiling": ceiling,
           "sample_seconds": sample_seconds, "grid_png": str(png), "grid_layout": f"rows: prompts in grid_prompts.txt; "
           f"columns: {samples_per_prompt} samples, then a GT render",
           "per_sample": [{"prompt": world.texts[a], "nearest": world.texts[b], "ok": a == b}
                          for a, b in zip(asked.tolist(), near.tolist())]}
    (out / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    return rep
