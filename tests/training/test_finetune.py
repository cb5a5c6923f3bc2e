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


@pytest.mark.parametrize("grid_scale", [1.0, 32.0])
def test_finetune_offset_folds_into_a_normal_model_folder(tmp_path, grid_scale):
    base = train(tiny_config(run={"steps": 3}, model={"grid_scale": grid_scale}), tmp_path / "base", progress=False)
    cfg = tiny_config(run={"mode": "finetune", "steps": 4, "lr": 5e-2}, model={"grid_scale": grid_scale},
                      finetune={"init": str(base.model_dir), "prompt": PROMPTS[1]})
    trainer = Trainer(cfg, tmp_path / "ft", progress=False)
    r = trainer.run()
    assert trainer.mode.offset.abs().sum() > 0
    ft, conf = load_model(r.model_dir)
    b, _ = load_model(base.model_dir)
    tokens, mask = trainer.mode.tokens[:1], trainer.mode.mask[:1]
    with torch.no_grad():
        want = b.modulate(tokens, mask).params + trainer.mode.offset
        got = ft.modulate(tokens, mask).params
    assert torch.allclose(got, want, atol=1e-4)
    # only the offset was trained: everything but the mapping's output layer is unchanged
    for (k, v), w in zip(b.state_dict().items(), ft.state_dict().values()):
        if "to_w" not in k:
            assert torch.equal(v, w), k
    assert conf["provenance"]["mode"] == "finetune"


class Crash(Exception):
    pass


def test_finetune_resumes_from_its_raw_offset(tmp_path):
    """A checkpoint holds the folded model *and* the raw δ (written inside the atomic checkpoint folder);
    resume restores δ, not the folded weights, and continues bit for bit."""
    base = train(tiny_config(run={"steps": 2}), tmp_path / "base", progress=False)
    cfg = tiny_config(run={"mode": "finetune", "steps": 4, "lr": 5e-2, "checkpoint_every": 2},
                      finetune={"init": str(base.model_dir)})
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
