"""The teacher's resumable training state in ``DIR/checkpoint/``: the UNet, its EMA and the
optimizer (safetensors) plus ``state.json`` (step, recipe, data folder, log). No pickles; written as
one folder, atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from backend.fileio import write_folder_atomically
from training.checkpoint import optimizer_from_flat, optimizer_to_flat

from .config import TeacherConfig, config_dict

CHECKPOINT = "checkpoint"
STATE = "state.json"


def read_checkpoint_state(out: Path) -> dict[str, Any] | None:
    """``state.json`` of the checkpoint in the teacher folder ``out``, or None when there is none."""
    ck = Path(out) / CHECKPOINT
    if not (ck.is_dir() and (ck / STATE).is_file()):
        return None
    return json.loads((ck / STATE).read_text())


def save_checkpoint(folder: Path, unet, ema, opt: torch.optim.Optimizer, step: int, cfg: TeacherConfig, log: dict,
                    data_dir: Path | None = None) -> None:
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
        tensors, meta = optimizer_to_flat(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / STATE).write_text(json.dumps({"step": step, "config": config_dict(cfg), "optimizer": meta,
                                             "data_dir": str(data_dir) if data_dir else None, "log": log}, indent=1))

    write_folder_atomically(folder / CHECKPOINT, write)


def load_checkpoint(folder: Path, unet, ema, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore the weights, EMA and optimizer saved by :func:`save_checkpoint` (``state``: its
    ``state.json``). Checkpoints from before the shared optimizer helper (no ``scalars`` in the
    optimizer record) read the same way."""
    from safetensors.torch import load_file

    ck = Path(folder) / CHECKPOINT
    unet.load_state_dict(load_file(str(ck / "model.safetensors")))
    ema.load_state_dict(load_file(str(ck / "ema.safetensors")))
    optimizer_from_flat(opt, load_file(str(ck / "optimizer.safetensors")), state["optimizer"])
