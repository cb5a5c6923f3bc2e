"""The shipped ``demo`` model: ATT3D trained with SDS from the Shapes-world teacher (no reconstruction
loss anywhere) on a seen split (the shipped one: 12.5 %, then 50 % from those weights; see the
README for the runs), then saved in fp16 as ``backend/models/demo``.

The recipe (sizes, renders, CFG, optimizer; and why each differs from the paper) is the preset
``training/configs/shapes/demo.toml``; :func:`demo_config` adds the teacher folder and the world's
camera distribution (:func:`training.shapes.world.camera_sampler`, the one the teacher saw: view
prompts "…, front/side/back view").

Run (resumable; ``python -m training.shapes.demo`` takes the same arguments)::

    att3d train-demo --out runs/demo --steps 3000 [--resume]          # from the shipped teacher
    att3d train-demo --teacher runs/teacher --out runs/demo           # from your own teacher
    att3d train-demo --out runs/demo50 --split 50% --init runs/demo   # on, with four times the prompts
    # then ship it (fp16 + provenance) into backend/models/demo:
    att3d train-demo --ship runs/demo --metrics eval.json
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.config import read_config_file
from training.guidance import TEACHER_JSON

from ..prompts import prompt_hash
from .world import SPLIT_FRACTIONS, camera_sampler, get_world, split_name

SPLIT = 0.125
PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "shapes"
#: the demo's training recipes: v1 (the first shipped model), v2 (the GPU campaign's: surface priors,
#: annealed t, interpolants over random pairs; v2 itself shipped from v1's recipe + grid TV) and v3
#: (v2's own recipe with the trees in focus and interpolants that keep their endpoints); see the
#: presets' comments
RECIPES = {"v1": PRESET_DIR / "demo.toml", "v2": PRESET_DIR / "demo_v2.toml", "v3": PRESET_DIR / "demo_v3.toml"}
PRESET = RECIPES["v1"]
_PRESET = read_config_file(PRESET)
MODEL: dict[str, Any] = _PRESET["model"]
RENDER: dict[str, Any] = _PRESET["render"]
GUIDANCE_SCALE: float = _PRESET["guidance"]["scale"]  # why 2.5: see the preset
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIP_DIR = REPO_ROOT / "backend" / "models" / "demo"


def demo_config(teacher: str, steps: int | None = None, batch_size: int | None = None, scale: float | None = None,
                lr: float | None = None, model: dict | None = None, render: dict | None = None,
                checkpoint_every: int | None = None, device: str | None = None,
                init: str | None = None, recipe: str = "v1") -> dict[str, Any]:
    """The training config (``training.config.config_from_dict`` format) of the demo model: the
    ``recipe``'s preset, with ``teacher`` as the guidance model, the world's cameras, and any
    argument given here (``model`` / ``render``: keys over the preset's)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown demo recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    preset = read_config_file(RECIPES[recipe])
    cam = camera_sampler()
    given = {"steps": steps, "batch_size": batch_size, "lr": lr, "checkpoint_every": checkpoint_every,
             "device": device, "init": init}
    out = {k: v for k, v in preset.items() if k not in ("run", "guidance", "model", "render")}
    return {
        **out,
        "run": {**preset["run"], **{k: v for k, v in given.items() if v is not None}},
        "guidance": {**preset["guidance"], "model": str(teacher),
                     **({"scale": scale} if scale is not None else {})},
        "model": {**preset["model"], **(model or {})},
        "render": {**preset["render"], **(render or {})},
        "camera": {"distance": list(cam.distance), "focal": list(cam.focal), "elevation": list(cam.elevation),
                   "azimuth": list(cam.azimuth), "shading_probs": list(cam.shading_probs),
                   "ambient": list(cam.ambient), "light_distance": list(cam.light_distance),
                   "light_angle": list(cam.light_angle)},
    }


def seen_prompts(fraction: float = SPLIT, seed: int = 0) -> list[str]:
    world = get_world(seed)
    return [world.texts[i] for i in world.split(fraction)["seen"]]


def train_demo(teacher: str, out: str | Path, steps: int | None = None, resume: bool = False,
               fraction: float = SPLIT, progress: bool = True, scale: float | None = None,
               overrides: list[str] | tuple[str, ...] = (), hook: Callable | None = None, **kw):
    """Train (or ``resume``) the demo run in ``out`` on the seen split of ``fraction``; ``kw`` goes to
    :func:`demo_config` (``recipe``; ``init``: start from a model trained before, e.g. on the smaller
    split); ``None`` (``steps``, ``scale``) keeps the preset's value; ``overrides`` are
    ``section.key=value`` strings applied last (``regularizers.distortion=0``); ``hook(trainer, step,
    loss)`` runs after every step (the interpolation bench measures the endpoints there)."""
    from training.config import TrainConfig, apply_dict, apply_overrides
    from training.train import train

    cfg = apply_overrides(apply_dict(TrainConfig(), demo_config(teacher, steps, scale=scale, **kw)),
                          list(overrides)).validate()
    return train(cfg, out, prompts=seen_prompts(fraction), resume=resume, progress=progress, hook=hook)


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
    if teacher and (Path(teacher) / TEACHER_JSON).is_file():  # what it was, not just where it lay
        m = json.loads((Path(teacher) / TEACHER_JSON).read_text())
        teacher_meta = {k: m.get(k) for k in ("steps", "prediction_type", "n_params", "image_size")}
    return {"world": "shapes", "world_prompt_hash": world.prompt_hash, "split": split_name(fraction),
            "split_fraction": fraction, "split_seed": world.seed, "n_seen": len(seen_prompts(fraction)),
            "steps": prov.get("step"), "frames_per_prompt": prov.get("frames_per_prompt"),
            "guidance": {"kind": "pixel", "teacher": teacher, "teacher_meta": teacher_meta,
                         "scale": conf.get("guidance", {}).get("scale"), "loss": "SDS only"},
            "render": conf.get("render"), "batch_size": conf.get("run", {}).get("batch_size"),
            # a run started from an earlier model: what that one had trained on, and how long
            "init": _init_chain(prov.get("init")),
            # a soup (training/soup.py): the runs averaged, by name, weights hash and weight
            **({"soup": [{"name": s.get("name"), "sha256": s.get("sha256"), "weight": s.get("weight"),
                          "steps": s.get("step"), "init": _init_chain(s.get("init"))} for s in prov["soup"]]}
               if prov.get("soup") else {})}


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


MODEL_CARD = "README.md"


def ship(run_dir: str | Path, dest: str | Path | None = None, metrics: dict | None = None) -> Path:
    """Copy ``run_dir/model`` into ``dest`` (default :data:`SHIP_DIR`) in fp16 with the Shapes provenance."""
    import torch

    from backend.model import load_model, save_model

    run_dir = Path(run_dir)
    model, cfg = load_model(run_dir / "model")
    prov = dict(cfg.get("provenance", {}))
    # the seen prompts stay (992 for the 50 % split, ~40 KB): the service's "far from the training
    # prompts" warning needs them, and without them it can only say "unknown"
    prov["name"] = "demo"
    calibration = (prov.get("shapes") or {}).get("iso_calibration")  # att3d calibrate-iso --write on the run
    prov["shapes"] = shapes_provenance(run_dir)
    if calibration:
        prov["shapes"]["iso_calibration"] = calibration
    if metrics:
        prov["shapes"]["metrics"] = metrics
    dest = Path(dest or SHIP_DIR)
    card = dest / MODEL_CARD  # hand-written, updated with each version: it stays
    extra = {MODEL_CARD: card.read_text(encoding="utf-8")} if card.is_file() else None
    return save_model(model, dest, portable_provenance(prov), dtype=torch.float16, extra_files=extra)


def portable_provenance(prov: dict) -> dict:
    """The provenance with no path of the machine that trained it: a teacher inside this repository
    by its repository-relative path, any other folder (a teacher elsewhere, the runs a model started
    from) by its name; runs started from are recorded by name and weights hash (``load_init``)."""
    from training.modes.amortized import run_name

    def folder(p: str) -> str:
        rel = _repo_relative(p)
        return rel if not Path(rel).is_absolute() else run_name(rel)

    def chain(init: dict | None) -> dict | None:
        if not init:
            return init
        init = dict(init)
        if "path" in init:  # recorded before runs were named by name and hash
            init.setdefault("name", run_name(init.pop("path")))
        if (init.get("guidance") or {}).get("model"):
            init["guidance"] = {**init["guidance"], "model": folder(init["guidance"]["model"])}
        init["init"] = chain(init.get("init"))
        return init

    prov = json.loads(json.dumps(prov))  # a deep copy
    prov["init"] = chain(prov.get("init"))
    if prov.get("soup"):  # a soup's ingredients (training/soup.py), each recorded like an init
        prov["soup"] = [chain(s) for s in prov["soup"]]
    for g, key in ((prov.get("guidance"), "model"), (prov.get("config", {}).get("guidance"), "model"),
                   (prov.get("shapes", {}).get("guidance"), "teacher")):
        if g and g.get(key):
            g[key] = folder(g[key])
    run = prov.get("config", {}).get("run", {})
    if run.get("init"):
        run["init"] = (prov.get("init") or {}).get("name") or run_name(run["init"])
    return prov


def main(argv=None) -> int:
    """``python -m training.shapes.demo ARGS`` is ``att3d train-demo ARGS``."""
    import sys

    from backend.cli import main as att3d

    return att3d(["train-demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
