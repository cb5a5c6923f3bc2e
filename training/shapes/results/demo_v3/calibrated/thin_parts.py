"""Are thin parts kept by the default extraction? For 40 unseen prompts with an accessory (no trees):
the share of the true accessory's surface (vertices of marching cubes on the true SDF nearest an
accessory part) within 1.5 voxels of the model's mesh at 128³, for v3's first default (level 5, raw
density, Taubin 20), the calibrated level on the raw density, and the calibrated level on the
low-passed density (today's default). From the repository root:

    python training/shapes/results/demo_v3/calibrated/thin_parts.py > training/shapes/results/demo_v3/calibrated/thin_parts.json
"""  # noqa: E501
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[5]))

from backend.mesh import density_lattice, lowpass_lattice, marching_cubes, taubin_smooth  # noqa: E402
from backend.model import load_model  # noqa: E402
from backend.text_encoder import TextEncoder  # noqa: E402
from training.shapes.metrics import pick_prompts  # noqa: E402
from training.shapes.surface import floor_mesh  # noqa: E402
from training.shapes.world import get_world, part_sdf  # noqa: E402

R = 128
WITHIN = 1.5  # voxels


def main() -> None:
    torch.set_num_threads(1)
    model, _ = load_model("demo", "cpu")
    model.eval()
    level = model.config.iso_density
    world = get_world()
    idx = pick_prompts([i for i in world.split(0.5)["unseen"]
                        if world.prompts[i].accessory not in ("", "none") and world.prompts[i].shape != "tree"], 40)
    enc = TextEncoder(model.config.text_encoder, model.config.max_length)
    voxel = 2 / (R - 1)
    settings = {"level 5, raw density, Taubin 20 (v3 as first shipped)": ("raw", 5.0),
                f"level {level}, raw density, Taubin 20": ("raw", level),
                f"level {level}, low-passed density, Taubin 20 (default)": ("low", level)}
    res: dict[str, dict[str, list[float]]] = {name: {} for name in settings}
    for i in idx:
        p, scene = world.prompts[i], world.scene(i)
        fv, _, _ = floor_mesh(scene, R)
        q = torch.from_numpy(fv) / scene.scale
        nearest_part = torch.stack([part_sdf(part, q) for part in scene.parts], -1).argmin(-1)
        accessory = fv[(nearest_part >= 1).numpy()]  # the parts after the body
        e = enc([p.text])
        with torch.no_grad():
            mod = model.modulate(e.tokens, e.mask)
            lattices = {"raw": density_lattice(model, mod, R), "low": lowpass_lattice(model, mod, R)}
        for name, (kind, lv) in settings.items():
            v, f = marching_cubes(lattices[kind], lv, 1.0)
            dist, _ = cKDTree(taubin_smooth(v, f, 20)).query(accessory)
            res[name].setdefault(p.accessory, []).append(float((dist < WITHIN * voxel).mean()))
    print(json.dumps({"n_prompts": len(idx), "resolution": R, "within_voxels": WITHIN, "settings": {
        name: {"by_accessory": {k: round(float(np.mean(x)), 4) for k, x in r.items()},
               "all": round(float(np.mean([y for x in r.values() for y in x])), 4)} for name, r in res.items()}},
        indent=1))


if __name__ == "__main__":
    main()
