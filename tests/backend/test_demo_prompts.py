"""The shipped demo lists what it was trained on, so "far from the training prompts" is computed
for it (issue 14): its 1056 prompts are the Shapes world's 50 % seen split, the very list its
provenance hashes; ``ship()`` keeps a run's prompts."""
from __future__ import annotations

import json

from backend.model import resolve_model_path
from backend.nearest import training_prompts
from training.prompts import prompt_hash


def test_the_demo_lists_its_1056_training_prompts():
    config = json.loads((resolve_model_path("demo") / "config.json").read_text())
    prov = config["provenance"]
    prompts = training_prompts(config)
    assert prompts is not None and len(prompts) == 1056 == prov["prompt_set"]["count"]
    assert prompt_hash(prompts) == prov["prompt_set"]["sha256"]  # exactly what it trained on
    assert "a red sphere wearing a red party hat" in prompts and "a tree in the winter" in prompts
    assert "a medieval castle" not in prompts


def test_ship_keeps_the_prompts(tmp_path, monkeypatch):
    import torch

    from backend.model import ModelConfig, build_model, load_model, save_model
    from training.shapes import demo

    run = tmp_path / "run"
    save_model(build_model(ModelConfig(resolutions=[8, 12], v_dim=4), seed=0), run / "model",
               {"name": "run", "prompts": ["a red cube", "a blue sphere"], "guidance": {"model": "x"}})
    monkeypatch.setattr(demo, "shapes_provenance", lambda run_dir: {"guidance": {"teacher": "x"}})
    dest = demo.ship(run, tmp_path / "shipped")
    _, cfg = load_model(dest, torch.device("cpu"))
    assert cfg["provenance"]["prompts"] == ["a red cube", "a blue sphere"] and cfg["provenance"]["name"] == "demo"


def test_ship_over_the_shipped_folder_keeps_its_model_card(tmp_path, monkeypatch):
    import torch

    from backend.model import ModelConfig, build_model, load_model, save_model
    from training.shapes import demo

    run = tmp_path / "run"
    save_model(build_model(ModelConfig(resolutions=[8, 12], v_dim=4), seed=1), run / "model", {"name": "run"})
    monkeypatch.setattr(demo, "shapes_provenance", lambda run_dir: {"guidance": {"teacher": "x"}})
    shipped = tmp_path / "shipped"
    save_model(build_model(ModelConfig(resolutions=[8, 12], v_dim=4), seed=0), shipped, {"name": "old"})
    (shipped / "README.md").write_text("# Model card: `demo` (v2)\n", encoding="utf-8")
    demo.ship(run, shipped)
    assert (shipped / "README.md").read_text(encoding="utf-8") == "# Model card: `demo` (v2)\n"
    assert sorted(p.name for p in shipped.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    model, cfg = load_model(shipped, torch.device("cpu"))
    assert cfg["provenance"]["name"] == "demo"  # the new weights, not the old folder's
    new = build_model(ModelConfig(resolutions=[8, 12], v_dim=4), seed=1).state_dict()
    key = next(k for k, v in new.items() if v.is_floating_point() and v.numel() > 1)
    torch.testing.assert_close(model.state_dict()[key].float(), new[key].half().float())
