"""Finetuning (App. B.1.13): an offset on one prompt's grid parameters, folded into a normal model
folder, and kept raw in every checkpoint so that a finetune resumes exactly."""
from __future__ import annotations

import pytest
import torch
from conftest import PROMPTS, tiny_config

from backend.model import load_model
from training import checkpoint as ckpt
from training.loop import Trainer
from training.modes.finetune import OFFSET_FILE
from training.train import train


@pytest.mark.parametrize("grid_scale,mapping,freeze", [(1.0, "hyper", "all"), (32.0, "hyper", "text"),
                                                      (0.0, "attention", "text"), (0.0, "hyper", "all")])
def test_finetune_offset_folds_into_a_normal_model_folder(tmp_path, grid_scale, mapping, freeze):
    model = {"grid_scale": grid_scale, "mapping": mapping}
    base = train(tiny_config(run={"steps": 3}, model=model), tmp_path / "base", progress=False)
    cfg = tiny_config(run={"mode": "finetune", "steps": 4, "lr": 5e-2}, model=model,
                      finetune={"init": str(base.model_dir), "prompt": PROMPTS[1], "freeze": freeze})
    trainer = Trainer(cfg, tmp_path / "ft", progress=False)
    r = trainer.run()
    assert trainer.mode.offset.abs().sum() > 0
    ft, conf = load_model(r.model_dir)
    b, _ = load_model(base.model_dir)
    assert ft.config.grid_scale == b.config.grid_scale
    tokens, mask = trainer.mode.tokens[:1], trainer.mode.mask[:1]
    with torch.no_grad():
        want = b.modulate(tokens, mask).params + trainer.mode.offset
        got = ft.modulate(tokens, mask).params
    assert torch.allclose(got, want, atol=1e-4)
    # the mapping network is detached (B.1.13): only its output layer(s) changed, by the folded δ; the
    # NeRF MLP and the environment map trained too unless freeze = "all"
    for (k, v), w in zip(b.state_dict().items(), ft.state_dict().values()):
        if k.startswith("mapping.") and "to_w" not in k:
            assert torch.equal(v, w), k
        elif k.startswith(("nerf.", "env.")) and k.endswith("weight"):
            assert torch.equal(v, w) == (freeze == "all"), k
    assert conf["provenance"]["mode"] == "finetune"


class Crash(Exception):
    pass


@pytest.mark.parametrize("freeze", ["text", "all"])
def test_finetune_resumes_from_its_raw_offset(tmp_path, freeze):
    """A checkpoint holds the folded model *and* the raw δ (written inside the atomic checkpoint folder);
    resume restores δ (and the trained NeRF MLP and environment map), not the folded mapping, and
    continues bit for bit."""
    base = train(tiny_config(run={"steps": 2}), tmp_path / "base", progress=False)
    cfg = tiny_config(run={"mode": "finetune", "steps": 4, "lr": 5e-2, "checkpoint_every": 2},
                      finetune={"init": str(base.model_dir), "freeze": freeze})
    ref = train(cfg, tmp_path / "a", progress=False).losses

    def kill_at_3(trainer, step, loss):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, tmp_path / "b", progress=False, hook=kill_at_3)
    latest = ckpt.find_latest(tmp_path / "b")
    assert latest.name == "step_0000002" and (latest / OFFSET_FILE).is_file()
    r = train(cfg, tmp_path / "b", progress=False, resume=True)
    assert r.losses == ref[2:]
    a, _ = load_model(tmp_path / "a" / "model")
    b, _ = load_model(r.model_dir)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
