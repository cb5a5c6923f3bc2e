"""Seams of the teacher package: the constants it shares with the guidance, and resumable
checkpoints written before it used the shared optimizer helper."""
import json

import torch

from training.shapes import teacher as T


def test_teacher_shares_the_guidance_constants():
    import training.guidance as G

    assert T.TEACHER_JSON == G.TEACHER_JSON  # the folder the guidance loads is the one the teacher writes
    # the teacher trains a subset of what the guidance reads ("sample" has no training target here)
    assert set(T.TRAINABLE_PREDICTION_TYPES) < set(G.PREDICTION_TYPES)
    assert T.TeacherConfig().prediction_type in T.TRAINABLE_PREDICTION_TYPES


def test_a_checkpoint_in_the_old_optimizer_layout_still_resumes(tmp_path):
    """Before the shared ``training.checkpoint`` helper the teacher stored every optimizer state entry
    as a tensor and no ``scalars`` record: such a checkpoint restores the same state."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    unet, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-2)
    unet(torch.randn(4, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    old = {f"state.{pid}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous()
           for pid, st in sd["state"].items() for k, v in st.items()}  # the old _flatten_optimizer
    ck = tmp_path / "checkpoint"
    ck.mkdir()
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(ck / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(ck / "ema.safetensors"))
    save_file(old, str(ck / "optimizer.safetensors"))
    state = {"step": 1, "optimizer": {"param_groups": sd["param_groups"]}, "log": {}, "config": {}}
    (ck / "state.json").write_text(json.dumps(state))

    unet2, ema2 = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(unet2.parameters(), lr=1e-2)
    assert T.read_checkpoint_state(tmp_path)["step"] == 1
    T.load_checkpoint(tmp_path, unet2, ema2, opt2, state)
    torch.testing.assert_close(unet2.state_dict(), unet.state_dict())
    torch.testing.assert_close(ema2.state_dict(), ema.state_dict())
    got, want = opt2.state_dict(), opt.state_dict()
    assert got["param_groups"] == want["param_groups"]
    for pid in want["state"]:
        for k, v in want["state"][pid].items():
            torch.testing.assert_close(torch.as_tensor(got["state"][pid][k]), torch.as_tensor(v))
    assert T.read_checkpoint_state(tmp_path / "nothing") is None
