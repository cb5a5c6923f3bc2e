"""Training entry point (paper Alg. 1, §3.2, App. B.1): ``train(config, out)`` runs the mode
``config.run.mode`` names. The loop is ``training/loop.py``, the modes ``training/modes/``.

Python API (stable)::

    from training.train import train
    from training.config import load_config, config_from_dict

    cfg = config_from_dict({"guidance": {"kind": "pixel", "model": "/path/to/teacher"},
                            "prompts": {"list": ["a red cube", "a blue sphere"]},
                            "model": {"resolutions": [9, 14, 22], "v_dim": 16},
                            "run": {"steps": 2000, "batch_size": 16}})
    result = train(cfg, "runs/shapes")            # → TrainResult; the model is result.model_dir
    train(cfg, "runs/shapes", resume=True)        # continues from the last checkpoint

Budget is counted in rendered frames per prompt: ``step × batch × world_size / #prompts``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import TrainConfig
from .distributed import dist_info, init_distributed
from .guidance import Guidance
from .loop import Trainer, TrainingError, TrainResult
from .per_prompt import train_per_prompt


def train(config: TrainConfig, out: str | os.PathLike, *, prompts: Sequence[str] | None = None,
          resume: bool = False, targets: Callable | None = None, guidance: Guidance | None = None,
          progress: bool = True, hook: Callable | None = None) -> TrainResult:
    """Train per ``config`` into the run folder ``out``; the model folder is ``out/model``.

    ``prompts`` (a Python list) replaces ``config.prompts``; ``targets`` is the ground-truth renderer
    of reconstruction guidance, ``targets(prompts, cams, H, W) → [B, 3, H, W]``; ``guidance`` an
    already built guidance module (reuse one across runs); ``resume`` continues from the last
    checkpoint in ``out`` (same step, weights, optimizer and random streams); ``hook(trainer, step,
    loss)`` runs after every step. Under torchrun the process group is joined here (NCCL on GPUs,
    gloo on CPU); only rank 0 writes.
    """
    init_distributed(config.run.device)
    if config.run.mode == "per_prompt":
        return train_per_prompt(config, Path(out), prompts=prompts, resume=resume, targets=targets,
                                guidance=guidance, progress=progress, hook=hook)
    trainer = Trainer(config, out, prompts=prompts, targets=targets, guidance=guidance, progress=progress, hook=hook)
    return trainer.run(resume=resume)


__all__ = ["TrainResult", "Trainer", "TrainingError", "dist_info", "train"]
