"""``att3d train --dry-run`` for every shipped config, offline; ``att3d doctor``; the shipped teacher
architectures; the ``--gpu-bench`` steps on the CPU with a tiny teacher (no GPU here)."""
from __future__ import annotations

import json

import pytest
import torch

from backend.cli import main
from training.config import CONFIG_DIR
from training.guidance.architectures import param_count, shipped_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name,want", [pytest.param("if_i_xl_unet.json", 4.3047e9, marks=pytest.mark.slow),
                                       ("sd15_unet.json", 859_520_964),
                                       ("sd15_vae.json", 83_653_863), ("t5_v1_1_xxl.json", 4_762_310_656),
                                       ("clip_vit_large_patch14_text.json", 123_060_480)])
def test_shipped_architectures_have_the_published_sizes(name, want):
    n = param_count(shipped_config(name))
    assert n == pytest.approx(want, rel=1e-4), n


@pytest.mark.slow
def test_dry_run_of_every_shipped_config_offline(capsys):
    assert set(SHIPPED) >= {"df415_if", "df415_sd", "pig", "pig_interp", "pig_per_prompt", "animals", "smoke"}
    plans = {}
    for name in SHIPPED:
        rc = main(["train", "--dry-run", "--json", "--config", str(CONFIG_DIR / f"{name}.toml")])
        out = capsys.readouterr()
        assert rc == 0, out.err
        plans[name] = json.loads(out.out)
    p = plans["df415_if"]
    roles = {m["role"]: m for m in p["models"]}
    unet = roles["teacher UNet"]
    assert unet["params"] == pytest.approx(4.3e9, rel=0.01) and unet["dtype"] == "float16"
    t5 = roles["teacher text encoder"]  # IF's own T5-XXL conditions the teacher
    assert t5["id"] == "DeepFloyd/IF-I-XL-v1.0#text_encoder" and t5["params"] == 4_762_310_656
    assert t5["dtype"] == "bfloat16" and "freed" in t5["note"]
    clip = roles["mapping text encoder"]  # CLIP ViT-L/14 conditions the mapping network (App. B.1.3)
    assert clip["id"] == "openai/clip-vit-large-patch14" and clip["params"] == 123_060_480
    att3d = roles["ATT3D (trained)"]
    assert att3d["mapping_input"] == [77, 768] and att3d["mapping_text_params"] == 77 * 768 * 32 + 32
    assert att3d["params"] == 77 * 768 * 32 + 32 + 32 * 4 * (9**3 + 14**3 + 22**3 + 36**3 + 58**3) \
        + (20 * 32 + 32 + 32 * 4 + 4) + (3 * (3 + 2 * 3 * 8) + 3 * 32 + 3)  # 34.6 M; with T5's 77×4096: 42.8 M
    assert [d["repo"] for d in p["downloads"]] == ["DeepFloyd/IF-I-XL-v1.0", "openai/clip-vit-large-patch14",
                                                   "openai/clip-vit-base-patch32"]
    assert "licence" in p["downloads"][0]["note"]
    assert p["downloads"][0]["subfolders"] == ["unet", "scheduler", "text_encoder", "tokenizer"]
    mem = p["memory"]
    assert 15 < mem["peak_gib"] < 80 and mem["parts_gib"]["teacher UNet weights"] == pytest.approx(8.02, abs=0.01)
    assert p["steps"] == 20000 and p["batch_per_gpu"] == 32 and p["prompts"]["count"] is None  # (file not here)
    sd = plans["df415_sd"]
    assert {m["role"] for m in sd["models"]} >= {"teacher UNet", "teacher VAE", "teacher text encoder"}
    assert sd["memory"]["parts_gib"]["VAE encoder activations (with gradient)"] > 10  # 16 renders at 512² through it
    pig = plans["pig"]
    assert pig["prompts"]["count"] == 48 and pig["prompts"]["frames_per_prompt"] == pytest.approx(10000 * 32 / 48)
    assert plans["pig_per_prompt"]["prompts"]["frames_per_prompt"] == 2000 * 32
    smoke = plans["smoke"]
    assert smoke["downloads"] == [] and smoke["prompts"]["frames_per_prompt"] == 30 * 4 / 4
    for name, plan in plans.items():
        assert not [x for x in plan["problems"] if "unknown architecture" in x], name
    # the text form says what it would download
    assert main(["train", "--dry-run", "--config", str(CONFIG_DIR / "df415_if.toml")]) == 0
    text = capsys.readouterr().out
    assert "would download" in text and "DeepFloyd/IF-I-XL-v1.0 (unet/, scheduler/, text_encoder/, tokenizer/)" in text
    assert "mapping input 77×768 tokens (openai/clip-vit-large-patch14), read by 1.89 M" in text
    assert "estimated peak GPU memory" in text


def test_train_without_out_or_dry_run_is_one_line(capsys):
    assert main(["train", "--preset", "smoke"]) == 2
    assert "--out" in capsys.readouterr().err


def test_doctor_reports_the_environment(capsys):
    assert main(["doctor", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["torch"] == torch.__version__ and env["cuda_available"] == torch.cuda.is_available()
    assert set(env["optional"]) >= {"tinycudann", "xatlas", "fastapi", "mcubes"}
    assert env["optional"]["xatlas"]["available"] is True  # installed here
    assert main(["doctor"]) == 0
    assert "optional parts:" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_gpu_bench_without_a_gpu_fails_clearly(capsys):
    assert main(["doctor", "--gpu-bench"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a CUDA GPU" in err


def test_gpu_bench_steps_run_on_the_cpu_with_a_tiny_teacher():
    """The benchmark's SDS and training steps (what --gpu-bench times on the GPU), on a tiny teacher."""
    from training.doctor import _sds_step, _timed, _training_step
    from training.guidance import GuidanceConfig, PixelDiffusionGuidance, tiny_scheduler, tiny_unet

    g = PixelDiffusionGuidance(GuidanceConfig(dtype="float32"), "cpu", unet=tiny_unet(16, token_dim=8),
                               scheduler=tiny_scheduler())
    cpu = torch.device("cpu")
    median, times, peak = _timed(_sds_step(g, 8, 2, 16, cpu, tokens=4), repeats=2, warmup=1)
    assert len(times) == 2 and median > 0 and peak == 0.0
    step = _training_step(g, 8, 2, 8, 4, cpu, tokens=4, resolutions=(4, 6))
    step()
    median, _, _ = _timed(step, repeats=1, warmup=0)
    assert median > 0
    # the mapping network reading another encoder's tokens than the teacher's (the IF preset: CLIP beside T5)
    step = _training_step(g, 8, 2, 8, 4, cpu, tokens=4, resolutions=(4, 6), mapping_input=(5, 3))
    step()


def test_gpu_bench_follows_each_configs_mapping_input():
    """--gpu-bench's training step builds the mapping network each DF415 config trains: CLIP-L's 77×768
    tokens for IF (not its T5's 77×4096), the teacher's own CLIP for SD."""
    from training.config import load_config, preset_path
    from training.doctor import mapping_input

    assert mapping_input(load_config(preset_path("df415_if")), 4096) == (77, 768, "openai/clip-vit-large-patch14")
    assert mapping_input(load_config(preset_path("df415_sd")), 768) == (77, 768, "the teacher's")
