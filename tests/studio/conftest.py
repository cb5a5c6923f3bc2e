"""The studio tests reuse the service tests' tiny-model engine fixture."""
from __future__ import annotations

import pytest

from backend.model import ModelConfig, build_model, save_model

PROMPTS = ["a red cube", "a blue sphere", "a green cone", "a yellow torus"]


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    from backend.engine import Engine

    folder = tmp_path_factory.mktemp("studio-models") / "tiny-studio"
    save_model(build_model(ModelConfig(resolutions=[8, 12, 16], v_dim=8), seed=0), folder,
               {"name": "tiny-studio", "prompts": PROMPTS})
    return Engine.load(str(folder), device="cpu")
