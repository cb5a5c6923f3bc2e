"""Where a Shapes model's surface is: the extraction threshold (``iso_density``) calibrated against the
ground truth of the prompts it trained on (``att3d calibrate-iso --model M``).

SDS never says at which density the surface lies: the renderer composites density along rays, so the
teacher sees an object's silhouette where the accumulated opacity rises, and any level in the
density's rise can be it. The default level (5) sits low in that rise: demo v3's meshes came out
1.5× the true volume (issue 25's "fat volumes"), its density rising to about 20 inside. The level
whose occupied volume matches the true one — the geometric mean of the volume ratios over the seen
prompts equals 1 — is found by bisection (the volume falls as the level rises) on the field artists
get (the low-passed density of :func:`backend.mesh.lowpass_lattice`, which default smoothing
extracts) at the 64³ lattice ``att3d eval`` scores occupancy on. It never looks at an unseen prompt,
so the eval's unseen figures stay honest, and it changes only ``config.json``: the weights stay.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: prompts measured (evenly spread over the seen split) and the bisection's steps
DEFAULT_PROMPTS = 64
BISECTION_STEPS = 30


def _volume_log_ratio(densities: torch.Tensor, true_counts: torch.Tensor, level: float) -> float:
    """Mean over prompts of log(occupied / true) at ``level`` (an empty prompt counts as one point)."""
    occ = (densities > level).sum(dim=1).clamp_min(1).double()
    return float((occ / true_counts.double()).log().mean())


def _ious(densities: torch.Tensor, true_occ: torch.Tensor, level: float) -> list[float]:
    occ = densities > level
    inter = (occ & true_occ).sum(dim=1)
    union = (occ | true_occ).sum(dim=1).clamp_min(1)
    return (inter / union).tolist()


def calibrate_iso_density(model: Any, indices: Sequence[int], world: Any = None, grid: int = 64,
                          encoder: Any = None, progress: bool = False) -> dict[str, Any]:
    """The level at which the model's occupied volume (of its low-passed density) matches the truth
    over the Shapes prompts ``indices`` (geometric mean of the volume ratios = 1), with the mean IoU
    and volume ratio at the model's current level and at the calibrated one. ``model`` is an
    :class:`~backend.model.ATT3D` (its box ``bound`` 1, as the world's)."""
    from tqdm import tqdm

    from backend.mesh import lowpass_lattice
    from backend.text_encoder import TextEncoder

    from .metrics import grid_points
    from .world import get_world

    if not indices:
        raise ValueError("calibrating the extraction level needs at least one prompt")
    world = world or get_world()
    encoder = encoder or TextEncoder(model.config.text_encoder, model.config.max_length)
    pts = grid_points(grid)
    dens, truth = [], []
    with torch.no_grad():
        for i in tqdm(list(indices), desc="iso level", disable=not progress, leave=False):
            emb = encoder([world.prompts[i].text])
            mod = model.modulate(emb.tokens, emb.mask)
            dens.append(torch.from_numpy(lowpass_lattice(model, mod, grid)).reshape(-1).float())
            truth.append(world.scene(i).sdf(pts) < 0)
    densities, true_occ = torch.stack(dens), torch.stack(truth)
    true_counts = true_occ.sum(dim=1).clamp_min(1)
    lo, hi = 0.0, float(densities.max())
    if _volume_log_ratio(densities, true_counts, lo) < 0:
        raise ValueError("the model fills less than the true volume at every density level: "
                         "there is no level to calibrate (is it trained?)")
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if _volume_log_ratio(densities, true_counts, mid) > 0:
            lo = mid
        else:
            hi = mid
    level = round(0.5 * (lo + hi), 3)

    def at(lv: float) -> dict[str, float]:
        return {"iso_density": lv, "iou": float(np.mean(_ious(densities, true_occ, lv))),
                "volume_ratio": math.exp(_volume_log_ratio(densities, true_counts, lv))}

    return {"n_prompts": len(indices), "grid": grid, "before": at(float(model.config.iso_density)),
            "after": at(level), "iso_density": level}


def calibrate_model_folder(folder: str | Path, prompts: int = DEFAULT_PROMPTS, write: bool = False,
                           progress: bool = False) -> dict[str, Any]:
    """Calibrate a Shapes model folder on the seen split it trained on (its provenance says which);
    with ``write``, set ``architecture.iso_density`` in its ``config.json`` (atomically) and record the
    calibration in its provenance. Returns :func:`calibrate_iso_density`'s result and the split."""
    from backend.fileio import atomic_write_json
    from backend.model import CONFIG_NAME, load_model, read_config

    from .metrics import _trained_split, pick_prompts
    from .world import get_world

    model, cfg = load_model(folder)
    model.eval()
    frac = _trained_split(cfg.get("provenance", {}))
    world = get_world()
    idx = pick_prompts(world.split(frac)["seen"], prompts)
    res = calibrate_iso_density(model, idx, world, progress=progress)
    res["split_fraction"] = frac
    if write:
        config = read_config(folder)
        config["architecture"]["iso_density"] = res["iso_density"]
        config.setdefault("provenance", {}).setdefault("shapes", {})["iso_calibration"] = {
            k: res[k] for k in ("n_prompts", "grid", "split_fraction", "before", "after")}
        atomic_write_json(Path(folder) / CONFIG_NAME, config)
    return res
