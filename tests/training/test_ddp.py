"""Two CPU processes with gloo and DistributedDataParallel: prompts are sharded per rank, gradients
are averaged, so the ranks' parameters stay identical; only rank 0 writes; the checkpoint loads."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from backend.model import load_model

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist
    from safetensors.torch import save_file

    from training.config import config_from_dict
    from training.train import train

    cfg = config_from_dict({
        "run": {"steps": 4, "batch_size": 2, "lr": 1e-2, "device": "cpu", "checkpoint_every": 2, "seed": 0},
        "prompts": {"list": ["a red cube", "a blue sphere", "a green cone", "a yellow torus"]},
        "guidance": {"kind": "reconstruction"},
        "model": {"resolutions": [6, 8], "features": 2, "v_dim": 4, "hidden": 8},
        "render": {"height": 10, "width": 10, "n_samples": 6},
        "camera": {"shading_probs": [1.0, 0.0, 0.0]},
    })
    seen = []
    train(cfg, out, progress=False, hook=lambda t, s, l: seen.append(list(t.last_batch.prompts)))
    from training.distributed import dist_info

    trainer_shard = sorted({p for batch in seen for p in batch})
    state = {k: v.detach().contiguous() for k, v in _last_model[0].state_dict().items()} if _last_model else {}
    save_file(state, os.path.join(out, f"rank{rank}.safetensors"), metadata={"prompts": "|".join(trainer_shard),
                                                                             "world": str(dist_info()[1])})
    dist.destroy_process_group()


_last_model: list = []


@pytest.mark.slow
def test_gloo_ddp_ranks_stay_in_sync(tmp_path):
    import shutil

    out = tmp_path / "run"
    for attempt in range(2):  # a port taken between choosing and binding it (the CPU is shared) gets one retry
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        try:
            mp.spawn(_worker_with_capture, args=(str(out), _free_port()), nprocs=WORLD, join=True)
            break
        except mp.ProcessRaisedException as e:
            if attempt or not any(s in str(e) for s in ("address already in use", "EADDRINUSE", "onnect", "imed out")):
                raise
    from safetensors import safe_open
    from safetensors.torch import load_file

    s0, s1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert s0.keys() == s1.keys() and len(s0) > 5
    for k in s0:
        assert torch.equal(s0[k], s1[k]), f"rank parameters differ: {k}"
    metas = []
    for r in range(WORLD):
        with safe_open(str(out / f"rank{r}.safetensors"), "pt") as f:
            metas.append(f.metadata())
    assert all(m["world"] == "2" for m in metas)
    p0, p1 = (set(m["prompts"].split("|")) for m in metas)
    assert p0 and p1 and not p0 & p1  # each rank trains on its own shard
    model, config = load_model(out / "model")
    assert config["provenance"]["world_size"] == 2
    assert config["provenance"]["frames_per_prompt"] == 4 * 2 * 2 / 4
    final = model.state_dict()
    for k in s0:
        assert torch.equal(final[k], s0[k])
    ck = sorted((out / "checkpoints").glob("step_*"))
    assert [c.name for c in ck] == ["step_0000002", "step_0000004"]
    from safetensors.torch import load_file as lf

    rng = lf(str(ck[-1] / "rng.safetensors"))
    assert {"rank0.cpu", "rank1.cpu"} <= set(rng)
    load_model(ck[-1] / "model")


def _worker_with_capture(rank: int, out: str, port: int) -> None:
    from training.loop import Trainer

    real_run = Trainer.run

    def run(self, *a, **kw):
        _last_model.append(self.model)
        return real_run(self, *a, **kw)

    Trainer.run = run
    _worker(rank, out, port)
