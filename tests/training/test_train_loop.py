"""The training loop: reconstruction converges, exact resume, atomic checkpoints, signals,
non-finite steps, warm starts."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from conftest import PROMPTS, tiny_config

from backend.model import load_model
from training import checkpoint as ckpt
from training.guidance import ReconstructionGuidance, SDSOutput
from training.loop import Trainer, TrainingError
from training.train import train


def test_reconstruction_loss_decreases(tmp_path):
    cfg = tiny_config(run={"steps": 40, "lr": 3e-2, "batch_size": 3})
    r = train(cfg, tmp_path / "run", progress=False)
    first, last = sum(r.losses[:5]) / 5, sum(r.losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert r.step == 40 and r.frames_per_prompt == pytest.approx(40 * 3 / 3)
    model, config = load_model(r.model_dir)
    prov = config["provenance"]
    assert prov["prompt_set"]["count"] == 3 and len(prov["prompt_set"]["sha256"]) == 64
    assert prov["frames_per_prompt"] == 40.0
    metrics = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 40 and "frames_per_prompt" in metrics[-1]
    evals = [json.loads(l) for l in (tmp_path / "run" / "evals.jsonl").read_text().splitlines()]
    assert evals[0]["frames_per_prompt"] == 0 and evals[-1]["frames_per_prompt"] == 40
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "logs"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "train/frames_per_prompt", "train/skipped"} <= tags
    assert [e.value for e in events.Scalars("train/frames_per_prompt")][-1] == 40.0
    assert list((tmp_path / "run" / "previews").glob("*.png"))


class Crash(Exception):
    pass


def test_resume_after_kill_gives_identical_losses(tmp_path):
    cfg = tiny_config(run={"steps": 6, "checkpoint_every": 2})
    ref = train(cfg, tmp_path / "a", progress=False).losses

    def kill_at_5(trainer, step, loss):
        if step == 5:
            raise Crash  # a kill: nothing is saved after the step-4 checkpoint

    with pytest.raises(Crash):
        train(cfg, tmp_path / "b", progress=False, hook=kill_at_5)
    assert ckpt.find_latest(tmp_path / "b").name == "step_0000004"
    r = train(cfg, tmp_path / "b", progress=False, resume=True)
    assert r.step == 6 and len(r.losses) == 2
    assert r.losses == ref[4:]  # bit-identical continuation
    a, _ = load_model(tmp_path / "a" / "model")
    b, _ = load_model(tmp_path / "b" / "model")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_checkpoint_survives_a_kill_mid_write(tmp_path, monkeypatch):
    cfg = tiny_config(run={"steps": 2, "checkpoint_every": 1})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    good = ckpt.find_latest(run)
    assert good.name == "step_0000002"
    trainer = Trainer(cfg, run, progress=False)
    trainer.resume()
    trainer.step = 3
    import safetensors.torch as st

    real = st.save_file
    calls = {"n": 0}

    def dying_save_file(tensors, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the model is written, the optimizer is half-written: the process dies
            with open(path, "wb") as f:
                f.write(b"\x00" * 17)
            raise KeyboardInterrupt
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr("training.checkpoint.save_file", dying_save_file)
    monkeypatch.setattr("training.checkpoint.shutil.rmtree", lambda *a, **k: None)  # a kill cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert list((run / "checkpoints").glob(".step_0000003.*"))  # the temp folder is left behind
    assert ckpt.find_latest(run) == good
    # latest.json pointing at a half-written folder is not trusted either
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"step": 3, "path": "step_0000003"}))
    (run / "checkpoints" / "step_0000003").mkdir()
    assert ckpt.find_latest(run) == good
    load_model(good / "model")
    r = train(cfg.__class__(**{**cfg.__dict__}), run, progress=False, resume=True)
    assert r.step == 2  # already complete: nothing to do, but it loads


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_stops(tmp_path, signum):
    cfg = tiny_config(run={"steps": 50})

    def term_at_3(trainer, step, loss):
        if step == 3:
            os.kill(os.getpid(), signum)

    # whatever they were (a job started in the background of a shell ignores SIGINT)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    r = train(cfg, tmp_path / "run", progress=False, hook=term_at_3)
    assert r.stopped == "signal" and r.step == 3
    assert ckpt.find_latest(tmp_path / "run").name == "step_0000003"
    assert {s: signal.getsignal(s) for s in before} == before  # the previous handlers are back
    r2 = train(tiny_config(run={"steps": 5}), tmp_path / "run", progress=False, resume=True)
    assert r2.step == 5 and len(r2.losses) == 2


class NaNGuidance(ReconstructionGuidance):
    """Reconstruction-like guidance whose loss is NaN from a given call on."""

    def __init__(self, start):
        super().__init__(lambda prompts, cams, h, w: torch.full((len(prompts), 3, h, w), 0.5))
        self.calls, self.start = 0, start

    def forward(self, images, conds, weights=None, *, prompts=(), cams=None, **_):
        self.calls += 1
        target = self.targets(prompts, cams, *images.shape[-2:])
        loss = ((images - target) ** 2).sum() * (float("nan") if self.calls >= self.start else 1.0)
        return SDSOutput(loss, images.detach(), torch.zeros(1), torch.ones(1))


def test_nonfinite_steps_are_skipped_then_stop(tmp_path):
    cfg = tiny_config(run={"steps": 30, "max_nonfinite": 3, "checkpoint_every": 2})
    g = NaNGuidance(start=4)
    with pytest.raises(TrainingError, match="3 non-finite losses in a row"):
        train(cfg, tmp_path / "run", progress=False, guidance=g)
    latest = ckpt.find_latest(tmp_path / "run")
    assert latest is not None
    state = json.loads((latest / "trainer.json").read_text())
    assert state["skipped"] == 3 and state["step"] == 6
    model, _ = load_model(latest / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_init_starts_from_a_model_of_the_same_architecture(tmp_path):
    base = train(tiny_config(run={"steps": 3}), tmp_path / "base", progress=False)
    # a run folder, a checkpoint folder or the model folder itself
    for init in (tmp_path / "base", base.checkpoint, base.model_dir):
        trainer = Trainer(tiny_config(run={"steps": 1, "init": str(init)}, prompts={"list": PROMPTS[:1]}),
                          tmp_path / "warm", progress=False)
        b, _ = load_model(base.model_dir)
        for (k, v), w in zip(b.state_dict().items(), trainer.model.state_dict().values()):
            assert torch.equal(v, w), k
    r = trainer.run()
    prov = load_model(r.model_dir)[1]["provenance"]
    assert prov["step"] == 1 and prov["init"]["step"] == 3 and prov["init"]["prompt_set"]["count"] == 3
    # an auto gain (grid_scale = 0) takes the weights' own; an explicit one must be theirs
    assert trainer.model.config.grid_scale == b.config.grid_scale and b.config.grid_scale > 1
    gain = b.config.grid_scale
    with pytest.raises(ValueError, match=rf"another architecture \(grid_scale: {gain} there, 4.0 here"):
        Trainer(tiny_config(run={"init": str(base.model_dir)}, model={"grid_scale": 4.0}), tmp_path / "x",
                progress=False)
    with pytest.raises(ValueError, match=r"another architecture \(v_dim: 4 there, 6 here"):
        Trainer(tiny_config(run={"init": str(base.model_dir)}, model={"v_dim": 6}), tmp_path / "y", progress=False)
    with pytest.raises(ValueError, match="a finetune starts from finetune.init"):
        tiny_config(run={"mode": "finetune", "init": str(base.model_dir)}).validate()
