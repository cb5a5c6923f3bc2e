"""Memory that fits one GPU: teacher text encoders in half precision (bf16 where supported), every
embedding cached and the encoders freed before the first step, uncached prompts later encoded in half
precision on the GPU with a CPU fallback."""
from __future__ import annotations

import pytest
import tiny_pipelines
import torch
from conftest import TINY_MODEL

from backend.text_encoder import TextEncoder, default_dtype
from training.config import config_from_dict
from training.guidance import GuidanceConfig
from training.guidance.text import text_dtype
from training.loop import Trainer


@pytest.fixture(scope="module")
def if_root(tmp_path_factory):
    return tiny_pipelines.if_like(tmp_path_factory.mktemp("if_mem"))


def test_text_encoders_default_to_half_precision_on_cuda(monkeypatch):
    assert default_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_dtype(torch.device("cuda")) == torch.bfloat16
    assert text_dtype(GuidanceConfig(), "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # (pre-Ampere GPUs)
    assert default_dtype(torch.device("cuda:1")) == torch.float16
    assert text_dtype(GuidanceConfig(text_dtype="float32"), "cuda") == torch.float32
    assert text_dtype(GuidanceConfig(), "cpu") == torch.float32
    # MiniLM (22 M parameters) stays float32 on a GPU too: the Shapes teacher was trained on those tokens
    assert TextEncoder("minilm", device="cuda").dtype == torch.float32


def test_embeddings_are_cached_and_the_encoders_freed_before_training(if_root, tmp_path):
    """model.text_encoder = "guidance" (the paper's setting): the T5 encodes the mapping prompts, the
    held-out prompts and every (prompt, view) guidance prompt once, then is freed; the steps never reload it."""
    cfg = config_from_dict({
        "run": {"steps": 2, "batch_size": 2, "device": "cpu", "preview_every": 0, "checkpoint_every": 0},
        "prompts": {"list": ["a red cube", "a blue sphere", "a green cone", "a pig"], "split": "seen",
                    "seen_fraction": 0.5},
        "guidance": {"kind": "pixel", "model": str(if_root), "max_length": 8},
        "model": {**TINY_MODEL, "text_encoder": "guidance"},
        "render": {"height": 8, "width": 8, "n_samples": 4},
    })
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    enc = trainer.guidance.encoder
    assert enc is trainer.encoder and enc._model is None  # freed before the first step
    loads = []
    orig = TextEncoder.model.fget
    TextEncoder.model = property(lambda self: (loads.append(self.encoder_id), orig(self))[1])
    try:
        trainer.run()
        held_out = trainer.mode.prompt_set.held_out
        assert held_out and enc(held_out).tokens.shape[0] == len(held_out)  # from the cache
    finally:
        TextEncoder.model = property(orig)
    assert loads == [] and enc._model is None


def test_uncached_prompts_fall_back_to_the_cpu_when_the_gpu_is_full(if_root, tmp_path, monkeypatch):
    enc = TextEncoder(f"{if_root}#text_encoder", 8, device="cuda", cache_dir=tmp_path, dtype=torch.float16)
    assert enc.dtype == torch.float16 and enc.device.type == "cuda"
    real_to = torch.nn.Module.to

    def to(self, *args, **kwargs):
        if any(isinstance(a, (str, torch.device)) and torch.device(a).type == "cuda" for a in args):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    e = enc(["a red cube"])
    assert enc.device.type == "cpu" and enc.dtype == torch.float32
    assert next(enc.model.parameters()).dtype == torch.float32
    assert e.tokens.shape == (1, 8, 16) and e.tokens.dtype == torch.float32 and torch.isfinite(e.tokens).all()
