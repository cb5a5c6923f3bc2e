"""The shipped ``demo`` model: ATT3D trained with SDS from the Shapes-world teacher (no reconstruction
loss anywhere) on a seen split (the shipped one: 12.5 %, then 50 % from those weights; see the
README for the runs), then saved in fp16 as ``backend/models/demo``.

Sizes (smaller than the paper's defaults so that it trains on a CPU and ships in < 32 MB):

* point encoder resolutions [9, 14, 22, 36] × 4 features (the paper adds 58; its 58³ level alone
  would make the hypernetwork's output layer 25 M parameters); ``v`` size 32;
* ``grid_scale`` 32 on the hypernetwork's output (the paper has none): spectral norm keeps the grid
  values at ~0.05 after 2700 steps, too small for the NeRF MLP to read colours from, and a run
  without it learnt shapes but left every object brown;
* renders 32×32 (the teacher's resolution; the paper renders 64×64), 32 samples per ray in a
  bounding sphere of radius 1 (the world's objects lie inside |x| < 0.8; the paper uses radius 2);
* a plain white background instead of the paper's learned environment map: the teacher only ever
  saw white backgrounds, and a learnable background gives SDS a place to put the object's colour;
* cameras from the world's distribution (:func:`training.shapes.world.camera_sampler`), view prompts
  "…, front/side/back view", SDS with CFG ``GUIDANCE_SCALE``, Adam β1 = 0.

Run (resumable; ``python -m training.shapes.demo`` takes the same arguments)::

    att3d train-demo --out runs/demo --steps 3000 [--resume]          # from the shipped teacher
    att3d train-demo --teacher runs/teacher --out runs/demo           # from your own teacher
    att3d train-demo --out runs/demo50 --split 50% --init runs/demo   # on, with four times the prompts
    # then ship it (fp16 + provenance) into backend/models/demo:
    att3d train-demo --ship runs/demo --metrics eval.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..prompts import prompt_hash
from .world import SPLIT_FRACTIONS, camera_sampler, get_world, split_name

SPLIT = 0.125
# The teacher is sharp without guidance (its CFG-1 samples are right 83 % of the time) and CFG
# exaggerates it (oversized, oversaturated samples at 3). SDS inherits that: CFG 30 drew four
# identical brown blobs in a 150-step check, CFG 5 right but fat objects (1.6× the true volume,
# unseen IoU 0.58), and 500 steps at CFG 2.5 from that model raised the IoU to 0.63.
GUIDANCE_SCALE = 2.5
MODEL = {"resolutions": [9, 14, 22, 36], "features": 4, "v_dim": 32, "grid_scale": 32.0, "hidden": 32, "sphere_radius": 1.0,
         "text_encoder": "minilm", "max_length": 32}
RENDER = {"height": 32, "width": 32, "n_samples": 32, "use_env": False, "normals": "finite_difference"}
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIP_DIR = REPO_ROOT / "backend" / "models" / "demo"


def demo_config(teacher: str, steps: int = 3000, batch_size: int = 8, scale: float = GUIDANCE_SCALE,
                lr: float = 1e-3, model: dict | None = None, render: dict | None = None,
                checkpoint_every: int = 100, device: str = "cpu", init: str = "") -> dict[str, Any]:
    """The training config (``training.config.config_from_dict`` format) of the demo model."""
    cam = camera_sampler()
    return {
        "run": {"mode": "amortized", "steps": steps, "batch_size": batch_size, "lr": lr, "beta1": 0.0,
                "checkpoint_every": checkpoint_every, "keep_checkpoints": 2, "preview_every": 250,
                "log_every": 10, "eval_every": 0, "device": device, "init": init},
        "guidance": {"kind": "pixel", "model": str(teacher), "scale": scale, "t_min": 0.02, "t_max": 0.98,
                     "view_prompts": True},
        "model": {**MODEL, **(model or {})},
        "render": {**RENDER, **(render or {})},
        "camera": {"distance": list(cam.distance), "focal": list(cam.focal), "elevation": list(cam.elevation),
                   "azimuth": list(cam.azimuth), "shading_probs": list(cam.shading_probs),
                   "ambient": list(cam.ambient), "light_distance": list(cam.light_distance),
                   "light_angle": list(cam.light_angle)},
    }


def seen_prompts(fraction: float = SPLIT, seed: int = 0) -> list[str]:
    world = get_world(seed)
    return [world.texts[i] for i in world.split(fraction)["seen"]]


def train_demo(teacher: str, out: str | Path, steps: int = 3000, resume: bool = False, fraction: float = SPLIT,
               progress: bool = True, scale: float | None = None, **kw):
    """Train (or ``resume``) the demo run in ``out`` on the seen split of ``fraction``; ``kw`` goes to
    :func:`demo_config` (``init``: start from a model trained before, e.g. on the smaller split)."""
    from training.config import config_from_dict
    from training.train import train

    cfg = config_from_dict(demo_config(teacher, steps, scale=GUIDANCE_SCALE if scale is None else scale, **kw))
    return train(cfg, out, prompts=seen_prompts(fraction), resume=resume, progress=progress)


def _split_of(prompt_set: dict | None) -> float | None:
    """The seen-split fraction whose prompts a provenance's ``prompt_set`` record hashes, else None."""
    sha = (prompt_set or {}).get("sha256")
    return next((f for f in SPLIT_FRACTIONS if prompt_hash(seen_prompts(f)) == sha), None)


def run_split(prov: dict) -> float:
    """The seen-split fraction whose prompts a run trained on (from its provenance's prompt hash)."""
    fraction = _split_of(prov.get("prompt_set"))
    if fraction is not None:
        return fraction
    world = get_world()
    raise ValueError("the run did not train on a seen split of the Shapes world "
                     f"({', '.join(split_name(f) for f in SPLIT_FRACTIONS)}; world hash {world.prompt_hash[:12]})")


def shapes_provenance(run_dir: Path, teacher: str | None = None) -> dict:
    world = get_world()
    cfg = json.loads((run_dir / "model" / "config.json").read_text())
    prov = cfg.get("provenance", {})
    fraction = run_split(prov)
    conf = prov.get("config", {})
    teacher = teacher or conf.get("guidance", {}).get("model")
    teacher_meta = {}
    if teacher and (Path(teacher) / "att3d_teacher.json").is_file():  # what it was, not just where it lay
        m = json.loads((Path(teacher) / "att3d_teacher.json").read_text())
        teacher_meta = {k: m.get(k) for k in ("steps", "prediction_type", "n_params", "image_size")}
    return {"world": "shapes", "world_prompt_hash": world.prompt_hash, "split": split_name(fraction),
            "split_fraction": fraction, "split_seed": world.seed, "n_seen": len(seen_prompts(fraction)),
            "steps": prov.get("step"), "frames_per_prompt": prov.get("frames_per_prompt"),
            "guidance": {"kind": "pixel", "teacher": teacher, "teacher_meta": teacher_meta,
                         "scale": conf.get("guidance", {}).get("scale"), "loss": "SDS only"},
            "render": conf.get("render"), "batch_size": conf.get("run", {}).get("batch_size"),
            # a run started from an earlier model: what that one had trained on, and how long
            "init": _init_chain(prov.get("init"))}


def _init_chain(init: dict | None) -> dict | None:
    if not init:
        return None
    ps = init.get("prompt_set") or {}
    fraction = _split_of(ps)
    return {"split": None if fraction is None else split_name(fraction), "n_prompts": ps.get("count"),
            "steps": init.get("step"),
            "frames_per_prompt": init.get("frames_per_prompt"),
            "guidance_scale": (init.get("guidance") or {}).get("scale"), "init": _init_chain(init.get("init"))}


def _repo_relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(path)


def ship(run_dir: str | Path, dest: str | Path | None = None, metrics: dict | None = None) -> Path:
    """Copy ``run_dir/model`` into ``dest`` (default :data:`SHIP_DIR`) in fp16 with the Shapes provenance."""
    import torch

    from backend.model import load_model, save_model

    run_dir = Path(run_dir)
    model, cfg = load_model(run_dir / "model")
    prov = dict(cfg.get("provenance", {}))
    prov.pop("prompts", None)  # the seen prompts are recoverable from the world + split
    if prov.get("init"):
        prov["init"]["path"] = _repo_relative(prov["init"]["path"])
    prov["name"] = "demo"
    prov["shapes"] = shapes_provenance(run_dir)
    # a teacher inside this repository is recorded relative to it, not by this machine's path
    for g, key in ((prov.get("guidance"), "model"), (prov.get("config", {}).get("guidance"), "model"),
                   (prov["shapes"]["guidance"], "teacher")):
        if g and g.get(key):
            g[key] = _repo_relative(g[key])
    if metrics:
        prov["shapes"]["metrics"] = metrics
    return save_model(model, dest or SHIP_DIR, prov, dtype=torch.float16)


def main(argv=None) -> int:
    """``python -m training.shapes.demo ARGS`` is ``att3d train-demo ARGS``."""
    import sys

    from backend.cli import main as att3d

    return att3d(["train-demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
