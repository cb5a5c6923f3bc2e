"""Faults a long run must survive or report clearly: weights that turn non-finite (never saved; the
last good checkpoint is named), divergence with finite weights (a learning rate of 1e9), a truncated
newest checkpoint (resume falls back), and what a killed run leaves (temporaries, re-run steps)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from backend.cli import main
from training import checkpoint as ckpt
from training.config import to_toml
from training.loop import TrainingError
from training.train import train


def _poison_at(step_to_poison: int):
    def hook(trainer, step, loss):
        if step == step_to_poison:
            with torch.no_grad():
                next(trainer.model.parameters()).view(-1)[0] = float("nan")
    return hook


def test_nonfinite_weights_are_never_written_and_the_last_good_checkpoint_is_named(tmp_path):
    cfg = tiny_config(run={"steps": 10, "checkpoint_every": 2, "max_weight_growth": 0})
    with pytest.raises(TrainingError) as e:
        train(cfg, tmp_path / "run", progress=False, hook=_poison_at(3))
    msg = str(e.value)
    assert "step 4: non-finite values (NaN/inf) in " in msg and "no checkpoint was written" in msg
    assert "the last good weights are in" in msg and msg.rstrip().count("step_0000002") == 1
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")) == ["step_0000002"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".step_*"))  # not even a temporary


def test_save_checkpoint_refuses_damaged_weights(tmp_path):
    from backend.model import ModelConfig, build_model

    model = build_model(ModelConfig(resolutions=[4], v_dim=2, max_length=2, token_dim=4))
    opt = torch.optim.Adam(model.parameters())
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(ckpt.NonFiniteWeights, match=r"non-finite values \(NaN/inf\) in "):
        ckpt.save_checkpoint(tmp_path, 1, model, opt, {}, {}, {})
    assert not (tmp_path / "checkpoints" / "step_0000001").exists()


def test_exploding_learning_rate_stops_with_a_clear_message(tmp_path):
    cfg = tiny_config(run={"steps": 50, "lr": 1e9, "checkpoint_every": 0})
    with pytest.raises(TrainingError, match=r"training diverged at step 1: the weights' norm grew from .* "
                                            r"run.max_weight_growth = 1000 times\); no checkpoint was written "
                                            r"before\. Lower run.lr \(now 1e\+09\)"):
        train(cfg, tmp_path / "run", progress=False)
    # the ordinary learning rate of the same run is nowhere near the limit
    r = train(tiny_config(run={"steps": 20, "lr": 3e-2}), tmp_path / "ok", progress=False)
    assert r.step == 20


def test_divergence_is_a_one_line_error_and_a_nonzero_exit(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(to_toml(tiny_config(run={"steps": 20, "lr": 1e9})))
    code = main(["--quiet", "train", "--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "training diverged at step 1" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err


def test_resume_falls_back_from_a_truncated_checkpoint(tmp_path, capsys):
    cfg = tiny_config(run={"steps": 6, "checkpoint_every": 2})
    ref = train(cfg, tmp_path / "ref", progress=False).losses
    run = tmp_path / "run"
    train(tiny_config(run={"steps": 4, "checkpoint_every": 2}), run, progress=False)
    newest = ckpt.find_latest(run)
    assert newest.name == "step_0000004"
    weights = newest / "optimizer.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a disk that filled up, a copy cut short
    capsys.readouterr()
    r = train(cfg, run, progress=False, resume=True)
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is damaged" in err and "resuming from the previous one, step_0000002" in err
    assert r.step == 6 and r.losses == ref[2:]  # exactly the run that never broke, from step 2
    # every checkpoint damaged: a clear error, not a traceback
    for p in ckpt.candidates(run):
        (p / "trainer.json").write_text("{\"step\": ")
    with pytest.raises(TrainingError, match="no readable checkpoint in .*every one is damaged"):
        train(cfg, run, progress=False, resume=True)


class Crash(Exception):
    pass


def test_a_killed_run_leaves_no_temporaries_and_no_duplicate_steps_after_resume(tmp_path, capsys):
    cfg = tiny_config(run={"steps": 8, "checkpoint_every": 3, "eval_every": 2})
    run = tmp_path / "run"

    def kill_at_5(trainer, step, loss):
        if step == 5:
            (run / "checkpoints" / ".step_0000005.tmp-abc").mkdir()  # what a kill mid-write leaves
            (run / ".model.tmp-xyz").mkdir()
            (run / "checkpoints" / ".latest.json.123.tmp").write_text("{")
            raise Crash

    with pytest.raises(Crash):
        train(cfg, run, progress=False, hook=kill_at_5)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a line the kill cut short
    r = train(cfg, run, progress=False, resume=True)
    assert r.step == 8
    assert "removed 3 temporary file(s)" in capsys.readouterr().err
    assert not [p.name for d in (run, run / "checkpoints") for p in d.iterdir() if p.name.startswith(".")]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    evals = [json.loads(line)["step"] for line in (run / "evals.jsonl").read_text().splitlines()]
    assert evals == [0, 2, 4, 6, 8]


def test_checkpoint_files_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """A power cut must not leave a torn checkpoint: every file is fsynced, then the folder renamed."""
    import os

    from backend.model import ModelConfig, build_model

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    model = build_model(ModelConfig(resolutions=[4], v_dim=2, max_length=2, token_dim=4))
    final = ckpt.save_checkpoint(tmp_path, 7, model, torch.optim.Adam(model.parameters()), {}, {"a": 1}, {})
    renamed = next(i for i, (kind, path) in enumerate(events)
                   if kind == "rename" and Path(path).name.startswith(".step_0000007"))
    synced = {Path(p).name for kind, p in events[:renamed] if kind == "fsync"}
    files = {p.name for p in final.rglob("*") if p.is_file()}
    assert files == {"config.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer.json"}
    assert files <= synced, files - synced
