"""Shared helpers for the training tests: tiny models, 16×16 renders, a handful of steps."""
from __future__ import annotations

import pytest

from training.config import TrainConfig, config_from_dict

TINY_MODEL = {"resolutions": [6, 8], "features": 2, "v_dim": 4, "hidden": 8}
PROMPTS = ["a red cube", "a blue sphere", "a green cone"]


def tiny_config(**sections) -> TrainConfig:
    base = {
        "run": {"steps": 6, "batch_size": 2, "lr": 1e-2, "device": "cpu", "log_every": 1, "checkpoint_every": 0,
                "preview_every": 0, "eval_every": 0, "seed": 0},
        "prompts": {"list": list(PROMPTS)},
        "guidance": {"kind": "reconstruction"},
        "model": dict(TINY_MODEL),
        "render": {"height": 12, "width": 12, "n_samples": 8},
        "camera": {"shading_probs": [1.0, 0.0, 0.0]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return config_from_dict(base)


@pytest.fixture(autouse=True)
def one_thread():
    """The CPU is shared: one torch thread avoids OpenMP spinning (restored after each test)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
