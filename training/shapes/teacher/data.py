"""The teacher's training data, cached on disk: GT renders of every prompt from random training
cameras (resumable by chunks) and the MiniLM embeddings of every distinct caption."""
from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from backend.fileio import atomic_write_bytes, atomic_write_text

from ..cache import DEFAULT_DATA_DIR, save_npy_atomically
from ..world import VIEW_LABELS, ShapesWorld, camera_sampler, get_world, render_scenes, view_caption
from .config import TeacherConfig


def data_paths(data_dir: Path, cfg: TeacherConfig, world: ShapesWorld | None = None) -> dict[str, Path]:
    """The cached files, keyed by the world's prompt hash (a world that grew, or whose texts changed,
    renders and embeds afresh instead of reading rows that no longer match its prompts)."""
    world = world or get_world()
    tag = f"{cfg.image_size}px_{cfg.views_per_prompt}v_{world.prompt_hash[:12]}"
    return {"images": data_dir / f"renders_{tag}.npy", "labels": data_dir / f"renders_{tag}.json",
            "chunks": data_dir / f"chunks_{tag}",
            "captions": data_dir / f"captions_{cfg.text_encoder}_{cfg.max_length}_{world.prompt_hash[:12]}.safetensors"}


def _render_chunk(world: ShapesWorld, part: list[tuple[int, int]], cfg: TeacherConfig, chunk_index: int) -> np.ndarray:
    """One chunk of (prompt, view) jobs rendered from seeded training cameras: rows of the uint8
    pixels followed by the view label's index."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + chunk_index)
    cams = camera_sampler().sample(len(part), generator=g)
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
    return np.concatenate([img.reshape(len(part), -1), views[:, None]], axis=1)


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
    paths = data_paths(data_dir, cfg, world)
    idx = list(range(len(world))) if prompts is None else list(prompts)
    if prompts is not None:  # a subset (tests): its own files
        tag = f"_{len(idx)}p_{abs(hash(tuple(idx))) % 10 ** 8}"
        paths = {k: v.with_name(v.stem + tag + v.suffix) for k, v in paths.items()}
    if not (paths["images"].is_file() and paths["labels"].is_file()):
        jobs = [(p, v) for p in idx for v in range(cfg.views_per_prompt)]
        paths["chunks"].mkdir(parents=True, exist_ok=True)
        n_chunks = math.ceil(len(jobs) / chunk)
        for c in tqdm(range(n_chunks), desc="GT renders", disable=not progress, file=sys.stderr):
            f = paths["chunks"] / f"{c:05d}.npy"
            if not f.is_file():
                save_npy_atomically(f, _render_chunk(world, jobs[c * chunk:(c + 1) * chunk], cfg, c))
        arr = np.concatenate([np.load(paths["chunks"] / f"{c:05d}.npy") for c in range(n_chunks)])
        s = cfg.image_size
        save_npy_atomically(paths["images"], arr[:, :-1].reshape(-1, s, s, 3))
        labels = {"prompts": [p for p, _ in jobs], "views": arr[:, -1].tolist(), "view_labels": list(VIEW_LABELS),
                  "prompt_hash": world.prompt_hash}
        atomic_write_text(paths["labels"], json.dumps(labels))
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
                              prompts: Sequence[int] | None = None) -> torch.Tensor:
    """``{"tokens": [C, L, D] fp16}`` for :func:`all_captions`, computed once in batches."""
    from safetensors.torch import load_file, save
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
    atomic_write_bytes(path, save({"tokens": tokens.contiguous()}, metadata={"prompt_hash": world.prompt_hash}))
    return tokens
