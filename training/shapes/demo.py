"""The shipped ``demo`` model: ATT3D trained with SDS from the Shapes-world teacher (no reconstruction
loss anywhere) on the 12.5 % seen split, then saved in fp16 as ``backend/models/demo``.

Sizes (smaller than the paper's defaults so that it trains on a CPU and ships in < 32 MB):

* point encoder resolutions [9, 14, 22, 36] × 4 features (the paper adds 58; its 58³ level alone
  would make the hypernetwork's output layer 25 M parameters); ``v`` size 32;
* renders 32×32 (the teacher's resolution; the paper renders 64×64), 32 samples per ray in a
  bounding sphere of radius 1 (the world's objects lie inside |x| < 0.8; the paper uses radius 2);
* a plain white background instead of the paper's learned environment map: the teacher only ever
  saw white backgrounds, and a learnable background gives SDS a place to put the object's colour;
* cameras from the world's distribution (:func:`training.shapes.world.camera_sampler`), view prompts
  "…, front/side/back view", SDS with CFG ``GUIDANCE_SCALE``, Adam β1 = 0.

Run (resumable)::

    .venv/bin/python -m training.shapes.demo --out runs/demo --steps 3000 [--resume]   # shipped teacher
    .venv/bin/python -m training.shapes.demo --teacher runs/teacher --out runs/demo    # your own teacher
    # then ship it (fp16 + provenance) into backend/models/demo:
    .venv/bin/python -m training.shapes.demo --ship runs/demo
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from .world import camera_sampler, get_world, split_name

SPLIT = 0.125
GUIDANCE_SCALE = 30.0
MODEL = {"resolutions": [9, 14, 22, 36], "features": 4, "v_dim": 32, "hidden": 32, "sphere_radius": 1.0,
         "text_encoder": "minilm", "max_length": 32}
RENDER = {"height": 32, "width": 32, "n_samples": 32, "use_env": False, "normals": "finite_difference"}
SHIP_DIR = Path(__file__).resolve().parents[2] / "backend" / "models" / "demo"


def demo_config(teacher: str, steps: int = 3000, batch_size: int = 8, scale: float = GUIDANCE_SCALE,
                lr: float = 1e-3, model: Optional[dict] = None, render: Optional[dict] = None,
                checkpoint_every: int = 100, device: str = "cpu") -> dict[str, Any]:
    """The training config (``training.config.config_from_dict`` format) of the demo model."""
    cam = camera_sampler()
    return {
        "run": {"mode": "amortized", "steps": steps, "batch_size": batch_size, "lr": lr, "beta1": 0.0,
                "checkpoint_every": checkpoint_every, "keep_checkpoints": 2, "preview_every": 250,
                "log_every": 10, "eval_every": 0, "device": device},
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
               progress: bool = True, **kw):
    from training.config import config_from_dict
    from training.train import train

    cfg = config_from_dict(demo_config(teacher, steps, **kw))
    return train(cfg, out, prompts=seen_prompts(fraction), resume=resume, progress=progress)


def shapes_provenance(run_dir: Path, fraction: float = SPLIT, teacher: Optional[str] = None) -> dict:
    world = get_world()
    cfg = json.loads((run_dir / "model" / "config.json").read_text())
    prov = cfg.get("provenance", {})
    conf = prov.get("config", {})
    return {"world": "shapes", "world_prompt_hash": world.prompt_hash, "split": split_name(fraction),
            "split_fraction": fraction, "split_seed": world.seed, "n_seen": len(world.split(fraction)["seen"]),
            "steps": prov.get("step"), "frames_per_prompt": prov.get("frames_per_prompt"),
            "guidance": {"kind": "pixel", "teacher": teacher or conf.get("guidance", {}).get("model"),
                         "scale": conf.get("guidance", {}).get("scale"), "loss": "SDS only"},
            "render": conf.get("render"), "batch_size": conf.get("run", {}).get("batch_size")}


def ship(run_dir: str | Path, dest: str | Path = SHIP_DIR, fraction: float = SPLIT,
         metrics: Optional[dict] = None) -> Path:
    """Copy ``run_dir/model`` into ``dest`` in fp16 with the Shapes provenance."""
    import torch

    from backend.model import load_model, save_model

    run_dir = Path(run_dir)
    model, cfg = load_model(run_dir / "model")
    prov = dict(cfg.get("provenance", {}))
    prov.pop("prompts", None)  # the seen prompts are recoverable from the world + split
    prov["name"] = "demo"
    prov["shapes"] = shapes_provenance(run_dir, fraction)
    if metrics:
        prov["shapes"]["metrics"] = metrics
    return save_model(model, dest, prov, dtype=torch.float16)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="shipped", help="teacher folder (default: the shipped teacher)")
    p.add_argument("--out", default="runs/demo", help="the run folder")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--scale", type=float, default=GUIDANCE_SCALE)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--ship", metavar="RUN_DIR", help="ship RUN_DIR/model as backend/models/demo and exit")
    p.add_argument("--metrics", help="a JSON file of `att3d eval --world shapes --json` to record")
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.ship:
        m = json.loads(Path(a.metrics).read_text()) if a.metrics else None
        if m:
            m = {k: v for k, v in m.items() if k != "per_prompt"}
        print(ship(a.ship, metrics=m))
        return 0
    from .teacher import resolve_teacher

    r = train_demo(str(resolve_teacher(a.teacher)), a.out, a.steps, a.resume, batch_size=a.batch_size,
                   scale=a.scale, progress=False)
    print(f"stopped at step {r.step} ({r.stopped}) after {r.seconds:.0f} s, "
          f"{r.frames_per_prompt:.1f} frames per prompt; checkpoint {r.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
