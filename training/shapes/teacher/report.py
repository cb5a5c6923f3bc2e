"""Does the teacher know the world? Samples for an evenly spread set of prompts, each matched to its
nearest ground-truth render (a fixed front-ish view set of every prompt); ``att3d teacher-report``."""
from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from backend.cameras import Cameras, CameraSampler
from backend.fileio import atomic_write_bytes, atomic_write_text
from training.images import image_grid

from ..cache import DEFAULT_DATA_DIR, save_npy_atomically
from ..world import ShapesWorld, camera_sampler, get_world, render_scenes, view_caption
from .config import config_from_dict
from .folder import load_teacher
from .sampling import sample

REPORT_VIEW_SEED = 12345
# The teacher does not know the exact camera, so a sample is matched against many views of every
# prompt. The measure's ceiling (a fresh GT render from a random front-ish camera finds its own
# prompt) was 0.67 with 6 views and is 0.92 with 24 (64 prompts; the gallery takes ~30 min to render
# on 2 cores, once, then it is cached).
REPORT_VIEWS = 24


def _report_sampler() -> CameraSampler:
    """The training camera distribution narrowed to front-ish views (the report asks for "front view")."""
    return replace(camera_sampler(), azimuth=(-40.0, 40.0), elevation=(-5.0, 45.0))


def report_cameras(n_views: int = REPORT_VIEWS) -> Cameras:
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
        save_npy_atomically(path, arr)
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


def _attribute_accuracy(world: ShapesWorld, asked: list[int], near: list[int]) -> dict[str, float]:
    """How often the nearest GT prompt at least has the asked prompt's shape, colour, accessory, …"""
    P = world.prompts
    return {k: float(np.mean([getattr(P[a], k) == getattr(P[b], k) for a, b in zip(asked, near)]))
            for k in ("shape", "color", "accessory", "accessory_color")}


def _gt_ceiling(world: ShapesWorld, pos: list[int], gallery: torch.Tensor, rows_of: torch.Tensor, size: int,
                seed: int) -> float:
    """The measure's ceiling: how often fresh GT renders (random front-ish cameras) of the asked
    prompts find their own prompt in the gallery."""
    cam = _report_sampler().sample(len(pos), generator=torch.Generator().manual_seed(seed + 99))
    gt = render_scenes(world.scenes(pos), cam, size).rgb.clamp(0, 1)
    gt_near = rows_of[nearest_prompts(gt, gallery)[0]]
    return float((gt_near == torch.tensor(pos)).float().mean())


def _write_sample_sheet(png: Path, rows: list[list[torch.Tensor]], cols: int, zoom: int = 4) -> None:
    """The contact sheet: one row of images per prompt, enlarged ``zoom`` times (nearest neighbour)."""
    from PIL import Image

    sheet = Image.fromarray(image_grid(torch.stack([im for row in rows for im in row]), cols))
    buf = io.BytesIO()
    sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST).save(buf, format="PNG")
    atomic_write_bytes(png, buf.getvalue())


@torch.no_grad()
def teacher_report(teacher: str | Path, out: str | Path, n_prompts: int = 64, samples_per_prompt: int = 2,
                   grid_prompts: int = 16, guidance: float = 1.0, steps: int = 50, seed: int = 0, eta: float = 1.0,
                   data_dir: str | Path | None = None, progress: bool = True, batch: int = 64,
                   prompts: Sequence[int] | None = None, focus: Sequence[str] = ()) -> dict:
    """Samples of the teacher for an evenly spread set of prompts ("…, front view", DDIM with CFG);
    accuracy = the fraction whose nearest GT render (fixed front-ish view set, all prompts) belongs
    to the asked prompt; also per attribute. Writes ``samples.png`` and ``report.json`` into ``out``.
    ``focus``: ask only prompts containing one of these phrases (e.g. "tree": what a fine-tune on a
    grown world added), still matched against every prompt's GT renders."""
    from tqdm import tqdm

    from backend.text_encoder import TextEncoder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = get_world()
    data_dir = Path(data_dir or DEFAULT_DATA_DIR)
    unet, _, meta = load_teacher(teacher)
    size = int(meta["image_size"])
    cfg = config_from_dict(meta["training"])
    enc = TextEncoder(meta.get("text_encoder", "minilm"), meta.get("max_length", 32))
    # ``prompts``: a subset of the world (quick checks, tests) that is both asked and matched against
    pool = list(range(len(world))) if prompts is None else list(prompts)
    asked_pool = [i for i in pool if any(f in world.texts[i] for f in focus)] if focus else pool
    if not asked_pool:
        raise ValueError(f"no prompt contains any of {list(focus)}")
    pos = [asked_pool[i] for i in np.linspace(0, len(asked_pool) - 1, min(n_prompts, len(asked_pool))).round()
           .astype(int)]
    caps = [view_caption(world.texts[i], "front") for i in pos]
    null = enc._encode([""]).tokens
    tokens = enc._encode(caps).tokens.repeat_interleave(samples_per_prompt, 0)
    asked = torch.tensor(pos).repeat_interleave(samples_per_prompt)
    t0 = time.perf_counter()
    imgs = torch.cat([sample(unet, tokens[s:s + batch], null, guidance, steps, seed + s, cfg, image_size=size, eta=eta)
                      for s in tqdm(range(0, len(tokens), batch), desc="sampling", disable=not progress,
                                    file=sys.stderr)])
    sample_seconds = time.perf_counter() - t0
    gallery = report_gallery(world, data_dir, size, progress=progress, prompts=prompts)
    rows_of = torch.tensor(pool)  # gallery row → prompt index
    near = rows_of[nearest_prompts(imgs, gallery)[0]]
    ok = near == asked
    attr = _attribute_accuracy(world, asked.tolist(), near.tolist())
    ceiling = _gt_ceiling(world, pos, gallery, rows_of, size, seed)
    # grid: grid_prompts rows × (samples, then one GT render)
    rows = pos[:: max(1, len(pos) // grid_prompts)][:grid_prompts]
    png = out / "samples.png"
    _write_sample_sheet(png, [[imgs[pos.index(r) * samples_per_prompt + j] for j in range(samples_per_prompt)]
                              + [gallery[pool.index(r), 0]] for r in rows], samples_per_prompt + 1)
    atomic_write_text(out / "grid_prompts.txt", "\n".join(world.texts[r] for r in rows) + "\n")
    rep = {"teacher": str(teacher), "steps_trained": meta.get("steps"), "train_seconds": meta.get("train_seconds"),
           "n_params": meta.get("n_params"), "n_prompts": len(pos), "samples_per_prompt": samples_per_prompt,
           "sampler": f"DDIM {steps} steps, eta {eta}, CFG {guidance}",
           "prediction_type": cfg.prediction_type, "caption": "{prompt}, front view",
           "gallery": f"GT renders of {'all ' if prompts is None else ''}{len(pool)} prompts from {REPORT_VIEWS} "
                      "fixed front-ish views",
           "asked": f"prompts containing {list(focus)}" if focus else "evenly spread over the world",
           "accuracy": float(ok.float().mean()), "attribute_accuracy": attr, "gt_ceiling": ceiling,
           "sample_seconds": sample_seconds, "grid_png": str(png), "grid_layout": f"rows: prompts in grid_prompts.txt; "
           f"columns: {samples_per_prompt} samples, then a GT render",
           "per_sample": [{"prompt": world.texts[a], "nearest": world.texts[b], "ok": a == b}
                          for a, b in zip(asked.tolist(), near.tolist())]}
    atomic_write_text(out / "report.json", json.dumps(rep, indent=1) + "\n")
    return rep
