"""The teacher folder that guidance loads (``unet/``, ``scheduler/``, ``att3d_teacher.json``): export
it from a training run, find it (the shipped one by default), ship it in fp16, load it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from backend.fileio import atomic_write_json, write_folder_atomically
from training.guidance import TEACHER_JSON

from ..world import VIEW_LABELS, ShapesWorld
from .config import TeacherConfig, build_scheduler, config_dict

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DConditionModel

#: the teacher that ships with the repository (fp16, no checkpoint): what the demo model was trained from
SHIPPED_TEACHER = Path(__file__).resolve().parents[1] / "weights" / "teacher"


def export_teacher(folder: Path, ema, cfg: TeacherConfig, step: int, world: ShapesWorld,
                   extra: dict | None = None) -> None:
    """(Re)write ``unet/``, ``scheduler/`` and ``att3d_teacher.json`` (atomically, each)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_folder_atomically(folder / "unet", lambda tmp: ema.save_pretrained(str(tmp), safe_serialization=True))
    write_folder_atomically(folder / "scheduler", lambda tmp: build_scheduler(cfg).save_pretrained(str(tmp)))
    meta = {"kind": "pixel-ddpm", "text_encoder": cfg.text_encoder, "max_length": cfg.max_length,
            "token_dim": cfg.token_dim, "image_size": cfg.image_size, "channels": 3, "value_range": [-1, 1],
            "prediction_type": cfg.prediction_type, "background": "white", "unconditional_prompt": "",
            "caption_format": "{prompt}, {view} view", "view_labels": list(VIEW_LABELS),
            "world": "shapes", "world_prompt_hash": world.prompt_hash, "steps": step,
            "training": config_dict(cfg), **(extra or {})}
    atomic_write_json(folder / TEACHER_JSON, meta)


def resolve_teacher(teacher: str | Path | None = None) -> Path:
    """A teacher folder: ``teacher`` as given ("shipped" or None = :data:`SHIPPED_TEACHER`); checked."""
    path = SHIPPED_TEACHER if teacher in (None, "", "shipped") else Path(teacher)
    if not (path / TEACHER_JSON).is_file():
        hint = " (the shipped teacher is missing from this checkout)" if path == SHIPPED_TEACHER else ""
        raise ValueError(f"{path}: not a teacher folder (no {TEACHER_JSON}){hint}; "
                         "train one with `att3d train-teacher --out DIR`")
    return path


def read_teacher_meta(folder: Path) -> dict[str, Any]:
    """``att3d_teacher.json`` of a teacher folder."""
    return json.loads((Path(folder) / TEACHER_JSON).read_text())


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


def load_teacher(folder: str | Path,
                 device: str | torch.device = "cpu") -> tuple[UNet2DConditionModel, DDPMScheduler, dict[str, Any]]:
    """→ (unet, scheduler, meta) from a teacher folder (the guidance's own loader may be used instead)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    folder = resolve_teacher(folder)
    meta = read_teacher_meta(folder)
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=torch.float32).to(device).eval()
    sched = DDPMScheduler.from_pretrained(str(folder / "scheduler"))
    return unet, sched, meta
