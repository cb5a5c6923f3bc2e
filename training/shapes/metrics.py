"""Ground-truth metrics on the Shapes world (``att3d eval --world shapes --model M [--split unseen]``).

Per prompt, and their means:

* ``iou``: occupancy IoU on a 64³ grid over the model box [−1, 1]³ — model occupancy is
  ``density > iso_density`` (the model's own extraction threshold), ground truth ``sdf < 0``;
  ``volume_ratio``: the model's occupied grid points over the true ones (of the field, raw);
  ``ghost_accessory`` (prompts without an accessory): the share of the zone where a ball, a hat or
  ears would sit, outside the object, that the model fills (accessories leaking into plain prompts:
  the nub on top of spheres, ghost ears; 0 is right).
* ``color_error``: mean |rgb| difference (per channel, in [0, 1]) between the model's albedo and the
  true colour at the ground-truth surface points (grid points within half a voxel of the surface).
* ``r_precision`` (ground-truth R-precision): the generated object is rendered from the 4 fixed
  evaluation views (front, right, back, left; albedo, white background); it counts as retrieved when
  its nearest ground-truth prompt — mean squared image distance over the 4 views, among the GT
  renders of **all** world prompts — is its own prompt. ``shape_acc`` / ``color_acc`` /
  ``accessory_acc`` say whether that nearest prompt at least has the right shape / colour /
  accessory (with its colour); ``by_shape`` gives R-precision and IoU per shape.
* ``surface`` / ``surface_floor``: on a subset of the prompts, the extracted mesh against the
  analytic SDF (:mod:`training.shapes.surface`) and the same measures of the floor (marching cubes
  of the true SDF at the same resolution). :func:`format_report` prints them side by side.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import DEFAULT_DATA_DIR, save_npy_atomically
from .surface import SURFACE_RESOLUTION, summarize
from .world import (
    ALL_SHAPES,
    EVAL_AZIMUTHS,
    SEASONS,
    ShapesWorld,
    eval_cameras,
    get_world,
    parse_fraction,
    render_eval_views,
)

GRID = 64
DEFAULT_SURFACE_PROMPTS = 16
EVAL_SIZE = 32
EVAL_SAMPLES = 64
DEFAULT_MAX_PROMPTS = 128


def _cache_dir() -> Path:
    return Path(os.environ.get("ATT3D_SHAPES_DATA", DEFAULT_DATA_DIR))


def gt_eval_renders(world: ShapesWorld, size: int = EVAL_SIZE, cache: bool = True,
                    progress: bool = False, device: str | torch.device = "cpu") -> torch.Tensor:
    """GT albedo renders of every world prompt from the evaluation views ``[P, V, 3, S, S]`` (float,
    cached as uint8 in the data dir, keyed by the prompt hash), rendered on ``device``."""
    path = _cache_dir() / f"eval_views_{size}px_{world.prompt_hash[:12]}.npy"
    if cache and path.is_file():
        try:
            return torch.from_numpy(np.load(path)).float() / 255
        except (OSError, ValueError):
            pass
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # many tiny ops: faster on one thread on a shared CPU
    try:
        imgs = render_eval_views(world, range(len(world)), size, EVAL_SAMPLES, progress=progress, device=device,
                                 batch=64 if torch.device(device).type == "cpu" else 1024)
    finally:
        torch.set_num_threads(threads)
    arr = (imgs.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_npy_atomically(path, arr)
        except OSError:
            pass
    return torch.from_numpy(arr).float() / 255


def grid_points(n: int = GRID, bound: float = 1.0) -> torch.Tensor:
    x = torch.linspace(-bound, bound, n)
    return torch.stack(torch.meshgrid(x, x, x, indexing="ij"), -1).reshape(-1, 3)


def pick_prompts(indices: Sequence[int], max_prompts: int) -> list[int]:
    """A deterministic, evenly spread subset (prompt indices are ordered shape-major)."""
    idx = sorted(indices)
    if not max_prompts or len(idx) <= max_prompts:
        return idx
    pos = np.linspace(0, len(idx) - 1, max_prompts).round().astype(int)
    return [idx[i] for i in sorted(set(pos.tolist()))]


def _load(model, device):
    from backend.model import load_model

    if isinstance(model, (str, os.PathLike)):
        m, cfg = load_model(model, device)
        return m, cfg
    return model, {}


def _trained_split(prov: dict) -> float:
    """The seen split a model trained on: a shipped demo records it, a run's prompt hash tells it;
    12.5 % for a model that trained on something else."""
    if "split_fraction" in prov.get("shapes", {}):
        return prov["shapes"]["split_fraction"]
    from .demo import run_split

    try:
        return run_split(prov)
    except ValueError:
        return 0.125


def _scored_prompts(world: ShapesWorld, split: str, fraction: float | str | None, prompts: Sequence[int | str] | None,
                    prov: dict) -> tuple[list[int], str, float | None]:
    """The prompts to score (before the ``max_prompts`` subset), the split's label and fraction."""
    if prompts is not None:
        return [p if isinstance(p, int) else world.index(p) for p in prompts], "custom", None
    if split not in ("seen", "unseen", "all"):
        raise ValueError(f"unknown split {split!r}; choose seen, unseen or all")
    frac = parse_fraction(fraction if fraction is not None else _trained_split(prov))
    return (list(range(len(world))) if split == "all" else world.split(frac)[split]), split, frac


def _query_set(world: ShapesWorld, idx: list[int], queries: Sequence[int] | None,
               progress: bool, device: str | torch.device = "cpu") -> tuple[list[int], torch.Tensor]:
    """The retrieval query prompts and their GT renders ``[Q, V, 3, S, S]``: all world prompts
    (cached), or the subset ``queries`` (rendered now), which must hold every scored prompt."""
    if queries is None:
        return list(range(len(world))), gt_eval_renders(world, progress=progress, device=device)
    qidx = sorted(set(int(q) for q in queries))
    if not set(idx) <= set(qidx):
        raise ValueError("the query set must contain every scored prompt")
    return qidx, render_eval_views(world, qidx, EVAL_SIZE, EVAL_SAMPLES, device=device)


def _shape_scores(model: Any, mod, scene, pts: torch.Tensor, grid: int,
                  ghost_zone=None) -> tuple[float, float, float, float]:
    """Occupancy IoU on the grid points (model ``density > iso_density`` vs GT ``sdf < 0``), the mean
    albedo error at the GT surface points (within half a voxel of the surface), the occupied
    volume's ratio to the true one (the field's own, not a mesh's), and (a plain prompt's
    ``ghost_zone``, else nan) the share of the zone where accessories would sit, outside the object,
    that the model fills."""
    device = pts.device
    voxel = 2.0 / (grid - 1)
    # occupancy IoU
    dens = torch.cat([model.density(mod, c[None])[0] for c in pts.split(65536)])
    occ = dens > model.config.iso_density
    sdf, col = scene.sdf_and_color(pts.cpu())
    gocc = (sdf < 0).to(device)
    inter = (occ & gocc).sum().item()
    union = (occ | gocc).sum().item()
    iou = inter / union if union else 1.0
    volume_ratio = occ.sum().item() / max(gocc.sum().item(), 1)
    ghost = float("nan")
    if ghost_zone is not None:
        zone = ((ghost_zone.sdf(pts.cpu()) < 0) & (sdf >= 0)).to(device)
        ghost = (occ & zone).sum().item() / max(zone.sum().item(), 1)
    # colour error at GT surface points
    surf = sdf.abs() < voxel / 2
    sp = pts[surf.to(device)]
    _, alb = model.field(mod, sp[None])
    color_err = (alb[0].cpu() - col[surf]).abs().mean().item() if len(sp) else float("nan")
    return iou, color_err, volume_ratio, ghost


def _gt_distances(model: Any, mod, gt_flat: torch.Tensor, device: str) -> torch.Tensor:
    """Mean squared image distance of the model's renders from the evaluation views (albedo, white
    background) to each query prompt's GT renders ``[Q]``."""
    nv = len(EVAL_AZIMUTHS)
    cams = eval_cameras(1).to(device)
    modb = type(mod)(**{k: (v.expand(nv, *v.shape[1:]) if torch.is_tensor(v) else v)
                        for k, v in mod.__dict__.items()}) if hasattr(mod, "__dict__") else mod
    img = model.render(modb, cams, EVAL_SIZE, EVAL_SIZE, n_samples=EVAL_SAMPLES, stratified=False,
                       use_env=False).rgb.clamp(0, 1).cpu()
    return ((gt_flat - img.reshape(1, -1)) ** 2).mean(-1)


@torch.no_grad()
def evaluate(model: Any, split: str = "unseen", *, fraction: float | str | None = None, world_seed: int = 0,
             prompts: Sequence[int | str] | None = None, max_prompts: int = DEFAULT_MAX_PROMPTS,
             device: str = "cpu", encoder=None, grid: int = GRID, progress: bool = True,
             per_prompt: bool = True, queries: Sequence[int] | None = None, surface: int = DEFAULT_SURFACE_PROMPTS,
             surface_resolution: int = SURFACE_RESOLUTION, smooth: int = 0, seasons: bool = False) -> dict[str, Any]:
    """GT metrics of ``model`` (a folder, shipped name or an ``ATT3D``) on a split of the Shapes world.

    ``split``: ``seen`` | ``unseen`` | ``all`` of the split ``fraction`` (default: the one the model
    trained on, from its provenance, else 12.5 %); ``prompts`` overrides it with explicit prompts (indices
    or texts). At most ``max_prompts`` (an evenly spread subset; 0 = all) are scored; the retrieval
    query set is every world prompt (``queries``: a subset of prompt indices instead, which must
    contain the scored prompts — for quick checks; the GT renders of a subset are not cached).

    ``surface``: on this many of the scored prompts (evenly spread; 0 = none) the extracted mesh at
    ``surface_resolution``³ is also measured against the analytic SDF (:mod:`.surface`: normal
    error, roughness, distance, volume ratio, colour spread and leaks), beside the floor: the same
    measures of marching cubes on the true SDF. ``smooth``: Taubin iterations applied to the model's
    mesh before those measures (``att3d generate --smooth``; 0: off; the floor is never smoothed, and
    IoU, colour error and R-precision read the field, not the mesh). ``by_shape`` breaks the scores
    down per shape; ``without_trees`` gives the means over the first 1984 prompts alone (comparable
    with models measured before the trees came). ``seasons``: also score the four season trees ("a
    tree in the spring" … "winter", seen in every split) apart, as ``seasons``.
    """
    from tqdm import tqdm

    from backend.mesh import check_smooth
    from backend.text_encoder import TextEncoder

    t0 = time.perf_counter()
    smooth = check_smooth(smooth)
    world = get_world(world_seed)
    model, cfg = _load(model, device)
    model.eval()
    prov = cfg.get("provenance", {}) if isinstance(cfg, dict) else {}
    idx, split_label, frac = _scored_prompts(world, split, fraction, prompts, prov)
    idx = pick_prompts(idx, max_prompts)
    arch = model.config
    if encoder is None:
        encoder = TextEncoder(arch.text_encoder, arch.max_length)
    qidx, gt = _query_set(world, idx, queries, progress, device)
    gt_flat = gt.reshape(len(qidx), -1)
    qpos = {q: k for k, q in enumerate(qidx)}
    pts = grid_points(grid).to(device)
    surface_idx = set(pick_prompts(idx, surface)) if surface else set()
    season_idx = [world.index(f"a tree in the {s}") for s in SEASONS] if seasons else []
    if season_idx and queries is not None and not set(season_idx) <= set(qidx):
        raise ValueError("the query set must contain the season trees to score them")
    rows = []
    for i in tqdm(list(idx) + [k for k in season_idx if k not in idx], desc="GT eval", disable=not progress,
                  file=sys.stderr, leave=False):
        p = world.prompts[i]
        emb = encoder([p.text])
        mod = model.modulate(emb.tokens.to(device), emb.mask.to(device))
        iou, color_err, volume_ratio, ghost = _shape_scores(model, mod, world.scene(i), pts, grid, world.ghost_zone(i))
        d = _gt_distances(model, mod, gt_flat, device)  # GT R-precision over the query set
        nn_i = qidx[int(d.argmin())]
        q = world.prompts[nn_i]
        rank = int((d < d[qpos[i]]).sum())
        rows.append({"index": i, "prompt": p.text, "shape": p.shape, "iou": iou, "volume_ratio": volume_ratio,
                     "ghost_accessory": ghost, "color_error": color_err,
                     "retrieved": nn_i == i, "nearest": q.text, "rank": rank,
                     "shape_ok": q.shape == p.shape, "color_ok": q.color == p.color,
                     "accessory_ok": (q.accessory, q.accessory_color) == (p.accessory, p.accessory_color)})
        if i in surface_idx:
            rows[-1]["surface"], rows[-1]["surface_floor"] = _surface_scores(model, mod, world.scene(i),
                                                                             surface_resolution, smooth)
    season_rows = [r for r in rows if r["index"] in season_idx]
    rows = [r for r in rows if r["index"] in set(idx)]

    def mean(k, rs=None):
        vals = [float(r[k]) for r in (rows if rs is None else rs) if r[k] == r[k]]
        return float(np.mean(vals)) if vals else float("nan")

    out = {"world": "shapes", "split": split_label, "split_fraction": frac, "n_prompts": len(rows),
           "n_queries": len(qidx), "views": list(EVAL_AZIMUTHS), "grid": grid,
           "iou": mean("iou"), "volume_ratio": mean("volume_ratio"), "color_error": mean("color_error"),
           "ghost_accessory": mean("ghost_accessory"),
           "r_precision": mean("retrieved"),
           "shape_acc": mean("shape_ok"), "color_acc": mean("color_ok"), "accessory_acc": mean("accessory_ok"),
           "median_rank": float(np.median([r["rank"] for r in rows])) if rows else float("nan"),
           "seconds": time.perf_counter() - t0}
    base = [r for r in rows if r["index"] < world.n_base]
    if len(base) < len(rows):
        out["without_trees"] = {"n": len(base), **{k: mean(k, base) for k in ("iou", "volume_ratio", "color_error")},
                                "r_precision": mean("retrieved", base)}
    if season_rows:
        out["seasons"] = {"retrieved": mean("retrieved", season_rows), "iou": mean("iou", season_rows),
                          "per_season": {r["prompt"]: {"retrieved": r["retrieved"], "nearest": r["nearest"],
                                                       "rank": r["rank"], "iou": r["iou"]} for r in season_rows}}
    shapes = sorted({r["shape"] for r in rows}, key=lambda s: ALL_SHAPES.index(s))
    out["by_shape"] = {s: {"n": len(rs), "r_precision": float(np.mean([r["retrieved"] for r in rs])),
                           "iou": float(np.mean([r["iou"] for r in rs]))}
                       for s in shapes for rs in [[r for r in rows if r["shape"] == s]]}
    measured = [r for r in rows if "surface" in r]
    if measured:
        out["surface_resolution"] = surface_resolution
        out["surface_smooth"] = smooth
        out["n_surface"] = len(measured)
        out["surface"] = summarize([r["surface"] for r in measured])
        out["surface_floor"] = summarize([r["surface_floor"] for r in measured])
    if prov:
        out["model"] = prov.get("name", "")
    if per_prompt:
        out["per_prompt"] = rows
    return out


def _surface_scores(model: Any, mod, scene, resolution: int,
                    smooth: int = 0) -> tuple[dict[str, float], dict[str, float]]:
    """The :mod:`.surface` measures of the model's extracted mesh (the path ``att3d generate`` takes,
    without simplification; ``smooth`` Taubin iterations) and of the floor mesh, at the same resolution."""
    from .surface import floor_mesh, mesh_metrics, mesh_volume

    fv, ff, fc = floor_mesh(scene, resolution)
    true_volume = mesh_volume(fv, ff)
    _, v, f, c = lattice_and_mesh(model, mod, resolution, smooth)
    return (mesh_metrics(v, f, c, scene, resolution, true_volume=true_volume),
            mesh_metrics(fv, ff, fc, scene, resolution, true_volume=true_volume))


def lattice_and_mesh(model: Any, mod, resolution: int,
                     smooth: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The density lattice ``[x, y, z]`` of one prompt and its extracted mesh (vertices, faces,
    colours): the path ``att3d generate`` takes for an ATT3D model (without simplification; with
    ``smooth``, the low-passed lattice and that many Taubin iterations before the colours, as
    ``--smooth``), the plain lattice for anything else with ``density`` and ``field`` (the tests'
    oracles)."""
    from backend.mesh import density_lattice, field_colors, lowpass_lattice, marching_cubes, taubin_smooth, uses_lowpass
    from backend.model import ATT3D

    cfg = model.config
    if isinstance(model, ATT3D):
        vol = (lowpass_lattice if uses_lowpass(smooth, resolution) else density_lattice)(model, mod, resolution)
    else:
        pts = grid_points(resolution).to(mod.v.device)
        vol = torch.cat([model.density(mod, chunk[None])[0] for chunk in pts.split(1 << 16)]).cpu()
        vol = vol.reshape(resolution, resolution, resolution).numpy()
    v, f = marching_cubes(vol, cfg.iso_density, cfg.bound)
    v = taubin_smooth(v, f, smooth)
    if isinstance(model, ATT3D):
        c = field_colors(model, mod, v)
    else:
        c = model.field(mod, torch.from_numpy(v).to(mod.v.device)[None])[1][0].cpu().numpy() if len(v) \
            else np.zeros((0, 3), np.float32)
    return vol, v, f, c


def format_report(result: dict[str, Any]) -> str:
    """A readable summary of :func:`evaluate`'s result: scores, the per-shape breakdown, and each
    surface measure beside its floor."""
    lines = [f"{result.get('model') or 'model'}: {result['n_prompts']} {result['split']} prompts "
             f"({result['n_queries']} queries), {result['seconds']:.0f} s",
             f"  GT R-precision {result['r_precision']:.3f}   IoU {result['iou']:.3f}   colour error "
             f"{result['color_error']:.3f}   shape/colour/accessory acc {result['shape_acc']:.2f}/"
             f"{result['color_acc']:.2f}/{result['accessory_acc']:.2f}",
             "  by shape: " + ", ".join(f"{s} {v['r_precision']:.2f}/{v['iou']:.2f}"
                                        for s, v in result.get("by_shape", {}).items()) + "  (R-precision/IoU)"]
    if "volume_ratio" in result:
        lines[1] += f"   volume ratio {result['volume_ratio']:.3f}"
    if result.get("ghost_accessory") == result.get("ghost_accessory"):  # not nan: plain prompts were scored
        lines[1] += f"   ghost accessory {result['ghost_accessory']:.3f}"
    if "without_trees" in result:
        b = result["without_trees"]
        lines.append(f"  without the trees ({b['n']} prompts): GT R-precision {b['r_precision']:.3f}   IoU "
                     f"{b['iou']:.3f}   volume ratio {b['volume_ratio']:.3f}")
    if "seasons" in result:
        sea = result["seasons"]
        lines.append(f"  four seasons: {sea['retrieved'] * 4:.0f}/4 retrieved, IoU {sea['iou']:.3f} ("
                     + "; ".join(f"{p.removeprefix('a tree in the ')}: "
                                 + ("ok" if v["retrieved"] else f"nearest {v['nearest']!r}")
                                 for p, v in sea["per_season"].items()) + ")")
    if "surface" in result:
        smooth = result.get("surface_smooth", 0)
        lines.append(f"  surface on {result['n_surface']} prompts at {result['surface_resolution']}³"
                     + (f", Taubin-smoothed ×{smooth}" if smooth else "")
                     + " (model | floor = marching cubes of the true SDF):")
        for k, v in result["surface"].items():
            lines.append(f"    {k:<18} {v:8.3f} | {result['surface_floor'][k]:8.3f}")
    return "\n".join(lines)
